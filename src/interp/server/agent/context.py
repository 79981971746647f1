"""What of a conversation goes to the model: a transcript fitted to the model's context.

A conversation (a thread, a chain of responses, a conversation) is kept as a transcript of
*units*, each a few chat messages that stand or fall together: a user message, an
assistant's reply, a tool call with its output. A turn sends the instructions, the
*pinned* units (the newest user message and what this run has done so far: never
dropped) and as many earlier units, newest first, as the limits allow:

- the model's context window, less room for the reply and a margin, in tokens;
- ``max_prompt_tokens`` (Assistants), over the whole request;
- ``last_messages`` (Assistants' ``truncation_strategy``), counting the thread's messages.

Tokens are estimated from UTF-8 bytes (no tokenizer is at hand for an arbitrary model),
then corrected per model by the ratio of the upstream's ``usage.prompt_tokens`` to the
estimate of what was sent; the model server adds its chat template and the tool
definitions, so the whole request is counted, tools included, and fitted with a margin.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from .model import Model

BYTES_PER_TOKEN = 3.0
"""A first guess that errs on the side of more tokens (BPE tokenizers give 3.5-4.5 bytes per
token on English and code); the upstream's usage corrects it."""
MESSAGE_TOKENS = 4
"""What a chat template adds per message (role markers)."""
MARGIN = 0.05
"""Of the window, kept free besides the reply's room: the estimate is an estimate."""
TOOL_TEXT_BYTES = 8000
"""What the model is shown of one execution: the head and tail of this many bytes."""


IMAGE_TOKENS = 1000
"""What an image part is counted as (a model's image tokens depend on its size and the
model, not on the bytes of its URL)."""


def tokens_of(value: Any) -> int:
    """The estimated tokens of a chat message (or a list of them, or tool definitions)."""
    if isinstance(value, list):
        return sum(tokens_of(item) for item in value)
    images = 0
    content = value.get("content") if isinstance(value, dict) else None
    if isinstance(content, list):
        kept = [p for p in content if not (isinstance(p, dict) and p.get("type") == "image_url")]
        images = len(content) - len(kept)
        value = {**value, "content": kept}
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    return MESSAGE_TOKENS + math.ceil(size / BYTES_PER_TOKEN) + IMAGE_TOKENS * images


def bounded(text: str, limit: int = TOOL_TEXT_BYTES) -> str:
    """``text`` cut to its head and tail of ``limit`` bytes in all, with a marker."""
    data = text.encode()
    if len(data) <= limit:
        return text
    half = limit // 2
    head = data[:half].decode(errors="ignore")
    tail = data[-half:].decode(errors="ignore")
    return f"{head}\n[... {len(data) - 2 * half} bytes not shown ...]\n{tail}"


def outputs_text(outputs: list[dict[str, Any]] | None) -> str:
    """What the model is shown of a code call whose own text was not kept: its logs."""
    return "\n".join(o.get("logs", "[image]") for o in outputs or []) or "(no output)"


@dataclass
class Unit:
    """Chat messages kept or dropped together."""

    messages: list[dict[str, Any]]
    message: bool = False
    """One of the conversation's messages (what ``last_messages`` counts); a tool call with
    its output is not."""
    files: list[str] = field(default_factory=list)
    """Files attached to it (the door says where they are when it sends it)."""
    seq: int = 0
    tokens: int = -1
    ref: str | None = None
    """The object it stands for (a message, an item), deleted with it."""

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = tokens_of(self.messages)

    def calls(self) -> set[str]:
        return {call["id"] for message in self.messages for call in message.get("tool_calls") or ()}

    def answers(self) -> set[str]:
        return {m["tool_call_id"] for m in self.messages if m.get("role") == "tool"}


async def replay(units: Iterable[Unit]) -> AsyncIterator[Unit]:
    """Units already read, as a history to fit."""
    for unit in units:
        yield unit


@dataclass(frozen=True)
class Limits:
    window: int | None = None
    """The model's context window in tokens; ``None``: not known."""
    max_prompt_tokens: int | None = None
    last_messages: int | None = None
    reply_tokens: int = 0
    """Room kept for the reply."""
    ratio: float = 1.0
    """The model's tokens per estimated token, as measured."""

    def prompt_budget(self) -> int | None:
        """The most tokens of the model's a prompt may have; ``None``: no bound."""
        bounds = []
        if self.window is not None:
            bounds.append(int(self.window * (1 - MARGIN)) - self.reply_tokens)
        if self.max_prompt_tokens is not None:
            bounds.append(self.max_prompt_tokens)
        return min(bounds) if bounds else None


class NoRoom(Exception):
    """What must be sent does not fit: the instructions, the newest user message and this
    run's calls alone are over the limit."""

    def __init__(self, needed: int, budget: int) -> None:
        super().__init__(f"the prompt needs about {needed} tokens; {budget} are allowed")
        self.needed = needed
        self.budget = budget


@dataclass
class Fitted:
    units: list[Unit]
    estimate: int
    """Estimated tokens of the whole request (in the estimate's units)."""
    dropped: bool
    """Earlier units were left out."""


