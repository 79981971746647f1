"""A run's events, fanned out to the clients that stream it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel

from ...adapters import assistants

BEHIND_BYTES = 2 * 1024**2
"""How far (in event text) a stream's reader may fall behind its run before it is cut."""
WRITE_BYTES = 256 * 1024
"""At most this much event text goes out in one write (a few events, or one large one)."""


class RunEvents:
    """A run's (or a response's) events as SSE text, fanned out to its stream subscribers
    as they happen. Each is written out when sent: the objects in it go on changing.

    A reader that falls ``behind`` bytes behind (a client reading slowly, or not at all)
    is cut: what waits for it is dropped, and its stream ends with the ``cut()`` event
    (an error saying so); the run goes on, and its result stays readable. Otherwise the
    server would hold all the output of the run for it.

    With ``replay`` (a background response's), the events sent are kept, by their
    ``sequence_number``, for a subscriber that joins later (``follow(after=…)``)."""

    def __init__(
        self,
        *,
        cut: Callable[[], str],
        replay: bool = False,
        behind: int = BEHIND_BYTES,
    ) -> None:
        self._queues: dict[asyncio.Queue[str | None], int] = {}
        """Each reader's queue -> the bytes waiting in it."""
        self._sent: list[tuple[int, str]] | None = [] if replay else None
        self._cut = cut
        self._behind = behind
        self.closed = False

    def emit(self, event: str, data: BaseModel | dict[str, Any]) -> None:
        """Send an event; its object is written out now (it goes on changing)."""
        if not self.wanted:
            return  # nobody to send it to (a run streamed to no one, or its readers cut)
        if isinstance(data, BaseModel):
            text = assistants.sse(event, data.model_dump_json())
            number = getattr(data, "sequence_number", 0)
        else:
            text = assistants.sse(event, data)
            number = data.get("sequence_number", 0)
        if self._sent is not None:
            self._sent.append((number, text))
        for queue, waiting in list(self._queues.items()):
            # One that has read all gets the event, however large (a response's last
            # event holds all of it): the backlog is bounded by ``behind`` and one event.
            if waiting and waiting + len(text) > self._behind:
                self._drop(queue)
            else:
                self._queues[queue] = waiting + len(text)
                queue.put_nowait(text)

    def _drop(self, queue: asyncio.Queue[str | None]) -> None:
        """Cut a reader that fell behind: its stream ends with the cut event."""
        del self._queues[queue]
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(self._cut())
        queue.put_nowait(None)

    @property
    def readers(self) -> int:
        return len(self._queues)

    @property
    def wanted(self) -> bool:
        """Whether an event emitted now would go anywhere (else it need not be made)."""
        return bool(self._queues) or self._sent is not None

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
        waiting = 0
        if after is not None:
            for number, text in self._sent or ():
                if number > after:
                    queue.put_nowait(text)
                    waiting += len(text)
        if self.closed:
            queue.put_nowait(None)
        self._queues[queue] = waiting

        async def texts() -> AsyncIterator[str]:
            # The events there are when the reader comes go out in one write (up to
            # WRITE_BYTES): a run emits several at once (at its start, at its end), and
            # each write crosses every layer of the server and is a read for the client.
            try:
                ended = False
                while not ended:
                    ready: list[str] = []
                    size = 0
                    text = await queue.get()
                    while True:
                        if text is None:
                            ended = True
                            ready += [end] if end is not None else []
                            break
                        ready.append(text)
                        size += len(text)
                        if queue.empty() or size >= WRITE_BYTES:
                            break
                        text = queue.get_nowait()
                    if queue in self._queues:
                        self._queues[queue] -= sum(len(text) for text in ready)
                    if ready:
                        yield "".join(ready)
            finally:
                self._queues.pop(queue, None)

        return texts()


BEHIND = (
    f"This stream fell {BEHIND_BYTES // 1024**2} MiB behind its run and was cut; the run goes"
    " on: retrieve it to read its result."
)
"""What a cut reader's last event says."""


__all__ = ["BEHIND", "BEHIND_BYTES", "RunEvents"]
