"""Sessions: a conversation's kernel and its /mnt/data directory.

Calls on one session run one at a time, in arrival order (an ``asyncio.Lock`` is FIFO);
different sessions run concurrently. A session whose kernel died gets a fresh one on its
next call, with its files kept. Idle and over-age sessions are closed in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ._exceptions import (
    CapacityError,
    InterpError,
    InvalidInputError,
    SandboxError,
    SessionNotFoundError,
)
from ._kernel import Kernel
from ._models import SessionInfo
from ._pool import KernelPool
from ._sandbox_files import SandboxFileError
from ._storage import Storage

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def _loop_time(deadline: float) -> float:
    """A ``time.monotonic`` deadline on the running loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


def new_session_id() -> str:
    return "sess_" + secrets.token_hex(12)


def check_session_id(session: str) -> str:
    if not isinstance(session, str) or not _SESSION_ID.fullmatch(session):
        raise InvalidInputError(
            f"invalid session id {session!r}: use 1-128 letters, digits, '_', '.' or '-'"
        )
    return session


def check_file_name(name: str) -> str:
    """A name for a file in /mnt/data: one path component, no tricks."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or len(name.encode()) > 255
    ):
        raise InvalidInputError(f"invalid file name {name!r}: use a plain name such as data.csv")
    return name


@dataclass(eq=False)
class Session:
    id: str
    files_dir: Path
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    kernel: Kernel | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    reclaimed: bool = False
    """Its kernel was removed while idle to make room for another session's."""
    memory: int | None = None
    """Its kernels' memory limit in bytes, where it is not the engine's."""

    def info(self) -> SessionInfo:
        idle = time.monotonic() - self.last_used
        return SessionInfo(
            id=self.id,
            created_at=self.created_at,
            last_used_at=datetime.fromtimestamp(time.time() - idle, UTC),
            files_dir=self.files_dir,
            has_kernel=self.kernel is not None and self.kernel.alive,
            busy=self.lock.locked(),
        )


