"""The seam between the engine and an isolation technology.

A backend starts kernels; each started kernel lives in a ``Sandbox``. The verbs mirror
jupyter_client's kernel provisioner (launch, signal, kill, wait, cleanup), so a backend
for another technology (Kubernetes, a VM) fits the same shape.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._models import ExitInfo
from .._sandbox_files import remove_tree

log = logging.getLogger("interp.sandbox")

# Inside the sandbox, the kernel's connection file and ipc sockets live here.
KERNEL_DIR = "/run/interp"
SOCKET_PREFIX = "k"
_PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}


def connection_info(socket_dir: str, key: str) -> dict[str, Any]:
    """Connection info for a kernel whose ipc sockets live in ``socket_dir``."""
    return {
        "transport": "ipc",
        "ip": f"{socket_dir}/{SOCKET_PREFIX}",
        "key": key,
        "signature_scheme": "hmac-sha256",
        "kernel_name": "python3",
        **_PORTS,
    }


def remove_kernel_dir(path: Path) -> None:
    """Remove a kernel's socket directory, which the code could write in: never following
    a link, whatever it left there; a failure is logged, not raised."""
    try:
        remove_tree(path)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, str(exc))


def write_connection_file(host_dir: Path, kernel_dir: str) -> dict[str, Any]:
    """Write the kernel's connection file; return the host side's connection info.

    The two differ only in where the sockets are: the kernel sees ``kernel_dir``, the
    host sees the same directory at ``host_dir``. A fresh random HMAC key each time.
    """
    key = secrets.token_hex(32)
    path = host_dir / "connection.json"
    path.write_text(json.dumps(connection_info(kernel_dir, key)))
    path.chmod(0o600)
    return connection_info(str(host_dir), key)


@dataclass(frozen=True)
class Usage:
    """Resource use of a sandbox so far."""

    cpu_s: float | None
    peak_memory_bytes: int | None
    memory_bytes: int | None = None
    """Memory in use now."""


class Sandbox(Protocol):
    """One running kernel's isolation unit."""

    @property
    def id(self) -> str: ...

    @property
    def connection_info(self) -> dict[str, Any]:
        """How the host reaches the kernel (jupyter_client connection info)."""
        ...

    phases: dict[str, float]
    """Seconds spent in each step of launching the sandbox, for benchmarks."""

    @property
    def exit_info(self) -> ExitInfo | None:
        """Why the sandbox ended, once it has; ``None`` while it runs."""
        ...

    async def wait(self) -> ExitInfo:
        """Return when the sandbox has ended, with the cause."""
        ...

    def seal(self) -> None:
        """Once the kernel is ready (its sockets made, no code run yet): take from it what
        it needed only to start, such as writing in its socket directory on the host."""

    async def interrupt(self) -> None:
        """Send SIGINT to the kernel."""
        ...

    async def kill(self) -> None:
        """End the kernel at once. Safe to call on an ended sandbox."""
        ...

    async def remove(self) -> None:
        """Kill if needed and release everything the sandbox holds on the host."""
        ...

    def usage(self) -> Usage:
        """Resource use so far, cheaply; fields are ``None`` where unknown."""
        ...

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory measurement, where the sandbox supports it."""
        ...

    async def set_memory(self, limit: int) -> None:
        """Change the memory limit (memory and swap) of the running sandbox."""
        ...

    def stray_processes(self) -> int:
        """How many processes run in the sandbox besides the kernel (and init)."""
        ...


class Backend(Protocol):
    """Starts sandboxed kernels of one isolation kind."""

    isolated: bool
    """False for backends that run untrusted code without isolation."""

    async def open(self) -> None:
        """Check the backend can start kernels; raise a ``SandboxError`` saying why not."""
        ...

    def adopt(self, path: Path | int) -> None:
        """Make a host file or directory (a path, or an open descriptor for one the sandbox
        can reach) writable by the kernel's user."""
        ...

    async def start(self, *, files_dir: Path, session: str) -> Sandbox:
        """Start a kernel whose ``/mnt/data`` is ``files_dir``; return once it is launched."""
        ...

    async def reap_replicas(self, gone: set[str]) -> int:
        """Remove sandboxes labelled with a server replica in ``gone``; how many."""
        ...

    async def close(self) -> None: ...
