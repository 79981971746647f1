"""Which process owns a resource, told so that a later engine can see whether it still runs.

An owner is a pid with its start time: the start time tells a recycled pid from the
process that really made the resource.
"""

from __future__ import annotations

from pathlib import Path

import psutil


def this_process() -> tuple[str, str]:
    """This process as an owner: (pid, start time)."""
    me = psutil.Process()
    return str(me.pid), f"{me.create_time():.3f}"


def is_alive(pid: str, started: str) -> bool:
    """Whether the owner named by ``pid`` and ``started`` still runs."""
    try:
        return abs(psutil.Process(int(pid)).create_time() - float(started)) < 0.01
    except (ValueError, psutil.Error):
        return False


def owner_dir_name(engine_id: str) -> str:
    """A directory name that says which process owns it: pid, start time, engine."""
    pid, started = this_process()
    return f"{pid}-{started}-{engine_id}"


def stale_dirs(parent: Path) -> list[Path]:
    """The directories under ``parent`` named by ``owner_dir_name`` whose owner is gone."""
    if not parent.is_dir():
        return []
    stale = []
    for entry in parent.iterdir():
        pid, _, rest = entry.name.partition("-")
        started, _, _ = rest.partition("-")
        if entry.is_dir() and not is_alive(pid, started):
            stale.append(entry)
    return stale
