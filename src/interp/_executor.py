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
import stat
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ._collector import Collector, Item, PendingImage
from ._exceptions import SandboxError
from ._files import FileStore
from ._kernel import Message
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
from ._pool import Kernel

COALESCE_S = 0.005
"""How long a lone chunk of text waits for more before it is streamed."""

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
) -> AsyncGenerator[Event, None]:
    """Execute ``code`` on ``kernel``, yielding events; the last is ``ExecutionFinished``.

    Closing the generator early stops the code (an interrupt) and keeps the session usable.
    """
    outbox = Outbox(window=COALESCE_S, max_pending_bytes=limits.max_log_bytes)
    task = asyncio.create_task(_execute(kernel, code, session, limits, files, outbox.put))
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
    kernel: Kernel, code: str, session: str, limits: Limits, files: FileStore, emit: Emit
) -> None:
    call_id = new_call_id()
    collector = Collector(
        max_log_bytes=limits.max_log_bytes,
        max_images=limits.max_images,
        max_image_bytes=limits.max_image_bytes,
    )
    full_log = _FullLog(files, threshold=limits.max_log_bytes)
    sink = _Sink(session, collector, files, full_log, emit)
    began = time.perf_counter()
    kernel.sandbox.reset_peak_memory()
    cpu_before = kernel.sandbox.usage().cpu_s
    emit(ExecutionStarted(id=call_id, session=session, code=code))

    # Inline, not in a worker thread: a stat of a few entries costs microseconds, while a
    # thread hop on each side of every execution costs latency under concurrency.
    files_before = snapshot(kernel.files_dir)
    kernel.channel.discard_replies()
    msg_id = kernel.channel.execute(code)
    follower = _Follower(kernel)
    status = ExecutionStatus.COMPLETED
    message: str | None = None
    deadline = began + limits.timeout
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
                deadline = time.perf_counter() + limits.interrupt_grace
                continue
            except _Ended as ended:
                follower.close()
                status, message = _death(ended.info, limits, kernel.kill_reason)
                # What the kernel sent before it died is already here: keep it.
                for late in kernel.channel.received_iopub():
                    if late["parent_header"].get("msg_id") == msg_id:
                        await sink.take(late)
                break
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                break
            await sink.take(msg)
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
        if not finished:
            full_log.discard()

    if status is ExecutionStatus.COMPLETED and collector.error is not None:
        status = ExecutionStatus.FAILED
    usage = kernel.sandbox.usage()
    cpu_s = usage.cpu_s - cpu_before if usage.cpu_s is not None and cpu_before is not None else None
    produced: list[FileSaved] = []
    # Files are on the host whatever became of the kernel: report them in every case.
    changed = changed_files(files_before, snapshot(kernel.files_dir))
    for name in changed[: limits.max_files]:
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        stored = await files.copy_in(kernel.files_dir / name, name=name, mime=mime, session=session)
        if stored is not None:
            saved = FileSaved(file=stored, path=f"sandbox:/mnt/data/{name}")
            produced.append(saved)
            emit(saved)
    if len(changed) > limits.max_files:
        note = collector.note(
            f"{len(changed) - limits.max_files} more files changed in /mnt/data were not"
            f" stored: at most {limits.max_files} per execution; they stay in /mnt/data"
        )
        await sink.hand_over(note)
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
        duration_s=time.perf_counter() - began,
        cpu_s=cpu_s,
        peak_memory_bytes=usage.peak_memory_bytes,
        truncated_bytes=collector.truncated_bytes,
        full_output_file_id=full_output,
        dropped_images=collector.dropped_images,
        files=produced,
    )
    emit(ExecutionFinished(result=result))


Snapshot = dict[str, tuple[int, int]]


def snapshot(directory: Path) -> Snapshot:
    """Size and mtime of every regular file under ``directory``: cheap, stat only."""
    found: Snapshot = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode):
                    found[os.path.relpath(path, directory)] = (info.st_size, info.st_mtime_ns)
    return found


def changed_files(before: Snapshot, after: Snapshot) -> list[str]:
    """Files created or changed between two snapshots, in name order."""
    return sorted(name for name, signature in after.items() if before.get(name) != signature)


class _FullLog:
    """All the text of one execution, written to disk once it outgrows the log cap.

    Below the threshold the text is only held in memory; past it, it streams to a file
    that becomes a stored file if the logs in the result were cut.
    """

    def __init__(self, files: FileStore, *, threshold: int) -> None:
        self._files = files
        self._threshold = threshold
        self._held: list[str] = []
        self._held_bytes = 0
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
            self._spill = self._path.open("wb")
            data = "".join(self._held).encode()
            self._held = []
        self._spill.write(data)

    async def keep(self, session: str) -> str | None:
        if self._spill is None or self._path is None:
            return None
        self._spill.close()
        info = await self._files.adopt(
            self._path, name="output.txt", mime="text/plain", session=session
        )
        self._spill = self._path = None
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

    async def next(self, deadline: float) -> Message:
        """The next message; ``TimeoutError`` at the deadline, ``_Ended`` on death."""
        if self._receive is None:
            self._receive = self._kernel.channel.iopub_frames()
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            waiting: set[asyncio.Future[Any]] = {self._receive, self._died}
            await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if self._receive.done():
            receive, self._receive = self._receive, None
            return self._kernel.channel.parse(receive.result())
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

    async def take(self, msg: Message) -> None:
        await self.hand_over(self.collector.feed(msg["msg_type"], msg["content"]))

    async def hand_over(self, items: list[Item]) -> None:
        """Store what needs storing, and emit everything as events."""
        for item in items:
            if isinstance(item, PendingImage):
                name = "image.jpg" if item.mime == "image/jpeg" else "image.png"
                info = await self.files.save(
                    item.data, name=name, mime=item.mime, session=self.session
                )
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
