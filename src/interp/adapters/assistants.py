"""Assistants API v2: the ``code_interpreter`` tool call, its run step, and stream deltas.

A streamed step, in the order OpenAI's ``AssistantEventHandler`` requires::

    cursor = Cursor()
    async for event in engine.stream(code, session=thread_id):
        deltas, cursor = event_deltas(event, step_id=step_id, cursor=cursor)
        for delta in deltas:
            send(sse("thread.run.step.delta", delta))

The first delta of the tool call carries its id, type and an empty input and outputs
(the handler's ``on_tool_call_created`` takes it whole); the code follows, then one delta
per output fragment, each with the ``index`` of its output. Logs between two images share
one index; text keeps streaming into it until an image comes.

The accumulated deltas equal ``tool_call(result)``'s outputs, except when the log cap cut
the result's logs (the stream carried all of it, or what a lagging reader was left of
it): the completed step, built from the result, is then the one to keep.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._models import (
    Event,
    ExecutionResult,
    ExecutionStarted,
    ExecutionStatus,
    FileSaved,
    ImageOutput,
    ImageSaved,
    LogChunk,
)
from ._outputs import openai_outputs

__all__ = [
    "Cursor",
    "StepStatus",
    "astep_deltas",
    "event_deltas",
    "file_annotations",
    "outputs",
    "run_step",
    "sse",
    "step_delta",
    "step_deltas",
    "tool_call",
]

StepStatus = Literal["in_progress", "completed", "failed", "cancelled", "expired"]


def outputs(result: ExecutionResult) -> list[dict[str, Any]]:
    """The tool call's outputs: ``logs`` and ``image`` objects, in order."""
    return [
        {"type": "image", "image": {"file_id": output.image.file_id}}
        if isinstance(output, ImageOutput)
        else {"type": "logs", "logs": output.logs}
        for output in openai_outputs(result)
    ]


def tool_call(result: ExecutionResult) -> dict[str, Any]:
    """The ``code_interpreter`` tool call of a finished execution."""
    return {
        "id": result.id,
        "type": "code_interpreter",
        "code_interpreter": {"input": result.code, "outputs": outputs(result)},
    }


def run_step(
    *,
    step_id: str,
    run_id: str,
    thread_id: str,
    assistant_id: str,
    created_at: int,
    result: ExecutionResult | None = None,
    ended_at: int | None = None,
) -> dict[str, Any]:
    """A ``thread.run.step`` object, every key present.

    Without a result it is the step as created: in progress, with no tool calls yet.
    With one, it is the step as ended: ``completed`` when the code ran (an exception in
    the code is an output, not a failure), ``failed`` with ``last_error`` when it timed
    out or its kernel died.
    """
    status: StepStatus = "in_progress"
    last_error = None
    tool_calls: list[dict[str, Any]] = []
    if result is not None:
        tool_calls = [tool_call(result)]
        if result.status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED):
            status = "completed"
        else:
            status = "failed"
            last_error = {"code": "server_error", "message": result.message or result.status}
    return {
        "id": step_id,
        "object": "thread.run.step",
        "created_at": created_at,
        "assistant_id": assistant_id,
        "thread_id": thread_id,
        "run_id": run_id,
        "type": "tool_calls",
        "status": status,
        "step_details": {"type": "tool_calls", "tool_calls": tool_calls},
        "last_error": last_error,
        "expired_at": None,
        "cancelled_at": None,
        "failed_at": ended_at if status == "failed" else None,
        "completed_at": ended_at if status == "completed" else None,
        "metadata": None,
        "usage": None,
    }


@dataclass(frozen=True)
class Cursor:
    """Where a streamed tool call stands: the index and kind of its last output."""

    index: int = -1
    kind: Literal["logs", "image"] | None = None


def step_delta(step_id: str, tool_call_delta: dict[str, Any]) -> dict[str, Any]:
    """Wrap one tool-call delta as a ``thread.run.step.delta`` payload."""
    return {
        "id": step_id,
        "object": "thread.run.step.delta",
        "delta": {"step_details": {"type": "tool_calls", "tool_calls": [tool_call_delta]}},
    }


def event_deltas(
    event: Event, *, step_id: str, cursor: Cursor, tool_index: int = 0
) -> tuple[list[dict[str, Any]], Cursor]:
    """The step deltas one engine event makes, and the cursor for the next event.

    ``tool_index`` is the tool call's position among the step's tool calls.
    """

    def call(**fields: Any) -> dict[str, Any]:
        return step_delta(step_id, {"index": tool_index, "type": "code_interpreter", **fields})

    if isinstance(event, ExecutionStarted):
        created = call(id=event.id, code_interpreter={"input": "", "outputs": []})
        return [created, call(code_interpreter={"input": event.code})], cursor
    if isinstance(event, LogChunk):
        index = cursor.index if cursor.kind == "logs" else cursor.index + 1
        output: dict[str, Any] = {"index": index, "type": "logs", "logs": event.text}
        return [call(code_interpreter={"outputs": [output]})], Cursor(index, "logs")
    if isinstance(event, ImageSaved):
        index = cursor.index + 1
        output = {"index": index, "type": "image", "image": {"file_id": event.file.id}}
        return [call(code_interpreter={"outputs": [output]})], Cursor(index, "image")
    return [], cursor


def step_deltas(
    events: Iterable[Event], *, step_id: str, tool_index: int = 0
) -> Iterator[dict[str, Any]]:
    """Every step delta of a stream of events (from ``SyncEngine.stream``)."""
    cursor = Cursor()
    for event in events:
        deltas, cursor = event_deltas(event, step_id=step_id, cursor=cursor, tool_index=tool_index)
        yield from deltas


async def astep_deltas(
    events: AsyncIterable[Event], *, step_id: str, tool_index: int = 0
) -> AsyncIterator[dict[str, Any]]:
    """Every step delta of a stream of events (from ``Engine.stream``)."""
    cursor = Cursor()
    async for event in events:
        deltas, cursor = event_deltas(event, step_id=step_id, cursor=cursor, tool_index=tool_index)
        for delta in deltas:
            yield delta


def file_annotations(text: str, files: Iterable[FileSaved]) -> list[dict[str, Any]]:
    """``file_path`` annotations for each ``sandbox:/mnt/data/…`` path of ``files`` that a
    message's ``text`` cites, in order of appearance, as a message's text content carries.
    """
    found = []
    for saved in files:
        start = text.find(saved.path)
        while start != -1:
            end = start + len(saved.path)
            found.append(
                {
                    "type": "file_path",
                    "text": saved.path,
                    "start_index": start,
                    "end_index": end,
                    "file_path": {"file_id": saved.file.id},
                }
            )
            start = text.find(saved.path, end)
    return sorted(found, key=lambda annotation: annotation["start_index"])


def sse(event: str, data: Mapping[str, Any] | str) -> str:
    """One server-sent event as the Assistants API sends it (``data`` may be ``[DONE]``)."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n"
