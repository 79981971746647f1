"""The objects the Assistants v2 API returns, every key present."""

from __future__ import annotations

import secrets
import time
from typing import Any

from pydantic import BaseModel

from .._models import FileInfo
from ._errors import bad_request
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


def new_id(prefix: str) -> str:
    """An id shaped as OpenAI's: ``asst_…``, ``thread_…``, ``file-…``."""
    return f"{prefix}{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


def text_part(text: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "text", "text": {"value": text, "annotations": annotations or []}}


def tool(given: Tool) -> dict[str, Any]:
    """A tool as an assistant or a run lists it."""
    if given.type == "function":
        if given.function is None:
            raise bad_request("a function tool needs 'function'", param="tools")
        return {"type": "function", "function": given.function.model_dump(exclude_none=True)}
    return {"type": "code_interpreter"}


def tool_resources(given: ToolResources | None) -> dict[str, Any]:
    if given is None or given.code_interpreter is None:
        return {}
    return {"code_interpreter": {"file_ids": list(given.code_interpreter.file_ids)}}


def message_parts(body: MessageCreate) -> list[dict[str, Any]]:
    """A new message's content parts, as the message lists them."""
    if isinstance(body.content, str):
        return [text_part(body.content)]
    return [
        text_part(part.text) if isinstance(part, TextPart) else part.model_dump()
        for part in body.content
    ]


def dumped(value: BaseModel | str | None) -> Any:
    """A body's option as objects list it: a model as its given fields, a string as is."""
    return value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value


def assistant(body: AssistantCreate) -> dict[str, Any]:
    return {
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


def thread(body: ThreadCreate) -> dict[str, Any]:
    return {
        "id": new_id("thread_"),
        "object": "thread",
        "created_at": now(),
        "tool_resources": tool_resources(body.tool_resources),
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
    body: RunCreate | ThreadAndRunCreate,
    instructions: str | None,
) -> dict[str, Any]:
    tools = (
        [tool(given) for given in body.tools] if body.tools is not None else assistant_obj["tools"]
    )
    effort = body.reasoning_effort if isinstance(body, RunCreate) else None
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
        "truncation_strategy": body.truncation_strategy.model_dump()
        if body.truncation_strategy is not None
        else {"type": "auto", "last_messages": None},
        "response_format": dumped(body.response_format)
        or assistant_obj.get("response_format", "auto"),
        "reasoning_effort": effort or assistant_obj.get("reasoning_effort"),
        "tool_choice": dumped(body.tool_choice) or "auto",
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
