"""The objects the Assistants v2 API returns: the ``openai`` package's models (two with a
field it lacks), built here from what a client sent, every key present."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import Any, Generic, Literal, TypeVar

from openai.types import FileObject
from openai.types.beta import Assistant as _Assistant
from openai.types.beta import Thread
from openai.types.beta.threads import Message, MessageContent, TextContentBlock
from openai.types.beta.threads import Run as _Run
from openai.types.beta.threads.runs import RunStep
from pydantic import BaseModel, TypeAdapter

from .._models import FileInfo
from ._errors import bad_request, file_not_found
from ._store import Store, served
from .protocol.assistants import (
    AssistantCreate,
    MessageCreate,
    RunCreate,
    TextPart,
    ThreadAndRunCreate,
    ThreadCreate,
    Tool,
    ToolResources,
)
from .protocol.common import ReasoningEffort


class Assistant(_Assistant):
    """The SDK's assistant, with the reasoning effort its runs use."""

    reasoning_effort: ReasoningEffort | None = None


class Run(_Run):
    """The SDK's run, with its reasoning effort."""

    reasoning_effort: ReasoningEffort | None = None


ASSISTANT = served("assistant", Assistant)
THREAD = served("thread", Thread)
MESSAGE = served("message", Message)
RUN = served("run", Run)
STEP = served("step", RunStep)
FILE = served("file", FileObject)

M = TypeVar("M")
_CONTENT: TypeAdapter[MessageContent] = TypeAdapter(MessageContent)


class ListPage(BaseModel, Generic[M]):
    """A page of a list route, OpenAI's."""

    object: Literal["list"] = "list"
    data: list[M]
    first_id: str | None
    last_id: str | None
    has_more: bool


class Deleted(BaseModel):
    """What a delete answers (``assistant.deleted``, ``thread.message.deleted``, …)."""

    id: str
    object: str
    deleted: bool = True


async def check_files(store: Store, owner: str, file_ids: Iterable[str], param: str) -> None:
    """Every file id names one of the owner's files (else OpenAI's 404 for the first)."""
    for file_id in dict.fromkeys(file_ids):
        if await store.get(FILE, owner, file_id) is None:
            raise file_not_found(file_id, param=param)


def new_id(prefix: str) -> str:
    """An id shaped as OpenAI's: ``asst_…``, ``thread_…``, ``file-…``."""
    return f"{prefix}{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


def page(data: list[M], has_more: bool) -> ListPage[M]:
    ids = [getattr(found, "id", None) for found in data]
    return ListPage[M](
        data=data,
        first_id=ids[0] if ids else None,
        last_id=ids[-1] if ids else None,
        has_more=has_more,
    )


def text_part(text: str, annotations: list[Any] | None = None) -> TextContentBlock:
    return TextContentBlock.model_validate(
        {"type": "text", "text": {"value": text, "annotations": annotations or []}}
    )


def tool(given: Tool) -> dict[str, Any]:
    """A tool as an assistant or a run lists it."""
    if given.type == "function":
        if given.function is None:
            raise bad_request("a function tool needs 'function'", param="tools")
        return {"type": "function", "function": given.function.model_dump(exclude_none=True)}
    if given.type == "file_search":
        options = given.file_search.model_dump(exclude_none=True) if given.file_search else {}
        return {"type": "file_search", "file_search": options}
    return {"type": "code_interpreter"}


def tool_resources(given: ToolResources | None) -> dict[str, Any]:
    """Tool resources as an assistant or thread lists them (inline vector stores made
    already, named among ``vector_store_ids``)."""
    found: dict[str, Any] = {}
    if given is not None and given.code_interpreter is not None:
        found["code_interpreter"] = {"file_ids": list(given.code_interpreter.file_ids)}
    if given is not None and given.file_search is not None:
        found["file_search"] = {"vector_store_ids": list(given.file_search.vector_store_ids)}
    return found


def message_parts(body: MessageCreate) -> list[MessageContent]:
    """A new message's content parts, as the message lists them."""
    if isinstance(body.content, str):
        return [text_part(body.content)]
    return [
        text_part(part.text)
        if isinstance(part, TextPart)
        else _CONTENT.validate_python(part.model_dump())
        for part in body.content
    ]


