"""Where a container's cgroup files are on this host. Pure: the caller says what exists.

Docker puts a container's cgroup in one of a few places, by cgroup version and by cgroup
driver (cgroupfs or systemd). The engine reads CPU time, memory and the process list from
there; the process list is what lets a timeout end processes the code left running, so
not finding it is worth a loud warning, not silence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CgroupFiles:
    cpu: Path | None = None
    """cgroup v1 ``cpuacct.usage`` (ns) or v2 ``cpu.stat`` (``usage_usec``)."""
    peak: Path | None = None
    """v1 ``memory.max_usage_in_bytes`` (resettable) or v2 ``memory.peak``."""
    now: Path | None = None
    """Memory in use now."""
    procs: Path | None = None
    """The processes in the container."""

    @property
    def found(self) -> bool:
        return self.procs is not None

    @property
    def v1(self) -> bool:
        return self.cpu is not None and self.cpu.name == "cpuacct.usage"


def _v1_dirs(root: Path, controller: str, container_id: str) -> list[Path]:
    base = root / controller
    return [base / "docker" / container_id, base / "system.slice" / f"docker-{container_id}.scope"]


def _v2_dirs(root: Path, container_id: str) -> list[Path]:
    return [root / "docker" / container_id, root / "system.slice" / f"docker-{container_id}.scope"]


def find(
    container_id: str, *, exists: Callable[[Path], bool] = Path.exists, root: Path = ROOT
) -> CgroupFiles:
    """The container's cgroup files, by the layouts Docker uses (v1 first, then v2)."""

    def first(*paths: Path) -> Path | None:
        return next((path for path in paths if exists(path)), None)

    v1_cpu = first(*(d / "cpuacct.usage" for d in _v1_dirs(root, "cpuacct", container_id)))
    if v1_cpu is not None:
        memory = _v1_dirs(root, "memory", container_id)
        return CgroupFiles(
            cpu=v1_cpu,
            peak=first(*(d / "memory.max_usage_in_bytes" for d in memory)),
            now=first(*(d / "memory.usage_in_bytes" for d in memory)),
            procs=first(*(d / "cgroup.procs" for d in _v1_dirs(root, "pids", container_id))),
        )
    for directory in _v2_dirs(root, container_id):
        if exists(directory / "cgroup.procs"):
            return CgroupFiles(
                cpu=first(directory / "cpu.stat"),
                peak=first(directory / "memory.peak"),
                now=first(directory / "memory.current"),
                procs=directory / "cgroup.procs",
            )
    return CgroupFiles()
