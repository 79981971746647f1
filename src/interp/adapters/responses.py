"""Responses API: the ``code_interpreter_call`` output item and its stream events.

Images in an item are URLs. ``image_url`` says which: a ``data:`` URL of the bytes
(``lambda image: data_url(images[image.file_id], image.mime)`` with the bytes fetched by
``Engine.download``), or a URL where the caller serves stored files.

A stream's events are numbered by the caller, who knows what else the response streams::

    seq = 0
    async for event in engine.stream(code, session=container_id):
        for item in event_items(event, output_index=0, sequence_number=seq, image_url=url):
            send(item)
            seq += 1
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Literal

from .._models import (
    Event,
    ExecutionFinished,
    ExecutionResult,
    ExecutionStarted,
    ExecutionStatus,
    ImageFile,
    ImageOutput,
)
from ._outputs import openai_outputs

__all__ = [
    "CallStatus",
    "ImageUrl",
    "astream_events",
    "call_item",
    "data_url",
    "event_items",
    "item_id",
    "stream_events",
]

ImageUrl = Callable[[ImageFile], str]
CallStatus = Literal["in_progress", "interpreting", "completed", "incomplete", "failed"]

_STATUS: dict[ExecutionStatus, CallStatus] = {
    ExecutionStatus.COMPLETED: "completed",
    # An exception in the code is an output of a call that ran to its end.
    ExecutionStatus.FAILED: "completed",
    ExecutionStatus.TIMEOUT: "incomplete",
    ExecutionStatus.KERNEL_DIED: "failed",
    ExecutionStatus.OOM: "failed",
}


def data_url(data: bytes, mime: str) -> str:
    """A ``data:`` URL holding the bytes."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def item_id(call_id: str) -> str:
    """The output item id (``ci_…``) for an execution's call id (``call_…``)."""
    return "ci_" + call_id.removeprefix("call_")


def call_item(result: ExecutionResult, *, image_url: ImageUrl) -> dict[str, Any]:
    """The ``code_interpreter_call`` output item of a finished execution."""
    outputs = [
        {"type": "image", "url": image_url(output.image)}
        if isinstance(output, ImageOutput)
        else {"type": "logs", "logs": output.logs}
        for output in openai_outputs(result)
    ]
    return {
        "id": item_id(result.id),
        "type": "code_interpreter_call",
        "status": _STATUS[result.status],
        "container_id": result.session,
        "code": result.code,
        "outputs": outputs,
    }


def event_items(
    event: Event, *, output_index: int, sequence_number: int, image_url: ImageUrl
) -> list[dict[str, Any]]:
    """The Responses stream events one engine event makes, numbered from ``sequence_number``.

    The item is added when the execution starts, then its code is streamed and it turns
    ``interpreting``; when it finishes, it completes and the whole item, outputs
    included, comes in ``response.output_item.done``.
    """
    made: list[dict[str, Any]] = []
    if isinstance(event, ExecutionStarted):
        ci = item_id(event.id)
        added = {
            "id": ci,
            "type": "code_interpreter_call",
            "status": "in_progress",
            "container_id": event.session,
            "code": "",
            "outputs": None,
        }
        call = "response.code_interpreter_call"
        made = [
            {"type": "response.output_item.added", "item": added},
            {"type": f"{call}.in_progress", "item_id": ci},
            {"type": f"{call}_code.delta", "item_id": ci, "delta": event.code},
            {"type": f"{call}_code.done", "item_id": ci, "code": event.code},
            {"type": f"{call}.interpreting", "item_id": ci},
        ]
    elif isinstance(event, ExecutionFinished):
        item = call_item(event.result, image_url=image_url)
        made = [
            {"type": "response.code_interpreter_call.completed", "item_id": item["id"]},
            {"type": "response.output_item.done", "item": item},
        ]
    return [
        {**fields, "output_index": output_index, "sequence_number": sequence_number + n}
        for n, fields in enumerate(made)
    ]


def stream_events(
    events: Iterable[Event],
    *,
    image_url: ImageUrl,
    output_index: int = 0,
    first_sequence_number: int = 0,
) -> Iterator[dict[str, Any]]:
    """Every Responses stream event of a stream of engine events (``SyncEngine.stream``)."""
    number = first_sequence_number
    for event in events:
        made = event_items(
            event, output_index=output_index, sequence_number=number, image_url=image_url
        )
        number += len(made)
        yield from made


async def astream_events(
    events: AsyncIterable[Event],
    *,
    image_url: ImageUrl,
    output_index: int = 0,
    first_sequence_number: int = 0,
) -> AsyncIterator[dict[str, Any]]:
    """Every Responses stream event of a stream of engine events (``Engine.stream``)."""
    number = first_sequence_number
    async for event in events:
        made = event_items(
            event, output_index=output_index, sequence_number=number, image_url=image_url
        )
        number += len(made)
        for item in made:
            yield item
