"""Snapshots: a session's variables saved by its own kernel to a file, and loaded by the
next kernel it gets (see ``interp._snapshot_kernel`` for what runs inside).

The snapshot is written in the session's /mnt/data as ``SNAPSHOT_FILE``, moved into the
file store by the host, and written there again for the next kernel to load. The host
only ever moves its bytes: they are the code's to write, and are never unpickled here.
What the kernel answers about it is checked like any message from the sandbox.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field, ValidationError

from ._exceptions import FileStoreError, HibernationError, SandboxError
from ._files import FileStore, Snapshot
from ._kernel import Kernel
from ._sandbox_files import SandboxFileError, open_in, opened_dir, write_replacing

SNAPSHOT_FILE = ".interp-snapshot"
"""Where a snapshot is in /mnt/data while it is taken or loaded (not otherwise)."""

_MODULE = "_interp_snapshot"
_MAX_ANSWER = 256 * 1024


class _Answer(BaseModel):
    ok: bool
    error: str | None = Field(None, max_length=1000)


class Taken(_Answer):
    """What the kernel says of a snapshot it took."""

    bytes: int = Field(0, ge=0)
    over: bool = False
    """It would have been larger than the cap."""
    name: str | None = Field(None, max_length=256)
    """The name whose value alone is over the cap, if one is."""
    modules: dict[str, str] = Field(default_factory=dict, max_length=10_000)
    skipped: list[tuple[str, str]] = Field(default_factory=list, max_length=10_000)
    """Names not kept, each with its value's type."""


class Loaded(_Answer):
    """What the kernel says of a snapshot it loaded."""

    kept: int = Field(0, ge=0)
    missing_modules: list[tuple[str, str]] = Field(default_factory=list, max_length=10_000)


_A = TypeVar("_A", bound=_Answer)


@cache
def _install() -> str:
    """Code that defines the kernel side in a module of its own, not in the user's names."""
    source = resources.files("interp").joinpath("_snapshot_kernel.py").read_text()
    namespace = (
        f"__import__('sys').modules.setdefault({_MODULE!r},"
        f" __import__('types').ModuleType({_MODULE!r})).__dict__"
    )
    return f"__import__('builtins').exec({source!r}, {namespace})"


async def _call(kernel: Kernel, call: str, model: type[_A], timeout: float) -> _A:
    text = await kernel.channel.evaluate(
        _install(), f"__import__('sys').modules[{_MODULE!r}].{call}", timeout
    )
    try:
        if len(text) > _MAX_ANSWER:
            raise ValueError("too long")
        decoded = ast.literal_eval(text)
        if not isinstance(decoded, str):
            raise ValueError("not a string")
        return model.model_validate(json.loads(decoded))
    except (ValueError, SyntaxError, MemoryError, RecursionError, ValidationError):
        raise SandboxError("the kernel's answer about its snapshot is malformed") from None


async def take(kernel: Kernel, path: str, *, cap: int, timeout: float) -> Taken:
    """Have the kernel save its user namespace at ``path`` (as the kernel sees it)."""
    return await _call(kernel, f"hibernate({path!r}, {int(cap)})", Taken, timeout)


async def load(kernel: Kernel, path: str, *, timeout: float) -> Loaded:
    """Have the kernel load the snapshot at ``path`` into its user namespace."""
    return await _call(kernel, f"restore({path!r})", Loaded, timeout)


def _names(pairs: list[tuple[str, str]], limit: int = 20) -> str:
    shown = ", ".join(f"{name} ({kind})" for name, kind in pairs[:limit])
    return shown + (f" and {len(pairs) - limit} more" if len(pairs) > limit else "")


def restored_note(taken_at: datetime, skipped: list[tuple[str, str]], loaded: Loaded) -> str:
    """What the first call after a restore says."""
    when = taken_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if not loaded.ok:
        return (
            f"this session's variables, saved at {when}, could not be restored"
            f" ({loaded.error}): it starts with no variables; its files are kept"
        )
    note = (
        f"this session was restored from a snapshot taken at {when}: its variables,"
        " functions, classes and imports are back"
    )
    if skipped:
        note += f"; not kept (they cannot be saved): {_names(skipped)}"
    if loaded.missing_modules:
        note += f"; modules that did not import again: {_names(loaded.missing_modules)}"
    return note


