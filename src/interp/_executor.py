"""One tool call, one execution: send the code, follow the kernel, enforce the deadline.

Escalation on timeout: interrupt (SIGINT), then, if the kernel is not idle within the
grace period, kill it. A killed or dead kernel is left for the session to replace.

The execution runs as a task of its own and hands events to the caller through an
``Outbox``: a slow reader neither stalls the kernel nor delays the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ._collector import Collector, Item, PendingImage
from ._exceptions import FileStoreError, SandboxError
from ._files import FileStore
from ._kernel import Kernel, MalformedMessage, Message, parent_id
from ._models import (
    Event,
    ExecutionFinished,
    ExecutionResult,
    ExecutionStarted,
    ExecutionStatus,
    ExitCause,
    ExitInfo,
    FileSaved,
    ImageSaved,
    LogChunk,
)
from ._outbox import Outbox
from ._sandbox_files import SandboxFileError, Scan, changed, display_name, open_in, scan

COALESCE_S = 0.005
"""How long a lone chunk of text waits for more before it is streamed."""
SCAN_S = 1.0
"""Time allowed for each look at /mnt/data (before and after the code); 10 000 entries,
the most a look takes in, need far less."""
_CLOCK_SLACK_NS = 20_000_000
"""File times come from a coarse clock (a scheduler tick): allow for it."""

Emit = Callable[[Event], None]


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass(frozen=True)
class Limits:
    timeout: float
    interrupt_grace: float
    max_log_bytes: int
    max_images: int
    max_image_bytes: int
    max_files: int
    max_files_bytes: int
    max_full_output_bytes: int
    memory_bytes: int


class _Ended(Exception):
    """The kernel's sandbox ended during the execution."""

    def __init__(self, info: ExitInfo) -> None:
        self.info = info


async def run(
    kernel: Kernel,
    code: str,
    *,
    session: str,
    limits: Limits,
    files: FileStore,
    notice: str | None = None,
) -> AsyncGenerator[Event, None]:
    """Execute ``code`` on ``kernel``, yielding events; the last is ``ExecutionFinished``.

    ``notice``, if given, is said first in the logs (what became of the session meanwhile).

    Closing the generator early stops the code (an interrupt) and keeps the session usable.
    """
    outbox = Outbox(window=COALESCE_S, max_pending_bytes=limits.max_log_bytes)
    task = asyncio.create_task(_execute(kernel, code, session, limits, files, outbox.put, notice))
    task.add_done_callback(
        lambda done: outbox.close(None if done.cancelled() else done.exception())
    )
    try:
        while True:
            try:
                event = await outbox.get()
            except StopAsyncIteration:
                return
            yield event
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _execute(
    kernel: Kernel,
    code: str,
    session: str,
    limits: Limits,
    files: FileStore,
    emit: Emit,
    notice: str | None,
) -> None:
    call_id = new_call_id()
    collector = Collector(
        max_log_bytes=limits.max_log_bytes,
        max_images=limits.max_images,
        max_image_bytes=limits.max_image_bytes,
    )
    full_log = _FullLog(files, threshold=limits.max_log_bytes, cap=limits.max_full_output_bytes)
    sink = _Sink(session, collector, files, full_log, emit)
    began = time.monotonic()
    began_ns = time.time_ns()
    kernel.sandbox.reset_peak_memory()
    cpu_before = kernel.sandbox.usage().cpu_s
    emit(ExecutionStarted(id=call_id, session=session, code=code))
    if notice is not None:
        await sink.hand_over(collector.note(notice))
    try:
        # What the last execution left, unless the engine wrote in /mnt/data since: files
        # that the code's threads change between calls count as this call's.
        before = kernel.last_scan
        kernel.last_scan = None
        if before is None:
            before = await asyncio.to_thread(scan, kernel.files_dir, deadline=began + SCAN_S)
        status, message = await _follow(kernel, code, limits, sink, began + limits.timeout)
    except BaseException:
        full_log.discard()
        raise
    if status is ExecutionStatus.COMPLETED and collector.error is not None:
        status = ExecutionStatus.FAILED
    usage = kernel.sandbox.usage()
    cpu_s = usage.cpu_s - cpu_before if usage.cpu_s is not None and cpu_before is not None else None

    # Files are on the host whatever became of the kernel: report them in every case.
    out = await asyncio.to_thread(
        _files_out,
        kernel.files_dir,
        before,
        files,
        session=session,
        limits=limits,
        since_ns=began_ns,
        deadline=max(began + limits.timeout + limits.interrupt_grace, time.monotonic() + 1.0),
    )
    kernel.last_scan = out.scan
    for saved in out.saved:
        emit(saved)
    for note in out.notes:
        await sink.hand_over(collector.note(note))
    full_output = await full_log.keep(session) if collector.truncated_bytes else None
    if full_output is None:
        full_log.discard()
    result = ExecutionResult(
        id=call_id,
        session=session,
        code=code,
        status=status,
        outputs=collector.outputs(full_output_file=full_output),
        error=collector.error,
        message=message,
        duration_s=time.monotonic() - began,
        cpu_s=cpu_s,
        peak_memory_bytes=usage.peak_memory_bytes,
        truncated_bytes=collector.truncated_bytes,
        full_output_file_id=full_output,
        dropped_images=collector.dropped_images,
        files=out.saved,
    )
    emit(ExecutionFinished(result=result))


