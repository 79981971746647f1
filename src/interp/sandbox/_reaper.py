"""Owner labels on containers, and the reaping of those whose engine is gone.

An owner is a pid, its start time and its pid namespace: an engine judges only the
sandboxes of engines in its own pid namespace, where their pids mean what they say. One
in another namespace (a replica in a container of its own, a pod) looks dead by pid
while it runs: its sandboxes are left to the engines of its own namespace. A server
replica's sandboxes also name the replica: their liveness is its lease, which the
replicas sharing its database judge (``reap_replicas``), whatever their namespaces.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import docker
import docker.errors

from .._owner import is_alive, this_process
from ._base import remove_kernel_dir
from ._docker_client import (
    LABEL_ENGINE,
    LABEL_KERNEL_DIR,
    LABEL_OWNER_PID,
    LABEL_OWNER_PIDNS,
    LABEL_OWNER_REPLICA,
    LABEL_OWNER_STARTED,
)


def pid_namespace() -> str:
    """This process's pid namespace (its inode), as Linux names it."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def owner_labels(engine_id: str, replica: str | None = None) -> dict[str, str]:
    """Labels that let a later engine tell whether this one is still alive."""
    pid, started = this_process()
    labels = {
        LABEL_ENGINE: engine_id,
        LABEL_OWNER_PID: pid,
        LABEL_OWNER_STARTED: started,
        LABEL_OWNER_PIDNS: pid_namespace(),
    }
    if replica is not None:
        labels[LABEL_OWNER_REPLICA] = replica
    return labels


def reap_replicas(client: docker.DockerClient, gone: set[str]) -> int:
    """Remove the sandboxes of the server replicas ``gone``."""
    reaped = 0
    for summary in client.api.containers(all=True, filters={"label": LABEL_OWNER_REPLICA}):
        labels: dict[str, str] = summary.get("Labels") or {}
        if labels.get(LABEL_OWNER_REPLICA) in gone:
            reaped += _remove(client, summary["Id"], labels)
    return reaped


def _remove(client: docker.DockerClient, container_id: str, labels: dict[str, str]) -> int:
    removed = 0
    with contextlib.suppress(docker.errors.NotFound):
        client.api.remove_container(container_id, force=True)
        removed = 1
    kernel_dir = Path(labels.get(LABEL_KERNEL_DIR, ""))
    if kernel_dir.name.startswith("interp-") and kernel_dir.parent == Path(tempfile.gettempdir()):
        remove_kernel_dir(kernel_dir)
    return removed


def reap_orphans(client: docker.DockerClient) -> int:
    """Remove sandboxes whose engine process is gone. Unlabelled containers are never touched."""
    reaped = 0
    here = pid_namespace()
    for summary in client.api.containers(all=True, filters={"label": LABEL_ENGINE}):
        labels: dict[str, str] = summary.get("Labels") or {}
        if LABEL_ENGINE not in labels or labels.get(LABEL_OWNER_PIDNS, here) != here:
            continue
        if is_alive(labels.get(LABEL_OWNER_PID, ""), labels.get(LABEL_OWNER_STARTED, "")):
            continue
        reaped += _remove(client, summary["Id"], labels)
    return reaped
