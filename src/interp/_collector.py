"""Turn a kernel's iopub messages into outputs in OpenAI's order. Pure: no I/O.

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

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


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
        self._outputs: list[Output] = []
        self._text: list[str] = []
        self._head_used = 0
        self._tail: deque[str] = deque()
        self._tail_used = 0
        self._tail_total = 0
        self._images = 0
        self.dropped_images = 0
        self.error: ExecutionError | None = None

    def feed(self, msg_type: str, content: dict[str, Any]) -> list[Item]:
        """Take one iopub message of this execution; return what it produced."""
        if msg_type == "stream":
            name: Literal["stdout", "stderr"] = (
                "stderr" if content.get("name") == "stderr" else "stdout"
            )
            return self._log(name, str(content.get("text", "")))
        if msg_type in ("execute_result", "display_data"):
            return self._display(content.get("data") or {}, msg_type == "execute_result")
        if msg_type == "error":
            traceback = strip_ansi("\n".join(content.get("traceback") or []))
            self.error = ExecutionError(
                name=str(content.get("ename", "")),
                value=str(content.get("evalue", "")),
                traceback=traceback,
            )
            return [*self._log("stderr", traceback + "\n"), ErrorRaised(error=self.error)]
        return []

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
            where = f"; the full output is {full_output_file}" if full_output_file else ""
            marker = f"\n[... {cut} bytes of output cut{where} ...]\n" if cut else ""
            outputs.append(LogsOutput(logs=marker + "".join(self._tail)))
        return merge_logs(outputs)

    def _display(self, data: dict[str, Any], is_result: bool) -> list[Item]:
        items: list[Item] = []
        text = data.get("text/plain")
        text = text if isinstance(text, str) else None
        image = next((m for m in _IMAGE_MIME_TYPES if isinstance(data.get(m), str)), None)
        if image is not None:
            items += self._image(str(data[image]), image)
        elif text is not None:
            items += self._log("result" if is_result else "stdout", text + "\n")
        rich = {m: data[m] for m in RICH_MIME_TYPES if m in data}
        if rich:
            size = sum(len(v if isinstance(v, str) else json.dumps(v)) for v in rich.values())
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
