"""The Docker backend: each kernel in a hardened container.

Every blocking Docker call runs in a worker thread (``_call``, through the error
boundary of ``_docker_client``); ``_docker_events`` follows the engine's containers, so a
kernel's death is known the moment Docker sees it; ``_reaper`` removes what dead engines
left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors

from .._config import Config
from .._exceptions import SandboxError
from .._models import ExitInfo
from .._preload import kernel_args
from .._sandbox_files import opened_dir
from . import _cgroup as cgroup
from ._base import KERNEL_DIR, Usage, remove_kernel_dir, write_connection_file
from ._docker_client import (
    LABEL_KERNEL_DIR,
    LABEL_SESSION,
    UNREACHABLE,
    choose_runtime,
    connect,
    translate,
)
from ._docker_events import EventFollower
from ._packages import configured, image_for
from ._reaper import owner_labels, reap_orphans, reap_replicas

log = logging.getLogger("interp.docker")

# The image's non-root user. When the engine runs as root it hands the kernel's
# directories to this uid; otherwise the kernel runs as the engine's own (non-root) uid.
SANDBOX_UID = 1000
KERNEL_COMMAND = ("python", "/opt/interp/launch.py", f"{KERNEL_DIR}/connection.json")
"""The image's CMD; the engine adds the kernel's own options to it."""

_T = TypeVar("_T")


class DockerSandbox:
    """A kernel in a container. Created by ``DockerBackend.start``."""

    def __init__(
        self,
        backend: DockerBackend,
        container_id: str,
        host_dir: Path,
        connection_info: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._backend = backend
        self._id = container_id
        self._host_dir = host_dir
        self._connection_info = connection_info
        # Created here from a worker thread, resolved on the loop by the events thread.
        self._exited: asyncio.Future[ExitInfo] = loop.create_future()
        self._cgroup = cgroup.CgroupFiles()
        self.phases: dict[str, float] = {}

    @property
    def id(self) -> str:
        return self._id

    @property
    def connection_info(self) -> dict[str, Any]:
        return self._connection_info

    @property
    def exit_info(self) -> ExitInfo | None:
        return self._exited.result() if self._exited.done() else None

    def _set_exit(self, info: ExitInfo) -> None:
        if not self._exited.done():
            self._exited.set_result(info)

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._exited)

    def seal(self) -> None:
        # The socket directory is on the host's disk, outside every cap: once the kernel
        # has bound its sockets it needs to write nothing there, so the directory and the
        # connection file become the engine's (as root; otherwise the kernel runs as the
        # engine's own user and could take them back).
        if os.geteuid() != 0:
            return
        try:
            with opened_dir(self._host_dir) as fd:
                os.chown("connection.json", 0, 0, dir_fd=fd, follow_symlinks=False)
                os.fchown(fd, 0, 0)
                os.fchmod(fd, 0o755)
        except OSError as exc:
            raise SandboxError(f"cannot seal the kernel's socket directory: {exc}") from None

    async def interrupt(self) -> None:
        # The init process (PID 1) forwards the signal to the kernel.
        await self._backend.signal(self._id, "SIGINT")

    async def set_memory(self, limit: int) -> None:
        api = self._backend.client.api
        await self._backend._call(
            "setting a sandbox's memory limit",
            lambda: api.update_container(self._id, mem_limit=limit, memswap_limit=limit),
        )

    async def kill(self) -> None:
        if not self._exited.done():
            await self._backend.signal(self._id, "SIGKILL")

    async def remove(self) -> None:
        await self._backend.remove(self)
        remove_kernel_dir(self._host_dir)

    def find_cgroup(self) -> None:
        """Locate the container's cgroup files on this host, if the engine is local."""
        self._cgroup = cgroup.find(self._id)
        if not self._cgroup.found and not self._backend.warned_no_cgroup:
            self._backend.warned_no_cgroup = True
            log.warning(
                "cannot find the cgroup of container %s under %s (a remote Docker engine,"
                " or a layout interp does not know): CPU and memory figures are missing, and"
                " processes that code leaves running after a timeout are not killed",
                self._id[:12],
                cgroup.ROOT,
            )

    def usage(self) -> Usage:
        files = self._cgroup
        cpu_s: float | None = None
        peak: int | None = None
        now: int | None = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            if files.cpu is not None and files.v1:
                cpu_s = int(files.cpu.read_text()) / 1e9
            elif files.cpu is not None:
                stat = dict(line.split() for line in files.cpu.read_text().splitlines())
                cpu_s = int(stat["usage_usec"]) / 1e6
            if files.peak is not None:
                peak = int(files.peak.read_text())
            if files.now is not None:
                now = int(files.now.read_text())
        return Usage(cpu_s=cpu_s, peak_memory_bytes=peak, memory_bytes=now)

    def stray_processes(self) -> int:
        # Under gVisor the code's processes live inside its sentry, not in the host's
        # cgroup, which holds gVisor's own: there is nothing to count from here.
        if self._cgroup.procs is not None and self._backend.runtime != "runsc":
            with contextlib.suppress(OSError):
                # The init process and the kernel are expected; anything else is not.
                return max(0, len(self._cgroup.procs.read_text().split()) - 2)
        return 0

    def reset_peak_memory(self) -> None:
        # cgroup v1 lets the owner reset the high-water mark; v2's memory.peak keeps the
        # lifetime peak, so there the figure is "since the kernel started".
        if self._cgroup.v1 and self._cgroup.peak is not None:
            with contextlib.suppress(OSError):
                self._cgroup.peak.write_text("0")


