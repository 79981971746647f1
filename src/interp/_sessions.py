"""Sessions: a conversation's kernel and its /mnt/data directory.

Calls on one session run one at a time, in arrival order (an ``asyncio.Lock`` is FIFO);
different sessions run concurrently. A session whose kernel died gets a fresh one on its
next call, with its files kept.

A session is running (a call holds it), idle (its kernel waits), or hibernated: its
kernel saved its variables to a snapshot and was removed (idle past ``hibernate_after``,
to make room for another session or kernel, or at the engine's close). Its next call
takes a kernel, which loads the snapshot first. Hibernated sessions are kept in the file
store, so a new engine on the same data directory finds them; one idle past
``max_idle`` is closed.
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
    HibernationError,
    InterpError,
    InvalidInputError,
    SandboxError,
    SessionNotFoundError,
)
from ._files import Snapshot
from ._kernel import Kernel
from ._models import SessionInfo
from ._pool import KernelPool
from ._sandbox_files import SandboxFileError
from ._snapshots import Snapshots, refused_note
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
    last_used: float = field(default_factory=time.monotonic)
    kernel: Kernel | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    hibernated: bool = False
    """It holds no kernel, and does not count among the live sessions."""
    snapshot: Snapshot | None = None
    """Its saved variables, for its next kernel to load."""
    parked: Path | None = None
    """Where its /mnt/data is kept while it is hibernated (``None``: nowhere, being empty)."""
    notice: str | None = None
    """What its next call says first (what became of the session meanwhile)."""
    refused: float | None = None
    """``last_used`` when its variables could not be saved: not tried again until used."""
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
            state="running" if self.lock.locked() else "hibernated" if self.hibernated else "idle",
            snapshot_bytes=self.snapshot.bytes if self.snapshot else None,
            snapshot_taken_at=self.snapshot.taken_at if self.snapshot else None,
        )


class SessionManager:
    """Session ids to sessions: at most ``max_sessions`` live, any number hibernated."""

    def __init__(
        self,
        pool: KernelPool,
        *,
        root: Path,
        parked_root: Path,
        max_sessions: int,
        capacity_wait: float,
        hibernate_after: float,
        max_idle: float,
        storage: Storage,
        snapshots: Snapshots,
        forget_files: Callable[[str], object],
    ) -> None:
        """``forget_files(session)`` (blocking) deletes the files a session stored."""
        self._storage = storage
        self._snapshots = snapshots
        self._forget_files = forget_files
        self._pool = pool
        self._root = root
        self._parked_root = parked_root
        self._max = max_sessions
        self._capacity_wait = capacity_wait
        self._hibernate_after = hibernate_after
        self._max_idle = max_idle
        self._sessions: dict[str, Session] = {}
        self._changed = asyncio.Condition()
        self._expiry: asyncio.Task[None] | None = None

    @property
    def live(self) -> int:
        return sum(not s.hibernated for s in self._sessions.values())

    async def hibernate(self, session: Session) -> None:
        """Save the session's variables and remove its kernel (call with its lock held);
        ``HibernationError`` if they cannot be saved: then it keeps its kernel, and its
        next call says why. A session without a kernel has nothing to save."""
        kernel = session.kernel
        if session.hibernated or session.closed:
            return
        if kernel is not None and kernel.alive:
            try:
                session.snapshot = await self._snapshots.take(
                    session.id, session.created_at, kernel
                )
            except HibernationError as exc:
                session.notice = refused_note(exc.message)
                session.refused = session.last_used
                raise
            session.notice = None
        session.kernel = None
        session.hibernated = True
        try:
            if kernel is not None:
                await self._pool.release(kernel)
            await self._park(session)
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _park(self, session: Session) -> None:
        if session.parked is None:
            session.parked = await asyncio.to_thread(
                self._storage.park, session.files_dir, self._parked_root / session.id
            )

    async def unpark(self, session: Session) -> Path:
        """The session's /mnt/data on the host, its files put back if it was hibernated
        (call with its lock held)."""
        if session.parked is not None:
            parked, session.parked = session.parked, None
            try:
                await asyncio.to_thread(self._storage.unpark, parked, session.files_dir)
            except (OSError, SandboxError) as exc:
                raise SandboxError(f"could not give the session its files back: {exc}") from exc
        else:  # an empty one was not kept
            await asyncio.to_thread(session.files_dir.mkdir, parents=True, exist_ok=True)
        return session.files_dir

    async def files_of(self, session: Session) -> Path:
        """As ``unpark``, without the lock: taken only if there is something to put back
        (a hibernated session runs nothing)."""
        if session.parked is not None:
            async with session.lock:
                await self.unpark(session)
        return session.files_dir

    async def _make_room(self, purpose: str) -> bool:
        """Hibernate the live session idle longest, for ``purpose``; ``False`` if every
        live session is busy. One whose variables cannot be saved loses its kernel all
        the same, and its next call says so."""
        idle = [
            s
            for s in self._sessions.values()
            if not s.hibernated and not s.lock.locked() and not s.closed
        ]
        if not idle:
            return False
        session = min(idle, key=lambda s: s.last_used)
        async with session.lock:  # taken at once: it was free, and nothing awaited since
            try:
                await self.hibernate(session)
            except HibernationError as exc:
                kernel, session.kernel = session.kernel, None
                if kernel is not None:
                    await self._pool.release(kernel)
                await self.hibernate(session)  # with no kernel: nothing left to save
                session.notice = (
                    f"this session's kernel was removed while idle to make room for {purpose},"
                    f" and its variables could not be saved ({exc.message}): they are lost;"
                    " files are kept"
                )
        return True

    async def wake(self) -> None:
        """Tell callers waiting for room to look again (a session has become idle)."""
        async with self._changed:
            self._changed.notify_all()

    async def reclaim_idle(self) -> bool:
        """Free a kernel for another session: see ``_make_room``."""
        return await self._make_room("another session's kernel")

    def start(self) -> None:
        # Sessions of engines that were killed: their directories (and mounts) go now.
        self._storage.remove_stale(self._root.parent)
        self._root.mkdir(parents=True, exist_ok=True)
        # Sessions hibernated by engines before this one, with the files they kept (what
        # is kept without a snapshot is a session that ended half-way).
        # Looked at before the rows are read: a row is written before its directory is
        # parked, so nothing parked meanwhile by another engine is taken for a leftover.
        present = self._storage.parked(self._parked_root)
        stored = {snapshot.session: snapshot for snapshot in self._snapshots.stored()}
        for leftover in present - stored.keys():
            self._storage.remove(self._parked_root / leftover)
        now = time.time()
        for snapshot in stored.values():
            parked = self._parked_root / snapshot.session
            self._sessions[snapshot.session] = Session(
                id=snapshot.session,
                files_dir=self._root / snapshot.session,
                created_at=snapshot.created_at,
                last_used=time.monotonic() - (now - snapshot.taken_at.timestamp()),
                hibernated=True,
                snapshot=snapshot,
                parked=parked if parked.is_dir() else None,
            )
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
        await self._room(deadline, "a new session")
        existing = self._sessions.get(session_id)
        if existing is not None:
            return existing
        files_dir = self._root / session_id
        created = Session(id=session_id, files_dir=files_dir, memory=memory)
        # Counted from now: no other caller can take its room meanwhile.
        self._sessions[session_id] = created
        try:
            await asyncio.to_thread(files_dir.mkdir, parents=True, exist_ok=True)
        except BaseException:
            self._sessions.pop(session_id, None)
            raise
        return created

    async def _room(self, deadline: float, purpose: str) -> None:
        """Wait until one more live session fits, hibernating idle ones for it, until
        ``deadline`` (``time.monotonic``); ``CapacityError`` then."""
        while self.live >= self._max:
            if await self._make_room(purpose):
                continue
            async with self._changed:
                try:
                    async with asyncio.timeout_at(_loop_time(deadline)):
                        await self._changed.wait()
                except TimeoutError:
                    raise CapacityError(
                        f"{self._max} sessions are live and running code; none became idle"
                        f" within {self._capacity_wait:g} s",
                        hint="close sessions you no longer need or raise max_sessions",
                    ) from None

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
        if session.hibernated:
            # Back among the live sessions: room is made as for a new session.
            await self._room(
                deadline if deadline is not None else time.monotonic() + self._capacity_wait,
                "a session that woke up",
            )
            session.hibernated = False
        await self.unpark(session)
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
        if session.snapshot is not None:
            snapshot, session.snapshot = session.snapshot, None
            session.notice = await self._snapshots.restore(snapshot, kernel)
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
            if session.parked is not None:
                await asyncio.to_thread(self._storage.remove, session.parked)
            if not keep_files:
                await asyncio.to_thread(self._forget_files, session.id)
            elif session.snapshot is not None:  # its variables end with it all the same
                await asyncio.to_thread(self._snapshots.discard, session.id)
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _expire_loop(self) -> None:
        period = min(30.0, max(0.05, min(self._hibernate_after, self._max_idle) / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if session.lock.locked() or session.closed:
                    continue
                idle = now - session.last_used
                with contextlib.suppress(InterpError):
                    if idle > self._max_idle:
                        await self.close(session.id, reason="the session was idle too long")
                    elif (
                        idle > self._hibernate_after
                        and not session.hibernated
                        and session.refused != session.last_used
                    ):
                        async with session.lock:
                            await self.hibernate(session)

    async def close_all(self) -> None:
        """Hibernate the sessions that can be (a new engine on the data directory finds
        them), close the others."""
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        # Running executions are stopped and end (their results say why) before the
        # sessions' kernels and files go.
        for session in list(self._sessions.values()):
            if session.lock.locked() and session.kernel is not None:
                await session.kernel.kill("the engine was closed during the execution")
            async with session.lock:
                with contextlib.suppress(HibernationError):
                    await self.hibernate(session)
                    await self._park(session)  # files put back since it hibernated
                if session.snapshot is None:
                    with contextlib.suppress(InterpError):
                        await self._close(session, keep_files=False)
        await asyncio.to_thread(self._storage.remove_tree, self._root)