async def _follow(
    kernel: Kernel, code: str, limits: Limits, sink: _Sink, deadline: float
) -> tuple[ExecutionStatus, str | None]:
    """Send the code and take its messages until the kernel is idle, dies or times out."""
    kernel.channel.discard_replies()
    msg_id = kernel.channel.execute(code)
    follower = _Follower(kernel)
    status = ExecutionStatus.COMPLETED
    message: str | None = None
    interrupted = False
    finished = False
    try:
        while True:
            try:
                msg = await follower.next(deadline)
            except TimeoutError:
                status = ExecutionStatus.TIMEOUT
                if interrupted:
                    await kernel.kill()
                    message = (
                        f"execution timed out after {limits.timeout:g} s and the kernel did not"
                        " stop on interrupt; it was killed, state is lost, files are kept"
                    )
                    break
                interrupted = True
                message = f"execution timed out after {limits.timeout:g} s and was interrupted"
                await kernel.sandbox.interrupt()
                deadline = time.monotonic() + limits.interrupt_grace
                continue
            except _Ended as ended:
                follower.close()
                status, message = _death(ended.info, limits, kernel.kill_reason)
                # What the kernel sent before it died is already here: keep it.
                for late in kernel.channel.received_iopub():
                    await sink.take(late, msg_id)
                break
            if (
                not isinstance(msg, MalformedMessage)
                and parent_id(msg) == msg_id
                and msg["msg_type"] == "status"
                and msg["content"].get("execution_state") == "idle"
            ):
                break
            await sink.take(msg, msg_id)
        if interrupted and kernel.alive and kernel.sandbox.stray_processes():
            # Processes the code started (a fork bomb, a server) outlive an interrupt and
            # would go on holding the sandbox's pids and CPU: end them with the kernel.
            await kernel.kill()
            message = (
                f"execution timed out after {limits.timeout:g} s; processes it started were"
                " still running, so the kernel was killed; state is lost, files are kept"
            )
        finished = True
    finally:
        follower.close()
        if not finished and kernel.alive:
            # The caller went away mid-execution: stop the code so the session stays usable.
            with contextlib.suppress(SandboxError):
                await asyncio.shield(kernel.sandbox.interrupt())
    return status, message