def dumped(value: BaseModel | str | None) -> Any:
    """A body's option as objects list it: a model as its given fields, a string as is."""
    return value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value


def assistant(body: AssistantCreate) -> Assistant:
    return Assistant.model_validate(
        {
            "id": new_id("asst_"),
            "object": "assistant",
            "created_at": now(),
            "name": body.name,
            "description": body.description,
            "model": body.model,
            "instructions": body.instructions,
            "tools": [tool(given) for given in body.tools],
            "tool_resources": tool_resources(body.tool_resources),
            "metadata": body.metadata or {},
            "temperature": body.temperature if body.temperature is not None else 1.0,
            "top_p": body.top_p if body.top_p is not None else 1.0,
            "response_format": dumped(body.response_format) or "auto",
            "reasoning_effort": body.reasoning_effort,
        }
    )


def thread(body: ThreadCreate) -> Thread:
    return Thread.model_validate(
        {
            "id": new_id("thread_"),
            "object": "thread",
            "created_at": now(),
            "tool_resources": tool_resources(body.tool_resources),
            "metadata": body.metadata or {},
        }
    )


def message(
    *,
    thread_id: str,
    role: Literal["user", "assistant"],
    content: list[MessageContent],
    attachments: list[dict[str, Any]] | None = None,
    metadata: dict[str, str] | None = None,
    run_id: str | None = None,
    assistant_id: str | None = None,
    status: Literal["in_progress", "completed"] = "completed",
) -> Message:
    created = now()
    return Message.model_validate(
        {
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
    )


def run(
    *,
    thread_id: str,
    assistant_obj: Assistant,
    body: RunCreate | ThreadAndRunCreate,
    instructions: str | None,
    default_model: str | None,
) -> Run:
    tools = [tool(given) for given in body.tools] if body.tools is not None else assistant_obj.tools
    effort = body.reasoning_effort if isinstance(body, RunCreate) else None
    return Run.model_validate(
        {
            "id": new_id("run_"),
            "object": "thread.run",
            "created_at": now(),
            "thread_id": thread_id,
            "assistant_id": assistant_obj.id,
            "status": "queued",
            "required_action": None,
            "last_error": None,
            "expires_at": None,
            "started_at": None,
            "cancelled_at": None,
            "failed_at": None,
            "completed_at": None,
            "incomplete_details": None,
            "model": body.model or assistant_obj.model or default_model or "",
            "instructions": instructions or "",
            "tools": tools,
            "metadata": body.metadata or {},
            "usage": None,
            "temperature": body.temperature
            if body.temperature is not None
            else assistant_obj.temperature,
            "top_p": body.top_p if body.top_p is not None else assistant_obj.top_p,
            "max_prompt_tokens": body.max_prompt_tokens,
            "max_completion_tokens": body.max_completion_tokens,
            "truncation_strategy": body.truncation_strategy.model_dump()
            if body.truncation_strategy is not None
            else {"type": "auto", "last_messages": None},
            "response_format": dumped(body.response_format)
            or assistant_obj.response_format
            or "auto",
            "reasoning_effort": effort or assistant_obj.reasoning_effort,
            "tool_choice": dumped(body.tool_choice) or "auto",
            "parallel_tool_calls": body.parallel_tool_calls
            if body.parallel_tool_calls is not None
            else True,
        }
    )


def step(*, run_obj: Run, details: dict[str, Any]) -> RunStep:
    return RunStep.model_validate(
        {
            "id": new_id("step_"),
            "object": "thread.run.step",
            "created_at": now(),
            "assistant_id": run_obj.assistant_id,
            "thread_id": run_obj.thread_id,
            "run_id": run_obj.id,
            "type": details["type"],
            "status": "in_progress",
            "step_details": details,
            "last_error": None,
            "expired_at": None,
            "cancelled_at": None,
            "failed_at": None,
            "completed_at": None,
            "metadata": {},
            "usage": None,
        }
    )


def file_object(info: FileInfo, *, purpose: str) -> FileObject:
    """A stored file as ``/v1/files`` serves it."""
    return FileObject.model_validate(
        {
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
    )


def quoted(name: str) -> str:
    """A file name as it can stand in a quoted ``content-disposition`` filename: printable
    ASCII, without quotes or backslashes."""
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
