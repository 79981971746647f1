"""The outbox between an execution and its reader: coalescing, order, bounds. No Docker."""

from __future__ import annotations

import asyncio

import pytest

from interp._models import Event, ExecutionStarted, LogChunk
from interp._outbox import Outbox

STARTED = ExecutionStarted(id="call_1", session="s", code="x")


async def drain(outbox: Outbox) -> list[Event]:
    taken: list[Event] = []
    while True:
        try:
            taken.append(await outbox.get())
        except StopAsyncIteration:
            return taken


async def test_text_of_one_stream_merges_and_nothing_is_reordered() -> None:
    outbox = Outbox(window=10, max_pending_bytes=1000)
    outbox.put(LogChunk(stream="stdout", text="a"))
    outbox.put(LogChunk(stream="stdout", text="b"))
    outbox.put(LogChunk(stream="stderr", text="c"))
    outbox.put(STARTED)
    outbox.put(LogChunk(stream="stdout", text="d"))
    outbox.close()
    assert await drain(outbox) == [
        LogChunk(stream="stdout", text="ab"),
        LogChunk(stream="stderr", text="c"),
        STARTED,
        LogChunk(stream="stdout", text="d"),
    ]


async def test_a_lone_chunk_waits_for_the_window_then_goes_out() -> None:
    outbox = Outbox(window=0.05, max_pending_bytes=1000)
    outbox.put(LogChunk(stream="stdout", text="a"))
    getting = asyncio.ensure_future(outbox.get())
    await asyncio.sleep(0.01)
    assert not getting.done()
    outbox.put(LogChunk(stream="stdout", text="b"))
    # The window counts from the first chunk: later text does not hold it back longer.
    assert await asyncio.wait_for(getting, 1) == LogChunk(stream="stdout", text="ab")


async def test_another_event_releases_held_text_at_once() -> None:
    outbox = Outbox(window=60, max_pending_bytes=1000)
    outbox.put(LogChunk(stream="stdout", text="a"))
    outbox.put(STARTED)
    assert await asyncio.wait_for(outbox.get(), 1) == LogChunk(stream="stdout", text="a")


async def test_text_a_slow_reader_has_not_taken_stays_bounded() -> None:
    outbox = Outbox(window=0, max_pending_bytes=100)
    for i in range(1000):
        outbox.put(LogChunk(stream="stdout", text=f"{i:09d}\n"))
    outbox.close()
    (chunk,) = await drain(outbox)
    assert isinstance(chunk, LogChunk)
    marker, kept = chunk.text.split("\n", 1)
    assert marker == (
        "[... 9900 bytes not streamed: the reader fell behind; the result keeps the logs ...]"
    )
    assert kept == "".join(f"{i:09d}\n" for i in range(990, 1000))


async def test_the_producers_error_reaches_the_reader_after_the_events() -> None:
    outbox = Outbox(window=0, max_pending_bytes=100)
    outbox.put(STARTED)
    outbox.close(RuntimeError("boom"))
    assert await outbox.get() == STARTED
    with pytest.raises(RuntimeError, match="boom"):
        await outbox.get()
