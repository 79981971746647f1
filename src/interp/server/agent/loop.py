"""The one agent loop both doors run: model turns, code calls in the engine, function calls
handed back, within the run's budget; and the registry of runs with one cancel protocol.

A door gives the loop a ``Sink``: the loop says what happens (text as it streams, a call
as it starts and as its code grows, the code running and its output, the turn's calls
done, functions to answer, the end) and the door turns that into its own objects, events
and writes. Whatever way a run ends, the loop says so once, with ``ended``, and the door
closes what it left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ... import (
    CapacityError,
    Engine,
    ExecutionFinished,
    ExecutionResult,
    InterpError,
    LogChunk,
    LogsOutput,
    StoreFullError,
)
from ..._models import Event
from ...adapters.chat import tool_text
from .._errors import APIError
from .context import Unit, bounded
from .model import (
    CODE_TOOL,
    CallStarted,
    CodeDelta,
    Finished,
    TextDelta,
    ToolCall,
    UpstreamError,
    final_code,
)
from .search import SEARCH_TOOL, queries
from .search import shown as search_text
from .turn import Agent, Budget, History, PromptTooLong, Reason, Settings

log = logging.getLogger("interp.server")

Status = Literal["completed", "incomplete", "failed", "cancelled", "requires_action", "expired"]


@dataclass(frozen=True)
class Ending:
    status: Status
    """``requires_action``: the run waits for the outputs of the functions it called;
    ``expired``: it went on past its budget's ``seconds``."""
    reason: Reason | None = None
    """Why it is ``incomplete``."""
    code: str | None = None
    message: str | None = None
    """Why it ``failed``: ``last_error``'s code and message."""
    refused: bool = False
    """The model refused the run's first request (a 4xx) before anything was streamed."""


class Sink(Protocol):
    """What a door does with what the loop reports."""

    async def context(self) -> tuple[list[Unit], History]:
        """This turn's pinned units and the conversation's history before them."""
        ...

    def render(self, unit: Unit) -> list[dict[str, Any]]: ...

    async def text_delta(self, text: str) -> None: ...

    async def text_done(self, *, cut: bool) -> None:
        """The reply being written (if any) is whole, or ``cut`` by the turn's limit."""
        ...

    async def call_started(self, call: ToolCall) -> None: ...

    async def code_delta(self, call: ToolCall, text: str) -> None: ...

    async def session(self) -> str:
        """The engine session code runs in (made at the first call)."""
        ...

    async def code_running(self, call: ToolCall, code: str) -> None: ...

    async def code_output(self, call: ToolCall, event: Event) -> None: ...

    async def code_done(self, call: ToolCall, result: ExecutionResult) -> None: ...

    async def code_skipped(self, call: ToolCall, note: str) -> None: ...

    async def search_done(self, call: ToolCall, asked: list[str], results: list[Any]) -> None:
        """A ``file_search`` call's queries and the passages found (``agent.search``)."""
        ...

    async def calls_done(self, calls: list[ToolCall], shown: dict[str, str]) -> None:
        """The turn's calls: ``shown`` is what the model is told of each that ran (a
        function's call waits for its output)."""
        ...

    async def functions_pending(self, calls: list[ToolCall]) -> None:
        """The run ends its part here: the caller answers these (the run then
        ``ended`` with ``requires_action``)."""
        ...

    async def ended(self, ending: Ending) -> None: ...


async def run_loop(
    agent: Agent, engine: Engine, settings: Settings, budget: Budget, sink: Sink
) -> Ending:
    """Model turns until the run ends; what ended it (the sink is told by ``drive``)."""
    while True:
        pinned, history = await sink.context()
        finished = Finished()
        turn = agent.turn(settings, budget, pinned=pinned, history=history, render=sink.render)
        async for piece in turn:
            if isinstance(piece, TextDelta):
                await sink.text_delta(piece.text)
            elif isinstance(piece, CallStarted):
                await sink.text_done(cut=False)
                await sink.call_started(piece.call)
            elif isinstance(piece, CodeDelta):
                await sink.code_delta(piece.call, piece.text)
            elif isinstance(piece, Finished):
                finished = piece
        reason = budget.ended(finished)
        await sink.text_done(cut=reason is not None)
        if reason is not None:
            return Ending("incomplete", reason)
        if not finished.calls:
            return Ending("completed")
        shown = await _run_calls(agent, engine, settings, budget, sink, finished.calls)
        await sink.calls_done(finished.calls, shown)
        functions = [call for call in finished.calls if not settings.runs_here(call.name)]
        if functions:
            await sink.functions_pending(functions)
            return Ending("requires_action")
        if budget.spent:
            return Ending("incomplete", "length")


