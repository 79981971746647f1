"""One model turn, as both doors take it: the request (settings, the fitted context, the
tools), the upstream's stream, and the run's budget over its turns.

A door (Assistants, Responses) owns its objects and events; it asks ``Agent.turn`` for a
turn's pieces and ``Budget`` whether the run goes on. What a run may spend is counted
here, once: model turns, tool calls, completion tokens (over the run, not per request),
and how each turn ended (``finish_reason``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ...adapters.chat import DESCRIPTION, tool_schema
from .context import Fitted, Limits, NoRoom, Unit, Windows, fit, tokens_of
from .images import Reader, inlined
from .model import CODE_TOOL, ContextTooLong, Finished, Model, Piece, UpstreamError
from .search import SEARCH_TOOL, Searcher, Searching
from .search import schema as search_schema

log = logging.getLogger("interp.server")

MAX_MODEL_TURNS = 16
"""Model requests in one run; the last is asked to answer without tools."""
REPLY_TOKENS = 4096
"""Room kept in the window for a reply, at most (an eighth of the window at most)."""

Reason = Literal["length", "prompt", "content_filter"]
"""Why a run ends ``incomplete``: its completion tokens (a turn cut by the model's own
limit too), its prompt that cannot fit, or the model's content filter."""


@dataclass
class Settings:
    """What a run asks of the model, in chat-completions terms."""

    model: str
    instructions: str | None = None
    code: bool = False
    """Offer the ``python`` tool."""
    search: Searching | None = None
    """Offer the ``file_search`` tool, over these stores."""
    functions: list[dict[str, Any]] = field(default_factory=list)
    """Function definitions (``name``, ``description``, ``parameters``, ``strict``)."""
    tool_choice: Any = None
    """``auto``/``none``/``required``, ``{"type": "code_interpreter"}`` or a function's name
    as ``{"type": "function", "name": …}``."""
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    response_format: Any = None
    reasoning_effort: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Other chat-completions fields passed as they are (``user``, ``top_logprobs``, …)."""
    max_prompt_tokens: int | None = None
    last_messages: int | None = None
    truncate: bool = True
    """Leave earlier units out to fit; ``False``: a context over the window is refused."""

    def tools(self, description: str = DESCRIPTION) -> list[dict[str, Any]]:
        tools = [tool_schema(CODE_TOOL, description)] if self.code else []
        if self.search is not None:
            tools.append(search_schema())
        return tools + [{"type": "function", "function": f} for f in self.functions]

    def runs_here(self, name: str) -> bool:
        """A call the server runs (code, a search), not one handed back to the caller."""
        return name == CODE_TOOL or (name == SEARCH_TOOL and self.search is not None)

    def chat_tool_choice(self) -> Any:
        choice = self.tool_choice
        if isinstance(choice, str) or choice is None:
            return choice
        if choice.get("type") == "code_interpreter":
            return {"type": "function", "function": {"name": CODE_TOOL}}
        if choice.get("type") == "file_search":
            return {"type": "function", "function": {"name": SEARCH_TOOL}}
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        return {"type": "function", "function": {"name": name}}


@dataclass
class Budget:
    """What a run may still spend, over all its turns."""

    max_tool_calls: int | None = None
    max_completion_tokens: int | None = None
    max_turns: int = MAX_MODEL_TURNS
    seconds: float | None = None
    """How long the run may go on, from its start (or its restart with tool outputs)."""
    turns: int = 0
    tool_calls: int = 0
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    )

    @property
    def last_turn(self) -> bool:
        return self.turns >= self.max_turns - 1

    @property
    def spent(self) -> bool:
        """No model turn is left: a run whose last turn still called tools ends
        ``incomplete``, once those calls have run."""
        return self.turns >= self.max_turns

    def completion_left(self) -> int | None:
        if self.max_completion_tokens is None:
            return None
        return max(0, self.max_completion_tokens - self.usage["completion_tokens"])

    def ended(self, finished: Finished) -> Reason | None:
        """Count a finished turn; why the run must end ``incomplete`` after it, if so.

        A stream that ended without a ``finish_reason`` was cut: ``UpstreamError``."""
        self.turns += 1
        for key in self.usage:
            self.usage[key] += (finished.usage or {}).get(key, 0)
        if finished.finish_reason is None:
            raise UpstreamError("server_error", "the model's stream ended before it finished")
        if finished.finish_reason == "length":
            return "length"
        if finished.finish_reason == "content_filter":
            return "content_filter"
        left = self.completion_left()
        if left is not None and left <= 0 and finished.calls:
            return "length"
        return None

    def calls_allowed(self, wanted: int) -> int:
        """How many of a turn's ``wanted`` tool calls may run (the rest are answered as
        not run, as OpenAI does past ``max_tool_calls``)."""
        if self.max_tool_calls is None:
            allowed = wanted
        else:
            allowed = max(0, min(wanted, self.max_tool_calls - self.tool_calls))
        self.tool_calls += allowed
        return allowed


class PromptTooLong(Exception):
    """What must be sent does not fit the model's window or ``max_prompt_tokens``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


History = Callable[[], AsyncIterator[Unit]]
"""A fresh iterator of a conversation's earlier units, newest first."""


