"""Request bodies (validated, unknown fields refused as OpenAI does) and the objects the
Assistants v2 API returns, every key present."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._models import FileInfo
from ._errors import bad_request

ListOrder = Annotated[Literal["asc", "desc"], Query()]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=64)]
"""The query parameters of every list route."""

Metadata = dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]]
_ID = Annotated[str, Field(min_length=1, max_length=64)]


def new_id(prefix: str) -> str:
    """An id shaped as OpenAI's: ``asst_…``, ``thread_…``, ``file-…``."""
    return f"{prefix}{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionDef(_Body):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Body):
    type: Literal["code_interpreter", "function", "file_search"]
    function: FunctionDef | None = None
    file_search: dict[str, Any] | None = None

    @field_validator("function")
    @classmethod
    def _function(cls, value: FunctionDef | None) -> FunctionDef | None:
        if value is not None and value.name == "python":
            raise ValueError("the function name 'python' is reserved for code_interpreter")
        return value

    def wire(self) -> dict[str, Any]:
        if self.type == "function":
            if self.function is None:
                raise bad_request("a function tool needs 'function'", param="tools")
            return {"type": "function", "function": self.function.model_dump(exclude_none=True)}
        if self.type == "file_search":
            raise bad_request("file_search is not supported by this server", param="tools")
        return {"type": "code_interpreter"}


class CodeInterpreterResources(_Body):
    file_ids: Annotated[list[_ID], Field(max_length=20)] = []


