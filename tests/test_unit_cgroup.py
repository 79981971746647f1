"""Cgroup discovery on the layouts Docker uses, recorded as the files that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from interp.sandbox import _cgroup as cgroup

ID = "c0ffee" * 10 + "abcd"
ROOT = Path("/sys/fs/cgroup")

LAYOUTS = {
    "v1 cgroupfs": [
        f"cpuacct/docker/{ID}/cpuacct.usage",
        f"memory/docker/{ID}/memory.max_usage_in_bytes",
        f"memory/docker/{ID}/memory.usage_in_bytes",
        f"pids/docker/{ID}/cgroup.procs",
    ],
    "v1 systemd": [
        f"cpuacct/system.slice/docker-{ID}.scope/cpuacct.usage",
        f"memory/system.slice/docker-{ID}.scope/memory.max_usage_in_bytes",
        f"memory/system.slice/docker-{ID}.scope/memory.usage_in_bytes",
        f"pids/system.slice/docker-{ID}.scope/cgroup.procs",
    ],
    "v2 cgroupfs": [
        f"docker/{ID}/cpu.stat",
        f"docker/{ID}/memory.peak",
        f"docker/{ID}/memory.current",
        f"docker/{ID}/cgroup.procs",
    ],
    "v2 systemd": [
        f"system.slice/docker-{ID}.scope/cpu.stat",
        f"system.slice/docker-{ID}.scope/memory.peak",
        f"system.slice/docker-{ID}.scope/memory.current",
        f"system.slice/docker-{ID}.scope/cgroup.procs",
    ],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_known_layout_is_found_whole(layout: str) -> None:
    present = {ROOT / p for p in LAYOUTS[layout]}
    files = cgroup.find(ID, exists=present.__contains__)
    assert files.found
    assert {files.cpu, files.peak, files.now, files.procs} == present
    assert files.v1 == layout.startswith("v1")


def test_v2_without_memory_peak_still_finds_the_process_list() -> None:
    # Kernels before 5.19 have no memory.peak.
    present = {ROOT / f"docker/{ID}/cgroup.procs", ROOT / f"docker/{ID}/cpu.stat"}
    files = cgroup.find(ID, exists=present.__contains__)
    assert files.found and files.peak is None


def test_an_unknown_layout_is_not_found() -> None:
    files = cgroup.find(ID, exists=lambda path: False)
    assert not files.found and files.cpu is None


def test_another_containers_files_are_not_taken() -> None:
    other = "beef" * 16
    present = {ROOT / p.replace(ID, other) for p in LAYOUTS["v1 cgroupfs"]}
    assert not cgroup.find(ID, exists=present.__contains__).found
