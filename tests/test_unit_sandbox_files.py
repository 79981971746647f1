"""The host seam on its own (no Docker): hostile trees, types, sizes, names and races."""

from __future__ import annotations

import ctypes
import io
import os
import threading
import time
from pathlib import Path

import pytest

from interp._sandbox_files import (
    OverBudget,
    SandboxFileError,
    changed,
    copy_fd,
    display_name,
    open_in,
    remove_tree,
    scan,
)

FAR = time.monotonic() + 3600


def deep_tree(root: Path, depth: int) -> Path:
    """``depth`` nested directories under ``root``, made without deep path strings."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with open(os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as leaf:
            leaf.write("x")
    finally:
        os.close(fd)
    return root


def test_a_scan_finds_regular_files_and_nothing_through_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host")
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "sub" / "b.csv").write_text("b")
    (root / "link").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "secret")
    os.mkfifo(root / "fifo")
    found = scan(root, deadline=FAR)
    assert sorted(found.files) == ["a.txt", "sub/b.csv"]
    assert found.cut is None


def test_a_1500_deep_tree_is_scanned_to_the_depth_cap_and_removed(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    root = deep_tree(tmp_path / "data", 1500)
    found = scan(root, deadline=FAR, max_depth=32)
    assert found.files == {}
    assert found.cut is not None and "deeper than 32" in found.cut
    remove_tree(root)
    assert not root.exists()


def test_a_scan_stops_at_its_entry_cap(tmp_path: Path) -> None:
    for i in range(300):
        (tmp_path / f"f{i}").write_bytes(b"")
    found = scan(tmp_path, deadline=FAR, max_entries=100)
    assert len(found.files) == 100
    assert found.cut == "more than 100 entries in /mnt/data"


def test_a_scan_stops_at_its_deadline(tmp_path: Path) -> None:
    for i in range(600):
        (tmp_path / f"f{i}").write_bytes(b"")
    found = scan(tmp_path, deadline=time.monotonic() - 1)
    assert found.cut is not None and "time" in found.cut
    assert len(found.files) < 600


def test_changed_files_are_new_or_different(tmp_path: Path) -> None:
    (tmp_path / "same").write_text("1")
    (tmp_path / "edited").write_text("1")
    before = scan(tmp_path, deadline=FAR)
    (tmp_path / "edited").write_text("22")
    (tmp_path / "new").write_text("3")
    assert changed(before, scan(tmp_path, deadline=FAR)) == ["edited", "new"]


def test_names_that_are_not_utf8_are_found_and_shown_as_text(tmp_path: Path) -> None:
    raw = b"caf\xe9.txt"
    with open(os.path.join(os.fsencode(tmp_path), raw), "wb") as f:
        f.write(b"x")
    (name,) = scan(tmp_path, deadline=FAR).files
    assert os.fsencode(name) == raw
    assert display_name(name) == "caf\ufffd.txt"
    display_name(name).encode()  # valid UTF-8
    os.close(open_in(tmp_path, name))


def test_a_fifo_is_refused_at_once_instead_of_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    began = time.monotonic()
    with pytest.raises(SandboxFileError, match="not a regular file"):
        open_in(tmp_path, "pipe")
    assert time.monotonic() - began < 1


@pytest.mark.parametrize("path", ["link/secret", "file-link", "../outside/secret", "a//b"])
def test_no_link_or_dot_dot_on_the_way_is_followed(tmp_path: Path, path: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host")
    root = tmp_path / "data"
    root.mkdir()
    (root / "link").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "secret")
    with pytest.raises(SandboxFileError):
        open_in(root, path)


def test_a_sparse_terabyte_is_refused_before_a_byte_is_read(tmp_path: Path) -> None:
    with (tmp_path / "sparse").open("wb") as sparse:
        sparse.truncate(10**12)
    fd = open_in(tmp_path, "sparse")
    target = io.BytesIO()
    try:
        with pytest.raises(OverBudget, match="1000000000000 bytes"):
            copy_fd(fd, target, max_bytes=64 * 1024**2, deadline=FAR)
    finally:
        os.close(fd)
    assert target.tell() == 0


def test_a_file_that_grows_past_the_budget_while_copied_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "growing"
    path.write_bytes(b"x" * 10)
    fd = open_in(tmp_path, "growing")
    with path.open("ab") as grow:
        grow.write(b"y" * 5000)  # after the size was known to be small
    try:
        with pytest.raises(OverBudget):
            copy_fd(fd, io.BytesIO(), max_bytes=1000, deadline=FAR)
    finally:
        os.close(fd)


def test_removal_never_follows_a_link_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host")
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "to-outside").symlink_to(outside)
    (root / "file").write_text("x")
    locked = root / "locked"
    locked.mkdir()
    (locked / "inner").write_text("x")
    locked.chmod(0o500)
    remove_tree(root)
    assert not root.exists()
    assert (outside / "keep").read_text() == "host"


_RENAME_EXCHANGE = 2


def exchange(libc: ctypes.CDLL, a: bytes, b: bytes) -> None:
    libc.renameat2(-100, a, -100, b, _RENAME_EXCHANGE)  # AT_FDCWD


def test_a_directory_exchanged_with_a_link_never_yields_an_outside_byte(tmp_path: Path) -> None:
    """The race from the host's side: a thread swaps ``d`` (a real directory) with a
    link to an outside directory, as fast as it can, while files are scanned and read."""
    libc = ctypes.CDLL(None, use_errno=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_bytes(b"HOST SECRET")
    root = tmp_path / "data"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"sandbox")
    (root / "l").symlink_to(outside)
    stop = threading.Event()

    def swap() -> None:
        a, b = os.fsencode(root / "d"), os.fsencode(root / "l")
        while not stop.is_set():
            exchange(libc, a, b)

    swapper = threading.Thread(target=swap)
    swapper.start()
    reads = 0
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            for name in scan(root, deadline=FAR).files:
                try:
                    fd = open_in(root, name)
                except SandboxFileError:
                    continue
                with os.fdopen(fd, "rb") as read:
                    assert read.read() == b"sandbox"
                reads += 1
    finally:
        stop.set()
        swapper.join()
    assert reads > 10  # the race was run, not just avoided