class ToolResources(_Body):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: dict[str, Any] | None = None

    def wire(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.code_interpreter is not None:
            found["code_interpreter"] = {"file_ids": list(self.code_interpreter.file_ids)}
        return found


class _AssistantFields(_Body):
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Annotated[str, Field(max_length=512)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    response_format: Any = None
    reasoning_effort: str | None = None


class AssistantCreate(_AssistantFields):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    tools: Annotated[list[Tool], Field(max_length=128)] = []


class AssistantModify(_AssistantFields):
    """Only what is given changes (``exclude_unset``)."""

    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None


class Attachment(_Body):
    file_id: _ID
    tools: list[dict[str, Any]] = []


class TextPart(_Body):
    type: Literal["text"]
    text: Annotated[str, Field(max_length=256_000)]


class ImageFile(_Body):
    file_id: _ID
    detail: Literal["low", "high", "auto"] | None = None


class ImageFilePart(_Body):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageUrlPart(_Body):
    type: Literal["image_url"]
    image_url: dict[str, Any]


ContentPart = Annotated[TextPart | ImageFilePart | ImageUrlPart, Field(discriminator="type")]


class MessageCreate(_Body):
    role: Literal["user", "assistant"]
    content: (
        Annotated[str, Field(max_length=256_000)]
        | Annotated[list[ContentPart], Field(min_length=1, max_length=64)]
    )
    attachments: Annotated[list[Attachment], Field(max_length=20)] | None = None
    metadata: Metadata | None = None

    def parts(self) -> list[dict[str, Any]]:
        if isinstance(self.content, str):
            return [text_part(self.content)]
        return [
            text_part(part.text) if isinstance(part, TextPart) else part.model_dump()
            for part in self.content
        ]


class ThreadCreate(_Body):
    messages: Annotated[list[MessageCreate], Field(max_length=32)] = []
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None


class MetadataModify(_Body):
    metadata: Metadata | None = None


class ThreadModify(_Body):
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None


class _RunFields(_Body):
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: Any = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    max_prompt_tokens: Annotated[int, Field(ge=1)] | None = None
    metadata: Metadata | None = None
    parallel_tool_calls: bool | None = None
    stream: bool | None = None
    truncation_strategy: dict[str, Any] | None = None
    response_format: Any = None
    reasoning_effort: str | None = None


class RunCreate(_RunFields):
    assistant_id: _ID
    additional_instructions: Annotated[str, Field(max_length=256_000)] | None = None
    additional_messages: Annotated[list[MessageCreate], Field(max_length=32)] | None = None


class ThreadAndRunCreate(_RunFields):
    assistant_id: _ID
    thread: ThreadCreate | None = None
    tool_resources: ToolResources | None = None


class ToolOutput(_Body):
    tool_call_id: _ID
    output: Annotated[str, Field(max_length=1_000_000)] = ""


class SubmitToolOutputs(_Body):
    tool_outputs: Annotated[list[ToolOutput], Field(min_length=1, max_length=128)]
    stream: bool | None = None


def text_part(text: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "text", "text": {"value": text, "annotations": annotations or []}}


def assistant(body: AssistantCreate) -> dict[str, Any]:
    return {
        "id": new_id("asst_"),
        "object": "assistant",
        "created_at": now(),
        "name": body.name,
        "description": body.description,
        "model": body.model,
        "instructions": body.instructions,
        "tools": [tool.wire() for tool in body.tools],
        "tool_resources": body.tool_resources.wire() if body.tool_resources else {},
        "metadata": body.metadata or {},
        "temperature": body.temperature if body.temperature is not None else 1.0,
        "top_p": body.top_p if body.top_p is not None else 1.0,
        "response_format": body.response_format or "auto",
        "reasoning_effort": body.reasoning_effort,
    }


def thread(body: ThreadCreate) -> dict[str, Any]:
    return {
        "id": new_id("thread_"),
        "object": "thread",
        "created_at": now(),
        "tool_resources": body.tool_resources.wire() if body.tool_resources else {},
        "metadata": body.metadata or {},
    }


def message(
    *,
    thread_id: str,
    role: str,
    content: list[dict[str, Any]],
    attachments: list[dict[str, Any]] | None = None,
    metadata: dict[str, str] | None = None,
    run_id: str | None = None,
    assistant_id: str | None = None,
    status: str = "completed",
) -> dict[str, Any]:
    created = now()
    return {
        "id": new_id("msg_"),
        "object": "thread.message",
        "created_at": created,
        "thread_id": thread_id,
        "status": status,
        "incomplete_details": None,
        "completed_at": created if status == "completed" else None,
        "incomplete_at": None,
        "role": role,
        "content": content,
        "assistant_id": assistant_id,
        "run_id": run_id,
        "attachments": attachments or [],
        "metadata": metadata or {},
    }


def run(
    *,
    thread_id: str,
    assistant_obj: dict[str, Any],
    body: _RunFields,
    instructions: str | None,
) -> dict[str, Any]:
    tools = (
        [tool.wire() for tool in body.tools] if body.tools is not None else assistant_obj["tools"]
    )
    return {
        "id": new_id("run_"),
        "object": "thread.run",
        "created_at": now(),
        "thread_id": thread_id,
        "assistant_id": assistant_obj["id"],
        "status": "queued",
        "required_action": None,
        "last_error": None,
        "expires_at": None,
        "started_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "incomplete_details": None,
        "model": body.model or assistant_obj["model"],
        "instructions": instructions or "",
        "tools": tools,
        "metadata": body.metadata or {},
        "usage": None,
        "temperature": body.temperature
        if body.temperature is not None
        else assistant_obj.get("temperature"),
        "top_p": body.top_p if body.top_p is not None else assistant_obj.get("top_p"),
        "max_prompt_tokens": body.max_prompt_tokens,
        "max_completion_tokens": body.max_completion_tokens,
        "truncation_strategy": body.truncation_strategy or {"type": "auto", "last_messages": None},
        "response_format": body.response_format or assistant_obj.get("response_format", "auto"),
        "reasoning_effort": body.reasoning_effort or assistant_obj.get("reasoning_effort"),
        "tool_choice": body.tool_choice or "auto",
        "parallel_tool_calls": body.parallel_tool_calls
        if body.parallel_tool_calls is not None
        else True,
    }


def step(
    *, run_obj: dict[str, Any], details: dict[str, Any], status: str = "in_progress"
) -> dict[str, Any]:
    return {
        "id": new_id("step_"),
        "object": "thread.run.step",
        "created_at": now(),
        "assistant_id": run_obj["assistant_id"],
        "thread_id": run_obj["thread_id"],
        "run_id": run_obj["id"],
        "type": details["type"],
        "status": status,
        "step_details": details,
        "last_error": None,
        "expired_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "metadata": {},
        "usage": None,
    }


def file_object(info: FileInfo, *, purpose: str) -> dict[str, Any]:
    """A stored file as ``/v1/files`` serves it."""
    return {
        "id": info.id,
        "object": "file",
        "bytes": info.bytes,
        "created_at": int(info.created_at.timestamp()),
        "filename": info.name,
        "purpose": purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def quoted(name: str) -> str:
    """A file name as it can stand in a quoted ``content-disposition`` filename."""
    return "".join(c if c.isprintable() and c not in '"\\' else "_" for c in name)


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