class DockerBackend:
    """Starts kernels in containers with the flags of the sandbox contract (README, The sandbox)."""

    isolated = True

    def __init__(self, config: Config, *, engine_id: str, replica: str | None = None) -> None:
        self._config = config
        self._engine_id = engine_id
        self._replica = replica
        self.image = config.image
        """The image kernels run on: ``config.image``, or the one derived with packages."""
        self._client: docker.DockerClient | None = None
        self._sandboxes: dict[str, DockerSandbox] = {}
        self._events: EventFollower | None = None
        self.warned_no_cgroup = False
        self.runtime: str | None = None
        """The OCI runtime sandboxes start with, once open (``None``: Docker's default)."""

    async def _call(self, action: str, fn: Callable[[], _T]) -> _T:
        def run() -> _T:
            with translate(action):
                return fn()

        return await asyncio.to_thread(run)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            raise SandboxError("the Docker backend is not open")
        return self._client

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._client = client = await asyncio.to_thread(connect)
        config = self._config
        wanted = await asyncio.to_thread(configured, config)
        self.image = await asyncio.to_thread(image_for, client, config.image, wanted)
        self.runtime = await asyncio.to_thread(choose_runtime, client, self._config.runtime)
        reaped = await self._call("reaping orphaned sandboxes", lambda: reap_orphans(client))
        if reaped:
            log.warning("removed %d sandboxes left by engines that no longer run", reaped)
        self._events = await self._call(
            "following container events",
            lambda: EventFollower(
                client,
                engine_id=self._engine_id,
                loop=loop,
                known=lambda: list(self._sandboxes.copy()),
                report=self._report_exit,
            ),
        )

    def _report_exit(self, container_id: str, info: ExitInfo) -> None:
        sandbox = self._sandboxes.get(container_id)
        if sandbox is not None:
            sandbox._set_exit(info)

    def adopt(self, path: Path | int) -> None:
        # As root, the kernel runs as the image's user; otherwise as the engine's own
        # (non-root) user, which already owns what the engine writes.
        if os.geteuid() == 0:
            os.chown(path, SANDBOX_UID, SANDBOX_UID)

    async def start(self, *, files_dir: Path, session: str) -> DockerSandbox:
        config = self._config
        host_dir = Path(tempfile.mkdtemp(prefix="interp-"))
        connection = write_connection_file(host_dir, KERNEL_DIR)
        for path in (host_dir, host_dir / "connection.json", files_dir):
            self.adopt(path)
        user = (
            f"{SANDBOX_UID}:{SANDBOX_UID}" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"
        )
        api = self.client.api
        loop = asyncio.get_running_loop()
        host_config = api.create_host_config(
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"size={config.tmp_size},mode=1777,nosuid,nodev"},
            mem_limit=config.memory,
            memswap_limit=config.memory,
            nano_cpus=int(config.cpus * 1e9),
            pids_limit=config.pids,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,
            runtime=self.runtime,
            ipc_mode="private",
            binds={
                str(host_dir): {"bind": KERNEL_DIR, "mode": "rw"},
                str(files_dir): {"bind": "/mnt/data", "mode": "rw"},
            },
        )
        labels = {
            **owner_labels(self._engine_id, self._replica),
            LABEL_SESSION: session,
            LABEL_KERNEL_DIR: str(host_dir),
        }
        environment = {"LANG": "C.UTF-8", "TZ": "UTC", **config.env}

        def create_and_start() -> str:
            began = time.perf_counter()
            created = api.create_container(
                self.image,
                command=[*KERNEL_COMMAND, *kernel_args(config.preload)],
                user=user,
                environment=environment,
                labels=labels,
                working_dir="/mnt/data",
                host_config=host_config,
            )
            container_id = str(created["Id"])
            # Known before it starts, so that even an instant death is caught.
            self._sandboxes[container_id] = DockerSandbox(
                self, container_id, host_dir, connection, loop
            )
            created_at = time.perf_counter()
            self._sandboxes[container_id].phases["create"] = created_at - began
            try:
                api.start(container_id)
                self._sandboxes[container_id].phases["start"] = time.perf_counter() - created_at
            except Exception:
                with contextlib.suppress(*UNREACHABLE):
                    api.remove_container(container_id, force=True)
                    # Forgotten only once gone, so that close() retries otherwise.
                    self._sandboxes.pop(container_id, None)
                raise
            return container_id

        starting = asyncio.ensure_future(self._call("starting a sandbox", create_and_start))
        try:
            container_id = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The worker thread goes on creating the container: wait for it, remove it.
            with contextlib.suppress(Exception):
                await self._sandboxes[await starting].remove()
            remove_kernel_dir(host_dir)
            raise
        except BaseException:
            remove_kernel_dir(host_dir)
            raise
        sandbox = self._sandboxes[container_id]
        sandbox.find_cgroup()
        return sandbox

    async def signal(self, container_id: str, signal: str) -> None:
        def send() -> None:
            try:
                self.client.api.kill(container_id, signal=signal)
            except docker.errors.APIError as exc:
                # Not running any more (409) or already gone (404): nothing to signal.
                if exc.status_code not in (404, 409):
                    raise

        await self._call(f"sending {signal} to a sandbox", send)

    async def remove(self, sandbox: DockerSandbox) -> None:
        def remove() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(sandbox.id, force=True)

        await self._call("removing a sandbox", remove)
        # Forgotten only once gone: if Docker is away, a later remove (or close) retries.
        self._sandboxes.pop(sandbox.id, None)

    async def reap_replicas(self, gone: set[str]) -> int:
        client = self.client
        return await self._call("reaping sandboxes", lambda: reap_replicas(client, gone))

    async def close(self) -> None:
        for sandbox in list(self._sandboxes.values()):
            with contextlib.suppress(SandboxError):
                await sandbox.remove()
        if self._events is not None:
            await asyncio.to_thread(self._events.close)
        if self._client is not None:
            self._client.close()
