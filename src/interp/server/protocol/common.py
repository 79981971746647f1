"""What both doors' bodies share."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

ID = Annotated[str, Field(min_length=1, max_length=64)]
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
]
"""OpenAI's: at most 16 pairs, keys of at most 64 characters, values of at most 512."""
Json = dict[str, JsonValue]
"""A JSON object a client gives (a schema, an option): JSON's values only (no NaN)."""
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class Body(BaseModel):
    # JSON has no NaN or Infinity (Python's parser takes them, JavaScript's refuses them).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Echoed(BaseModel):
    """An item a client may send back as an earlier response served it: keys this server
    does not use are ignored (the ``openai`` SDK's models serialise them)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class FunctionDef(Body):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str | None = None
    parameters: Json | None = None
    strict: bool | None = None


class JsonSchemaFormat(Body):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str | None = None
    schema_: Annotated[Json | None, Field(alias="schema")] = None
    strict: bool | None = None

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, populate_by_name=True, serialize_by_alias=True
    )


class ResponseFormat(Body):
    """An Assistants ``response_format`` other than ``"auto"``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("'json_schema' is given with type 'json_schema', and only then")
        return self
