"""Which process owns a resource, told so that a later engine can see whether it still runs.

An owner is a pid with its start time: the start time tells a recycled pid from the
process that really made the resource.
"""

from __future__ import annotations

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
