"""A run's events, fanned out to the clients that stream it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from ...adapters import assistants


class RunEvents:
    """A run's (or a response's) events as SSE text, fanned out to its stream subscribers
    as they happen. Each is written out when sent: the objects in it go on changing.

    With ``replay`` (a background response's), the events sent are kept, by their
    ``sequence_number``, for a subscriber that joins later (``follow(after=…)``)."""

    def __init__(self, *, replay: bool = False) -> None:
        self._queues: set[asyncio.Queue[str | None]] = set()
        self._sent: list[tuple[int, str]] | None = [] if replay else None
        self.closed = False

    def emit(self, event: str, data: BaseModel | dict[str, Any]) -> None:
        """Send an event; its object is written out now (it goes on changing)."""
        if isinstance(data, BaseModel):
            text = assistants.sse(event, data.model_dump_json())
            number = getattr(data, "sequence_number", 0)
        else:
            text = assistants.sse(event, data)
            number = data.get("sequence_number", 0)
        if self._sent is not None:
            self._sent.append((number, text))
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
            # The events there are when the reader comes go out in one write: a run emits
            # several at once (at its start, at its end), and each write crosses every
            # layer of the server and is a read for the client.
            try:
                ended = False
                while not ended:
                    ready: list[str] = []
                    text = await queue.get()
                    while True:
                        if text is None:
                            ended = True
                            ready += [end] if end is not None else []
                            break
                        ready.append(text)
                        if queue.empty():
                            break
                        text = queue.get_nowait()
                    if ready:
                        yield "".join(ready)
            finally:
                self._queues.discard(queue)

        return texts()


__all__ = ["RunEvents"]
