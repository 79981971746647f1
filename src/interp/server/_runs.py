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
import functools
import logging
import time
from collections.abc import AsyncIterator
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
from ..adapters.chat import tool_text
from . import _wire as wire
from ._errors import bad_request
from ._locks import KeyedLocks
from ._store import Store, Writes
from .agent.context import Unit, bounded
from .agent.model import (
    CODE_TOOL,
    CallStarted,
    CodeDelta,
    Finished,
    TextDelta,
    ToolCall,
    UpstreamError,
    chat_tool_call,
    code_arguments,
    final_code,
)
from .agent.turn import Agent, Budget, History, PromptTooLong, Settings

log = logging.getLogger("interp.server")

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
    budget: Budget
    files: list[FileSaved] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    pin: int = 0
    """Where the transcript's pinned part starts (the newest user message)."""
    message: dict[str, Any] | None = None
    message_step: dict[str, Any] | None = None
    text: str = ""
    tool_step: dict[str, Any] | None = None
    """What is open: a reply being written and its step, a tool step."""


class Runner:
    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        agent: Agent,
        default_model: str | None,
        tool_outputs_timeout: float = 600.0,
    ):
        self._store = store
        self._engine = engine
        self._agent = agent
        self._default_model = default_model
        self._outputs_timeout = tool_outputs_timeout
        self._tasks: dict[str, asyncio.Task[None]] = {}
        """Thread id -> its active run's task."""
        self._waiting: dict[str, tuple[str, asyncio.TimerHandle]] = {}
        """Thread id -> its run waiting for tool outputs, and that wait's expiry."""
        self.threads = KeyedLocks()
        """Held by what starts a run on a thread, adds to it or deletes it."""
        self._events: dict[str, RunEvents] = {}
        self._live: dict[str, _Run] = {}
        """Run id -> the state of a run being driven (its copy of the run is the newest)."""
        self._cancelling: set[str] = set()
        """Threads whose active run a client cancelled, or whose thread it deletes (a task
        cancelled otherwise is the server stopping)."""
        self._placed: dict[str, set[str]] = {}
        """Thread id -> file ids already in its session's /mnt/data."""
        self._expiring: set[asyncio.Future[None]] = set()

    def events(self, run_id: str) -> RunEvents | None:
        return self._events.get(run_id)

    def check_idle(self, thread_id: str, *, adding: bool = False) -> None:
        """Refuse what a thread's active run (running, or waiting for tool outputs) forbids:
        another run, or (``adding``) a new message."""
        task = self._tasks.get(thread_id)
        waiting = self._waiting.get(thread_id)
        if (task is None or task.done()) and waiting is None:
            return
        live = next((s for s in self._live.values() if s.thread["id"] == thread_id), None)
        run_id = waiting[0] if waiting else (live.run["id"] if live else "")
        if adding:
            raise bad_request(
                f"Can't add messages to {thread_id} while a run {run_id} is active.",
                param="thread_id",
            )
        raise bad_request(f"Thread {thread_id} already has an active run {run_id}.")

    def modify(self, object_id: str, metadata: dict[str, str]) -> dict[str, Any] | None:
        """Metadata set on a run (or its reply) while it runs: on the copy its task writes,
        which is returned (the newest), else ``None``."""
        for state in self._live.values():
            for live in (state.run, state.message):
                if live is not None and live["id"] == object_id:
                    live["metadata"] = metadata
                    return live
        return None

    def start(
        self,
        *,
        owner: str,
        run: dict[str, Any],
        assistant: dict[str, Any],
        thread: dict[str, Any],
        announce: bool = True,
    ) -> RunEvents:
        """Start driving ``run`` (stored, or queued to be); its events from the start."""
        self.check_idle(thread["id"])
        events = RunEvents()
        self._events[run["id"]] = events
        state = _Run(
            owner=owner,
            run=run,
            assistant=assistant,
            thread=thread,
            events=events,
            budget=Budget(max_completion_tokens=run.get("max_completion_tokens")),
        )
        if run.get("usage"):
            state.budget.usage.update(run["usage"])
        self._live[run["id"]] = state
        task = asyncio.create_task(self._drive(state, announce), name=f"interp-run-{run['id']}")
        self._tasks[thread["id"]] = task

        def forget(_: asyncio.Task[None]) -> None:
            self._live.pop(run["id"], None)
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
        self._stop_waiting(thread_id)

    async def cancel(self, owner: str, run: dict[str, Any]) -> dict[str, Any]:
        task = self._tasks.get(run["thread_id"])
        if task is None or task.done():
            # Nothing drives it: read it again, so that a run which ended meanwhile (its
            # task stores its end before it finishes) keeps that end.
            run = await self._store.get("run", owner, run["id"]) or run
        if run["status"] not in ACTIVE:
            raise bad_request(f"Cannot cancel run with status '{run['status']}'.")
        if run["status"] == "requires_action" or task is None or task.done():
            self._stop_waiting(run["thread_id"])
            await self._end_waiting(owner, run, "cancelled")
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
        for thread_id in list(self._waiting):
            self._stop_waiting(thread_id)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Waiting for tool outputs.

    def _wait_for_outputs(self, state: _Run) -> None:
        thread_id, run = state.thread["id"], state.run
        loop = asyncio.get_running_loop()
        delay = max(0.0, run["expires_at"] - time.time())
        handle = loop.call_later(delay, self._expire_soon, state.owner, dict(run))
        self._waiting[thread_id] = (run["id"], handle)

    def _stop_waiting(self, thread_id: str) -> None:
        waiting = self._waiting.pop(thread_id, None)
        if waiting is not None:
            waiting[1].cancel()

    def _expire_soon(self, owner: str, run: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._expire(owner, run))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _expire(self, owner: str, run: dict[str, Any]) -> None:
        """A run whose tool outputs did not come in time ends ``expired``."""
        async with self.threads.hold(run["thread_id"]):
            waiting = self._waiting.get(run["thread_id"])
            if waiting is None or waiting[0] != run["id"]:
                return  # answered or cancelled meanwhile
            self._waiting.pop(run["thread_id"], None)
            found = await self._store.get("run", owner, run["id"])
            if found is not None and found["status"] == "requires_action":
                await self._end_waiting(owner, found, "expired")

    async def _end_waiting(self, owner: str, run: dict[str, Any], status: str) -> None:
        """End a run waiting for tool outputs (``cancelled`` or ``expired``), its step too."""
        now = wire.now()
        run.update(status=status, required_action=None)
        run["cancelled_at" if status == "cancelled" else "expires_at"] = now
        steps = await self._store.all("step", owner, parent=run["id"])
        async with self._store.transaction() as tx:
            for step in steps:
                if step["status"] == "in_progress":
                    step.update(status=status)
                    step["cancelled_at" if status == "cancelled" else "expired_at"] = now
                    tx.put("step", owner, step)
            tx.put("run", owner, run)

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
            while await self._turn(state):
                pass
        except UpstreamError as exc:
            await self._fail(state, exc.code, exc.message)
        except PromptTooLong as exc:
            log.info("run %s: %s", run["id"], exc.message)
            await self._end(state, "incomplete", "max_prompt_tokens")
        except asyncio.CancelledError:
            cancelled = True
        except InterpError as exc:
            await self._fail(state, "server_error", f"the sandbox failed: {exc}")
        except Exception as exc:
            log.exception("run %s failed", run["id"])
            await self._fail(state, "server_error", f"the server failed: {type(exc).__name__}")
        finally:
            if cancelled:
                await asyncio.shield(self._end_cancelled(state))
            state.events.close()
            self._events.pop(run["id"], None)

    async def _end_cancelled(self, state: _Run) -> None:
        if state.run["thread_id"] in self._cancelling:
            self._cancelling.discard(state.run["thread_id"])
            await self._end(state, "cancelled")
        else:
            await self._fail(state, "server_error", "the server stopped")

    async def _fail(self, state: _Run, code: str, message: str) -> None:
        state.run["last_error"] = {"code": code, "message": message}
        await self._end(state, "failed")

    async def _end(self, state: _Run, status: str, reason: str | None = None) -> None:
        """End the run (``completed``, ``incomplete``, ``failed``, ``cancelled``), closing
        what it left open: its reply keeps the text written so far."""
        run = state.run
        run["usage"] = dict(state.budget.usage) if state.budget.turns else run.get("usage")
        if state.message is not None:
            details = {
                "incomplete": "max_tokens",
                "failed": "run_failed",
                "cancelled": "run_cancelled",
            }
            await self._close_message(state, details.get(status))
        now = wire.now()
        # Not waited for: reads find the run ended before the commit, and closing the
        # store writes what is queued.
        async with self._store.transaction(wait=False) as tx:
            step = state.tool_step
            if step is not None:
                if status in ("failed", "cancelled"):
                    step.update(status=status)
                    step["failed_at" if status == "failed" else "cancelled_at"] = now
                    if status == "failed":
                        step["last_error"] = run["last_error"]
                else:
                    step.update(status="completed", completed_at=now)
                tx.put("step", state.owner, step)
                state.events.emit(f"thread.run.step.{step['status']}", dict(step))
                state.tool_step = None
            run["status"] = status
            if status in ("completed", "failed", "cancelled"):
                run[f"{status}_at"] = now
            if reason is not None:
                run["incomplete_details"] = {"reason": reason}
            tx.put("run", state.owner, run)
        state.events.emit(f"thread.run.{status}", dict(run))

    def _save_soon(self, state: _Run) -> None:
        """Queue a write of the run (the writer keeps the order of writes)."""
        writes = Writes()
        writes.put("run", state.owner, state.run)
        self._store.submit(writes)

    def _settings(self, state: _Run) -> Settings:
        run = state.run
        strategy = run.get("truncation_strategy") or {}
        return Settings(
            model=run["model"] or self._default_model or "",
            instructions=run.get("instructions") or None,
            code=any(t["type"] == "code_interpreter" for t in run["tools"]),
            functions=[t["function"] for t in run["tools"] if t["type"] == "function"],
            tool_choice=_tool_choice(run.get("tool_choice")),
            parallel_tool_calls=run.get("parallel_tool_calls", True),
            temperature=run.get("temperature"),
            top_p=run.get("top_p"),
            response_format=run.get("response_format"),
            reasoning_effort=run.get("reasoning_effort"),
            max_prompt_tokens=run.get("max_prompt_tokens"),
            last_messages=strategy.get("last_messages")
            if strategy.get("type") == "last_messages"
            else None,
        )

    async def _turn(self, state: _Run) -> bool:
        """One model request and what it asks for; ``True`` if the loop goes on."""
        run, emit, owner = state.run, state.events.emit, state.owner
        thread_id = state.thread["id"]
        finished = Finished()
        pinned, history = await self._recent(state)
        turn = self._agent.turn(
            self._settings(state),
            state.budget,
            pinned=pinned,
            history=history,
            render=self._render,
        )
        async for piece in turn:
            if isinstance(piece, TextDelta):
                if state.message is None:
                    await self._open_message(state)
                    assert state.message is not None
                index = len(state.images)
                state.text += piece.text
                part = {"type": "text", "text": {"value": piece.text, "annotations": []}}
                emit("thread.message.delta", _message_delta(state.message["id"], index, part))
            elif isinstance(piece, CallStarted):
                if state.message is not None:
                    await self._close_message(state)
                if state.tool_step is None:
                    state.tool_step = wire.step(
                        run_obj=run, details={"type": "tool_calls", "tool_calls": []}
                    )
                    async with self._store.transaction(wait=False) as tx:
                        tx.create("step", owner, state.tool_step, parent=run["id"])
                    emit("thread.run.step.created", dict(state.tool_step))
                    emit("thread.run.step.in_progress", dict(state.tool_step))
                state.tool_step["step_details"]["tool_calls"].append(_call_object(piece.call))
                emit(
                    "thread.run.step.delta",
                    assistants.step_delta(state.tool_step["id"], _call_created(piece.call)),
                )
            elif isinstance(piece, CodeDelta) and state.tool_step is not None:
                emit(
                    "thread.run.step.delta",
                    assistants.step_delta(
                        state.tool_step["id"],
                        {
                            "index": piece.call.index,
                            "type": "code_interpreter",
                            "code_interpreter": {"input": piece.text},
                        },
                    ),
                )
            elif isinstance(piece, Finished):
                finished = piece
        reason = state.budget.ended(finished)
        if reason == "content_filter":
            raise UpstreamError("invalid_prompt", "the model's content filter stopped its reply")
        if reason is not None:
            await self._end(state, "incomplete", "max_completion_tokens")
            return False
        if state.message is not None:
            await self._close_message(state)
        step = state.tool_step
        if not finished.calls or step is None:
            await self._end(state, "completed")
            return False
        functions = []
        codes: list[tuple[int, ToolCall]] = []
        for position, call in enumerate(finished.calls):
            if call.name == CODE_TOOL:
                codes.append((position, call))
            else:
                functions.append(call)
                step["step_details"]["tool_calls"][position]["function"]["arguments"] = (
                    call.arguments
                )
        results: dict[str, str] = {}
        for position, call in codes:
            results[call.id] = await self._execute(state, step, position, call)
        if functions:
            # Code run in this turn is in the transcript with the functions' outputs, as
            # one unit, when they are submitted.
            async with self._store.transaction(wait=False) as tx:
                tx.put("step", owner, step)
            run.update(
                status="requires_action",
                expires_at=int(time.time() + self._outputs_timeout),
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
            run["usage"] = dict(state.budget.usage)
            state.tool_step = None
            await self._store.put("run", owner, run)
            self._wait_for_outputs(state)
            emit("thread.run.requires_action", dict(run))
            return False
        step.update(status="completed", completed_at=wire.now())
        async with self._store.transaction(wait=False) as tx:
            tx.append(owner, thread_id, [calls_unit(step, results)], ref=step["id"])
            tx.put("step", owner, step)
        emit("thread.run.step.completed", dict(step))
        state.tool_step = None
        if state.budget.spent:
            await self._end(state, "incomplete", "max_completion_tokens")
            return False
        return True

    async def _recent(self, state: _Run) -> tuple[list[Unit], History]:
        """The pinned part of the thread's transcript (its newest user message and what
        follows; without one, what this run added) and its history, from one read of its
        newest units."""
        owner, thread_id = state.owner, state.thread["id"]
        recent = self._store.tail(owner, thread_id)
        newest: list[Unit] = []
        async for unit in recent:
            newest.append(unit)
            if unit.messages[0].get("role") == "user":
                break
        else:
            if not state.pin:  # the run's first turn: what follows is its own
                state.pin = (newest[0].seq + 1) if newest else 1
            pinned = [unit for unit in reversed(newest) if unit.seq >= state.pin]
            earlier = [unit for unit in newest if unit.seq < state.pin]
            return pinned, functools.partial(_replay, earlier)
        newest.reverse()
        state.pin = newest[0].seq
        rest = [recent]

        def history() -> AsyncIterator[Unit]:
            # The rest of this read first; a second fit (a retry) reads again.
            return rest.pop() if rest else self._store.tail(owner, thread_id, before=state.pin)

        return newest, history

    async def _execute(
        self, state: _Run, step: dict[str, Any], position: int, call: ToolCall
    ) -> str:
        """Run a code call in the thread's session, streaming its outputs as deltas; what
        the model is shown of it."""
        code = final_code(call)
        session = await self._session(state)
        entry = step["step_details"]["tool_calls"][position]
        entry["code_interpreter"]["input"] = code
        cursor = assistants.Cursor()
        result = None
        async with contextlib.aclosing(self._engine.stream(code, session=session)) as stream:
            async for event in stream:
                if isinstance(event, ImageSaved):
                    # Stored and listed before its id is sent: a client may fetch it at once.
                    await self._register(state.owner, event.file.id, "assistants_output")
                    state.images.append(event.file.id)
                elif isinstance(event, FileSaved):
                    await self._register(state.owner, event.file.id, "assistants_output")
                    state.files.append(event)
                elif isinstance(event, ExecutionFinished):
                    result = event.result
                if isinstance(event, LogChunk | ImageSaved):
                    deltas, cursor = assistants.event_deltas(
                        event, step_id=step["id"], cursor=cursor, tool_index=position
                    )
                    for delta in deltas:
                        state.events.emit("thread.run.step.delta", delta)
        if result is None:
            raise UpstreamError("server_error", "the execution ended without a result")
        entry["code_interpreter"]["outputs"] = assistants.outputs(result)
        return bounded(tool_text(result))

    async def submit_tool_outputs(
        self,
        *,
        owner: str,
        run: dict[str, Any],
        assistant: dict[str, Any],
        thread: dict[str, Any],
        outputs: dict[str, str],
    ) -> RunEvents:
        """Answer a run's function calls and start it again. Everything is checked before
        the first write."""
        if run["status"] == "requires_action" and (run.get("expires_at") or 0) <= time.time():
            self._stop_waiting(run["thread_id"])
            await self._end_waiting(owner, run, "expired")
        if run["status"] != "requires_action":
            raise bad_request(
                f'Runs in status "{run["status"]}" do not accept tool outputs.', param="run_id"
            )
        steps = await self._store.all("step", owner, parent=run["id"])
        step = next((s for s in reversed(steps) if s["type"] == "tool_calls"), None)
        wanted = {
            call["id"]
            for call in (run.get("required_action") or {})
            .get("submit_tool_outputs", {})
            .get("tool_calls", [])
        }
        if step is None:
            raise bad_request("This run has no tool calls to answer.", param="run_id")
        missing = wanted - set(outputs)
        if missing or set(outputs) - wanted:
            raise bad_request(
                f"Expected tool outputs for call_ids {sorted(wanted)}, got {sorted(outputs)}.",
                param="tool_outputs",
            )
        self._stop_waiting(run["thread_id"])
        results: dict[str, str] = {}
        for entry in step["step_details"]["tool_calls"]:
            if entry["type"] == "function" and entry["id"] in outputs:
                entry["function"]["output"] = results[entry["id"]] = outputs[entry["id"]]
            elif entry["type"] == "code_interpreter":
                results[entry["id"]] = _logs_of(entry)
        step.update(status="completed", completed_at=wire.now())
        run.update(status="queued", required_action=None, expires_at=None)
        async with self._store.transaction() as tx:
            tx.append(owner, thread["id"], [calls_unit(step, results)], ref=step["id"])
            tx.put("step", owner, step)
            tx.put("run", owner, run)
        events = self.start(
            owner=owner, run=run, assistant=assistant, thread=thread, announce=False
        )
        events.emit("thread.run.step.completed", dict(step))
        events.emit("thread.run.queued", dict(run))
        return events

    async def _open_message(self, state: _Run) -> None:
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
        async with self._store.transaction(wait=False) as tx:
            tx.create("step", state.owner, step, parent=run["id"])
            tx.create("message", state.owner, message, parent=run["thread_id"])
        state.message, state.message_step, state.text = message, step, ""
        emit("thread.run.step.created", dict(step))
        emit("thread.run.step.in_progress", dict(step))
        emit("thread.message.created", dict(message))
        emit("thread.message.in_progress", dict(message))
        for index, file_id in enumerate(state.images):
            part = {"type": "image_file", "image_file": {"file_id": file_id}}
            emit("thread.message.delta", _message_delta(message["id"], index, part))

    async def _close_message(self, state: _Run, incomplete: str | None = None) -> None:
        """Store the reply being written (``incomplete`` with that reason, if cut short)."""
        message, step, text = state.message, state.message_step, state.text
        assert message is not None and step is not None
        images = [
            {"type": "image_file", "image_file": {"file_id": file_id, "detail": "auto"}}
            for file_id in state.images
        ]
        annotations = assistants.file_annotations(text, state.files)
        now = wire.now()
        message["content"] = [*images, wire.text_part(text, annotations)]
        if incomplete is None:
            message.update(status="completed", completed_at=now)
        else:
            message.update(
                status="incomplete", incomplete_at=now, incomplete_details={"reason": incomplete}
            )
        status = {"run_failed": "failed", "run_cancelled": "cancelled"}.get(
            incomplete or "", "completed"
        )
        step["status"] = status
        step[f"{status}_at"] = now
        async with self._store.transaction(wait=False) as tx:
            tx.put("message", state.owner, message)
            reply = Unit([{"role": "assistant", "content": text}], message=True)
            tx.append(state.owner, state.thread["id"], [reply], ref=message["id"])
            tx.put("step", state.owner, step)
        state.events.emit(f"thread.message.{message['status']}", dict(message))
        state.events.emit(f"thread.run.step.{status}", dict(step))
        state.images = []
        state.message = state.message_step = None
        state.text = ""

    async def _register(self, owner: str, file_id: str, purpose: str) -> None:
        """A file the code made becomes the owner's: listed, downloadable, kept."""
        info = await self._engine.keep_file(file_id)
        created = wire.file_object(info, purpose=purpose)
        # Not waited for: until it is committed, reads of the file find it all the same.
        async with self._store.transaction(wait=False) as tx:
            tx.create("file", owner, created)

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
        found += await self._store.attached(state.owner, state.thread["id"])
        return list(dict.fromkeys(found))

    def _render(self, unit: Unit) -> list[dict[str, Any]]:
        """A unit as sent: attached files named where they are in /mnt/data (a file
        deleted since is left out)."""
        names = [name for file_id in unit.files if (name := self._file_name(file_id))]
        if not names:
            return unit.messages
        note = f"[files attached, in /mnt/data: {', '.join(names)}]"
        first, *rest = unit.messages
        return [{**first, "content": f"{first['content']}\n{note}".lstrip("\n")}, *rest]

    def _file_name(self, file_id: str) -> str | None:
        """Where an attached file is in /mnt/data; ``None`` once it has been deleted."""
        try:
            return f"/mnt/data/{self._engine.file(file_id).name}"
        except NoSuchFileError:
            return None


def message_unit(message: dict[str, Any]) -> Unit:
    """A thread's message as the model is sent it (attachments named when it is sent)."""
    parts = []
    for part in message["content"]:
        if part["type"] == "text":
            parts.append(part["text"]["value"])
        elif part["type"] == "image_file":
            parts.append(f"[image {part['image_file']['file_id']}]")
        elif part["type"] == "image_url":
            parts.append(f"[image {part['image_url'].get('url', '')[:200]}]")
    files = [a["file_id"] for a in message.get("attachments") or []]
    return Unit([{"role": message["role"], "content": "\n".join(parts)}], True, files)


def calls_unit(step: dict[str, Any], results: dict[str, str]) -> Unit:
    """A tool step's calls and what they returned, kept or dropped together."""
    calls = [c for c in step["step_details"]["tool_calls"] if c["id"] in results]
    return Unit(
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [_chat_tool_call(call) for call in calls],
            },
            *(
                {"role": "tool", "tool_call_id": call["id"], "content": results[call["id"]]}
                for call in calls
            ),
        ]
    )


async def _replay(units: list[Unit]) -> AsyncIterator[Unit]:
    for unit in units:
        yield unit


def _logs_of(call: dict[str, Any]) -> str:
    outputs = call["code_interpreter"].get("outputs") or []
    return "\n".join(o.get("logs", "[image]") for o in outputs) or "(no output)"


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "name": choice["function"]["name"]}
    return choice


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


__all__ = ["DONE", "RunEvents", "Runner", "calls_unit", "message_unit"]
