"""Host-side access to directories that sandboxed code controls. Blocking: call from a thread.

The engine runs as root and reads what the code wrote in its ``/mnt/data``. Everything
there is hostile input, and it can change *while* the host reads it: names (any bytes),
types (a FIFO where a file was), sizes (sparse files lie about their cost), depth, links,
and directories exchanged for links between two system calls. So this module, and only
this module, touches such a directory, and it does so by these rules:

- every path is resolved one component at a time from an open directory descriptor, with
  ``O_NOFOLLOW`` (and ``O_DIRECTORY`` for directories): a link is never followed, so an
  exchange race cannot lead outside the directory;
- a file is opened ``O_NONBLOCK`` and checked to be regular with ``fstat`` before a byte is
  read: a FIFO or a socket fails at once instead of blocking for ever;
- walks are iterative, with caps on depth and entries and a deadline, and never recurse;
- copies stop at a byte budget counted in logical size, whatever the disk usage says.

Failures are values or ``SandboxFileError``: callers turn them into notes in a result.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW
_CHUNK = 1024**2

MAX_DEPTH = 32
"""Directory levels below /mnt/data that a scan looks into."""
MAX_ENTRIES = 10_000
"""Entries (files, directories, anything) a scan looks at."""


class SandboxFileError(OSError):
    """A path in a sandbox directory could not be used safely; says why in one line."""


def open_regular_nofollow(name: str | Path, *, dir_fd: int | None = None) -> int:
    """Open a regular file for reading: never through a final link, never blocking.

    A FIFO, socket, device or link at ``name`` raises ``SandboxFileError`` at once.
    The descriptor returned is blocking again, for ordinary reads.
    """
    try:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        raise SandboxFileError(exc.errno, f"cannot open: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SandboxFileError("not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_dir(name: str | Path, *, dir_fd: int | None = None) -> int:
    """Open a directory, refusing a link in its place."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise SandboxFileError(exc.errno, f"cannot open directory: {exc.strerror}") from None


