"""Jupyter messages to outputs: the pure mapping, on recorded message contents."""

from __future__ import annotations

import base64

from interp._collector import Collector, PendingImage, strip_ansi
from interp._models import ImageFile, ImageOutput, LogChunk, LogsOutput

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def collector(max_log_bytes: int = 1000, max_images: int = 10) -> Collector:
    return Collector(max_log_bytes=max_log_bytes, max_images=max_images, max_image_bytes=1000)


def test_consecutive_text_merges_into_one_logs_output_in_order() -> None:
    c = collector()
    c.feed("stream", {"name": "stdout", "text": "a\n"})
    c.feed("stream", {"name": "stderr", "text": "b\n"})
    c.feed("execute_result", {"data": {"text/plain": "42"}, "execution_count": 1})
    assert c.outputs() == [LogsOutput(logs="a\nb\n42\n")]


def test_an_image_splits_the_logs_and_keeps_its_place() -> None:
    c = collector()
    c.feed("stream", {"name": "stdout", "text": "before\n"})
    items = c.feed("display_data", {"data": {"image/png": PNG, "text/plain": "<Figure>"}})
    assert items == [PendingImage(base64.b64decode(PNG), "image/png")]
    c.add_image("file-abc")
    c.feed("stream", {"name": "stdout", "text": "after\n"})
    assert [o.model_dump() for o in c.outputs()] == [
        {"type": "logs", "logs": "before\n"},
        {"type": "image", "image": {"file_id": "file-abc"}},
        {"type": "logs", "logs": "after\n"},
    ]


def test_error_becomes_readable_logs_and_a_structured_error() -> None:
    c = collector()
    c.feed(
        "error",
        {
            "ename": "ZeroDivisionError",
            "evalue": "division by zero",
            "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m", "----> 1 \x1b[38;5;241m1/0"],
        },
    )
    assert c.error is not None
    assert (c.error.name, c.error.value) == ("ZeroDivisionError", "division by zero")
    assert "\x1b" not in c.error.traceback
    assert c.outputs() == [LogsOutput(logs="ZeroDivisionError\n----> 1 1/0\n")]


def test_stream_chunks_are_reported_as_they_come() -> None:
    c = collector()
    assert c.feed("stream", {"name": "stderr", "text": "x"}) == [
        LogChunk(stream="stderr", text="x")
    ]
    assert c.feed("status", {"execution_state": "idle"}) == []


def test_logs_over_the_cap_keep_head_and_tail_with_a_marker() -> None:
    c = collector(max_log_bytes=100)
    for i in range(100):
        c.feed("stream", {"name": "stdout", "text": f"line {i:03d}\n"})
    (logs,) = c.outputs()
    assert isinstance(logs, LogsOutput)
    assert logs.logs.startswith("line 000\n")
    assert logs.logs.endswith("line 099\n")
    assert c.truncated_bytes == 900 - 100
    assert f"[... {c.truncated_bytes} bytes of output cut ...]" in logs.logs


def test_text_within_the_cap_is_kept_whole_even_past_the_head() -> None:
    c = collector(max_log_bytes=100)
    c.feed("stream", {"name": "stdout", "text": "x" * 70})
    c.add_image("file-1")
    c.feed("stream", {"name": "stdout", "text": "y" * 20})
    outputs = c.outputs()
    assert c.truncated_bytes == 0
    assert [o.type for o in outputs] == ["logs", "image", "logs"]
    assert outputs[0] == LogsOutput(logs="x" * 70)
    assert outputs[2] == LogsOutput(logs="y" * 20)


def test_images_beyond_the_cap_are_dropped_and_counted() -> None:
    c = collector(max_images=2)
    pending = [c.feed("display_data", {"data": {"image/png": PNG}}) for _ in range(5)]
    assert sum(len(p) for p in pending) == 2
    assert c.dropped_images == 3


def test_strip_ansi_removes_colour_and_cursor_codes() -> None:
    assert strip_ansi("\x1b[1;31mred\x1b[0m \x1b[?25lx") == "red x"


def test_dropped_and_oversized_images_leave_a_note() -> None:
    c = collector(max_images=1)
    assert c.feed("display_data", {"data": {"image/png": "A" * 4000}}) == []
    c.feed("display_data", {"data": {"image/png": PNG}})
    c.add_image("file-1")
    assert c.feed("display_data", {"data": {"image/png": PNG}}) == []
    outputs = c.outputs()
    assert outputs[0] == ImageOutput(image=ImageFile(file_id="file-1"))
    note = outputs[1]
    assert isinstance(note, LogsOutput)
    assert "[1 more images not kept: at most 1 per execution]" in note.logs
    assert "not kept: over the limit of" in note.logs


def test_the_cut_marker_names_the_file_with_the_full_output() -> None:
    c = collector(max_log_bytes=10)
    c.feed("stream", {"name": "stdout", "text": "x" * 100})
    (logs,) = c.outputs(full_output_file="file-full")
    assert isinstance(logs, LogsOutput)
    assert "[... 90 bytes of output cut; the full output is file-full ...]" in logs.logs
