"""The bodies of the Responses, Conversations and Containers APIs.

Input items are validated by their ``type`` (a message when absent); items a client echoes
back from an earlier response's ``output`` may carry keys this server does not use, and
those are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    field_validator,
    model_validator,
)

from ..agent.model import CODE_TOOL
from ..agent.search import SEARCH_TOOL
from .common import (
    ID,
    Body,
    Echoed,
    Filter,
    FunctionDef,
    Json,
    Metadata,
    RankingOptions,
    ReasoningEffort,
)

MemoryLimit = Literal["1g", "4g", "16g", "64g"]
MEMORY_BYTES: dict[str, int] = {
    name: int(name[:-1]) * 1024**3 for name in ("1g", "4g", "16g", "64g")
}
INCLUDE_OUTPUTS = "code_interpreter_call.outputs"
INCLUDE_RESULTS = "file_search_call.results"


# `prompt_cache_breakpoint` (on each input part) steers OpenAI's prompt cache: accepted,
# and not used.


class InputText(Body):
    type: Literal["input_text"]
    text: Annotated[str, Field(max_length=1_000_000)]
    prompt_cache_breakpoint: Json | None = None


class OutputText(Echoed):
    type: Literal["output_text"]
    text: Annotated[str, Field(max_length=1_000_000)]
    annotations: list[Json] = Field(default_factory=list)


class InputImage(Body):
    type: Literal["input_image"]
    image_url: Annotated[str, Field(max_length=20_000_000)] | None = None
    file_id: ID | None = None
    detail: Literal["low", "high", "auto"] | None = None
    prompt_cache_breakpoint: Json | None = None


class InputFile(Body):
    type: Literal["input_file"]
    file_id: ID | None = None
    filename: Annotated[str, Field(max_length=255)] | None = None
    file_data: Annotated[str, Field(max_length=20_000_000)] | None = None
    file_url: Annotated[str, Field(max_length=2048)] | None = None
    detail: Literal["low", "high", "auto"] | None = None
    prompt_cache_breakpoint: Json | None = None


Content = Annotated[InputText | OutputText | InputImage | InputFile, Field(discriminator="type")]


class MessageItem(Echoed):
    type: Literal["message"] = "message"
    id: ID | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: (
        Annotated[str, Field(max_length=1_000_000)]
        | Annotated[list[Content], Field(min_length=1, max_length=64)]
    )
    status: str | None = None


class FunctionCallItem(Echoed):
    type: Literal["function_call"]
    id: ID | None = None
    call_id: ID
    name: Annotated[str, Field(min_length=1, max_length=64)]
    arguments: Annotated[str, Field(max_length=1_000_000)]
    status: str | None = None


class FunctionCallOutputItem(Body):
    type: Literal["function_call_output"]
    id: ID | None = None
    call_id: ID
    output: Annotated[str, Field(max_length=1_000_000)]
    status: str | None = None


class CodeCallItem(Echoed):
    type: Literal["code_interpreter_call"]
    id: ID
    code: Annotated[str, Field(max_length=1_000_000)] | None = None
    container_id: ID
    outputs: list[Json] | None = None
    status: str | None = None


class SearchCallItem(Echoed):
    type: Literal["file_search_call"]
    id: ID
    queries: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=16)]
    results: Annotated[list[Json], Field(max_length=50)] | None = None
    status: str | None = None


class ItemReference(Body):
    type: Literal["item_reference"]
    id: ID


def _item_type(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "message"))
    return str(getattr(value, "type", "message"))


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[CodeCallItem, Tag("code_interpreter_call")]
    | Annotated[SearchCallItem, Tag("file_search_call")]
    | Annotated[ItemReference, Tag("item_reference")],
    Discriminator(_item_type),
]


class AutoContainer(Body):
    type: Literal["auto"]
    file_ids: Annotated[list[ID], Field(max_length=50)] = Field(default_factory=list)
    memory_limit: MemoryLimit | None = None
    network_policy: Json | None = None


class CodeInterpreterTool(Body):
    type: Literal["code_interpreter"]
    container: ID | AutoContainer


class FunctionTool(FunctionDef):
    type: Literal["function"]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value in (CODE_TOOL, SEARCH_TOOL):
            raise ValueError(f"the function name '{value}' is reserved for a built-in tool")
        return value


class FileSearchTool(Body):
    type: Literal["file_search"]
    vector_store_ids: Annotated[list[ID], Field(min_length=1, max_length=2)]
    max_num_results: Annotated[int, Field(ge=1, le=50)] | None = None
    filters: Filter | None = None
    ranking_options: RankingOptions | None = None


ResponseTool = Annotated[
    CodeInterpreterTool | FunctionTool | FileSearchTool, Field(discriminator="type")
]


class NamedTool(Body):
    type: Literal["function", "code_interpreter", "file_search"]
    name: Annotated[str, Field(max_length=64)] | None = None


class TextFormat(Body):
    """``text.format``: a name and a schema for ``json_schema`` (and only then)."""

    type: Literal["text", "json_object", "json_schema"]
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = (
        None
    )
    description: str | None = None
    schema_: Annotated[Json | None, Field(alias="schema")] = None
    strict: bool | None = None

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, populate_by_name=True, serialize_by_alias=True
    )

    @model_validator(mode="after")
    def _named(self) -> TextFormat:
        if self.type == "json_schema" and self.name is None:
            raise ValueError("a json_schema format needs a 'name'")
        return self


class TextConfig(Body):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(Body):
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ConversationRef(Body):
    id: ID


class ResponseCreate(Body):
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    input: (
        Annotated[str, Field(max_length=1_000_000)]
        | Annotated[list[InputItem], Field(max_length=1024)]
    ) = Field(default_factory=list)
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    previous_response_id: ID | None = None
    tools: Annotated[list[ResponseTool], Field(max_length=128)] = Field(default_factory=list)
    tool_choice: Literal["auto", "none", "required"] | NamedTool | None = None
    parallel_tool_calls: bool | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_output_tokens: Annotated[int, Field(ge=16)] | None = None
    max_tool_calls: Annotated[int, Field(ge=1)] | None = None
    metadata: Metadata | None = None
    stream: bool | None = None
    store: bool | None = None
    background: bool | None = None
    include: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=16)] | None = (
        None
    )
    user: Annotated[str, Field(max_length=256)] | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    truncation: Literal["auto", "disabled"] | None = None
    conversation: ID | ConversationRef | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    # Accepted for the clients that send them (the Agents SDK's ModelSettings among them)
    # and not used: they steer OpenAI's own service (caching, tiers, moderation, prompt
    # templates) and have no counterpart on a chat-completions upstream.
    prompt: Json | None = None
    prompt_cache_key: Annotated[str, Field(max_length=256)] | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: Json | None = None
    safety_identifier: Annotated[str, Field(max_length=256)] | None = None
    service_tier: str | None = None
    stream_options: Json | None = None
    context_management: list[Json] | None = None
    background_options: Json | None = None
    moderation: JsonValue = None
    access_programs: JsonValue = None
    image: JsonValue = None

    def conversation_id(self) -> str:
        found = self.conversation
        return found.id if isinstance(found, ConversationRef) else str(found)

    def items(self) -> list[InputItem]:
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)

    def code_tool(self) -> CodeInterpreterTool | None:
        return next((t for t in self.tools if isinstance(t, CodeInterpreterTool)), None)

    def search_tool(self) -> FileSearchTool | None:
        return next((t for t in self.tools if isinstance(t, FileSearchTool)), None)


class ConversationCreate(Body):
    items: Annotated[list[InputItem], Field(max_length=20)] | None = None
    metadata: Metadata | None = None
    safety_identifier: Annotated[str, Field(max_length=256)] | None = None


class ConversationUpdate(Body):
    metadata: Metadata


class ConversationItemsCreate(Body):
    items: Annotated[list[InputItem], Field(min_length=1, max_length=20)]


class ExpiresAfter(Body):
    anchor: Literal["last_active_at"]
    minutes: Annotated[int, Field(ge=1, le=24 * 60)]


class ContainerCreate(Body):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    file_ids: Annotated[list[ID], Field(max_length=50)] = Field(default_factory=list)
    expires_after: ExpiresAfter | None = None
    memory_limit: MemoryLimit | None = None
    network_policy: Json | None = None


class ContainerFileFromId(Body):
    file_id: ID
