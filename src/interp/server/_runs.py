"""The Assistants door: runs on threads, driven by the one agent loop (``agent.loop``).

``Runner`` keeps the door's rules: one active run per thread (running, or waiting for its
tool outputs, which expire), cancel, submitted tool outputs, metadata set on a live run.
``RunSink`` turns what the loop reports into the door's objects (the run, its steps, the
reply) and the SSE events the ``openai`` SDK's ``AssistantEventHandler`` reads (see
``interp.adapters.assistants`` for the tool-call deltas, which this module does not
re-derive). A client that drops its stream does not stop a run (OpenAI behaves so);
``cancel`` does, and interrupts running code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, cast

from openai.types import ErrorObject
from openai.types.beta import FileSearchTool, Thread
from openai.types.beta.threads import (
    ImageFileContentBlock,
    ImageURLContentBlock,
    Message,
    MessageContent,
    MessageDeltaEvent,
    TextContentBlock,
)
from openai.types.beta.threads.message import IncompleteDetails
from openai.types.beta.threads.run import IncompleteDetails as RunIncomplete
from openai.types.beta.threads.run import LastError, RequiredAction, Usage
from openai.types.beta.threads.runs import (
    CodeInterpreterToolCall,
    FileSearchToolCall,
    FunctionToolCall,
    RunStep,
    RunStepDeltaEvent,
    ToolCallsStepDetails,
)
from openai.types.beta.threads.runs import ToolCall as StepToolCall
from openai.types.beta.threads.runs.code_interpreter_tool_call import (
    CodeInterpreterOutput as CodeOutput,
)
from openai.types.beta.threads.runs.file_search_tool_call import FileSearch
from openai.types.beta.threads.runs.run_step import LastError as StepError
from pydantic import TypeAdapter

from .. import Engine, ExecutionResult, FileSaved, ImageSaved, LogChunk, NoSuchFileError
from .._models import Event
from ..adapters import assistants
from . import _wire as wire
from ._errors import APIError, bad_request
from ._locks import KeyedLocks
from ._places import Places
from ._store import ACTIVE_RUN, Store, Writes
from ._wire import Assistant, Run
from .agent.context import Unit, outputs_text, replay
from .agent.events import BEHIND, RunEvents
from .agent.images import file_image
from .agent.loop import Ending, Runs, drive
from .agent.model import CODE_TOOL, ToolCall, chat_tool_call, code_arguments
from .agent.search import DEFAULT_RESULTS, SEARCH_TOOL, Cited, Searching
from .agent.turn import Agent, Budget, History, Settings

log = logging.getLogger("interp.server")

DONE = assistants.sse("done", "[DONE]")
"""How the Assistants API ends a stream."""
INCOMPLETE = {"length": "max_completion_tokens", "prompt": "max_prompt_tokens"}
"""A run's ``incomplete_details.reason`` for why the loop ended it."""


