"""The Docker backend: each kernel in a hardened container. The only module that imports docker.

Every blocking Docker call runs in a worker thread; one thread follows the engine's
container events, so a kernel's death is known the moment Docker sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests
from docker.types import CancellableStream

from .._config import IMAGE_VERSION, Config
from .._exceptions import DockerUnavailableError, ImageError, SandboxError
from .._models import ExitCause, ExitInfo
from .._owner import is_alive, this_process
from . import _cgroup as cgroup
from ._base import KERNEL_DIR, Usage, remove_kernel_dir, write_connection_file
from ._image import BuildProgress, debootstrap_rootfs, prepare_context

log = logging.getLogger("interp.docker")

IMAGE_VERSION_LABEL = "io.interp.image-version"
LABEL_ENGINE = "io.interp.engine"
LABEL_OWNER_PID = "io.interp.owner-pid"
LABEL_OWNER_STARTED = "io.interp.owner-started"
LABEL_SESSION = "io.interp.session"
LABEL_KERNEL_DIR = "io.interp.kernel-dir"

# The image's non-root user. When the engine runs as root it hands the kernel's
# directories to this uid; otherwise the kernel runs as the engine's own (non-root) uid.
SANDBOX_UID = 1000

_T = TypeVar("_T")

# What docker-py raises when the daemon does not answer: its own errors, or the
# transport's underneath.
_UNREACHABLE = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)

_DOCKER_HINT = (
    "start the Docker engine (as root on Debian: `apt-get install -y docker.io && dockerd &`),"
    " or set DOCKER_HOST"
)


def _translate(action: str) -> contextlib.AbstractContextManager[None]:
    """Turn docker and transport errors into interp's exceptions."""

    @contextlib.contextmanager
    def boundary() -> Iterator[None]:
        try:
            yield
        except docker.errors.ImageNotFound as exc:
            raise ImageError(
                f"{action}: {exc.explanation}", hint="run `interp image build`"
            ) from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"{action}: {exc.explanation or exc}") from exc
        except _UNREACHABLE as exc:
            raise DockerUnavailableError(
                f"{action}: cannot reach the Docker engine ({_reason(exc)})", hint=_DOCKER_HINT
            ) from exc

    return boundary()


def _reason(exc: BaseException) -> str:
    """The innermost cause, which names what actually failed (a socket path, a refusal)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def connect() -> docker.DockerClient:
    """A client for the Docker engine named by the environment, checked to answer."""
    with _translate("connecting to Docker"):
        client = docker.from_env(timeout=120)
        client.ping()
        return client


def check_image(client: docker.DockerClient, image: str) -> str:
    """Return the image's id; raise ``ImageError`` if missing or of another version."""
    with _translate(f"checking image {image}"):
        try:
            found = client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise ImageError(
                f"the sandbox image {image} is not built", hint="run `interp image build`"
            ) from exc
    version = (found.labels or {}).get(IMAGE_VERSION_LABEL)
    if version != IMAGE_VERSION:
        raise ImageError(
            f"image {image} has version label {version!r}, this interp needs {IMAGE_VERSION!r}",
            hint="run `interp image build` to rebuild it",
        )
    return str(found.id)


def image_status(image: str) -> str | None:
    """The short id of ``image`` if it is present and of this interp's version."""
    client = connect()
    try:
        return check_image(client, image)[7:19]
    except ImageError:
        return None
    finally:
        client.close()


def owner_labels(engine_id: str) -> dict[str, str]:
    """Labels that let a later engine tell whether this one is still alive."""
    pid, started = this_process()
    return {LABEL_ENGINE: engine_id, LABEL_OWNER_PID: pid, LABEL_OWNER_STARTED: started}


