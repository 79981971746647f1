"""Jupyter messages to outputs: the pure mapping, on recorded message contents."""

from __future__ import annotations

import base64

from interp._collector import Collector, PendingImage, strip_ansi
from interp._models import (
    DisplayOutput,
    ErrorRaised,
    ExecutionError,
    ImageFile,
    ImageOutput,
    LogChunk,
    LogsOutput,
)

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
    c.add_image("file-abc", "image/png")
    c.feed("stream", {"name": "stdout", "text": "after\n"})
    assert [o.model_dump() for o in c.outputs()] == [
        {"type": "logs", "logs": "before\n"},
        {"type": "image", "image": {"file_id": "file-abc", "mime": "image/png"}},
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
    c.add_image("file-1", "image/png")
    c.feed("stream", {"name": "stdout", "text": "y" * 20})
    outputs = c.outputs()
    assert c.truncated_bytes == 0
    assert [o.type for o in outputs] == ["logs", "image", "logs"]
    assert outputs[0] == LogsOutput(logs="x" * 70)
    assert outputs[2] == LogsOutput(logs="y" * 20)


def test_images_beyond_the_cap_are_dropped_and_counted() -> None:
    c = collector(max_images=2)
    items = [i for _ in range(5) for i in c.feed("display_data", {"data": {"image/png": PNG}})]
    assert sum(isinstance(i, PendingImage) for i in items) == 2
    assert c.dropped_images == 3


def test_strip_ansi_removes_colour_and_cursor_codes() -> None:
    assert strip_ansi("\x1b[1;31mred\x1b[0m \x1b[?25lx") == "red x"


def test_dropped_and_oversized_images_leave_a_note_where_they_were() -> None:
    c = collector(max_images=1)
    c.feed("display_data", {"data": {"image/png": "A" * 4000}})
    c.feed("display_data", {"data": {"image/png": PNG}})
    c.add_image("file-1", "image/png")
    for _ in range(3):
        c.feed("display_data", {"data": {"image/png": PNG}})
    too_big, image, dropped = c.outputs()
    assert isinstance(too_big, LogsOutput)
    assert too_big.logs == "[an image of 3000 bytes not kept: over the limit of 1000 bytes]\n"
    assert image == ImageOutput(image=ImageFile(file_id="file-1"))
    assert dropped == LogsOutput(
        logs="[images after the first 1 not kept: at most 1 per execution]\n"
    )
    assert c.dropped_images == 3


def test_a_jpeg_is_an_image_too() -> None:
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0fake").decode()
    items = collector().feed("display_data", {"data": {"image/jpeg": jpeg, "text/plain": "<x>"}})
    assert items == [PendingImage(base64.b64decode(jpeg), "image/jpeg")]


def test_a_dataframe_keeps_its_html_and_its_text_goes_to_the_logs() -> None:
    c = collector()
    html = "<table><tr><td>1</td></tr></table>"
    items = c.feed("execute_result", {"data": {"text/plain": "   a\n0  1", "text/html": html}})
    display = DisplayOutput(data={"text/html": html}, text="   a\n0  1")
    assert items == [LogChunk(stream="result", text="   a\n0  1\n"), display]
    assert c.outputs() == [LogsOutput(logs="   a\n0  1\n"), display]
    assert display.html == html


def test_json_latex_and_svg_are_kept_as_sent() -> None:
    c = collector()
    c.feed("display_data", {"data": {"application/json": {"a": [1, 2]}}})
    c.feed("display_data", {"data": {"text/latex": "$x^2$", "image/svg+xml": "<svg/>"}})
    first, second = c.outputs()
    assert isinstance(first, DisplayOutput) and isinstance(second, DisplayOutput)
    assert first.data == {"application/json": {"a": [1, 2]}}
    assert second.data == {"text/latex": "$x^2$", "image/svg+xml": "<svg/>"}


def test_displays_beyond_their_budget_leave_a_note_and_keep_their_text() -> None:
    c = collector(max_log_bytes=100)
    c.feed("display_data", {"data": {"text/html": "x" * 500, "text/plain": "small"}})
    (logs,) = c.outputs()
    assert isinstance(logs, LogsOutput)
    assert logs.logs.startswith("small\n[a display (text/html) of 500 bytes not kept")


def test_an_error_is_reported_as_an_event_after_its_traceback() -> None:
    items = collector().feed("error", {"ename": "E", "evalue": "v", "traceback": ["tb"]})
    assert items == [
        LogChunk(stream="stderr", text="tb\n"),
        ErrorRaised(error=ExecutionError(name="E", value="v", traceback="tb")),
    ]


def test_the_cut_marker_names_the_file_with_the_full_output() -> None:
    c = collector(max_log_bytes=10)
    c.feed("stream", {"name": "stdout", "text": "x" * 100})
    (logs,) = c.outputs(full_output_file="file-full")
    assert isinstance(logs, LogsOutput)
    assert "[... 90 bytes of output cut; the output is stored as file-full ...]" in logs.logs