class Runner:
    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        places: Places,
        agent: Agent,
        default_model: str | None,
        tool_outputs_timeout: float = 600.0,
        run_timeout: float = 600.0,
    ):
        self._store = store
        self._engine = engine
        self._places = places
        self._agent = agent
        self._default_model = default_model
        self.outputs_timeout = tool_outputs_timeout
        """Seconds a run waits in ``requires_action`` before it ``expired``."""
        self.run_timeout = run_timeout
        """Seconds a run may go on (from its start, or its restart with tool outputs)."""
        self.clock: Callable[[], float] = time.time
        """What ``expires_at`` is measured by (a test moves it on)."""
        self._runs = Runs()
        """Thread id -> its active run's task."""
        self._waiting: dict[str, tuple[str, asyncio.TimerHandle]] = {}
        """Thread id -> its run waiting for tool outputs, and that wait's expiry."""
        self.threads = KeyedLocks()
        """Held by what starts a run on a thread, adds to it or deletes it."""
        self._events: dict[str, RunEvents] = {}
        self._live: dict[str, RunSink] = {}
        """Run id -> the sink of a run being driven (its copy of the run is the newest)."""
        self._placed: dict[str, set[str]] = {}
        """Thread id -> file ids already in its session's /mnt/data."""
        self._expiring: set[asyncio.Future[None]] = set()

    def events(self, run_id: str) -> RunEvents | None:
        return self._events.get(run_id)

    async def settle(self, owner: str, run: Run) -> Run:
        """The run as it stands now: one whose wait for tool outputs is over is ``expired``
        when it is read, whether or not its timer has fired."""
        if not self._due(run):
            return run
        await self._expire(owner, run)
        return await self._store.get(wire.RUN, owner, run.id) or run

    def _due(self, run: Run) -> bool:
        return run.status == "requires_action" and (run.expires_at or 0) <= self.clock()

    async def settle_thread(self, owner: str, thread_id: str) -> None:
        """Expire the thread's waiting run if its time is over (before what it would
        refuse); the thread's lock is held."""
        waiting = self._waiting.get(thread_id)
        if waiting is None:
            return
        found = await self._store.get(wire.RUN, owner, waiting[0])
        if found is not None and (found.expires_at or 0) <= self.clock():
            await self._expire_held(owner, found)

    def check_idle(self, thread_id: str, *, adding: bool = False) -> None:
        """Refuse what a thread's active run (running, or waiting for tool outputs) forbids:
        another run, or (``adding``) a new message."""
        waiting = self._waiting.get(thread_id)
        if self._runs.task(thread_id) is None and waiting is None:
            return
        live = next((s for s in self._live.values() if s.thread.id == thread_id), None)
        run_id = waiting[0] if waiting else (live.run.id if live else "")
        raise active_run_error(thread_id, run_id, adding=adding)

    def modify(self, object_id: str, metadata: dict[str, str]) -> Any:
        """Metadata set on a run (or its reply) while it runs: on the copy its task writes,
        which is returned (the newest; a ``Run`` or a ``Message``), else ``None``."""
        for sink in self._live.values():
            for live in (sink.run, sink.message):
                if live is not None and live.id == object_id:
                    live.metadata = metadata
                    return live
        return None

    def start(
        self,
        *,
        owner: str,
        run: Run,
        assistant: Assistant,
        thread: Thread,
        announce: bool = True,
        head: list[Unit] | None = None,
        include: bool = False,
    ) -> RunEvents:
        """Start driving ``run`` (stored, or queued to be); its events from the start.
        ``head``: the thread's newest units, read already; ``include``: searches keep
        the text of the passages they found in their step."""
        self.check_idle(thread.id)
        events = RunEvents(cut=_behind)
        self._events[run.id] = events
        budget = Budget(max_completion_tokens=run.max_completion_tokens, seconds=self.run_timeout)
        if run.usage is not None:
            budget.usage.update(run.usage.model_dump())
        sink = RunSink(self, owner=owner, run=run, assistant=assistant, thread=thread,
                       events=events, budget=budget)  # fmt: skip
        sink.head = head
        sink.include = include
        self._live[run.id] = sink
        self._runs.start(thread.id, self._drive(sink, announce), name=f"interp-{run.id}")
        return events

    async def _drive(self, sink: RunSink, announce: bool) -> None:
        run, emit = sink.run, sink.events.emit
        try:
            if announce:
                emit("thread.run.created", run)
                emit("thread.run.queued", run)
            run.status, run.started_at = "in_progress", run.started_at or wire.now()
            sink.save()  # while the model is asked
            emit("thread.run.in_progress", run)
            thread_id = sink.thread.id
            await drive(
                self._agent,
                self._engine,
                sink.settings(self._default_model),
                sink.budget,
                sink,
                cancelled=lambda: self._runs.cancelling(thread_id),
                started=lambda: True,
            )
        finally:
            sink.events.close()
            self._events.pop(run.id, None)
            self._live.pop(run.id, None)

    async def stop(self, thread_id: str) -> None:
        """Cancel what runs on the thread (as a cancel, not as the server stopping), even a
        run not stored yet, and wait for its end."""
        await self._runs.stop(thread_id)
        self._stop_waiting(thread_id)

    async def cancel(self, owner: str, run: Run) -> Run:
        running = self._runs.task(run.thread_id) is not None
        if not running:
            # Nothing drives it: read it again, so that a run which ended meanwhile (its
            # task stores its end before it finishes) keeps that end.
            run = await self._store.get(wire.RUN, owner, run.id) or run
        if run.status not in ACTIVE_RUN:
            raise bad_request(f"Cannot cancel run with status '{run.status}'.")
        if run.status == "requires_action" or not running:
            self._stop_waiting(run.thread_id)
            await self._end_waiting(owner, run, "cancelled")
            return run
        # The task's own end stores the run cancelled. Nothing is stored from this older
        # copy: written after the task's last write, it left the run "cancelling" for good
        # when the run ended on its own just before the cancel.
        events = self._events.get(run.id)
        if events is not None:
            events.emit("thread.run.cancelling", run.model_copy(update={"status": "cancelling"}))
        await self.stop(run.thread_id)
        found = await self._store.get(wire.RUN, owner, run.id) or run
        if found.status != "cancelled":  # it ended first
            raise bad_request(f"Cannot cancel run with status '{found.status}'.")
        return found

    async def close(self) -> None:
        """Stop every run; each is marked failed, saying the server stopped."""
        for thread_id in list(self._waiting):
            self._stop_waiting(thread_id)
        await self._runs.close()

    # Waiting for tool outputs.

    def wait_for_outputs(self, owner: str, run: Run) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, (run.expires_at or 0) - self.clock())
        handle = loop.call_later(delay, self._expire_soon, owner, run.model_copy())
        self._waiting[run.thread_id] = (run.id, handle)

    def _stop_waiting(self, thread_id: str) -> None:
        waiting = self._waiting.pop(thread_id, None)
        if waiting is not None:
            waiting[1].cancel()

    def _expire_soon(self, owner: str, run: Run) -> None:
        task = asyncio.ensure_future(self._expire(owner, run))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _expire(self, owner: str, run: Run) -> None:
        """A run whose tool outputs did not come in time ends ``expired``."""
        async with self.threads.hold(run.thread_id):
            await self._expire_held(owner, run)

    async def _expire_held(self, owner: str, run: Run) -> None:
        """``_expire``, the thread's lock held already."""
        waiting = self._waiting.get(run.thread_id)
        if waiting is None or waiting[0] != run.id:
            return  # answered or cancelled meanwhile
        self._stop_waiting(run.thread_id)
        found = await self._store.get(wire.RUN, owner, run.id)
        if found is not None and found.status == "requires_action":
            await self._end_waiting(owner, found, "expired")

    async def _end_waiting(
        self, owner: str, run: Run, status: Literal["cancelled", "expired"]
    ) -> None:
        """End a run waiting for tool outputs (``cancelled`` or ``expired``), its step too."""
        now = wire.now()
        run.status, run.required_action = status, None
        if status == "cancelled":
            run.cancelled_at = now
        else:
            run.expires_at = now
        steps = await self._store.all(wire.STEP, owner, parent=run.id)
        async with self._store.transaction() as tx:
            for step in steps:
                if step.status == "in_progress":
                    step.status = status
                    if status == "cancelled":
                        step.cancelled_at = now
                    else:
                        step.expired_at = now
                    tx.put("step", owner, step)
            tx.put("run", owner, run)

    async def submit_tool_outputs(
        self,
        *,
        owner: str,
        run: Run,
        assistant: Assistant,
        thread: Thread,
        outputs: dict[str, str],
    ) -> RunEvents:
        """Answer a run's function calls and start it again. Everything is checked before
        the first write."""
        if self._due(run):
            self._stop_waiting(run.thread_id)
            await self._end_waiting(owner, run, "expired")
        if run.status != "requires_action":
            raise bad_request(
                f'Runs in status "{run.status}" do not accept tool outputs.', param="run_id"
            )
        steps = await self._store.all(wire.STEP, owner, parent=run.id)
        step = next((s for s in reversed(steps) if s.type == "tool_calls"), None)
        required = run.required_action
        wanted = (
            {call.id for call in required.submit_tool_outputs.tool_calls} if required else set()
        )
        if step is None:
            raise bad_request("This run has no tool calls to answer.", param="run_id")
        missing = wanted - set(outputs)
        if missing or set(outputs) - wanted:
            raise bad_request(
                f"Expected tool outputs for call_ids {sorted(wanted)}, got {sorted(outputs)}.",
                param="tool_outputs",
            )
        self._stop_waiting(run.thread_id)
        shown: dict[str, str] = {}
        for entry in _tool_calls(step):
            if isinstance(entry, FunctionToolCall) and entry.id in outputs:
                entry.function.output = shown[entry.id] = outputs[entry.id]
            elif isinstance(entry, CodeInterpreterToolCall):
                found = [o.model_dump() for o in entry.code_interpreter.outputs]
                shown[entry.id] = outputs_text(found)
        step.status, step.completed_at = "completed", wire.now()
        run.status, run.required_action, run.expires_at = "queued", None, None
        async with self._store.transaction() as tx:
            tx.append(owner, thread.id, [calls_unit(step, shown)], ref=step.id)
            tx.put("step", owner, step)
            tx.put("run", owner, run)
        events = self.start(
            owner=owner, run=run, assistant=assistant, thread=thread, announce=False
        )
        events.emit("thread.run.step.completed", step)
        events.emit("thread.run.queued", run)
        return events

    # What a run's sink needs of the thread.

    async def register(self, owner: str, file_id: str, purpose: str) -> None:
        """A file the code made becomes the owner's: listed, downloadable, kept."""
        info = await self._engine.keep_file(file_id)
        created = wire.file_object(info, purpose=purpose)
        # Not waited for: until it is committed, reads of the file find it all the same.
        async with self._store.transaction(wait=False) as tx:
            tx.create("file", owner, created)

    async def session(self, sink: RunSink) -> str:
        """The thread's engine session, its files in /mnt/data (put back after expiry)."""
        thread_id = sink.thread.id
        if not self._engine.has_session(thread_id):
            self._placed[thread_id] = set()
        await self._places.open(sink.owner, thread_id)
        # A session hibernated by the server's previous life has an empty /mnt/data.
        placed = self._placed.setdefault(thread_id, set())
        for file_id in await self._input_files(sink):
            if file_id in placed:
                continue
            # One at a time: a file deleted since it was attached is skipped, and the run
            # goes on without it, rather than every later run of the thread failing.
            with contextlib.suppress(NoSuchFileError):
                await self._engine.create_session(thread_id, file_ids=[file_id])
            placed.add(file_id)
        return thread_id

    async def _input_files(self, sink: RunSink) -> list[str]:
        found: list[str] = []
        for holder in (sink.assistant, sink.thread):
            resources = holder.tool_resources
            if resources is not None and resources.code_interpreter is not None:
                found += resources.code_interpreter.file_ids or []
        found += await self._store.attached(sink.owner, sink.thread.id)
        return list(dict.fromkeys(found))

    def render(self, unit: Unit) -> list[dict[str, Any]]:
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

    @property
    def store(self) -> Store:
        return self._store


