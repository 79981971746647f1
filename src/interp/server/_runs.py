"""The run loop: a thread's messages -> the model -> code in the thread's session -> events.

A run is a task of its own: a client that drops its stream does not stop it (OpenAI
behaves so); ``cancel`` does, and interrupts running code. One active run per thread.
Every change is written to the store as it happens, and each event goes to the run's
stream subscribers as the SSE the ``openai`` SDK's ``AssistantEventHandler`` reads (see
``interp.adapters.assistants`` for the tool-call deltas, which this module does not
re-derive).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from .. import (
    Engine,
    ExecutionFinished,
    FileSaved,
    ImageSaved,
    InterpError,
    LogChunk,
    NoSuchFileError,
)
from ..adapters import assistants
from ..adapters.chat import DESCRIPTION, tool_schema, tool_text
from . import _wire as wire
from ._errors import bad_request
from ._locks import KeyedLocks
from ._model import (
    CODE_TOOL,
    CallStarted,
    CodeDelta,
    Finished,
    Model,
    TextDelta,
    ToolCall,
    UpstreamError,
    chat_tool_call,
    code_arguments,
    final_code,
)
from ._store import Store

log = logging.getLogger("interp.server")

MAX_MODEL_TURNS = 16
"""Model requests in one run before it ends ``incomplete``."""
TOOL_TEXT_BYTES = 8000
"""What the model is shown of one execution: the head and tail of this many bytes."""
ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")
DONE = assistants.sse("done", "[DONE]")
"""How the Assistants API ends a stream."""


class RunEvents:
    """A run's (or a response's) events as SSE text, fanned out to its stream subscribers
    as they happen. Each is written out when sent: the objects in it go on changing.

    With ``replay`` (a background response's), the events sent are kept, by their
    ``sequence_number``, for a subscriber that joins later (``follow(after=…)``)."""

    def __init__(self, *, replay: bool = False) -> None:
        self._queues: set[asyncio.Queue[str | None]] = set()
        self._sent: list[tuple[int, str]] | None = [] if replay else None
        self.closed = False

    def emit(self, event: str, data: Any) -> None:
        text = assistants.sse(event, data)
        if self._sent is not None:
            self._sent.append((data["sequence_number"], text))
        for queue in self._queues:
            queue.put_nowait(text)

    def close(self) -> None:
        self.closed = True
        for queue in self._queues:
            queue.put_nowait(None)

    def follow(self, end: str | None = None, *, after: int | None = None) -> AsyncIterator[str]:
        """Subscribe now; the SSE text of every event from here on, then ``end``. With
        ``after`` (and ``replay``), first those already sent numbered above it.

        The subscription is made by this call, not when the stream is first read, so no
        event emitted in between is missed; dropping the stream unsubscribes.
        """
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        if after is not None:
            for number, text in self._sent or ():
                if number > after:
                    queue.put_nowait(text)
        if self.closed:
            queue.put_nowait(None)
        self._queues.add(queue)

        async def texts() -> AsyncIterator[str]:
            try:
                while (text := await queue.get()) is not None:
                    yield text
                if end is not None:
                    yield end
            finally:
                self._queues.discard(queue)

        return texts()


@dataclass
class _Run:
    owner: str
    run: dict[str, Any]
    assistant: dict[str, Any]
    thread: dict[str, Any]
    events: RunEvents
    additional_messages: list[dict[str, Any]] = field(default_factory=list)
    files: list[FileSaved] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The thread's messages as the last model request saw them."""
    saving: asyncio.Future[Any] | None = None
    """A write of the run still in flight."""
    fresh: bool = False
    """No step of this run exists yet (a new run's first model request)."""


class Runner:
    def __init__(self, *, store: Store, engine: Engine, model: Model, default_model: str | None):
        self._store = store
        self._engine = engine
        self._model = model
        self._default_model = default_model
        self._tasks: dict[str, asyncio.Task[None]] = {}
        """Thread id -> its active run's task."""
        self.threads = KeyedLocks()
        """Held by what starts a run on a thread, adds to it or deletes it."""
        self._events: dict[str, RunEvents] = {}
        self._cancelling: set[str] = set()
        """Threads whose active run a client cancelled, or whose thread it deletes (a task
        cancelled otherwise is the server stopping)."""
        self._placed: dict[str, set[str]] = {}
        """Thread id -> file ids already in its session's /mnt/data."""

    def events(self, run_id: str) -> RunEvents | None:
        return self._events.get(run_id)

    def check_idle(self, thread_id: str) -> None:
        task = self._tasks.get(thread_id)
        if task is not None and not task.done():
            raise bad_request(f"Thread {thread_id} already has an active run.")

    def start(
        self,
        *,
        owner: str,
        run: dict[str, Any],
        assistant: dict[str, Any],
        thread: dict[str, Any],
        announce: bool = True,
        storing: asyncio.Future[Any] | None = None,
    ) -> RunEvents:
        """Start driving ``run``; its events from the start. ``storing``: the run's first
        write, if still in flight (the run's next writes wait for it)."""
        self.check_idle(thread["id"])
        events = RunEvents()
        self._events[run["id"]] = events
        state = _Run(owner=owner, run=run, assistant=assistant, thread=thread, events=events)
        state.saving = storing
        state.fresh = announce
        task = asyncio.create_task(self._drive(state, announce), name=f"interp-run-{run['id']}")
        self._tasks[thread["id"]] = task

        def forget(_: asyncio.Task[None]) -> None:
            if self._tasks.get(thread["id"]) is task:
                del self._tasks[thread["id"]]
                self._cancelling.discard(thread["id"])

        task.add_done_callback(forget)
        return events

    async def stop(self, thread_id: str) -> None:
        """Cancel what runs on the thread (as a cancel, not as the server stopping), even a
        run not stored yet, and wait for its end."""
        task = self._tasks.get(thread_id)
        if task is not None:
            self._cancelling.add(thread_id)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def cancel(self, owner: str, run: dict[str, Any]) -> dict[str, Any]:
        task = self._tasks.get(run["thread_id"])
        if task is None or task.done():
            # Nothing drives it: read it again, so that a run which ended meanwhile (its
            # task stores its end before it finishes) keeps that end.
            run = await self._store.get("run", owner, run["id"]) or run
        if run["status"] not in ACTIVE:
            raise bad_request(f"Cannot cancel run with status '{run['status']}'.")
        if run["status"] == "requires_action" or task is None or task.done():
            run.update(status="cancelled", cancelled_at=wire.now(), required_action=None)
            await self._store.put("run", owner, run)
            return run
        # The task's own end (``_end_cancelled``) stores the run cancelled. Nothing is
        # stored from this older copy: written after the task's last write, it left the run
        # "cancelling" for good when the run ended on its own just before the cancel.
        events = self._events.get(run["id"])
        if events is not None:
            events.emit("thread.run.cancelling", {**run, "status": "cancelling"})
        await self.stop(run["thread_id"])
        found = await self._store.get("run", owner, run["id"]) or run
        if found["status"] != "cancelled":  # it ended first
            raise bad_request(f"Cannot cancel run with status '{found['status']}'.")
        return found

    async def close(self) -> None:
        """Stop every run; each is marked failed, saying the server stopped."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # The loop.

    async def _drive(self, state: _Run, announce: bool) -> None:
        run, emit = state.run, state.events.emit
        cancelled = False
        try:
            if announce:
                emit("thread.run.created", dict(run))
                emit("thread.run.queued", dict(run))
            run.update(status="in_progress", started_at=run["started_at"] or wire.now())
            self._save_soon(state)  # while the model is asked
            emit("thread.run.in_progress", dict(run))
            for _ in range(MAX_MODEL_TURNS):
                if not await self._turn(state):
                    return
            run.update(
                status="incomplete",
                incomplete_details={"reason": "max_completion_tokens"},
                completed_at=None,
            )
            await self._save_run(state)
            emit("thread.run.incomplete", dict(run))
        except UpstreamError as exc:
            await self._fail(state, exc.code, exc.message)
        except asyncio.CancelledError:
            cancelled = True
        except InterpError as exc:
            await self._fail(state, "server_error", f"the sandbox failed: {exc}")
        except Exception as exc:
            log.exception("run %s failed", run["id"])
            await self._fail(state, "server_error", f"the server failed: {type(exc).__name__}")
        finally:
            if state.saving is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(state.saving)
            if cancelled:
                await asyncio.shield(self._end_cancelled(state))
            state.events.close()
            self._events.pop(run["id"], None)

    async def _end_cancelled(self, state: _Run) -> None:
        run = state.run
        if run["thread_id"] in self._cancelling:
            self._cancelling.discard(run["thread_id"])
            run.update(status="cancelled", cancelled_at=wire.now())
            event = "thread.run.cancelled"
        else:
            run.update(
                status="failed",
                failed_at=wire.now(),
                last_error={"code": "server_error", "message": "the server stopped"},
            )
            event = "thread.run.failed"
        await self._save_run(state)
        state.events.emit(event, dict(run))

    async def _fail(self, state: _Run, code: str, message: str) -> None:
        state.run.update(
            status="failed", failed_at=wire.now(), last_error={"code": code, "message": message}
        )
        await self._save_run(state)
        state.events.emit("thread.run.failed", dict(state.run))

    def _save_soon(self, state: _Run) -> None:
        """Write the run without waiting; the next write waits for this one."""
        previous, snapshot = state.saving, dict(state.run)

        async def save() -> None:
            if previous is not None:
                await previous
            await self._store.put("run", state.owner, snapshot)

        state.saving = asyncio.ensure_future(save())

    async def _save_run(self, state: _Run) -> None:
        if state.saving is not None:
            await state.saving
            state.saving = None
        await self._store.put("run", state.owner, state.run)

    async def _turn(self, state: _Run) -> bool:
        """One model request and what it asks for; ``True`` if the loop goes on."""
        run, emit = state.run, state.events.emit
        request = await self._request(state)
        message: dict[str, Any] | None = None
        message_step: dict[str, Any] | None = None
        tool_step: dict[str, Any] | None = None
        text = ""
        finished = Finished()
        async for piece in self._model.stream(request):
            if isinstance(piece, TextDelta):
                if message is None:
                    message_step, message = await self._open_message(state)
                index = len(state.images)
                text += piece.text
                part = {"type": "text", "text": {"value": piece.text, "annotations": []}}
                emit("thread.message.delta", _message_delta(message["id"], index, part))
            elif isinstance(piece, CallStarted):
                if message is not None and message_step is not None:
                    await self._close_message(state, message_step, message, text)
                    message = message_step = None
                    text = ""
                if tool_step is None:
                    tool_step = wire.step(
                        run_obj=run, details={"type": "tool_calls", "tool_calls": []}
                    )
                    await self._store.create("step", state.owner, tool_step, parent=run["id"])
                    emit("thread.run.step.created", dict(tool_step))
                    emit("thread.run.step.in_progress", dict(tool_step))
                tool_step["step_details"]["tool_calls"].append(_call_object(piece.call))
                emit(
                    "thread.run.step.delta",
                    assistants.step_delta(tool_step["id"], _call_created(piece.call)),
                )
            elif isinstance(piece, CodeDelta) and tool_step is not None:
                emit(
                    "thread.run.step.delta",
                    assistants.step_delta(
                        tool_step["id"],
                        {
                            "index": piece.call.index,
                            "type": "code_interpreter",
                            "code_interpreter": {"input": piece.text},
                        },
                    ),
                )
            elif isinstance(piece, Finished):
                finished = piece
        _add_usage(run, finished.usage)
        if message is not None and message_step is not None:
            await self._close_message(state, message_step, message, text)
        if not finished.calls or tool_step is None:
            run.update(status="completed", completed_at=wire.now())
            await self._save_run(state)
            emit("thread.run.completed", dict(run))
            return False
        _add_usage(tool_step, finished.usage)
        functions = [call for call in finished.calls if call.name != CODE_TOOL]
        for position, call in enumerate(finished.calls):
            if call.name == CODE_TOOL:
                await self._execute(state, tool_step, position, call)
            else:
                tool_step["step_details"]["tool_calls"][position]["function"]["arguments"] = (
                    call.arguments
                )
        if functions:
            await self._store.put("step", state.owner, tool_step)
            run.update(
                status="requires_action",
                required_action={
                    "type": "submit_tool_outputs",
                    "submit_tool_outputs": {
                        "tool_calls": [
                            {
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": call.arguments},
                            }
                            for call in functions
                        ]
                    },
                },
            )
            await self._save_run(state)
            emit("thread.run.requires_action", dict(run))
            return False
        tool_step.update(status="completed", completed_at=wire.now())
        await self._store.put("step", state.owner, tool_step)
        emit("thread.run.step.completed", dict(tool_step))
        return True

    async def _execute(
        self, state: _Run, step: dict[str, Any], position: int, call: ToolCall
    ) -> None:
        """Run a code call in the thread's session, streaming its outputs as deltas."""
        code = final_code(call)
        session = await self._session(state)
        entry = step["step_details"]["tool_calls"][position]
        entry["code_interpreter"]["input"] = code
        cursor = assistants.Cursor()
        result = None
        async with contextlib.aclosing(self._engine.stream(code, session=session)) as stream:
            async for event in stream:
                if isinstance(event, LogChunk | ImageSaved):
                    deltas, cursor = assistants.event_deltas(
                        event, step_id=step["id"], cursor=cursor, tool_index=position
                    )
                    for delta in deltas:
                        state.events.emit("thread.run.step.delta", delta)
                if isinstance(event, ImageSaved):
                    await self._register(state.owner, event.file.id, "assistants_output")
                    state.images.append(event.file.id)
                elif isinstance(event, FileSaved):
                    await self._register(state.owner, event.file.id, "assistants_output")
                    state.files.append(event)
                elif isinstance(event, ExecutionFinished):
                    result = event.result
        if result is None:
            raise UpstreamError("server_error", "the execution ended without a result")
        entry["code_interpreter"]["outputs"] = assistants.outputs(result)
        await self._store.create(
            "tool_result",
            state.owner,
            {"id": wire.new_id("tr_"), "call_id": call.id, "text": bounded(tool_text(result))},
            parent=state.run["id"],
        )

    async def submit_tool_outputs(
        self,
        *,
        owner: str,
        run: dict[str, Any],
        assistant: dict[str, Any],
        thread: dict[str, Any],
        outputs: dict[str, str],
    ) -> RunEvents:
        """Answer a run's function calls and start it again."""
        steps = await self._store.all("step", owner, parent=run["id"])
        step = next((s for s in reversed(steps) if s["type"] == "tool_calls"), None)
        wanted = {
            call["id"]
            for call in (run.get("required_action") or {})
            .get("submit_tool_outputs", {})
            .get("tool_calls", [])
        }
        if run["status"] != "requires_action" or step is None:
            raise bad_request(
                f'Runs in status "{run["status"]}" do not accept tool outputs.', param="run_id"
            )
        missing = wanted - set(outputs)
        if missing or set(outputs) - wanted:
            raise bad_request(
                f"Expected tool outputs for call_ids {sorted(wanted)}, got {sorted(outputs)}.",
                param="tool_outputs",
            )
        for entry in step["step_details"]["tool_calls"]:
            if entry["type"] == "function" and entry["id"] in outputs:
                entry["function"]["output"] = outputs[entry["id"]]
                await self._store.create(
                    "tool_result",
                    owner,
                    {
                        "id": wire.new_id("tr_"),
                        "call_id": entry["id"],
                        "text": outputs[entry["id"]],
                    },
                    parent=run["id"],
                )
        step.update(status="completed", completed_at=wire.now())
        await self._store.put("step", owner, step)
        run.update(status="queued", required_action=None)
        await self._store.put("run", owner, run)
        events = self.start(
            owner=owner, run=run, assistant=assistant, thread=thread, announce=False
        )
        events.emit("thread.run.step.completed", dict(step))
        events.emit("thread.run.queued", dict(run))
        return events

    async def _open_message(self, state: _Run) -> tuple[dict[str, Any], dict[str, Any]]:
        run, emit = state.run, state.events.emit
        message = wire.message(
            thread_id=run["thread_id"],
            role="assistant",
            content=[],
            run_id=run["id"],
            assistant_id=run["assistant_id"],
            status="in_progress",
        )
        step = wire.step(
            run_obj=run,
            details={"type": "message_creation", "message_creation": {"message_id": message["id"]}},
        )
        await self._store.create("step", state.owner, step, parent=run["id"])
        await self._store.create("message", state.owner, message, parent=run["thread_id"])
        emit("thread.run.step.created", dict(step))
        emit("thread.run.step.in_progress", dict(step))
        emit("thread.message.created", dict(message))
        emit("thread.message.in_progress", dict(message))
        for index, file_id in enumerate(state.images):
            part = {"type": "image_file", "image_file": {"file_id": file_id}}
            emit("thread.message.delta", _message_delta(message["id"], index, part))
        return step, message

    async def _close_message(
        self, state: _Run, step: dict[str, Any], message: dict[str, Any], text: str
    ) -> None:
        images = [
            {"type": "image_file", "image_file": {"file_id": file_id, "detail": "auto"}}
            for file_id in state.images
        ]
        annotations = assistants.file_annotations(text, state.files)
        message.update(
            status="completed",
            completed_at=wire.now(),
            content=[*images, wire.text_part(text, annotations)],
        )
        await self._store.put("message", state.owner, message)
        state.events.emit("thread.message.completed", dict(message))
        step.update(status="completed", completed_at=wire.now())
        await self._store.put("step", state.owner, step)
        state.events.emit("thread.run.step.completed", dict(step))
        state.images = []

    async def _register(self, owner: str, file_id: str, purpose: str) -> None:
        """A file the code made becomes the owner's: listed, downloadable, kept."""
        info = await self._engine.keep_file(file_id)
        await self._store.create(
            "file",
            owner,
            wire.file_object(
                file_id=info.id,
                name=info.name,
                size=info.bytes,
                created_at=int(info.created_at.timestamp()),
                purpose=purpose,
            ),
        )

    async def _session(self, state: _Run) -> str:
        """The thread's engine session, its files in /mnt/data (put back after expiry)."""
        thread_id: str = state.thread["id"]
        if not self._engine.has_session(thread_id):
            self._placed[thread_id] = set()
        await self._engine.create_session(thread_id)
        placed = self._placed[thread_id]
        for file_id in await self._input_files(state):
            if file_id in placed:
                continue
            # One at a time: a file deleted since it was attached is skipped, and the run
            # goes on without it, rather than every later run of the thread failing.
            with contextlib.suppress(NoSuchFileError):
                await self._engine.create_session(thread_id, file_ids=[file_id])
            placed.add(file_id)
        return thread_id

    async def _input_files(self, state: _Run) -> list[str]:
        found: list[str] = []
        for holder in (state.assistant, state.thread):
            resources = holder.get("tool_resources") or {}
            found += (resources.get("code_interpreter") or {}).get("file_ids", [])
        for message in state.messages:
            found += [a["file_id"] for a in message.get("attachments") or []]
        return list(dict.fromkeys(found))

    def _file_name(self, file_id: str) -> str | None:
        """Where an attached file is in /mnt/data; ``None`` once it has been deleted."""
        try:
            return f"/mnt/data/{self._engine.file(file_id).name}"
        except NoSuchFileError:
            return None

    async def _request(self, state: _Run) -> dict[str, Any]:
        run = state.run
        tools: list[dict[str, Any]] = []
        for tool in run["tools"]:
            if tool["type"] == "code_interpreter":
                tools.append(tool_schema(CODE_TOOL, DESCRIPTION))
            elif tool["type"] == "function":
                tools.append({"type": "function", "function": tool["function"]})
        request: dict[str, Any] = {
            "model": run["model"] or self._default_model,
            "messages": await self._history(state),
        }
        if tools:
            request["tools"] = tools
            choice = run.get("tool_choice")
            if choice in ("none", "auto", "required"):
                request["tool_choice"] = choice
            elif isinstance(choice, dict) and choice.get("type") == "code_interpreter":
                request["tool_choice"] = {"type": "function", "function": {"name": CODE_TOOL}}
            elif isinstance(choice, dict) and choice.get("type") == "function":
                request["tool_choice"] = choice
            request["parallel_tool_calls"] = run.get("parallel_tool_calls", True)
        for name in ("temperature", "top_p"):
            if run.get(name) is not None:
                request[name] = run[name]
        if run.get("max_completion_tokens"):
            request["max_completion_tokens"] = run["max_completion_tokens"]
        return request

    async def _history(self, state: _Run) -> list[dict[str, Any]]:
        """The chat messages of the thread: its messages, and each run's tool calls with
        what they returned, in the order they happened."""
        owner, run = state.owner, state.run
        chat: list[dict[str, Any]] = []
        if run.get("instructions"):
            chat.append({"role": "system", "content": run["instructions"]})
        expanded: set[str] = set()
        messages = state.messages = await self._store.all("message", owner, parent=run["thread_id"])
        by_id = {m["id"]: m for m in messages}
        for message in messages:
            run_id = message.get("run_id")
            if message["role"] == "assistant" and run_id:
                if run_id not in expanded:
                    expanded.add(run_id)
                    chat += await self._run_history(owner, run_id, by_id)
                continue
            chat.append(_chat_message(message, self._file_name))
        if run["id"] not in expanded and not state.fresh:
            chat += await self._run_history(owner, run["id"], by_id)
        state.fresh = False
        return chat

    async def _run_history(
        self, owner: str, run_id: str, messages: dict[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        results = {
            r["call_id"]: r["text"]
            for r in await self._store.all("tool_result", owner, parent=run_id)
        }
        chat: list[dict[str, Any]] = []
        for step in await self._store.all("step", owner, parent=run_id):
            details = step["step_details"]
            if details["type"] == "message_creation":
                message = messages.get(details["message_creation"]["message_id"])
                if message is not None and message["status"] == "completed":
                    chat.append(_chat_message(message, self._file_name))
                continue
            calls = [c for c in details["tool_calls"] if c["id"] in results]
            if not calls:
                continue
            chat.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [_chat_tool_call(call) for call in calls],
                }
            )
            chat += [
                {"role": "tool", "tool_call_id": call["id"], "content": results[call["id"]]}
                for call in calls
            ]
        return chat


def _message_delta(message_id: str, index: int, part: dict[str, Any]) -> dict[str, Any]:
    """A ``thread.message.delta`` carrying one content part at ``index``."""
    return {
        "id": message_id,
        "object": "thread.message.delta",
        "delta": {"content": [{"index": index, **part}]},
    }


def _call_object(call: ToolCall) -> dict[str, Any]:
    if call.name == CODE_TOOL:
        return {
            "id": call.id,
            "type": "code_interpreter",
            "code_interpreter": {"input": "", "outputs": []},
        }
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": "", "output": None},
    }


