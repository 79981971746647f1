"""A run's events fanned out to its readers: one that falls too far behind is cut, and
what waited for it is let go; the others, and the run, go on."""

from __future__ import annotations

from interp.server.agent.events import RunEvents


async def test_a_reader_that_falls_behind_is_cut_and_what_waited_for_it_let_go() -> None:
    events = RunEvents(cut=lambda: "event: error\ndata: cut\n\n", behind=10_000)
    slow = events.follow("[DONE]")
    fast = events.follow("[DONE]")
    fast_reader = aiter(fast)
    read: list[str] = []
    for number in range(100):
        events.emit("delta", {"n": number, "text": "x" * 500})  # ~50 KB in all
        read.append(await anext(fast_reader))
    events.close()
    read += [text async for text in fast_reader]
    assert sum(text.count("event: delta") for text in read) == 100 and read[-1] == "[DONE]"
    # What waited for the slow reader was dropped when it was cut: it reads the cut.
    assert [text async for text in slow] == ["event: error\ndata: cut\n\n[DONE]"]
    assert events.readers == 0


async def test_a_reader_that_has_read_all_gets_an_event_larger_than_the_bound() -> None:
    events = RunEvents(cut=lambda: "cut", behind=1_000)
    reader = aiter(events.follow())
    events.emit("completed", {"text": "x" * 5_000})
    assert "x" * 5_000 in await anext(reader)
    events.emit("done", {"n": 1})
    events.close()
    assert [text async for text in reader] == ['event: done\ndata: {"n":1}\n\n']