class RunSink:
    """One run as the loop drives it: its objects, what is open, and its events."""

    def __init__(
        self,
        runner: Runner,
        *,
        owner: str,
        run: Run,
        assistant: Assistant,
        thread: Thread,
        events: RunEvents,
        budget: Budget,
    ) -> None:
        self.runner = runner
        self.owner = owner
        self.run = run
        self.assistant = assistant
        self.thread = thread
        self.events = events
        self.budget = budget
        self.files: list[FileSaved] = []
        self.images: list[str] = []
        self.pin = 0
        """Where the transcript's pinned part starts (the newest user message)."""
        self.message: Message | None = None
        self.message_step: RunStep | None = None
        self.text = ""
        self.tool_step: RunStep | None = None
        """What is open: a reply being written and its step, a tool step."""
        self.cursors: dict[str, assistants.Cursor] = {}
        self.head: list[Unit] | None = None
        """The thread's newest units, read ahead for the first turn."""
        self.searching: Searching | None = None
        self.include = False
        self.cited = Cited()
        """The files this run's searches found, by which its reply's citations are known."""

    @property
    def store(self) -> Store:
        return self.runner.store

    def settings(self, default_model: str | None) -> Settings:
        run = self.run
        strategy = run.truncation_strategy
        self.searching = self._searching()
        return Settings(
            model=run.model or default_model or "",
            instructions=run.instructions or None,
            code=any(t.type == "code_interpreter" for t in run.tools),
            search=self.searching,
            functions=[
                t.function.model_dump(exclude_none=True) for t in run.tools if t.type == "function"
            ],
            tool_choice=_tool_choice(run.tool_choice),
            parallel_tool_calls=run.parallel_tool_calls,
            temperature=run.temperature,
            top_p=run.top_p,
            response_format=wire.dumped(run.response_format),
            reasoning_effort=run.reasoning_effort,
            max_prompt_tokens=run.max_prompt_tokens,
            last_messages=strategy.last_messages
            if strategy is not None and strategy.type == "last_messages"
            else None,
        )

    def _searching(self) -> Searching | None:
        """The run's searches: over the assistant's and the thread's vector stores, when
        it has the ``file_search`` tool and they have stores."""
        tool = next((t for t in self.run.tools if t.type == "file_search"), None)
        stores = [
            store_id
            for holder in (self.assistant, self.thread)
            if holder.tool_resources is not None and holder.tool_resources.file_search
            for store_id in holder.tool_resources.file_search.vector_store_ids or ()
        ]
        if tool is None or not stores:
            return None
        options = tool.file_search if isinstance(tool, FileSearchTool) else None
        ranking = options.ranking_options if options is not None else None
        return Searching(
            owner=self.owner,
            store_ids=list(dict.fromkeys(stores)),
            max_num_results=(options.max_num_results if options else None) or DEFAULT_RESULTS,
            score_threshold=ranking.score_threshold if ranking is not None else None,
        )

    def save(self) -> None:
        """Queue a write of the run (the writer keeps the order of writes)."""
        writes = Writes()
        writes.put("run", self.owner, self.run)
        self.store.submit(writes)

    # The loop's reports.

    async def context(self) -> tuple[list[Unit], History]:
        """The pinned part of the thread's transcript (its newest user message and what
        follows; without one, what this run added) and its history, from one read of its
        newest units."""
        owner, thread_id, store = self.owner, self.thread.id, self.store
        recent = store.tail(owner, thread_id, head=self.head)
        self.head = None
        newest: list[Unit] = []
        async for unit in recent:
            newest.append(unit)
            if unit.messages[0].get("role") == "user":
                break
        else:
            if not self.pin:  # the run's first turn: what follows is its own
                self.pin = (newest[0].seq + 1) if newest else 1
            pinned = [unit for unit in reversed(newest) if unit.seq >= self.pin]
            earlier = [unit for unit in newest if unit.seq < self.pin]
            return pinned, functools.partial(replay, earlier)
        newest.reverse()
        self.pin = newest[0].seq
        rest = [recent]

        def history() -> AsyncIterator[Unit]:
            # The rest of this read first; a second fit (a retry) reads again.
            return rest.pop() if rest else store.tail(owner, thread_id, before=self.pin)

        return newest, history

    def render(self, unit: Unit) -> list[dict[str, Any]]:
        return self.runner.render(unit)

    async def text_delta(self, text: str) -> None:
        if self.message is None:
            self._open_message()
        assert self.message is not None
        index = len(self.images)
        self.text += text
        self.events.emit(
            "thread.message.delta", _message_delta(self.message.id, index, wire.text_part(text))
        )

    async def text_done(self, *, cut: bool) -> None:
        if self.message is not None:
            self._close_message("max_tokens" if cut else None)

    async def call_started(self, call: ToolCall) -> None:
        run, emit = self.run, self.events.emit
        if self.tool_step is None:
            self.tool_step = wire.step(
                run_obj=run, details={"type": "tool_calls", "tool_calls": []}
            )
            async with self.store.transaction(wait=False) as tx:
                tx.create("step", self.owner, self.tool_step, parent=run.id)
            emit("thread.run.step.created", self.tool_step)
            emit("thread.run.step.in_progress", self.tool_step)
        searching = self.searching is not None
        _tool_calls(self.tool_step).append(_call_object(call, searching))
        created = {"index": call.index, **_call_object(call, searching).model_dump()}
        emit("thread.run.step.delta", _step_delta(self.tool_step.id, created))

    async def code_delta(self, call: ToolCall, text: str) -> None:
        if self.tool_step is None:
            return
        delta = {
            "index": call.index,
            "type": "code_interpreter",
            "code_interpreter": {"input": text},
        }
        self.events.emit("thread.run.step.delta", _step_delta(self.tool_step.id, delta))

    async def session(self) -> str:
        return await self.runner.session(self)

    async def code_running(self, call: ToolCall, code: str) -> None:
        self._code(call).code_interpreter.input = code
        self.cursors[call.id] = assistants.Cursor()

    async def code_output(self, call: ToolCall, event: Event) -> None:
        if isinstance(event, ImageSaved):
            # Stored and listed before its id is sent: a client may fetch it at once.
            await self.runner.register(self.owner, event.file.id, "assistants_output")
            self.images.append(event.file.id)
        elif isinstance(event, FileSaved):
            await self.runner.register(self.owner, event.file.id, "assistants_output")
            self.files.append(event)
        # A run's stream is joined only when it starts: if no one reads it now, no one
        # will read this call's deltas.
        wanted = isinstance(event, LogChunk | ImageSaved) and self.events.wanted
        if wanted and self.tool_step is not None:
            position = _tool_calls(self.tool_step).index(self._entry(call))
            deltas, self.cursors[call.id] = assistants.event_deltas(
                event, step_id=self.tool_step.id, cursor=self.cursors[call.id],
                tool_index=position,
            )  # fmt: skip
            for delta in deltas:
                self.events.emit("thread.run.step.delta", RunStepDeltaEvent.model_validate(delta))

    async def code_done(self, call: ToolCall, result: ExecutionResult) -> None:
        found = _CODE_OUTPUTS.validate_python(assistants.outputs(result))
        self._code(call).code_interpreter.outputs = found

    async def code_skipped(self, call: ToolCall, note: str) -> None:
        self._code(call).code_interpreter.input = call.code

    async def search_done(self, call: ToolCall, asked: list[str], results: list[Any]) -> None:
        entry = self._entry(call)
        assert isinstance(entry, FileSearchToolCall) and self.searching is not None
        self.cited.add(results)
        threshold = self.searching.score_threshold
        entry.file_search = FileSearch.model_validate(
            {
                "ranking_options": {
                    "ranker": "default_2024_08_21",
                    "score_threshold": threshold or 0.0,
                },
                "results": [
                    {
                        "file_id": found.hit.file_id,
                        "file_name": found.filename,
                        "score": found.hit.score,
                        "content": [{"type": "text", "text": found.hit.text}]
                        if self.include
                        else None,
                    }
                    for found in results
                ],
            }
        )
        if self.tool_step is not None and self.events.wanted:
            position = _tool_calls(self.tool_step).index(entry)
            delta = {"index": position, **entry.model_dump(exclude_none=True)}
            self.events.emit("thread.run.step.delta", _step_delta(self.tool_step.id, delta))

    async def calls_done(self, calls: list[ToolCall], shown: dict[str, str]) -> None:
        step = self.tool_step
        assert step is not None
        functions = [call for call in calls if isinstance(self._entry(call), FunctionToolCall)]
        for call in functions:
            entry = self._entry(call)
            assert isinstance(entry, FunctionToolCall)
            entry.function.arguments = call.arguments
        if functions:
            # The code run in this turn goes in the transcript with the functions'
            # outputs, as one unit, when they are submitted.
            async with self.store.transaction(wait=False) as tx:
                tx.put("step", self.owner, step)
            return
        step.status, step.completed_at = "completed", wire.now()
        async with self.store.transaction(wait=False) as tx:
            tx.append(self.owner, self.thread.id, [calls_unit(step, shown)], ref=step.id)
            tx.put("step", self.owner, step)
        self.events.emit("thread.run.step.completed", step)
        self.tool_step = None

    async def functions_pending(self, calls: list[ToolCall]) -> None:
        run = self.run
        run.status = "requires_action"
        run.expires_at = int(self.runner.clock() + self.runner.outputs_timeout)
        run.required_action = RequiredAction.model_validate(
            {
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        }
                        for call in calls
                    ]
                },
            }
        )
        run.usage = Usage.model_validate(self.budget.usage)
        self.tool_step = None  # open until its outputs come
        # Nothing awaited from here to the task's end: a client that reads the run waiting
        # (reads see the write before its commit) finds the thread waiting, not running.
        writes = Writes()
        writes.put("run", self.owner, run)
        self.store.submit(writes)
        self.runner.wait_for_outputs(self.owner, run)
        self.events.emit("thread.run.requires_action", run)

    async def ended(self, ending: Ending) -> None:
        if ending.status == "requires_action":
            return
        if ending.reason == "content_filter":
            ending = Ending("failed", code="invalid_prompt",
                            message="the model's content filter stopped its reply")  # fmt: skip
        if ending.status == "failed":
            # The codes a run's error may have; the upstream's own is in the message.
            code = ending.code if ending.code in ("rate_limit_exceeded", "invalid_prompt") else None
            self.run.last_error = LastError(code=code or "server_error", message=ending.message)
        reason = INCOMPLETE.get(ending.reason or "") if ending.status == "incomplete" else None
        self._end(cast(_Ended, ending.status), reason)
        if ending.status == "expired":
            log.warning("run %s expired: %s", self.run.id, ending.message)

    # Its objects.

    def _entry(self, call: ToolCall) -> StepToolCall:
        assert self.tool_step is not None
        return next(entry for entry in _tool_calls(self.tool_step) if entry.id == call.id)

    def _code(self, call: ToolCall) -> CodeInterpreterToolCall:
        entry = self._entry(call)
        assert isinstance(entry, CodeInterpreterToolCall)
        return entry

    def _open_message(self) -> None:
        run, emit = self.run, self.events.emit
        message = wire.message(
            thread_id=run.thread_id,
            role="assistant",
            content=[],
            run_id=run.id,
            assistant_id=run.assistant_id,
            status="in_progress",
        )
        step = wire.step(
            run_obj=run,
            details={"type": "message_creation", "message_creation": {"message_id": message.id}},
        )
        writes = Writes()
        writes.create("step", self.owner, step, parent=run.id)
        writes.create("message", self.owner, message, parent=run.thread_id)
        self.store.submit(writes)
        self.message, self.message_step, self.text = message, step, ""
        emit("thread.run.step.created", step)
        emit("thread.run.step.in_progress", step)
        emit("thread.message.created", message)
        emit("thread.message.in_progress", message)
        for index, file_id in enumerate(self.images):
            part = _image_part(file_id)
            emit("thread.message.delta", _message_delta(message.id, index, part))

    def _close_message(self, incomplete: str | None = None) -> None:
        """Store the reply being written (``incomplete`` with that reason, if cut short)."""
        message, step, text = self.message, self.message_step, self.text
        assert message is not None and step is not None
        annotations = assistants.file_annotations(text, self.files) + [
            {
                "type": "file_citation",
                "text": cited.text,
                "start_index": cited.start,
                "end_index": cited.end,
                "file_citation": {"file_id": cited.file_id},
            }
            for cited in self.cited.find(text)
        ]
        annotations.sort(key=lambda a: a["start_index"])
        now = wire.now()
        message.content = [
            *(_image_part(file_id) for file_id in self.images),
            wire.text_part(text, annotations),
        ]
        if incomplete is None:
            message.status, message.completed_at = "completed", now
        else:
            message.status, message.incomplete_at = "incomplete", now
            message.incomplete_details = IncompleteDetails.model_validate({"reason": incomplete})
        status: _Ended = next((s for s, cut in _CUT.items() if cut == incomplete), "completed")
        _close_step(step, status, now)
        writes = Writes()
        writes.put("message", self.owner, message)
        reply = Unit([{"role": "assistant", "content": text}], message=True)
        writes.append(self.owner, self.thread.id, [reply], ref=message.id)
        writes.put("step", self.owner, step)
        self.store.submit(writes)
        self.events.emit(f"thread.message.{message.status}", message)
        self.events.emit(f"thread.run.step.{status}", step)
        self.images = []
        self.message = self.message_step = None
        self.text = ""

    def _end(self, status: _Ended, reason: str | None = None) -> None:
        """End the run (``completed``, ``incomplete``, ``failed``, ``cancelled``), closing
        what it left open: its reply keeps the text written so far. Not waited for: reads
        find the run ended before the commit, and closing the store writes what is queued."""
        run = self.run
        if self.budget.turns:
            run.usage = Usage.model_validate(self.budget.usage)
        if self.message is not None:
            self._close_message(_CUT.get(status, "max_tokens"))
        now = wire.now()
        writes = Writes()
        step = self.tool_step
        if step is not None:
            ended: _Ended = status if status in _CUT else "completed"
            _close_step(step, ended, now)
            if ended == "failed" and run.last_error is not None:
                limited = run.last_error.code == "rate_limit_exceeded"
                step.last_error = StepError(
                    code="rate_limit_exceeded" if limited else "server_error",
                    message=run.last_error.message,
                )
            writes.put("step", self.owner, step)
            self.events.emit(f"thread.run.step.{step.status}", step)
            self.tool_step = None
        run.status = status
        if status == "completed":
            run.completed_at = now
        elif status == "failed":
            run.failed_at = now
        elif status == "cancelled":
            run.cancelled_at = now
        elif status == "expired":
            run.expires_at = now
        if reason is not None:
            run.incomplete_details = RunIncomplete.model_validate({"reason": reason})
        writes.put("run", self.owner, run)
        self.store.submit(writes)
        self.events.emit(f"thread.run.{status}", run)


