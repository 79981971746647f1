"""Request bodies and objects of the Responses and Containers APIs, every key present.

Input items are validated by their ``type`` (a message when absent); items a client echoes
back from an earlier response's ``output`` may carry keys this server does not use, and
those are ignored, since the ``openai`` SDK's models serialise them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from ._wire import FunctionDef, Metadata, new_id, now
from .agent.model import CODE_TOOL

_ID = Annotated[str, Field(min_length=1, max_length=64)]
MemoryLimit = Literal["1g", "4g", "16g", "64g"]
MEMORY_BYTES: dict[str, int] = {
    name: int(name[:-1]) * 1024**3 for name in ("1g", "4g", "16g", "64g")
}
INCLUDE_OUTPUTS = "code_interpreter_call.outputs"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Echoed(BaseModel):
    model_config = ConfigDict(extra="ignore")


class InputText(_Body):
    type: Literal["input_text"]
    text: Annotated[str, Field(max_length=1_000_000)]


class OutputText(_Echoed):
    type: Literal["output_text"]
    text: Annotated[str, Field(max_length=1_000_000)]
    annotations: list[dict[str, Any]] = []


class InputImage(_Body):
    type: Literal["input_image"]
    image_url: Annotated[str, Field(max_length=20_000_000)] | None = None
    file_id: _ID | None = None
    detail: Literal["low", "high", "auto"] | None = None


class InputFile(_Body):
    type: Literal["input_file"]
    file_id: _ID | None = None
    filename: Annotated[str, Field(max_length=255)] | None = None
    file_data: Annotated[str, Field(max_length=20_000_000)] | None = None
    file_url: Annotated[str, Field(max_length=2048)] | None = None


Content = Annotated[InputText | OutputText | InputImage | InputFile, Field(discriminator="type")]


class MessageItem(_Echoed):
    type: Literal["message"] = "message"
    id: _ID | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: (
        Annotated[str, Field(max_length=1_000_000)]
        | Annotated[list[Content], Field(min_length=1, max_length=64)]
    )
    status: str | None = None


class FunctionCallItem(_Echoed):
    type: Literal["function_call"]
    id: _ID | None = None
    call_id: _ID
    name: Annotated[str, Field(min_length=1, max_length=64)]
    arguments: Annotated[str, Field(max_length=1_000_000)]
    status: str | None = None


class FunctionCallOutputItem(_Body):
    type: Literal["function_call_output"]
    id: _ID | None = None
    call_id: _ID
    output: Annotated[str, Field(max_length=1_000_000)]
    status: str | None = None


class CodeCallItem(_Echoed):
    type: Literal["code_interpreter_call"]
    id: _ID
    code: Annotated[str, Field(max_length=1_000_000)] | None = None
    container_id: _ID
    outputs: list[dict[str, Any]] | None = None
    status: str | None = None


class ItemReference(_Body):
    type: Literal["item_reference"]
    id: _ID


def _item_type(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "message"))
    return str(getattr(value, "type", "message"))


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[CodeCallItem, Tag("code_interpreter_call")]
    | Annotated[ItemReference, Tag("item_reference")],
    Discriminator(_item_type),
]


class AutoContainer(_Body):
    type: Literal["auto"]
    file_ids: Annotated[list[_ID], Field(max_length=50)] = []
    memory_limit: MemoryLimit | None = None
    network_policy: dict[str, Any] | None = None


class CodeInterpreterTool(_Body):
    type: Literal["code_interpreter"]
    container: _ID | AutoContainer


class FunctionTool(FunctionDef):
    type: Literal["function"]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value == CODE_TOOL:
            raise ValueError(f"the function name '{CODE_TOOL}' is reserved for code_interpreter")
        return value


ResponseTool = Annotated[CodeInterpreterTool | FunctionTool, Field(discriminator="type")]


class NamedTool(_Body):
    type: Literal["function", "code_interpreter"]
    name: Annotated[str, Field(max_length=64)] | None = None


class ConversationRef(_Body):
    id: _ID


class ResponseCreate(_Body):
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    input: (
        Annotated[str, Field(max_length=1_000_000)]
        | Annotated[list[InputItem], Field(max_length=1024)]
    ) = []
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    previous_response_id: _ID | None = None
    tools: Annotated[list[ResponseTool], Field(max_length=128)] = []
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
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    conversation: _ID | ConversationRef | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    # Accepted for the clients that send them (the Agents SDK's ModelSettings among them)
    # and not used: they steer OpenAI's own service (caching, tiers, moderation, prompt
    # templates) and have no counterpart on a chat-completions upstream.
    prompt: dict[str, Any] | None = None
    prompt_cache_key: Annotated[str, Field(max_length=256)] | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    safety_identifier: Annotated[str, Field(max_length=256)] | None = None
    service_tier: str | None = None
    stream_options: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
    background_options: dict[str, Any] | None = None
    moderation: Any = None
    access_programs: Any = None
    image: Any = None

    def conversation_id(self) -> str:
        found = self.conversation
        return found.id if isinstance(found, ConversationRef) else str(found)

    def items(self) -> list[InputItem]:
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)

    def code_tool(self) -> CodeInterpreterTool | None:
        return next((t for t in self.tools if isinstance(t, CodeInterpreterTool)), None)


class ConversationCreate(_Body):
    items: Annotated[list[InputItem], Field(max_length=20)] | None = None
    metadata: Metadata | None = None


class ConversationUpdate(_Body):
    metadata: Metadata


class ConversationItemsCreate(_Body):
    items: Annotated[list[InputItem], Field(min_length=1, max_length=20)]


class ExpiresAfter(_Body):
    anchor: Literal["last_active_at"]
    minutes: Annotated[int, Field(ge=1, le=24 * 60)]


class ContainerCreate(_Body):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    file_ids: Annotated[list[_ID], Field(max_length=50)] = []
    expires_after: ExpiresAfter | None = None
    memory_limit: MemoryLimit | None = None
    network_policy: dict[str, Any] | None = None


class ContainerFileFromId(_Body):
    file_id: _ID


def usage(prompt: int = 0, completion: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def response(
    body: ResponseCreate, *, model: str | None, tools: list[dict[str, Any]]
) -> dict[str, Any]:
    choice = body.tool_choice
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": now(),
        "status": "in_progress",
        "background": bool(body.background),
        "error": None,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "model": model or "",
        "output": [],
        "parallel_tool_calls": body.parallel_tool_calls
        if body.parallel_tool_calls is not None
        else True,
        "previous_response_id": body.previous_response_id,
        "store": body.store if body.store is not None else True,
        "temperature": body.temperature if body.temperature is not None else 1.0,
        "top_p": body.top_p if body.top_p is not None else 1.0,
        "text": body.text or {"format": {"type": "text"}},
        "tool_choice": choice.model_dump(exclude_none=True)
        if isinstance(choice, NamedTool)
        else (choice or "auto"),
        "tools": tools,
        "truncation": body.truncation or "disabled",
        "usage": None,
        "user": body.user,
        "metadata": body.metadata or {},
        "completed_at": None,
    }


def message_item() -> dict[str, Any]:
    """An assistant message item as it is added, before its text."""
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }


def output_text(text: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}


def container(
    *, name: str, minutes: int, memory_limit: str | None, container_id: str | None = None
) -> dict[str, Any]:
    created = now()
    return {
        "id": container_id or new_id("cntr_"),
        "object": "container",
        "created_at": created,
        "name": name,
        "status": "running",
        "expires_after": {"anchor": "last_active_at", "minutes": minutes},
        "last_active_at": created,
        # Unset: the engine's own memory limit, which is not one of OpenAI's four sizes.
        "memory_limit": memory_limit,
    }


def container_file(
    *, file_id: str, container_id: str, size: int, created_at: int, name: str, source: str
) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "container.file",
        "bytes": size,
        "container_id": container_id,
        "created_at": created_at,
        "path": f"/mnt/data/{name}",
        "source": source,
    }


def conversation(metadata: dict[str, str] | None) -> dict[str, Any]:
    return {
        "id": new_id("conv_"),
        "object": "conversation",
        "created_at": now(),
        "metadata": metadata or {},
    }