def refused_note(reason: str) -> str:
    return f"this session was not hibernated ({reason}): it kept its kernel and variables"


def over_cap_reason(taken: Taken, cap: int) -> str:
    what = f"the value of {taken.name!r}" if taken.name else "its variables"
    return f"{what} would take more than max_snapshot_bytes ({cap} bytes) to save"


class Snapshots:
    """Takes a session's snapshot from its kernel into the store, and restores it into the
    session's next kernel.

    ``inside`` is where kernels see /mnt/data (``None``: at its host path, as unisolated
    kernels do); ``adopt`` hands a file the engine writes there to the kernel's user.
    """

    def __init__(
        self,
        files: Callable[[], FileStore],
        *,
        cap: int,
        timeout: float,
        inside: str | None,
        adopt: Callable[[int], object],
    ) -> None:
        self._files = files
        self.cap = cap
        self._timeout = timeout
        self._inside = inside
        self._adopt = adopt

    def _path(self, kernel: Kernel) -> str:
        return f"{self._inside or kernel.files_dir}/{SNAPSHOT_FILE}"

    async def take(self, session: str, created_at: datetime, kernel: Kernel) -> Snapshot:
        """Save the variables of ``kernel`` (idle, the session's) as the session's snapshot;
        ``HibernationError`` saying why it could not be."""
        try:
            taken = await take(kernel, self._path(kernel), cap=self.cap, timeout=self._timeout)
        except SandboxError as exc:
            raise HibernationError(f"the kernel did not save its variables: {exc}") from None
        finally:
            kernel.last_scan = None
        if not taken.ok:
            await asyncio.to_thread(_remove, kernel.files_dir)
            raise HibernationError(
                over_cap_reason(taken, self.cap) if taken.over else f"saving failed: {taken.error}"
            )
        deadline = time.monotonic() + self._timeout

        def keep() -> Snapshot:
            fd = open_in(kernel.files_dir, SNAPSHOT_FILE)
            try:
                return self._files().keep_snapshot(
                    fd,
                    session=session,
                    skipped=taken.skipped,
                    taken_at=datetime.now(UTC),
                    created_at=created_at,
                    # The kernel wrote the file and the code can change it: its size now
                    # is what counts, under the same cap.
                    max_bytes=self.cap,
                    deadline=deadline,
                )
            finally:
                os.close(fd)
                _remove(kernel.files_dir)

        try:
            return await asyncio.to_thread(keep)
        except (SandboxFileError, OSError, FileStoreError) as exc:
            raise HibernationError(f"its snapshot could not be stored: {exc}") from None

    async def restore(self, snapshot: Snapshot, kernel: Kernel) -> str:
        """Load the session's snapshot into ``kernel`` (new, idle); the note that says how
        it went. The snapshot is used up either way."""
        files = self._files()
        loaded: Loaded
        try:
            if await asyncio.to_thread(files.claim_snapshot, snapshot.session) is None:
                raise FileStoreError("another engine on this data directory restored it")
            await asyncio.to_thread(
                write_replacing,
                kernel.files_dir,
                SNAPSHOT_FILE,
                files.path(snapshot.file_id),
                self._adopt,
            )
            loaded = await load(kernel, self._path(kernel), timeout=self._timeout)
        except (OSError, SandboxError, FileStoreError) as exc:
            loaded = Loaded(ok=False, error=str(exc))
        finally:
            kernel.last_scan = None
            await asyncio.to_thread(_remove, kernel.files_dir)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(files.delete, snapshot.file_id)
        return restored_note(snapshot.taken_at, snapshot.skipped, loaded)

    def stored(self) -> list[Snapshot]:
        return self._files().snapshots()

    def discard(self, session: str) -> None:
        """Delete the session's snapshot, if it has one (blocking)."""
        files = self._files()
        claimed = files.claim_snapshot(session)
        if claimed is not None:
            files.delete(claimed.file_id)


def _remove(files_dir: Path) -> None:
    """Remove the snapshot's name from /mnt/data (a link there itself, never followed)."""
    with contextlib.suppress(OSError), opened_dir(files_dir) as fd:
        os.unlink(SNAPSHOT_FILE, dir_fd=fd)


__all__ = [
    "SNAPSHOT_FILE",
    "Loaded",
    "Snapshots",
    "Taken",
    "load",
    "over_cap_reason",
    "refused_note",
    "restored_note",
    "take",
]