_Ended = Literal["completed", "incomplete", "failed", "cancelled", "expired"]
_CUT: dict[_Ended, Literal["run_failed", "run_cancelled", "run_expired"]] = {
    "failed": "run_failed",
    "cancelled": "run_cancelled",
    "expired": "run_expired",
}
"""How a run that ends so leaves its reply (``incomplete``) and its open step (so)."""
_CODE_OUTPUTS: TypeAdapter[list[CodeOutput]] = TypeAdapter(list[CodeOutput])


def active_run_error(thread_id: str, run_id: str, *, adding: bool = False) -> APIError:
    """OpenAI's 400 for what a thread's active run forbids: another run, or (``adding``)
    a new message."""
    if adding:
        return bad_request(
            f"Can't add messages to {thread_id} while a run {run_id} is active.",
            param="thread_id",
        )
    return bad_request(f"Thread {thread_id} already has an active run {run_id}.")


def _behind() -> str:
    """The Assistants stream's last event for a reader too slow to follow its run."""
    error = {"code": "server_error", "message": BEHIND, "param": None, "type": "server_error"}
    return assistants.sse("error", ErrorObject.model_validate(error).model_dump_json())


def _step_delta(step_id: str, call: dict[str, Any]) -> RunStepDeltaEvent:
    """A ``thread.run.step.delta`` for one tool call (the engine's adapter shapes it)."""
    return RunStepDeltaEvent.model_validate(assistants.step_delta(step_id, call))