def create_new(name: str, *, dir_fd: int) -> int:
    """Create ``name`` in a directory for writing: a new file, never an existing one or
    what a link there points to (``O_EXCL | O_NOFOLLOW``)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(name, flags, 0o644, dir_fd=dir_fd)


@contextlib.contextmanager
def opened_dir(name: str | Path, *, dir_fd: int | None = None) -> Iterator[int]:
    fd = open_dir(name, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def open_in(root: Path, relative: str) -> int:
    """Open the regular file at ``relative`` (``/``-separated) under ``root``, component by
    component from directory descriptors: no link anywhere on the way is followed."""
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise SandboxFileError(f"not a plain relative path: {relative!r}")
    fd = open_dir(root)
    try:
        for part in parts[:-1]:
            child = open_dir(part, dir_fd=fd)
            os.close(fd)
            fd = child
        return open_regular_nofollow(parts[-1], dir_fd=fd)
    finally:
        os.close(fd)


def display_name(name: str) -> str:
    """A name as valid UTF-8 text: bytes that are not UTF-8 become U+FFFD.

    Names in a sandbox directory are any bytes; Python holds the undecodable ones as lone
    surrogates, which no JSON encoder or UTF-8 writer accepts.
    """
    return os.fsencode(name).decode("utf-8", "replace")


Signature = tuple[int, int, int]
"""What tells a changed file: size, modification time (ns), inode."""


@dataclass
class Scan:
    """Regular files under a directory, by ``/``-separated relative name."""

    files: dict[str, Signature] = field(default_factory=dict)
    cut: str | None = None
    """Why the scan stopped before seeing everything, if it did."""


def scan(
    root: Path,
    *,
    deadline: float,
    max_depth: int = MAX_DEPTH,
    max_entries: int = MAX_ENTRIES,
) -> Scan:
    """Every regular file under ``root`` with its signature; stat only, never a read.

    Iterative and bounded: at most ``max_depth`` levels, ``max_entries`` entries, and
    until ``deadline`` (``time.monotonic``). What a bound cuts is said in ``cut``.
    Entries that vanish or change type while being looked at are skipped.
    """
    found = Scan()
    seen = 0
    try:
        top = open_dir(root)
    except SandboxFileError as exc:
        found.cut = f"/mnt/data could not be read: {exc.strerror or exc}"
        return found
    # One open directory (and its listing) per level: descriptors stay within the depth cap.
    stack: list[tuple[int, Iterator[os.DirEntry[str]], str]] = [(top, _listing(top), "")]
    try:
        while stack:
            fd, entries, prefix = stack[-1]
            entry = next(entries, None)
            if entry is None:
                os.close(fd)
                stack.pop()
                continue
            seen += 1
            if seen > max_entries:
                found.cut = f"more than {max_entries} entries in /mnt/data"
                break
            if seen % 256 == 0 and time.monotonic() > deadline:
                found.cut = "the time allowed for looking at /mnt/data ran out"
                break
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            name = prefix + entry.name
            if stat.S_ISREG(info.st_mode):
                found.files[name] = (info.st_size, info.st_mtime_ns, info.st_ino)
            elif stat.S_ISDIR(info.st_mode):
                if len(stack) > max_depth:
                    found.cut = f"directories deeper than {max_depth} levels in /mnt/data"
                    continue
                try:
                    child = open_dir(entry.name, dir_fd=fd)
                except SandboxFileError:
                    continue  # exchanged for a link, or gone: nothing of it is read
                stack.append((child, _listing(child), name + "/"))
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return found


def _listing(fd: int) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(fd) as entries:
            yield from entries
    except OSError:
        return


def changed(before: Scan, after: Scan) -> list[str]:
    """Files created or changed between two scans, in name order."""
    return sorted(name for name, sig in after.files.items() if before.files.get(name) != sig)


class OverBudget(SandboxFileError):
    """A copy would take more bytes than it was allowed."""


def copy_fd(source: int, target: BinaryIO, *, max_bytes: int, deadline: float) -> int:
    """Copy from ``source`` (an open regular file) to ``target``; return the bytes copied.

    The logical size is checked first, so a sparse terabyte is refused before any byte is
    read; a file that grows past ``max_bytes`` while being copied is refused as well.
    """
    size = os.fstat(source).st_size
    if size > max_bytes:
        raise OverBudget(f"{size} bytes, over the {max_bytes} bytes left to store")
    copied = 0
    while True:
        if time.monotonic() > deadline:
            raise SandboxFileError("the time allowed for storing files ran out")
        chunk = os.read(source, min(_CHUNK, max_bytes - copied + 1))
        if not chunk:
            return copied
        copied += len(chunk)
        if copied > max_bytes:
            raise OverBudget(f"it grew past the {max_bytes} bytes left to store")
        target.write(chunk)


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything under it, without recursion or following a link.

    Holds one directory open at a time, whatever the depth, and checks on the way up that
    each parent is the directory it came from: code that moves directories around while
    this runs can make it stop (``SandboxFileError``), never delete outside ``path``.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        os.unlink(path)
        return
    fd = open_dir(path)
    identities = [_identity(fd)]
    names: list[str] = []
    try:
        while True:
            subdir = _clear_files(fd)
            if subdir is not None:
                try:
                    child = open_dir(subdir, dir_fd=fd)
                except SandboxFileError:
                    _unlink(subdir, fd)  # no longer a directory
                    continue
                os.close(fd)
                fd = child
                names.append(subdir)
                identities.append(_identity(fd))
                continue
            if not names:
                break
            parent = open_dir("..", dir_fd=fd)
            os.close(fd)
            fd = parent
            identities.pop()
            if _identity(fd) != identities[-1]:
                raise SandboxFileError(f"{path} changed while it was being removed")
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _clear_files(fd: int) -> str | None:
    """Unlink what is not a directory in one batch of entries; return a subdirectory's
    name, or ``None`` once the directory is empty."""
    while True:
        subdir: str | None = None
        removed = 0
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    subdir = entry.name
                    break
                _unlink(entry.name, fd)
                removed += 1
        if subdir is not None or removed == 0:
            return subdir


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except PermissionError:
        # Code may leave its directory read-only; its owner may make it writable again.
        os.chmod(dir_fd, 0o700)
        os.unlink(name, dir_fd=dir_fd)


def write_replacing(
    directory: Path, name: str, source: Path, adopt: Callable[[int], object]
) -> None:
    """Write ``source`` into ``directory`` (the code's /mnt/data) as ``name``.

    Through the directory's descriptor, a new file and a rename: whatever the code left at
    ``name`` (a link, a FIFO) is replaced, never written through, and the new file is
    handed to the kernel's user by descriptor before anyone else can see it.
    """
    partial = f".{name[:200]}.{secrets.token_hex(4)}.upload"
    with opened_dir(directory) as dir_fd:
        fd = create_new(partial, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb", closefd=False) as out, source.open("rb") as stored:
                shutil.copyfileobj(stored, out)
            adopt(fd)
            os.close(fd)
            fd = -1
            os.replace(partial, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(partial, dir_fd=dir_fd)
            raise