async def fit(
    *,
    fixed: int,
    pinned: list[Unit],
    history: AsyncIterator[Unit],
    limits: Limits,
) -> Fitted:
    """The units to send, oldest first: ``pinned`` whole, then earlier ones from
    ``history`` (newest first) while they fit. ``fixed``: the estimated tokens of what is
    always sent (instructions, tool definitions)."""
    budget = limits.prompt_budget()
    allowed = math.inf if budget is None else budget / limits.ratio
    pinned = _shrunk(pinned, allowed - fixed)
    used = fixed + sum(unit.tokens for unit in pinned)
    if used > allowed:
        assert budget is not None
        raise NoRoom(math.ceil(used * limits.ratio), budget)
    # The calls a pinned tool output answers are kept with it, whatever they cost.
    needed = set().union(*(u.answers() for u in pinned)) - set().union(*(u.calls() for u in pinned))
    messages = sum(unit.message for unit in pinned)
    chosen: list[Unit] = []
    dropped = False
    passed = 0
    async for unit in history:
        forced = bool(needed) and bool(needed & unit.calls())
        counted = limits.last_messages is not None and messages >= limits.last_messages
        if not forced and (counted or used + unit.tokens > allowed):
            dropped = True
            passed += 1
            # Only a pinned output's call is looked for past the limit, and not far.
            if not needed or passed > 64:
                break
            continue
        chosen.append(unit)
        used += unit.tokens
        messages += unit.message
        if needed:
            needed -= unit.calls()
    chosen.reverse()
    return Fitted(_consistent([*chosen, *pinned]), used, dropped)


def _shrunk(units: list[Unit], room: float) -> list[Unit]:
    """Pinned units over ``room``: their tool outputs cut head and tail, down to 512 bytes
    each, before the run is given up."""
    total = sum(unit.tokens for unit in units)
    if total <= room:
        return units
    outputs = [m for u in units for m in u.messages if m.get("role") == "tool"]
    if not outputs:
        return units
    over_bytes = (total - room) * BYTES_PER_TOKEN
    each = max(512, int(max(len(str(m["content"]).encode()) for m in outputs) - over_bytes))
    shrunk = []
    for unit in units:
        messages = [
            {**m, "content": bounded(str(m["content"]), each)} if m.get("role") == "tool" else m
            for m in unit.messages
        ]
        shrunk.append(Unit(messages, unit.message, unit.files, unit.seq, ref=unit.ref))
    return shrunk


def _consistent(units: Iterable[Unit]) -> list[Unit]:
    """Without tool outputs whose call was left out (a model server refuses them)."""
    called: set[str] = set()
    kept = []
    for unit in units:
        if unit.message:  # a message: no call, no output
            kept.append(unit)
            continue
        called |= unit.calls()
        if unit.answers() - called:
            messages = [
                m for m in unit.messages if m.get("role") != "tool" or m["tool_call_id"] in called
            ]
            if not messages:
                continue
            unit = Unit(messages, unit.message, unit.files, unit.seq, ref=unit.ref)
        kept.append(unit)
    return kept


class Windows:
    """What is known of each model's context window and of its tokens.

    The window comes from the settings (a table per model, then a default), else from the
    upstream's ``/v1/models``, else from the upstream's own refusal of a request as too
    long (which names it); the ratio of its tokens to the estimate from its usage figures.
    """

    def __init__(self, model: Model, *, default: int | None, table: dict[str, int]) -> None:
        self._model = model
        self._default = default
        self._table = table
        self._learned: dict[str, int] = {}
        self._ratios: dict[str, float] = {}

    async def window(self, name: str) -> int | None:
        if name in self._table:
            return self._table[name]
        if name in self._learned:
            return self._learned[name]
        found = await self._model.context_window(name)
        if found is None:
            found = self._default
        if found is not None:
            self._learned[name] = found
        return found

    def refused(self, name: str, limit: int | None, estimate: int) -> None:
        """The upstream refused a request of ``estimate`` tokens as too long."""
        if limit is not None:
            self._learned[name] = min(limit, self._table.get(name, limit))
        elif name not in self._learned and name not in self._table:
            # It did not say: take the request's size as over it.
            self._learned[name] = int(estimate * self.ratio(name) * 0.75)
        # Whatever it counted, it counted more than this estimate allowed for.
        self._ratios[name] = min(4.0, self.ratio(name) * 1.25)

    def observed(self, name: str, estimate: int, prompt_tokens: int) -> None:
        """The upstream counted ``prompt_tokens`` for a request estimated at ``estimate``."""
        if estimate <= 0 or prompt_tokens <= 0:
            return
        measured = max(0.25, min(4.0, prompt_tokens / estimate))
        before = self._ratios.get(name)
        # Quick to grow (an underestimate overflows the window), slow to shrink.
        if before is None or measured > before:
            self._ratios[name] = measured
        else:
            self._ratios[name] = 0.8 * before + 0.2 * measured

    def ratio(self, name: str) -> float:
        return self._ratios.get(name, 1.0)


__all__ = [
    "Fitted",
    "Limits",
    "NoRoom",
    "Unit",
    "Windows",
    "bounded",
    "fit",
    "outputs_text",
    "replay",
    "tokens_of",
]