class Agent:
    """The model and what is known of its windows, shared by every run."""

    def __init__(
        self,
        model: Model,
        windows: Windows,
        files: Reader | None = None,
        search: Searcher | None = None,
        restart_note: Callable[[str], str | None] = lambda session: None,
        code_description: str = DESCRIPTION,
    ) -> None:
        self.model = model
        self.windows = windows
        self.files = files
        """Where images given by file id are read when they are sent."""
        self.search = search
        """What runs the ``file_search`` tool's searches."""
        self.restart_note = restart_note
        self.code_description = code_description
        """The code tool's description (it names the packages installed)."""
        """What a session's next call says first (once): that its kernel is new."""
        self._textual: set[str] = set()
        """Models that refused image parts."""

    async def turn(
        self,
        settings: Settings,
        budget: Budget,
        *,
        pinned: list[Unit],
        history: History,
        render: Callable[[Unit], list[dict[str, Any]]] = lambda unit: unit.messages,
    ) -> AsyncIterator[Piece]:
        """One turn's pieces. A request the upstream refuses as over its window is fitted
        again to the window it names and sent once more; one it refuses for its image
        parts is sent again with the images named in the text (and so are the model's
        requests from then on)."""
        for attempt in (1, 2, 3):
            request, fitted = await self.request(settings, budget, pinned, history, render)
            try:
                async for piece in self.model.stream(request):
                    if isinstance(piece, Finished) and piece.usage:
                        self.windows.observed(
                            settings.model, fitted.estimate, piece.usage.get("prompt_tokens", 0)
                        )
                    yield piece
                return
            except ContextTooLong as exc:
                self.windows.refused(settings.model, exc.limit, fitted.estimate)
                if attempt == 3 or not settings.truncate:
                    raise PromptTooLong(exc.message) from None
            except UpstreamError as exc:
                refused = exc.status == 400 and "image" in exc.message.lower()
                if not refused or settings.model in self._textual or not _has_images(request):
                    raise
                log.warning(
                    "the model %s refused image parts (%s): images are named in the text instead",
                    settings.model,
                    exc.message[:200],
                )
                self._textual.add(settings.model)

    async def request(
        self,
        settings: Settings,
        budget: Budget,
        pinned: list[Unit],
        history: History,
        render: Callable[[Unit], list[dict[str, Any]]],
    ) -> tuple[dict[str, Any], Fitted]:
        window = await self.windows.window(settings.model)
        tools = settings.tools(self.code_description)
        system = [{"role": "system", "content": settings.instructions}]
        fixed = (tokens_of(system) if settings.instructions else 0) + (
            tokens_of(tools) if tools else 0
        )
        left = budget.completion_left()
        reply = 0
        if window is not None:
            reply = min(REPLY_TOKENS, window // 8, left if left is not None else REPLY_TOKENS)
        limits = Limits(
            window=window,
            max_prompt_tokens=settings.max_prompt_tokens,
            last_messages=settings.last_messages,
            reply_tokens=reply,
            ratio=self.windows.ratio(settings.model),
        )
        try:
            fitted = await fit(fixed=fixed, pinned=pinned, history=history(), limits=limits)
        except NoRoom as exc:
            raise PromptTooLong(str(exc)) from None
        if fitted.dropped and not settings.truncate:
            raise PromptTooLong(f"the input is over the model's context window of {window} tokens")
        messages = list(system) if settings.instructions else []
        for unit in fitted.units:
            messages += render(unit)
        if self.files is not None:
            messages = await inlined(messages, self.files)
        if settings.model in self._textual:
            messages = [_textual(message) for message in messages]
        request: dict[str, Any] = {"model": settings.model, "messages": messages}
        if tools:
            request["tools"] = tools
            choice = "none" if budget.last_turn else settings.chat_tool_choice()
            if choice is not None:
                request["tool_choice"] = choice
            if settings.parallel_tool_calls is not None:
                request["parallel_tool_calls"] = settings.parallel_tool_calls
        for name in ("temperature", "top_p", "response_format", "reasoning_effort"):
            value = getattr(settings, name)
            if value is not None and value != "auto":
                request[name] = value
        request.update(settings.extra)
        if left is not None:
            if window is not None:
                room = window - int(fitted.estimate * limits.ratio)
                left = max(1, min(left, room))
            request["max_completion_tokens"] = max(1, left)
        return request, fitted


def _has_images(request: dict[str, Any]) -> bool:
    return any(isinstance(m.get("content"), list) for m in request["messages"])


def _textual(message: dict[str, Any]) -> dict[str, Any]:
    """A message with its image parts named in its text, for a model that takes none."""
    content = message.get("content")
    if not isinstance(content, list):
        return message
    texts = []
    for part in content:
        if part.get("type") == "text":
            texts.append(part.get("text", ""))
            continue
        url = str((part.get("image_url") or {}).get("url", ""))
        texts.append("[image]" if url.startswith("data:") else f"[image {url[:200]}]")
    return {**message, "content": "\n".join(texts)}


__all__ = ["Agent", "Budget", "History", "PromptTooLong", "Reason", "Settings"]