def _close_step(step: RunStep, status: _Ended, now: int) -> None:
    """A step ends as its run: ``completed`` (or, cut short, ``failed``, ``cancelled``)."""
    if status == "failed":
        step.status, step.failed_at = "failed", now
    elif status == "cancelled":
        step.status, step.cancelled_at = "cancelled", now
    elif status == "expired":
        step.status, step.expired_at = "expired", now
    else:
        step.status, step.completed_at = "completed", now


def _tool_calls(step: RunStep) -> list[StepToolCall]:
    details = step.step_details
    assert isinstance(details, ToolCallsStepDetails)
    return details.tool_calls


def _image_part(file_id: str) -> MessageContent:
    return ImageFileContentBlock.model_validate(
        {"type": "image_file", "image_file": {"file_id": file_id, "detail": "auto"}}
    )


def message_unit(message: Message) -> Unit:
    """A thread's message as the model is sent it (attachments named when it is sent;
    images given by URL as image parts)."""
    parts = []
    images = []
    for part in message.content:
        if isinstance(part, TextContentBlock):
            parts.append(part.text.value)
        elif isinstance(part, ImageFileContentBlock):
            images.append(file_image(part.image_file.file_id, part.image_file.detail))
        elif isinstance(part, ImageURLContentBlock):
            images.append({"type": "image_url", "image_url": {
                "url": part.image_url.url, "detail": part.image_url.detail or "auto"}})  # fmt: skip
    files = [a.file_id for a in message.attachments or [] if a.file_id]
    text = "\n".join(parts)
    content: Any = text if not images else [{"type": "text", "text": text}, *images]
    return Unit([{"role": message.role, "content": content}], True, files)