@dataclass
class _FilesOut:
    scan: Scan
    saved: list[FileSaved] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _files_out(
    root: Path,
    before: Scan,
    files: FileStore,
    *,
    session: str,
    limits: Limits,
    since_ns: int,
    deadline: float,
) -> _FilesOut:
    """Store the files the code created or changed in /mnt/data. Blocking: run in a thread.

    Within the call's caps (count, bytes, time); what a cap or a hostile file stops is
    said in the notes, and the file stays in /mnt/data.
    """
    after = scan(root, deadline=min(deadline, time.monotonic() + SCAN_S))
    out = _FilesOut(after)
    names = changed(before, after)
    if before.cut or after.cut:
        out.notes.append(f"not every file in /mnt/data was checked: {after.cut or before.cut}")
        # What the first look missed may be old: keep only what was written since.
        names = [n for n in names if after.files[n][1] >= since_ns - _CLOCK_SLACK_NS]
    budget = limits.max_files_bytes
    for name in names[: limits.max_files]:
        shown = display_name(name)
        mime = mimetypes.guess_type(shown)[0] or "application/octet-stream"
        try:
            fd = open_in(root, name)
            try:
                stored = files.store_fd(
                    fd, name=shown, mime=mime, session=session, max_bytes=budget, deadline=deadline
                )
            finally:
                os.close(fd)
        except (SandboxFileError, FileStoreError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            out.notes.append(f"/mnt/data/{shown} not stored: {reason}")
            continue
        budget -= stored.bytes
        out.saved.append(FileSaved(file=stored, path=f"sandbox:/mnt/data/{shown}"))
    if len(names) > limits.max_files:
        out.notes.append(
            f"{len(names) - limits.max_files} more files changed in /mnt/data were not"
            f" stored: at most {limits.max_files} per execution; they stay in /mnt/data"
        )
    return out


class _FullLog:
    """All the text of one execution, written to disk once it outgrows the log cap.

    Below the threshold the text is only held in memory; past it, it streams to a file
    that becomes a stored file if the logs in the result were cut. The file stops at
    ``cap`` bytes and then says how much more there was.
    """

    def __init__(self, files: FileStore, *, threshold: int, cap: int) -> None:
        self._files = files
        self._threshold = threshold
        self._cap = cap
        self._held: list[str] = []
        self._held_bytes = 0
        self._written = 0
        self._dropped = 0
        self._spill: BinaryIO | None = None
        self._path: Path | None = None

    def add(self, text: str) -> None:
        data = text.encode()
        if self._spill is None:
            self._held.append(text)
            self._held_bytes += len(data)
            if self._held_bytes <= self._threshold:
                return
            self._path = self._files.scratch_path()
            self._spill = self._path.open("xb")
            data = "".join(self._held).encode()
            self._held = []
        room = self._cap - self._written
        if len(data) > room:
            self._dropped += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        if data:
            self._spill.write(data)
            self._written += len(data)

    async def keep(self, session: str) -> str | None:
        """Store the file; ``None`` if there is none or the store refused it."""
        if self._spill is None or self._path is None:
            return None
        if self._dropped:
            self._spill.write(
                f"\n[... {self._dropped} more bytes of output not stored: the whole output"
                f" is kept up to {self._cap} bytes ...]\n".encode()
            )
        self._spill.close()
        self._spill = None
        try:
            info = await self._files.adopt(
                self._path, name="output.txt", mime="text/plain", session=session
            )
        except FileStoreError:
            return None
        self._path = None
        return info.id

    def discard(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None


class _Follower:
    """Waits for the kernel's next iopub message, its death, or a deadline.

    A receive in flight survives a deadline, so no message is lost to a timeout.
    """

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._died = asyncio.ensure_future(kernel.sandbox.wait())
        self._receive: asyncio.Future[list[bytes]] | None = None

    async def next(self, deadline: float) -> Message | MalformedMessage:
        """The next message (or what was malformed in it); ``TimeoutError`` at the
        deadline (``time.monotonic``), ``_Ended`` on death."""
        if self._receive is None:
            self._receive = self._kernel.channel.iopub_frames()
        remaining = deadline - time.monotonic()
        if remaining > 0:
            waiting: set[asyncio.Future[Any]] = {self._receive, self._died}
            await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if self._receive.done():
            receive, self._receive = self._receive, None
            try:
                return self._kernel.channel.parse(receive.result())
            except MalformedMessage as exc:
                return exc
        if self._died.done():
            raise _Ended(self._died.result())
        raise TimeoutError

    def close(self) -> None:
        self._died.cancel()
        if self._receive is not None:
            self._receive.cancel()


@dataclass(frozen=True)
class _Sink:
    """Where the outputs of one execution go: the collector, the file store, the reader."""

    session: str
    collector: Collector
    files: FileStore
    full_log: _FullLog
    emit: Emit

    async def take(self, msg: Message | MalformedMessage, msg_id: str) -> None:
        """Take a message if it belongs to the execution ``msg_id``."""
        if isinstance(msg, MalformedMessage):
            await self.hand_over(self.collector.malformed(f"a message ({msg})"))
        elif parent_id(msg) == msg_id:
            await self.hand_over(self.collector.feed(msg["msg_type"], msg["content"]))

    async def hand_over(self, items: list[Item]) -> None:
        """Store what needs storing, and emit everything as events."""
        for item in items:
            if isinstance(item, PendingImage):
                name = "image.jpg" if item.mime == "image/jpeg" else "image.png"
                try:
                    info = await self.files.save(
                        item.data, name=name, mime=item.mime, session=self.session
                    )
                except FileStoreError as exc:
                    await self.hand_over(self.collector.note(f"an image not stored: {exc}"))
                    continue
                self.collector.add_image(info.id, item.mime)
                self.emit(ImageSaved(file=info))
            else:
                if isinstance(item, LogChunk):
                    self.full_log.add(item.text)
                self.emit(item)


def _death(info: ExitInfo, limits: Limits, reason: str | None) -> tuple[ExecutionStatus, str]:
    if reason is not None:
        return ExecutionStatus.KERNEL_DIED, f"the kernel was stopped: {reason}"
    if info.cause is ExitCause.OOM_KILLED:
        limit_mib = limits.memory_bytes // 1024**2
        return (
            ExecutionStatus.OOM,
            f"the kernel ran out of memory (limit {limit_mib} MiB) and was killed;"
            " state is lost, files are kept",
        )
    return (
        ExecutionStatus.KERNEL_DIED,
        f"the kernel died ({info.describe()}); state is lost, files are kept",
    )
