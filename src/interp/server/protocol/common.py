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


AttributeKey = Annotated[str, Field(min_length=1, max_length=64, pattern=r'^[^"\\\x00-\x1f]+$')]
"""An attribute's key: OpenAI's 64 characters, without quotes, backslashes or control
characters (it names a JSON path in the database)."""
Attributes = Annotated[
    dict[AttributeKey, Annotated[str, Field(max_length=512)] | bool | float],
    Field(max_length=16),
]
"""A vector store file's attributes: OpenAI's 16 pairs, strings of at most 512 characters,
booleans or numbers."""

MAX_FILTER_DEPTH = 8
MAX_FILTER_TERMS = 64


class ComparisonFilter(Body):
    key: AttributeKey
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    value: (
        Annotated[str, Field(max_length=512)]
        | bool
        | float
        | Annotated[list[Annotated[str, Field(max_length=512)] | float], Field(max_length=64)]
    )

    @model_validator(mode="after")
    def _fits(self) -> ComparisonFilter:
        listed = isinstance(self.value, list)
        if listed != (self.type in ("in", "nin")):
            raise ValueError("'in' and 'nin' take a list of values, the others one value")
        if self.type in ("gt", "gte", "lt", "lte") and isinstance(self.value, bool):
            raise ValueError(f"'{self.type}' compares numbers or strings, not booleans")
        return self


class CompoundFilter(Body):
    type: Literal["and", "or"]
    filters: Annotated[list[ComparisonFilter | CompoundFilter], Field(max_length=MAX_FILTER_TERMS)]

    @model_validator(mode="after")
    def _bounded(self) -> CompoundFilter:
        depth, terms = _measure(self)
        if depth > MAX_FILTER_DEPTH or terms > MAX_FILTER_TERMS:
            raise ValueError(
                f"filters may nest {MAX_FILTER_DEPTH} deep and hold {MAX_FILTER_TERMS}"
                " comparisons at most"
            )
        return self


Filter = ComparisonFilter | CompoundFilter


def _measure(given: Filter) -> tuple[int, int]:
    """How deep a filter nests, and how many comparisons it holds."""
    if isinstance(given, ComparisonFilter):
        return 0, 1
    found = [_measure(inner) for inner in given.filters]
    return 1 + max((d for d, _ in found), default=0), sum(t for _, t in found)


class RankingOptions(Body):
    ranker: (
        Literal["none", "auto", "default-2024-11-15", "default-2024-08-21", "default_2024_08_21"]
        | None
    ) = None
    score_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    hybrid_search: Json | None = None
    """Taken and not used: one fusion of keyword and semantic ranks is used."""
