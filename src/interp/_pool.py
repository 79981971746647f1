"""Kernels: a sandbox with a ready channel to the kernel inside it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq.asyncio

from ._exceptions import KernelStartError, SandboxError
from ._kernel import KernelChannel
from .sandbox import Backend, Sandbox


@dataclass
class Kernel:
    """A started, ready kernel. Belongs to one session for its whole life."""

    sandbox: Sandbox
    channel: KernelChannel
    started_s: float
    """Seconds from asking for the sandbox to the kernel answering."""
    _doomed: bool = field(default=False, repr=False)

    @property
    def alive(self) -> bool:
        return self.sandbox.exit_info is None and not self._doomed

    async def kill(self) -> None:
        """Kill the kernel; from now on it counts as dead, even before Docker says so."""
        self._doomed = True
        await self.sandbox.kill()

    async def remove(self) -> None:
        if self.channel.closed:
            return
        self._doomed = True
        self.channel.close()
        await self.sandbox.remove()


async def start_kernel(
    backend: Backend,
    context: zmq.asyncio.Context,
    *,
    files_dir: Path,
    session: str,
    timeout: float,
) -> Kernel:
    """Start a sandboxed kernel and wait until it answers; clean up if it never does."""
    began = time.perf_counter()
    sandbox = await backend.start(files_dir=files_dir, session=session)
    channel = KernelChannel(sandbox.connection_info, context)
    ready = asyncio.ensure_future(channel.ready(timeout))
    died = asyncio.ensure_future(sandbox.wait())
    try:
        await asyncio.wait({ready, died}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            exit_info = died.result()
            raise KernelStartError(f"the kernel ended while starting: {exit_info.describe()}")
        ready.result()
    except BaseException:
        ready.cancel()
        channel.close()
        with contextlib.suppress(SandboxError):
            await sandbox.remove()
        raise
    finally:
        died.cancel()
    return Kernel(sandbox=sandbox, channel=channel, started_s=time.perf_counter() - began)