def _call_created(call: ToolCall) -> dict[str, Any]:
    return {"index": call.index, **_call_object(call)}


def _chat_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    if call["type"] == "code_interpreter":
        code = call["code_interpreter"]["input"]
        return chat_tool_call(call["id"], CODE_TOOL, code_arguments(code))
    return chat_tool_call(call["id"], call["function"]["name"], call["function"]["arguments"])


def _chat_message(message: dict[str, Any], name_of: Callable[[str], str | None]) -> dict[str, Any]:
    parts = []
    for part in message["content"]:
        if part["type"] == "text":
            parts.append(part["text"]["value"])
        elif part["type"] == "image_file":
            parts.append(f"[image {part['image_file']['file_id']}]")
    names = [n for a in message.get("attachments") or [] if (n := name_of(a["file_id"]))]
    if names:
        parts.append(f"[files attached, in /mnt/data: {', '.join(names)}]")
    return {"role": message["role"], "content": "\n".join(parts)}


def bounded(text: str, limit: int = TOOL_TEXT_BYTES) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    half = limit // 2
    head = data[:half].decode(errors="ignore")
    tail = data[-half:].decode(errors="ignore")
    return f"{head}\n[... {len(data) - 2 * half} bytes not shown ...]\n{tail}"


def _add_usage(holder: dict[str, Any], usage: dict[str, int] | None) -> None:
    if usage is None:
        return
    total = holder.get("usage") or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    holder["usage"] = {key: total.get(key, 0) + usage.get(key, 0) for key in total}


__all__ = ["DONE", "RunEvents", "Runner"]
