"""One tool call, one execution: send the code, follow the kernel, enforce the deadline.

Escalation on timeout: interrupt (SIGINT), then, if the kernel is not idle within the
grace period, kill it. A killed or dead kernel is left for the session to replace.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from ._collector import Collector, PendingImage
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
    ImageSaved,
)
from ._pool import Kernel


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass(frozen=True)
class Limits:
    timeout: float
    interrupt_grace: float
    max_log_bytes: int
    max_images: int
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
    """Execute ``code`` on ``kernel``, yielding events; the last is ``ExecutionFinished``."""
    call_id = new_call_id()
    collector = Collector(max_log_bytes=limits.max_log_bytes, max_images=limits.max_images)
    began = time.perf_counter()
    kernel.sandbox.reset_peak_memory()
    cpu_before = kernel.sandbox.usage().cpu_s
    yield ExecutionStarted(id=call_id, session=session)

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
                if interrupted:
                    await kernel.kill()
                    message = (
                        f"execution timed out after {limits.timeout:g} s and the kernel did not"
                        " stop on interrupt; it was killed, state is lost, files are kept"
                    )
                    break
                interrupted = True
                status = ExecutionStatus.TIMEOUT
                message = f"execution timed out after {limits.timeout:g} s and was interrupted"
                await kernel.sandbox.interrupt()
                deadline = time.perf_counter() + limits.interrupt_grace
                continue
            except _Ended as ended:
                follower.close()
                status, message = _death(ended.info, limits)
                # What the kernel sent before it died is already here: keep it.
                for late in kernel.channel.received_iopub():
                    async for event in _take(late, msg_id, collector, files, session):
                        yield event
                break
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                break
            async for event in _take(msg, msg_id, collector, files, session):
                yield event
        finished = True
    finally:
        follower.close()
        if not finished and kernel.alive:
            # The caller went away mid-execution: stop the code so the session stays usable.
            with contextlib.suppress(SandboxError):
                await asyncio.shield(kernel.sandbox.interrupt())

    if status is ExecutionStatus.COMPLETED and collector.error is not None:
        status = ExecutionStatus.FAILED
    usage = kernel.sandbox.usage()
    cpu_s = usage.cpu_s - cpu_before if usage.cpu_s is not None and cpu_before is not None else None
    result = ExecutionResult(
        id=call_id,
        session=session,
        code=code,
        status=status,
        outputs=collector.outputs(),
        error=collector.error,
        message=message,
        duration_s=time.perf_counter() - began,
        cpu_s=cpu_s,
        peak_memory_bytes=usage.peak_memory_bytes,
        truncated_bytes=collector.truncated_bytes,
        dropped_images=collector.dropped_images,
    )
    yield ExecutionFinished(result=result)


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


async def _take(
    msg: Message, msg_id: str, collector: Collector, files: FileStore, session: str
) -> AsyncGenerator[Event, None]:
    if msg["parent_header"].get("msg_id") != msg_id:
        return
    for item in collector.feed(msg["msg_type"], msg["content"]):
        if isinstance(item, PendingImage):
            info = await files.save(item.data, name="image.png", mime=item.mime, session=session)
            collector.add_image(info.id)
            yield ImageSaved(file=info)
        else:
            yield item


def _death(info: ExitInfo, limits: Limits) -> tuple[ExecutionStatus, str]:
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