class SessionManager:
    """Session ids to sessions, within a maximum count, expiring when idle or old."""

    def __init__(
        self,
        pool: KernelPool,
        *,
        root: Path,
        max_sessions: int,
        capacity_wait: float,
        idle_timeout: float,
        max_lifetime: float,
        storage: Storage,
        forget_files: Callable[[str], object],
    ) -> None:
        """``forget_files(session)`` (blocking) deletes the files a session stored."""
        self._storage = storage
        self._forget_files = forget_files
        self._pool = pool
        self._root = root
        self._max = max_sessions
        self._capacity_wait = capacity_wait
        self._idle_timeout = idle_timeout
        self._max_lifetime = max_lifetime
        self._sessions: dict[str, Session] = {}
        self._changed = asyncio.Condition()
        self._expiry: asyncio.Task[None] | None = None

    async def reclaim_idle(self) -> bool:
        """Remove the kernel of the session idle longest (files stay, variables go), to
        make room; ``False`` if every session with a kernel is busy."""
        idle = [
            s
            for s in self._sessions.values()
            if s.kernel is not None and not s.lock.locked() and not s.closed
        ]
        if not idle:
            return False
        session = min(idle, key=lambda s: s.last_used)
        async with session.lock:  # taken at once: it was free, and nothing awaited since
            kernel, session.kernel = session.kernel, None
            if kernel is None:
                return False
            session.reclaimed = True
            await self._pool.release(kernel)
        return True

    def start(self) -> None:
        # Sessions of engines that were killed: their directories (and mounts) go now.
        self._storage.remove_stale(self._root.parent)
        self._root.mkdir(parents=True, exist_ok=True)
        self._expiry = asyncio.create_task(self._expire_loop(), name="interp-session-expiry")

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session: object) -> bool:
        return session in self._sessions

    def infos(self) -> list[SessionInfo]:
        return [session.info() for session in self._sessions.values()]

    def get(self, session: str) -> Session:
        found = self._sessions.get(session)
        if found is None:
            raise SessionNotFoundError(
                f"no session {session!r}", hint="create it with create_session()"
            )
        return found

    async def create(
        self,
        session: str | None = None,
        *,
        deadline: float | None = None,
        memory: int | None = None,
    ) -> Session:
        """The session of that id, opened if new; waits for a free slot until ``deadline``
        (``time.monotonic``; ``capacity_wait`` from now if not given)."""
        session_id = check_session_id(session) if session is not None else new_session_id()
        existing = self._sessions.get(session_id)
        if existing is not None:
            return existing
        if deadline is None:
            deadline = time.monotonic() + self._capacity_wait
        async with self._changed:
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    await self._changed.wait_for(lambda: len(self._sessions) < self._max)
            except TimeoutError:
                raise CapacityError(
                    f"{self._max} sessions are open; none closed within {self._capacity_wait:g} s",
                    hint="close sessions you no longer need or raise max_sessions",
                ) from None
            existing = self._sessions.get(session_id)
            if existing is not None:
                return existing
            files_dir = self._root / session_id
            await asyncio.to_thread(files_dir.mkdir, parents=True, exist_ok=True)
            created = Session(id=session_id, files_dir=files_dir, memory=memory)
            self._sessions[session_id] = created
            return created

    async def kernel_for(self, session: Session, *, deadline: float | None = None) -> Kernel:
        """The session's live kernel; a fresh one if it has none or its kernel died.

        Call with the session's lock held. A kernel that arrives after the session was
        closed is removed, and the call fails with ``SessionNotFoundError``.
        """
        if session.kernel is not None and session.kernel.alive:
            return session.kernel
        if session.kernel is not None:
            await self._pool.release(session.kernel)
            session.kernel = None
        # Capped storage stays with the session: a new kernel mounts it, files and all.
        keep = await asyncio.to_thread(self._storage.capped, session.files_dir)
        kernel = await self._pool.acquire(
            session=session.id, files_dir=session.files_dir if keep else None, deadline=deadline
        )
        if session.closed:
            await self._pool.release(kernel)
            if kernel.files_dir != session.files_dir:
                await asyncio.to_thread(self._storage.remove, kernel.files_dir)
            raise SessionNotFoundError(f"session {session.id!r} was closed")
        if kernel.files_dir != session.files_dir:
            try:
                await asyncio.to_thread(self._storage.move, kernel.files_dir, session.files_dir)
            except (OSError, SandboxFileError, SandboxError) as exc:
                await self._pool.release(kernel)
                await asyncio.to_thread(self._storage.remove, kernel.files_dir)
                raise SandboxError(f"could not give the session its files: {exc}") from exc
            kernel.files_dir = session.files_dir
        if session.memory is not None:
            try:
                await kernel.sandbox.set_memory(session.memory)
            except SandboxError:
                await self._pool.release(kernel)
                raise
        session.kernel = kernel
        return kernel

    async def close(
        self, session: str, *, keep_files: bool = False, reason: str = "the session was closed"
    ) -> None:
        """End the session: its kernel is removed, its /mnt/data deleted, and the files it
        stored deleted too unless ``keep_files``.

        A running execution is stopped (its result gives ``reason``) and calls waiting
        their turn fail with ``SessionNotFoundError``.
        """
        found = self._sessions.get(session)
        if found is None:
            raise SessionNotFoundError(f"no session {session!r}")
        found.closed = True
        self._sessions.pop(found.id, None)
        if found.lock.locked() and found.kernel is not None:
            await found.kernel.kill(f"{reason} during the execution")
        async with found.lock:
            await self._close(found, keep_files=keep_files)

    async def _close(self, session: Session, *, keep_files: bool) -> None:
        session.closed = True
        self._sessions.pop(session.id, None)
        try:
            if session.kernel is not None:
                await self._pool.release(session.kernel)
                session.kernel = None
            await asyncio.to_thread(self._storage.remove, session.files_dir)
            if not keep_files:
                await asyncio.to_thread(self._forget_files, session.id)
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _expire_loop(self) -> None:
        period = min(30.0, max(0.05, min(self._idle_timeout, self._max_lifetime) / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                idle = now - session.last_used > self._idle_timeout
                old = now - session.started > self._max_lifetime
                if (idle or old) and not session.lock.locked():
                    with contextlib.suppress(InterpError):
                        await self.close(session.id)

    async def close_all(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        # Running executions are stopped and end (their results say why) before the
        # sessions' kernels and files go.
        for session in list(self._sessions.values()):
            with contextlib.suppress(InterpError):
                await self.close(session.id, reason="the engine was closed")
        await asyncio.to_thread(self._storage.remove_tree, self._root)