def calls_unit(step: RunStep, shown: dict[str, str]) -> Unit:
    """A tool step's calls and what they returned, kept or dropped together."""
    calls = [c for c in _tool_calls(step) if c.id in shown]
    return Unit(
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [_chat_tool_call(call) for call in calls],
            },
            *(
                {"role": "tool", "tool_call_id": call.id, "content": shown[call.id]}
                for call in calls
            ),
        ]
    )


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str) or choice is None:
        return choice
    if choice.type == "function" and choice.function is not None:
        return {"type": "function", "name": choice.function.name}
    return choice.model_dump(exclude_none=True)


def _message_delta(message_id: str, index: int, part: MessageContent) -> MessageDeltaEvent:
    """A ``thread.message.delta`` carrying one content part at ``index``."""
    return MessageDeltaEvent.model_validate(
        {
            "id": message_id,
            "object": "thread.message.delta",
            "delta": {"content": [{"index": index, **part.model_dump(exclude_none=True)}]},
        }
    )


def _call_object(call: ToolCall, searching: bool) -> StepToolCall:
    if call.name == SEARCH_TOOL and searching:
        return FileSearchToolCall.model_validate(
            {"id": call.id, "type": "file_search", "file_search": {}}
        )
    if call.name == CODE_TOOL:
        return CodeInterpreterToolCall.model_validate(
            {
                "id": call.id,
                "type": "code_interpreter",
                "code_interpreter": {"input": "", "outputs": []},
            }
        )
    return FunctionToolCall.model_validate(
        {"id": call.id, "type": "function",
         "function": {"name": call.name, "arguments": "", "output": None}}
    )  # fmt: skip


def _chat_tool_call(call: StepToolCall) -> dict[str, Any]:
    if isinstance(call, CodeInterpreterToolCall):
        code = call.code_interpreter.input
        return chat_tool_call(call.id, CODE_TOOL, code_arguments(code))
    if isinstance(call, FunctionToolCall):
        return chat_tool_call(call.id, call.function.name, call.function.arguments)
    # A search's queries are in what it returned.
    return chat_tool_call(call.id, SEARCH_TOOL, "{}")


__all__ = ["DONE", "RunEvents", "RunSink", "Runner", "calls_unit", "message_unit"]