def reap_orphans(client: docker.DockerClient) -> int:
    """Remove sandboxes whose engine process is gone. Unlabelled containers are never touched."""
    reaped = 0
    for summary in client.api.containers(all=True, filters={"label": LABEL_ENGINE}):
        labels: dict[str, str] = summary.get("Labels") or {}
        if LABEL_ENGINE not in labels or is_alive(
            labels.get(LABEL_OWNER_PID, ""), labels.get(LABEL_OWNER_STARTED, "")
        ):
            continue
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(summary["Id"], force=True)
            reaped += 1
        kernel_dir = Path(labels.get(LABEL_KERNEL_DIR, ""))
        if kernel_dir.name.startswith("interp-") and kernel_dir.parent == Path(
            tempfile.gettempdir()
        ):
            remove_kernel_dir(kernel_dir)
    return reaped


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

    async def interrupt(self) -> None:
        # The init process (PID 1) forwards the signal to the kernel.
        await self._backend.signal(self._id, "SIGINT")

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
        if self._cgroup.procs is not None:
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

    def __init__(self, config: Config, *, engine_id: str) -> None:
        self._config = config
        self._engine_id = engine_id
        self._client: docker.DockerClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sandboxes: dict[str, DockerSandbox] = {}
        self._events: CancellableStream[Any] | None = None
        self._events_thread: threading.Thread | None = None
        self._closing = False
        self.warned_no_cgroup = False

    async def _call(self, action: str, fn: Callable[[], _T]) -> _T:
        def run() -> _T:
            with _translate(action):
                return fn()

        return await asyncio.to_thread(run)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            raise SandboxError("the Docker backend is not open")
        return self._client

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client = await asyncio.to_thread(connect)
        await asyncio.to_thread(check_image, self._client, self._config.image)
        client = self._client
        reaped = await self._call("reaping orphaned sandboxes", lambda: reap_orphans(client))
        if reaped:
            log.warning("removed %d sandboxes left by engines that no longer run", reaped)
        self._events = await self._call("following container events", self._subscribe)
        self._events_thread = threading.Thread(
            target=self._follow_events, name="interp-docker-events", daemon=True
        )
        self._events_thread.start()

    def _subscribe(self) -> CancellableStream[Any]:
        return self.client.events(
            decode=True,
            filters={"type": "container", "label": f"{LABEL_ENGINE}={self._engine_id}"},
        )

    def _follow_events(self) -> None:
        """Resolve each sandbox's exit as Docker reports it; survive a daemon restart.

        When the stream breaks (the daemon stopped), reconnect once the daemon answers
        again, then ask after every sandbox: deaths missed meanwhile are reported too.
        """
        assert self._loop is not None
        while not self._closing:
            try:
                assert self._events is not None
                for event in self._events:
                    if event.get("Action") == "die":
                        self._report_exit(str(event.get("id")), event)
            except Exception as exc:  # noqa: BLE001 (a broken stream of any kind: reconnect)
                if self._closing:
                    return
                # str(): a record holding the exception would keep its frames alive.
                log.warning("lost Docker's event stream (%s); reconnecting", str(exc))
            if self._closing:
                return
            while not self._closing:
                try:
                    self._events = self._subscribe()
                    break
                except _UNREACHABLE:
                    time.sleep(0.5)
            for container_id in list(self._sandboxes):
                try:
                    state = self.client.api.inspect_container(container_id)["State"]
                    running = bool(state.get("Running"))
                except docker.errors.NotFound:
                    running = False
                except _UNREACHABLE:
                    continue
                if not running:
                    self._report_exit(container_id, {})

    def _report_exit(self, container_id: str, event: dict[str, Any]) -> None:
        sandbox = self._sandboxes.get(container_id)
        if sandbox is None or self._loop is None:
            return
        info = self._exit_info(container_id, event)
        self._loop.call_soon_threadsafe(sandbox._set_exit, info)

    def _exit_info(self, container_id: str, event: dict[str, Any]) -> ExitInfo:
        code = int(event.get("Actor", {}).get("Attributes", {}).get("exitCode", -1))
        oom = False
        with contextlib.suppress(*_UNREACHABLE):
            state = self.client.api.inspect_container(container_id)["State"]
            oom = bool(state.get("OOMKilled"))
            code = int(state.get("ExitCode", code))
        if oom:
            return ExitInfo(cause=ExitCause.OOM_KILLED, code=code)
        if code > 128:
            return ExitInfo(cause=ExitCause.SIGNALED, code=code, signal=code - 128)
        return ExitInfo(cause=ExitCause.EXITED, code=code)

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
            runtime=config.runtime,
            ipc_mode="private",
            binds={
                str(host_dir): {"bind": KERNEL_DIR, "mode": "rw"},
                str(files_dir): {"bind": "/mnt/data", "mode": "rw"},
            },
        )
        labels = {
            **owner_labels(self._engine_id),
            LABEL_SESSION: session,
            LABEL_KERNEL_DIR: str(host_dir),
        }
        environment = {"LANG": "C.UTF-8", "TZ": "UTC", **config.env}

        def create_and_start() -> str:
            began = time.perf_counter()
            created = api.create_container(
                config.image,
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
                with contextlib.suppress(*_UNREACHABLE):
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

    async def close(self) -> None:
        self._closing = True
        for sandbox in list(self._sandboxes.values()):
            with contextlib.suppress(SandboxError):
                await sandbox.remove()
        if self._events is not None:
            self._events.close()
        if self._events_thread is not None:
            await asyncio.to_thread(self._events_thread.join, 5)
        if self._client is not None:
            self._client.close()


BASE_IMAGE = "debian:bookworm-slim"
LOCAL_BASE_IMAGE = "interp-base:bookworm"


def build_image(image: str, wheel_cache: Path) -> Iterator[BuildProgress]:
    """Build the sandbox image, yielding progress. Blocking: for the CLI's use."""
    client = connect()
    try:
        base = yield from _base_image(client)
        arch = str(client.info().get("Architecture", "x86_64"))
        context: Path | None = None
        for item in prepare_context(arch, wheel_cache):
            if isinstance(item, Path):
                context = item
            else:
                yield item
        assert context is not None
        try:
            yield from _docker_build(client, context, image, base)
        finally:
            shutil.rmtree(context, ignore_errors=True)
            with contextlib.suppress(docker.errors.APIError):
                client.images.prune(filters={"label": "io.interp.build-stage=true"})
        check_image(client, image)
        yield BuildProgress("done", f"built {image}")
    finally:
        client.close()


def _base_image(client: docker.DockerClient) -> Generator[BuildProgress, None, str]:
    for candidate in (BASE_IMAGE, LOCAL_BASE_IMAGE):
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.get(candidate)
            return candidate
    yield BuildProgress("base", f"pulling {BASE_IMAGE}")
    try:
        client.images.pull(BASE_IMAGE)
        return BASE_IMAGE
    except docker.errors.APIError as exc:
        yield BuildProgress("base", f"cannot pull {BASE_IMAGE} ({exc.explanation}); making it")
    root: Path | None = None
    for item in debootstrap_rootfs():
        if isinstance(item, Path):
            root = item
        else:
            yield item
    assert root is not None
    yield BuildProgress("base", f"importing the root filesystem as {LOCAL_BASE_IMAGE}")
    try:
        with tempfile.TemporaryDirectory(prefix="interp-base-") as scratch:
            tarball = Path(scratch) / "rootfs.tar"
            subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
            repository, tag = LOCAL_BASE_IMAGE.split(":")
            with _translate("importing the base image"):
                client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return LOCAL_BASE_IMAGE


def _docker_build(
    client: docker.DockerClient, context: Path, image: str, base: str
) -> Iterator[BuildProgress]:
    step_pattern = re.compile(r"^Step (\d+)/(\d+) : (.*)")
    with _translate(f"building {image}"):
        stream = client.api.build(
            path=str(context),
            tag=image,
            buildargs={"BASE": base, "INTERP_IMAGE_VERSION": IMAGE_VERSION},
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageError(f"building {image} failed: {str(chunk['error']).strip()}")
            line = str(chunk.get("stream", "")).strip()
            match = step_pattern.match(line)
            if match:
                step, total, what = match.groups()
                yield BuildProgress("build", what[:80], int(step), int(total))


@dataclass(frozen=True)
class Check:
    """One line of `interp doctor`: what was checked, whether it holds, and what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def diagnose(image: str, runtime: str | None) -> list[Check]:
    """Check the Docker engine, the OCI runtime and the sandbox image. Blocking."""
    try:
        client = connect()
    except DockerUnavailableError as exc:
        return [Check("docker engine", False, exc.message, exc.hint or "")]
    try:
        info = client.info()
        checks = [
            Check(
                "docker engine",
                True,
                f"Docker {info.get('ServerVersion')}, cgroup v{info.get('CgroupVersion', '?')}",
            )
        ]
        runtimes = sorted(info.get("Runtimes") or {})
        wanted = runtime or str(info.get("DefaultRuntime", "runc"))
        checks.append(
            Check(
                "runtime",
                wanted in runtimes,
                f"{wanted} (available: {', '.join(runtimes)})",
                ""
                if wanted in runtimes
                else f"register {wanted} in /etc/docker/daemon.json "
                "and restart dockerd, or unset INTERP_RUNTIME",
            )
        )
        try:
            image_id = check_image(client, image)
            checks.append(
                Check("image", True, f"{image} ({image_id[7:19]}), version {IMAGE_VERSION}")
            )
        except ImageError as exc:
            checks.append(Check("image", False, exc.message, exc.hint or ""))
        return checks
    finally:
        client.close()
