"""The process backend: kernels as local subprocesses. NO isolation: trusted code only.

For machines without Docker and for development. The kernel runs with the engine's user
rights and can read anything that user can; only the environment is still an allow list.
The engine never picks this backend unless it is asked for by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from .._config import Config
from .._exceptions import SandboxError
from .._models import ExitCause, ExitInfo
from .._preload import kernel_args
from ._base import Usage, remove_kernel_dir, write_connection_file

log = logging.getLogger("interp.process")

NOT_ISOLATED_WARNING = (
    "interp is using the process backend: code runs on this machine WITHOUT isolation."
    " Use it only for code you trust."
)


class ProcessSandbox:
    def __init__(
        self,
        process: asyncio.subprocess.Process,
        host_dir: Path,
        info: dict[str, Any],
        on_remove: Callable[[ProcessSandbox], None],
    ) -> None:
        self._process = process
        self._on_remove = on_remove
        self._host_dir = host_dir
        self._connection_info = info
        self._exit: ExitInfo | None = None
        self._waiter = asyncio.ensure_future(self._reap())
        self._ps = psutil.Process(process.pid)
        self.phases: dict[str, float] = {}

    async def _reap(self) -> ExitInfo:
        code = await self._process.wait()
        if code < 0:
            self._exit = ExitInfo(cause=ExitCause.SIGNALED, code=128 - code, signal=-code)
        else:
            self._exit = ExitInfo(cause=ExitCause.EXITED, code=code)
        return self._exit

    @property
    def id(self) -> str:
        return f"pid-{self._process.pid}"

    @property
    def connection_info(self) -> dict[str, Any]:
        return self._connection_info

    @property
    def exit_info(self) -> ExitInfo | None:
        return self._exit

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._waiter)

    def seal(self) -> None:
        pass  # nothing is isolated: there is nothing to take back

    async def interrupt(self) -> None:
        if self._exit is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGINT)

    async def kill(self) -> None:
        if self._exit is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def remove(self) -> None:
        await self.kill()
        await self.wait()
        remove_kernel_dir(self._host_dir)
        self._on_remove(self)

    def usage(self) -> Usage:
        try:
            times = self._ps.cpu_times()
            rss = self._ps.memory_info().rss
        except psutil.Error:
            return Usage(cpu_s=None, peak_memory_bytes=None)
        return Usage(cpu_s=times.user + times.system, peak_memory_bytes=None, memory_bytes=rss)

    def stray_processes(self) -> int:
        try:
            return len(self._ps.children(recursive=True))
        except psutil.Error:
            return 0

    def reset_peak_memory(self) -> None:
        """Processes have no resettable peak; nothing to do."""

    async def set_memory(self, limit: int) -> None:
        """The process backend enforces no limit (it is not a sandbox); nothing to do."""


class ProcessBackend:
    isolated = False

    def __init__(self, config: Config) -> None:
        self._config = config
        self._sandboxes: set[ProcessSandbox] = set()

    async def open(self) -> None:
        log.warning(NOT_ISOLATED_WARNING)

    def adopt(self, path: Path | int) -> None:
        """The kernel runs as the engine's user: nothing to hand over."""

    async def start(self, *, files_dir: Path, session: str) -> ProcessSandbox:
        host_dir = Path(tempfile.mkdtemp(prefix="interp-"))
        info = write_connection_file(host_dir, str(host_dir))
        env = {
            "PATH": str(Path(sys.executable).parent) + ":/usr/local/bin:/usr/bin:/bin",
            "HOME": str(host_dir),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "MPLCONFIGDIR": str(host_dir / "matplotlib"),
            **self._config.env,
        }
        creating = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ipykernel_launcher",
                "-f",
                str(host_dir / "connection.json"),
                "--HistoryManager.enabled=False",
                *kernel_args(self._config.preload),
                # The kernel exits when the engine's process does, even on SIGKILL.
                f"--IPKernelApp.parent_handle={os.getpid()}",
                cwd=files_dir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        try:
            process = await asyncio.shield(creating)
        except asyncio.CancelledError:
            # The process may exist already: end it rather than leave it running.
            with contextlib.suppress(Exception):
                started = await creating
                started.kill()
                await started.wait()
            remove_kernel_dir(host_dir)
            raise
        except OSError as exc:
            remove_kernel_dir(host_dir)
            raise SandboxError(f"cannot start a kernel process: {exc}") from exc
        sandbox = ProcessSandbox(process, host_dir, info, self._sandboxes.discard)
        self._sandboxes.add(sandbox)
        return sandbox

    async def reap_replicas(self, gone: set[str]) -> int:
        """Process kernels die with their engine: nothing of a gone replica is left."""
        return 0

    async def close(self) -> None:
        for sandbox in list(self._sandboxes):
            await sandbox.remove()
        self._sandboxes.clear()
