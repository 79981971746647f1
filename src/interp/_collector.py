"""Turn a kernel's iopub messages into outputs in OpenAI's order. Pure: no I/O.

Message contents are untrusted (code in the kernel can send its own): a field of the wrong
type makes the message a note in the logs, text that is not valid Unicode (a lone
surrogate) is mended, and every kind of output is bounded by count as well as bytes.

Consecutive text (stdout, stderr, expression results, tracebacks) merges into one
``logs`` output; each PNG or JPEG becomes an ``image`` output once the caller has stored
it; HTML, SVG, JSON, Markdown and LaTeX become ``display`` outputs, their plain text going
to the logs as well. Logs are capped per execution: the head and the tail are kept, with a
marker naming how much was cut between them. What a cap drops is said in the logs, where
it happened.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from pydantic import JsonValue

from ._models import (
    RICH_MIME_TYPES,
    DisplayOutput,
    ErrorRaised,
    ExecutionError,
    ImageFile,
    ImageOutput,
    LogChunk,
    LogsOutput,
    Output,
)

_IMAGE_MIME_TYPES = ("image/png", "image/jpeg")

_SURROGATE = re.compile("[\ud800-\udfff]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

MAX_DISPLAYS = 1000
"""Displays (and expression results) taken per execution, empty ones included: 100 000
empty displays must not make 100 000 outputs."""
MAX_ERRORS = 16
"""Error messages taken per execution; a kernel sends one, only forged ones come in floods."""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def valid_text(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates (which no UTF-8 encoder takes) become U+FFFD."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def _valid_json(value: JsonValue) -> JsonValue:
    """A JSON value with every string valid Unicode."""
    encoded = json.dumps(value, ensure_ascii=False)
    return cast(JsonValue, json.loads(valid_text(encoded)))


@dataclass(frozen=True)
class PendingImage:
    """Image bytes the caller must store, then report with ``Collector.add_image``."""

    data: bytes
    mime: str


Item = LogChunk | PendingImage | DisplayOutput | ErrorRaised


class Collector:
    """Accumulates the outputs of one execution from its iopub messages."""

    def __init__(self, *, max_log_bytes: int, max_images: int, max_image_bytes: int) -> None:
        self._head_budget = max_log_bytes // 2
        self._tail_budget = max_log_bytes - self._head_budget
        self._max_images = max_images
        self._max_image_bytes = max_image_bytes
        self._rich_budget = max_log_bytes
        self._displays = 0
        self._outputs: list[Output] = []
        self._text: list[str] = []
        self._head_used = 0
        self._tail: deque[str] = deque()
        self._tail_used = 0
        self._tail_total = 0
        self._images = 0
        self.dropped_images = 0
        self._errors = 0
        self._malformed = 0
        self.error: ExecutionError | None = None

    def feed(self, msg_type: str, content: dict[str, Any]) -> list[Item]:
        """Take one iopub message of this execution; return what it produced."""
        if msg_type == "stream":
            text = content.get("text")
            if not isinstance(text, str):
                return self.malformed("a stream message without text")
            name: Literal["stdout", "stderr"] = (
                "stderr" if content.get("name") == "stderr" else "stdout"
            )
            return self._log(name, valid_text(text))
        if msg_type in ("execute_result", "display_data"):
            data = content.get("data")
            if not isinstance(data, dict):
                return self.malformed(f"a {msg_type} message without data")
            return self._display(data, msg_type == "execute_result")
        if msg_type == "error":
            return self._error(content)
        return []

    def malformed(self, what: str) -> list[Item]:
        """Say (once) that the kernel sent something malformed, which was ignored."""
        self._malformed += 1
        if self._malformed > 1:
            return []
        return self.note(f"{what} came from the kernel and was ignored")

    def _error(self, content: dict[str, Any]) -> list[Item]:
        lines, name, value = content.get("traceback"), content.get("ename"), content.get("evalue")
        if not (
            isinstance(lines, list)
            and all(isinstance(line, str) for line in lines)
            and isinstance(name, str)
            and isinstance(value, str)
        ):
            return self.malformed("an error message of the wrong shape")
        self._errors += 1
        if self._errors > MAX_ERRORS:
            if self._errors > MAX_ERRORS + 1:
                return []
            return self.note(f"errors after the first {MAX_ERRORS} not kept")
        traceback = valid_text(strip_ansi("\n".join(lines)))
        self.error = ExecutionError(
            name=valid_text(name), value=valid_text(value), traceback=traceback
        )
        return [*self._log("stderr", traceback + "\n"), ErrorRaised(error=self.error)]

    def add_image(self, file_id: str, mime: str) -> None:
        """Place a stored image where it was displayed."""
        self._place(ImageOutput(image=ImageFile(file_id=file_id, mime=mime)))

    def _place(self, output: Output) -> None:
        if self._tail and not self.truncated_bytes:
            # Nothing cut yet: the tail text is all kept, so it goes before the output,
            # and what it used comes out of the tail's budget to keep the cap.
            self._text.extend(self._tail)
            self._tail_budget -= self._tail_used
            self._tail.clear()
            self._tail_total = self._tail_used = 0
        self._flush_text()
        self._outputs.append(output)

    @property
    def truncated_bytes(self) -> int:
        return self._tail_total - self._tail_used

    def outputs(self, *, full_output_file: str | None = None) -> list[Output]:
        """The outputs, with the kept tail after a marker saying how much was cut.

        ``full_output_file`` names the stored file that holds the whole output, if any.
        """
        self._flush_text()
        outputs = list(self._outputs)
        if self._tail:
            cut = self.truncated_bytes
            where = f"; the output is stored as {full_output_file}" if full_output_file else ""
            marker = f"\n[... {cut} bytes of output cut{where} ...]\n" if cut else ""
            outputs.append(LogsOutput(logs=marker + "".join(self._tail)))
        return merge_logs(outputs)

    def _display(self, data: dict[str, Any], is_result: bool) -> list[Item]:
        self._displays += 1
        if self._displays > MAX_DISPLAYS:
            if self._displays > MAX_DISPLAYS + 1:
                return []
            return self.note(f"displays after the first {MAX_DISPLAYS} not kept")
        items: list[Item] = []
        text = data.get("text/plain")
        text = valid_text(text) if isinstance(text, str) else None
        image = next((m for m in _IMAGE_MIME_TYPES if isinstance(data.get(m), str)), None)
        if image is not None:
            items += self._image(str(data[image]), image)
        elif text is not None:
            items += self._log("result" if is_result else "stdout", text + "\n")
        rich = {m: data[m] for m in RICH_MIME_TYPES if m in data}
        if rich:
            try:
                rich = {m: _valid_json(v) for m, v in rich.items()}
                size = sum(len(v if isinstance(v, str) else json.dumps(v)) for v in rich.values())
            except (TypeError, ValueError, RecursionError):
                return [*items, *self.malformed("a display that is not JSON")]
            if size > self._rich_budget:
                kinds = ", ".join(rich)
                items += self.note(
                    f"a display ({kinds}) of {size} bytes not kept: over the"
                    f" limit of {self._rich_budget} bytes left for displays"
                )
            else:
                self._rich_budget -= size
                display = DisplayOutput(data=rich, text=text)
                self._place(display)
                items.append(display)
        return items

    def _image(self, encoded: str, mime: str) -> list[Item]:
        if self._images >= self._max_images:
            self.dropped_images += 1
            if self.dropped_images > 1:
                return []
            return self.note(
                f"images after the first {self._max_images} not kept: at most"
                f" {self._max_images} per execution"
            )
        # base64 is 4/3 of the bytes: judge the size before decoding anything.
        size = len(encoded) * 3 // 4
        if size > self._max_image_bytes:
            return self.note(
                f"an image of {_size(size)} not kept: over the limit of"
                f" {_size(self._max_image_bytes)}"
            )
        try:
            raw = base64.b64decode(encoded, validate=False)
        except (binascii.Error, ValueError):
            return []
        self._images += 1
        return [PendingImage(raw, mime)]

    def note(self, text: str) -> list[Item]:
        """Say something in the logs, at this point, on stderr."""
        return self._log("stderr", f"[{text}]\n")

    def _log(self, stream: Literal["stdout", "stderr", "result"], text: str) -> list[Item]:
        if not text:
            return []
        chunk = LogChunk(stream=stream, text=text)
        room = self._head_budget - self._head_used
        if room > 0:
            head = text.encode()[:room].decode(errors="ignore")
            self._text.append(head)
            self._head_used += len(head.encode())
            text = text[len(head) :]
        if text:
            self._keep_tail(text)
        return [chunk]

    def _keep_tail(self, text: str) -> None:
        size = len(text.encode())
        self._tail.append(text)
        self._tail_total += size
        self._tail_used += size
        if self._tail_used > self._tail_budget:
            self._tail_used -= cut_front(self._tail, self._tail_used - self._tail_budget)

    def _flush_text(self) -> None:
        if self._text:
            self._outputs.append(LogsOutput(logs="".join(self._text)))
            self._text = []


def cut_front(parts: deque[str], excess: int) -> int:
    """Drop at least ``excess`` bytes of UTF-8 from the front of ``parts`` (more only to
    keep characters whole, or all if there are fewer); return how many were dropped."""
    dropped = 0
    while parts and dropped < excess:
        first = parts[0]
        first_size = len(first.encode())
        if first_size <= excess - dropped:
            parts.popleft()
            dropped += first_size
        else:
            kept = first.encode()[excess - dropped :].decode(errors="ignore")
            parts[0] = kept
            dropped += first_size - len(kept.encode())
    return dropped


_O = TypeVar("_O", bound=LogsOutput | ImageOutput | DisplayOutput)


def merge_logs(outputs: Iterable[_O]) -> list[_O]:
    """The outputs with each run of adjacent ``logs`` outputs joined into one."""
    merged: list[_O] = []
    for output in outputs:
        last = merged[-1] if merged else None
        if isinstance(output, LogsOutput) and isinstance(last, LogsOutput):
            merged[-1] = cast(_O, LogsOutput(logs=last.logs + output.logs))
        else:
            merged.append(output)
    return merged


def _size(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB" if n >= 1024**2 else f"{n} bytes"
