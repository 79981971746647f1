"""The objects the Responses, Conversations and Containers APIs return: the ``openai``
package's models, built here, every key present."""

from __future__ import annotations

from typing import Any

from openai.types import ContainerRetrieveResponse as Container
from openai.types.containers import FileRetrieveResponse as ContainerFile
from openai.types.conversations import Conversation, ConversationItem
from openai.types.responses import (
    Response,
    ResponseItem,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)
from pydantic import TypeAdapter

from ._store import Served, served
from ._wire import new_id, now
from .protocol.responses import NamedTool, ResponseCreate

_ITEM: TypeAdapter[ResponseItem] = TypeAdapter(ResponseItem)
_CONVERSATION_ITEM: TypeAdapter[ConversationItem] = TypeAdapter(ConversationItem)

RESPONSE = served("response", Response)
INPUT_ITEM: Served[ResponseItem] = Served("input_item", _ITEM.validate_python)
CONTAINER = served("container", Container)
CONTAINER_FILE = served("container_file", ContainerFile)
CONVERSATION = served("conversation", Conversation)
CONVERSATION_ITEM: Served[ConversationItem] = Served(
    "conversation_item", _CONVERSATION_ITEM.validate_python
)


def usage(prompt: int = 0, completion: int = 0) -> ResponseUsage:
    return ResponseUsage.model_validate(
        {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }
    )


def response(body: ResponseCreate, *, model: str | None, tools: list[dict[str, Any]]) -> Response:
    choice = body.tool_choice
    return Response.model_validate(
        {
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
            "text": body.text.model_dump(exclude_none=True)
            if body.text is not None and body.text.format is not None
            else {"format": {"type": "text"}},
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
    )


def message_item() -> ResponseOutputMessage:
    """An assistant message item as it is added, before its text."""
    return ResponseOutputMessage(
        id=new_id("msg_"), type="message", role="assistant", status="in_progress", content=[]
    )


def output_text(text: str, annotations: list[dict[str, Any]] | None = None) -> ResponseOutputText:
    return ResponseOutputText.model_validate(
        {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}
    )


def container(
    *, name: str, minutes: int, memory_limit: str | None, container_id: str | None = None
) -> Container:
    created = now()
    return Container.model_validate(
        {
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
    )


def container_file(
    *, file_id: str, container_id: str, size: int, created_at: int, name: str, source: str
) -> ContainerFile:
    return ContainerFile(
        id=file_id,
        object="container.file",
        bytes=size,
        container_id=container_id,
        created_at=created_at,
        path=f"/mnt/data/{name}",
        source=source,
    )


def conversation(metadata: dict[str, str] | None) -> Conversation:
    return Conversation(
        id=new_id("conv_"), object="conversation", created_at=now(), metadata=metadata or {}
    )


__all__ = [
    "CONTAINER",
    "CONTAINER_FILE",
    "CONVERSATION",
    "CONVERSATION_ITEM",
    "INPUT_ITEM",
    "RESPONSE",
    "Container",
    "ContainerFile",
    "Response",
    "container",
    "container_file",
    "conversation",
    "message_item",
    "output_text",
    "response",
    "usage",
]
