"""Events on their way from a running execution to whoever consumes its stream.

The execution never waits for its consumer: it has to drain the kernel promptly (ZMQ
drops what a subscriber leaves unread past its high-water mark, and the kernel cannot be
made to wait) and to keep its own deadline. So events wait here instead, and what waits
stays bounded:

- consecutive text of one stream merges into one chunk, never across other events, so
  nothing is reordered;
- a lone chunk is held for a few milliseconds, so a burst of prints arrives as one event;
- text the consumer has not taken beyond ``max_pending_bytes`` is cut from the front of
  what waits, and the chunk that follows says how much. The execution's result keeps the
  logs whatever happens here.

Other events are bounded by the execution's own caps (images, displays, files).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from ._collector import cut_front
from ._models import Event, LogChunk


@dataclass
class _Text:
    stream: Literal["stdout", "stderr", "result"]
    since: float
    parts: deque[str] = field(default_factory=deque)
    size: int = 0
    skipped: int = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text.encode())

    def cut(self, excess: int) -> int:
        """Drop ``excess`` bytes from the front (see ``cut_front``); return how many went."""
        dropped = cut_front(self.parts, excess)
        self.size -= dropped
        self.skipped += dropped
        return dropped

    def chunk(self) -> LogChunk:
        text = "".join(self.parts)
        if self.skipped:
            text = (
                f"[... {self.skipped} bytes not streamed: the reader fell behind;"
                f" the result keeps the logs ...]\n{text}"
            )
        return LogChunk(stream=self.stream, text=text)


class Outbox:
    """A single-producer, single-consumer queue of events with bounded text."""

    def __init__(self, *, window: float, max_pending_bytes: int) -> None:
        self._window = window
        self._max_pending = max_pending_bytes
        self._entries: deque[Event | _Text] = deque()
        self._pending = 0
        self._changed = asyncio.Event()
        self._closed = False
        self._error: BaseException | None = None

    def put(self, event: Event) -> None:
        if isinstance(event, LogChunk):
            last = self._entries[-1] if self._entries else None
            if not (isinstance(last, _Text) and last.stream == event.stream):
                last = _Text(event.stream, since=time.monotonic())
                self._entries.append(last)
            last.add(event.text)
            self._pending += len(event.text.encode())
            self._bound()
        else:
            self._entries.append(event)
        self._changed.set()

    def close(self, error: BaseException | None = None) -> None:
        """No more events; ``get`` raises ``error`` (if any) once the rest is taken."""
        self._closed = True
        self._error = error
        self._changed.set()

    async def get(self) -> Event:
        """The next event; ``StopAsyncIteration`` after the last."""
        while True:
            if self._entries:
                first = self._entries[0]
                if not isinstance(first, _Text):
                    self._entries.popleft()
                    return first
                hold = first.since + self._window - time.monotonic()
                if len(self._entries) > 1 or self._closed or hold <= 0:
                    self._entries.popleft()
                    self._pending -= first.size
                    return first.chunk()
                await self._wait(hold)
                continue
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            await self._wait(None)

    async def _wait(self, timeout: float | None) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _bound(self) -> None:
        for entry in self._entries:
            if self._pending <= self._max_pending:
                return
            if isinstance(entry, _Text):
                self._pending -= entry.cut(self._pending - self._max_pending)