async def _run_calls(
    agent: Agent,
    engine: Engine,
    settings: Settings,
    budget: Budget,
    sink: Sink,
    calls: list[ToolCall],
) -> dict[str, str]:
    """Run the turn's code and search calls (up to the budget's) in order; what the model
    is shown of each."""
    ours = [call for call in calls if settings.runs_here(call.name)]
    allowed = budget.calls_allowed(len(ours))
    shown: dict[str, str] = {}
    for number, call in enumerate(ours):
        if number >= allowed:
            shown[call.id] = f"Not run: the limit of {budget.max_tool_calls} tool calls is reached."
            if call.name == CODE_TOOL:
                await sink.code_skipped(call, shown[call.id])
            else:
                await sink.search_done(call, queries(call.arguments), [])
            continue
        if call.name == SEARCH_TOOL:
            assert settings.search is not None and agent.search is not None
            asked = queries(call.arguments)
            results = await agent.search(settings.search, asked)
            await sink.search_done(call, asked, results)
            shown[call.id] = bounded(search_text(asked, results))
            continue
        code = final_code(call)
        session = await sink.session()
        await sink.code_running(call, code)
        result = None
        # A new kernel where the thread had one: said first, in the step and to the model.
        if note := agent.restart_note(session):
            await sink.code_output(call, LogChunk(stream="stdout", text=f"{note}\n"))
        async with contextlib.aclosing(engine.stream(code, session=session)) as stream:
            async for event in stream:
                if isinstance(event, ExecutionFinished):
                    result = event.result
                else:
                    await sink.code_output(call, event)
        if result is None:
            raise UpstreamError("server_error", "the execution ended without a result")
        if note:
            said = LogsOutput(logs=f"{note}\n")
            result = result.model_copy(update={"outputs": [said, *result.outputs]})
        await sink.code_done(call, result)
        shown[call.id] = bounded(tool_text(result))
    return shown


async def drive(
    agent: Agent,
    engine: Engine,
    settings: Settings,
    budget: Budget,
    sink: Sink,
    *,
    cancelled: Callable[[], bool],
    started: Callable[[], bool],
) -> None:
    """Run the loop and tell the sink how it ended, whatever ended it: a cancel (when
    ``cancelled()``; else the server stopping), its time running out (code running then
    is interrupted, as by a cancel), the model, the sandbox, a bug."""
    loop = asyncio.get_running_loop()
    limit = asyncio.timeout_at(None if budget.seconds is None else loop.time() + budget.seconds)
    try:
        try:
            async with limit:
                ending = await run_loop(agent, engine, settings, budget, sink)
        except TimeoutError:
            if not limit.expired():
                raise
            ending = Ending("expired", message=f"the run went on past {budget.seconds:g} s")
    except asyncio.CancelledError:
        if cancelled():
            ending = Ending("cancelled")
        else:
            ending = Ending("failed", code="server_error", message="the server stopped")
        await asyncio.shield(sink.ended(ending))
        return
    except UpstreamError as exc:
        refused = exc.status is not None and 400 <= exc.status < 500 and exc.status != 429
        ending = Ending(
            "failed", code=exc.code, message=exc.message, refused=refused and not started()
        )
    except PromptTooLong as exc:
        log.info("a run's prompt does not fit: %s", exc.message)
        ending = Ending("incomplete", "prompt", message=exc.message)
    except (CapacityError, StoreFullError) as exc:  # the client may try again later
        ending = Ending("failed", code="rate_limit_exceeded", message=str(exc))
    except InterpError as exc:
        ending = Ending("failed", code="server_error", message=f"the sandbox failed: {exc}")
    except APIError as exc:  # a container gone while its code was to run
        ending = Ending("failed", code="server_error", message=exc.message)
    except Exception as exc:
        log.exception("a run failed")
        message = f"the server failed: {type(exc).__name__}"
        ending = Ending("failed", code="server_error", message=message)
    await sink.ended(ending)


class Runs:
    """The runs being driven, one per key (a thread, a response), with one cancel
    protocol: ``stop`` marks the key as cancelled, cancels its task and waits for it; a
    task cancelled without the mark is the server stopping."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._cancelling: set[str] = set()

    def start(self, key: str, work: Awaitable[Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks[key] = task

        def forget(_: asyncio.Task[Any]) -> None:
            if self._tasks.get(key) is task:
                del self._tasks[key]
                self._cancelling.discard(key)

        task.add_done_callback(forget)
        return task

    def task(self, key: str) -> asyncio.Task[Any] | None:
        task = self._tasks.get(key)
        return task if task is not None and not task.done() else None

    def cancelling(self, key: str) -> bool:
        return key in self._cancelling

    async def stop(self, key: str) -> bool:
        """Cancel what runs for ``key``, as a cancel, and wait for its end; whether
        something ran."""
        task = self._tasks.get(key)
        if task is None:
            return False
        self._cancelling.add(key)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def close(self) -> None:
        """Stop every run (each ends failed, saying the server stopped)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["Ending", "Runs", "Sink", "drive", "run_loop"]
