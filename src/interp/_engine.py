"""The engine: the public, asynchronous entry point.

async with Engine() as engine:
    result = await engine.execute("print(1 + 1)", session="thread-1")
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import mimetypes
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncGenerator, Collection, Sequence
from pathlib import Path
from types import TracebackType

from ._config import Config
from ._exceptions import (
    FileStoreError,
    InterpError,
    InvalidInputError,
    KernelStartError,
    NoSuchFileError,
    SessionNotFoundError,
)
from ._executor import Limits, run
from ._files import FileStore
from ._kernel import Kernel, make_context, start_kernel
from ._models import (
    EngineStats,
    Event,
    ExecutionFinished,
    ExecutionResult,
    FileInfo,
    SessionInfo,
)
from ._object_store import S3Objects
from ._owner import owner_dir_name
from ._pool import KernelPool
from ._sandbox_files import SandboxFileError, copy_fd, open_in, opened_dir, scan, write_replacing
from ._sessions import SessionManager, check_file_name
from ._snapshots import Snapshots
from ._storage import Storage
from .sandbox import make_backend


class Engine:
    """Runs code in sandboxed kernels: a warm pool, one kernel per session."""

    def __init__(self, config: Config | None = None, *, replica: str | None = None) -> None:
        """``replica``: the server replica this engine serves (``interp serve`` sets it):
        its sandboxes are labelled with it, and a replica whose lease ran out has them
        removed by another (``reap_replicas``), whatever pid namespace each runs in."""
        self.config = config if config is not None else Config()
        self.id = secrets.token_hex(6)
        self._backend = make_backend(self.config, engine_id=self.id, replica=replica)
        self._context = make_context()
        storage = self._storage = Storage(self.config.data_size)
        owner = owner_dir_name(self.id)
        self._pool = KernelPool(
            self._start_kernel,
            size=self.config.pool_size,
            max_kernels=self.config.max_kernels,
            capacity_wait=self.config.capacity_wait,
            pool_dir=self.config.data_dir / "pool" / owner,
            storage=storage,
        )
        snapshots = Snapshots(
            lambda: self.files,
            cap=self.config.max_snapshot_bytes,
            timeout=self.config.timeout,
            inside="/mnt/data" if self._backend.isolated else None,
            adopt=self._backend.adopt,
        )
        self._sessions = sessions = SessionManager(
            self._pool,
            # Per engine: engines sharing a data_dir may use the same session ids.
            root=self.config.data_dir / "sessions" / owner,
            parked_root=self.config.data_dir / "hibernated",
            max_sessions=self.config.max_sessions,
            capacity_wait=self.config.capacity_wait,
            hibernate_after=self.config.hibernate_after,
            max_idle=self.config.session_max_idle,
            storage=storage,
            snapshots=snapshots,
            forget_files=lambda session: self.files.delete_session(session),
        )
        self._pool.reclaim = sessions.reclaim_idle
        self._owner = owner
        self._files: FileStore | None = None
        self._started = False
        self._closed = False

    async def _start_kernel(self, files_dir: Path, session: str) -> Kernel:
        return await start_kernel(
            self._backend,
            self._context,
            files_dir=files_dir,
            session=session,
            timeout=self.config.start_timeout,
        )

    @property
    def isolated(self) -> bool:
        return self._backend.isolated

    async def start(self) -> None:
        """Check the backend, reap what dead engines left, and start warming the pool.

        Idempotent. Returns without waiting for the pool: see ``warm``.
        """
        if self._started:
            return
        await self._backend.open()
        remote = S3Objects(self.config.file_store) if self.config.file_store else None
        try:
            self._files = await asyncio.to_thread(
                FileStore,
                self.config.data_dir,
                max_bytes=self.config.store_size,
                owner=self._owner,
                is_open=lambda session: session in self._sessions,
                remote=remote,
            )
        except (OSError, sqlite3.Error) as exc:
            raise FileStoreError(
                f"cannot open the file store in {self.config.data_dir}: {exc}"
            ) from None
        self._pool.start()
        self._sessions.start()
        self._started = True

    async def warm(self, timeout: float | None = None) -> None:
        """Wait until the pool holds ``pool_size`` ready kernels; ``KernelStartError`` if it
        does not within ``timeout`` seconds."""
        self._check_open()
        try:
            await self._pool.warm(timeout)
        except TimeoutError:
            failures = self._pool.start_failures
            raise KernelStartError(
                f"the pool did not warm within {timeout:g} s"
                + (f" ({failures} kernel starts failed; see the log)" if failures else "")
            ) from None

    async def __aenter__(self) -> Engine:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def files(self) -> FileStore:
        if self._files is None:
            raise InterpError("the engine is not started: use `async with Engine() as engine`")
        return self._files

    async def create_session(
        self, session: str | None = None, *, file_ids: Sequence[str] = (), memory: int | None = None
    ) -> str:
        """Open a session (a fresh id unless one is given) and return its id.

        ``file_ids`` are stored files (from ``create_file``, ``upload`` or an execution)
        to put in its /mnt/data under their base names, as OpenAI's
        ``tool_resources.code_interpreter.file_ids``; given for an open session, they are
        added to it. Waits up to ``capacity_wait`` for a slot when ``max_sessions`` are
        open, then raises ``CapacityError``. ``memory`` (bytes) is the memory limit of a new
        session's kernels instead of ``config.memory``.
        """
        self._check_open()
        given = [self.file(file_id) for file_id in file_ids]
        # Base names only: a directory in the session's /mnt/data may be a link the code
        # planted, and writing through it would land anywhere on the host.
        names = [Path(info.name).name for info in given]
        if len(set(names)) < len(names):
            raise InvalidInputError(f"two of the files have the same name: {sorted(names)}")
        existed = session is not None and session in self._sessions
        if memory is not None and memory < 64 * 1024**2:
            raise InvalidInputError(f"memory limit {memory} bytes is below 64 MiB")
        if memory == self.config.memory:
            memory = None  # the pool's kernels have it already
        opened = await self._sessions.create(session, memory=memory)
        try:
            for info, name in zip(given, names, strict=True):
                await self._place(opened.id, name, self.files.path(info.id))
        except BaseException:
            if not existed:
                with contextlib.suppress(InterpError):
                    await self._sessions.close(opened.id)
            raise
        return opened.id

    def session_dir(self, session: str) -> Path:
        """The host directory the session's code sees as /mnt/data (while the session is
        hibernated, its files are kept elsewhere until its next call)."""
        return self._sessions.get(session).files_dir

    def has_session(self, session: str) -> bool:
        """Whether ``session`` is open (not closed, not expired)."""
        return session in self._sessions

    def sessions(self) -> list[SessionInfo]:
        """Every session: running, idle or hibernated."""
        return self._sessions.infos()

    async def hibernate_session(self, session: str) -> SessionInfo:
        """Hibernate the session now (after its running call, if one is): its kernel saves
        its variables into the file store and is removed; its next call restores them.

        ``HibernationError`` if they cannot be saved (over ``max_snapshot_bytes``, a kernel
        that does not answer within ``timeout``, a full store): the session keeps its
        kernel, and its next call says why.
        """
        self._check_open()
        found = self._sessions.get(session)
        async with found.lock:
            if found.closed:
                raise SessionNotFoundError(f"session {session!r} was closed")
            await self._sessions.hibernate(found)
        return found.info()

    async def close_session(self, session: str, *, keep_files: bool = False) -> None:
        """End the session: its kernel is removed and its /mnt/data deleted.

        The files it stored (images, changed files, uploads to it) are deleted too, unless
        ``keep_files``: then they stay downloadable until deleted or evicted (see
        ``store_size``).
        """
        await self._sessions.close(session, keep_files=keep_files)

    def stats(self) -> EngineStats:
        pool = self._pool
        return EngineStats(
            pool_ready=pool.ready,
            pool_starting=pool.starting,
            leased=pool.leased,
            sessions=self._sessions.live,
            hibernated=len(self._sessions) - self._sessions.live,
            kernels_started=pool.kernels_started,
            kernel_start_failures=pool.start_failures,
            kernels_died=pool.kernels_died,
            acquire=pool.acquire_latency(),
            cold_start=pool.start_latency(),
            idle_kernel_memory_bytes=pool.idle_memory(),
        )

    async def execute(
        self, code: str | bytes, *, session: str | None = None, timeout: float | None = None
    ) -> ExecutionResult:
        """Run ``code`` and return its result. Errors in the code are data, not exceptions.

        Without a session, the code runs in a fresh kernel that is removed afterwards; the
        files it stored are kept (until deleted or evicted).
        """
        async with contextlib.aclosing(
            self.stream(code, session=session, timeout=timeout)
        ) as events:
            async for event in events:
                if isinstance(event, ExecutionFinished):
                    return event.result
        raise InterpError("the execution ended without a result")

    async def stream(
        self, code: str | bytes, *, session: str | None = None, timeout: float | None = None
    ) -> AsyncGenerator[Event, None]:
        """Run ``code``, yielding events while it runs; the last one carries the result."""
        self._check_open()
        text = self._check_code(code)
        limit = self._check_timeout(timeout)
        ephemeral = session is None
        # One capacity wait for the whole call: a session slot, then a kernel.
        deadline = time.monotonic() + self.config.capacity_wait
        target = (
            await self._sessions.create(deadline=deadline)
            if session is None
            else self._sessions.get(session)
        )
        limits = Limits(
            timeout=limit,
            interrupt_grace=self.config.interrupt_grace,
            max_log_bytes=self.config.max_log_bytes,
            max_images=self.config.max_images,
            max_image_bytes=self.config.max_image_bytes,
            max_files=self.config.max_files,
            max_files_bytes=self.config.max_files_bytes,
            max_full_output_bytes=self.config.max_full_output_bytes,
            memory_bytes=target.memory or self.config.memory,
        )
        try:
            async with target.lock:
                self._check_open()
                if target.closed:
                    raise SessionNotFoundError(f"session {target.id!r} was closed")
                kernel = await self._sessions.kernel_for(target, deadline=deadline)
                notice, target.notice = target.notice, None
                try:
                    async with contextlib.aclosing(
                        run(
                            kernel,
                            text,
                            session=target.id,
                            limits=limits,
                            files=self.files,
                            notice=notice,
                        )
                    ) as events:
                        async for event in events:
                            yield event
                finally:
                    target.last_used = time.monotonic()
        finally:
            if ephemeral:
                with contextlib.suppress(InterpError):
                    await self._sessions.close(target.id, keep_files=True)
            # Idle now: a caller waiting for a kernel or a session may take this one's
            # (it is hibernated for them).
            await self._pool.wake()
            await self._sessions.wake()

    async def create_file(self, name: str, content: bytes | Path) -> FileInfo:
        """Store a file for sessions to come (see ``create_session``); return its info.

        ``name`` must be a plain file name: no directories, no ``..``.
        """
        self._check_open()
        return await self._store(name, content, session=None)

    async def upload(self, session: str, name: str, content: bytes | Path) -> FileInfo:
        """Store a file and put it in the session's /mnt/data as ``name``; return its info.

        ``name`` must be a plain file name: no directories, no ``..``.
        """
        self._check_open()
        self._sessions.get(session)
        info = await self._store(name, content, session=session)
        await self._place(session, info.name, self.files.path(info.id))
        return info

    async def _store(self, name: str, content: bytes | Path, *, session: str | None) -> FileInfo:
        clean = check_file_name(name)
        if isinstance(content, Path):
            try:
                size = (await asyncio.to_thread(content.stat)).st_size
            except OSError as exc:
                raise InvalidInputError(f"cannot read {content}: {exc.strerror}") from exc
        else:
            size = len(content)
        if size > self.config.max_upload_bytes:
            raise InvalidInputError(
                f"{clean} is {size} bytes, more than the upload limit of"
                f" {self.config.max_upload_bytes}"
            )
        mime = mimetypes.guess_type(clean)[0] or "application/octet-stream"
        try:
            return await self.files.put(content, name=clean, mime=mime, session=session)
        except OSError as exc:
            raise FileStoreError(f"cannot store {clean}: {exc.strerror}") from exc

    async def _place(self, session: str, name: str, source: Path) -> None:
        """Copy a stored file into the session's /mnt/data."""
        target_session = self._sessions.get(session)
        # Under the session's lock, so that no kernel hand-over moves the directory meanwhile.
        async with target_session.lock:
            await self._sessions.unpark(target_session)
            if self._storage.cap_bytes is not None:
                # The cap comes with the session's kernel: take it now, so a file that does
                # not fit fails here rather than at the session's first execution.
                await self._sessions.kernel_for(target_session)
            if target_session.kernel is not None:
                target_session.kernel.last_scan = None  # the next call looks afresh
            try:
                await asyncio.to_thread(
                    write_replacing, target_session.files_dir, name, source, self._backend.adopt
                )
            except OSError as exc:
                raise InvalidInputError(f"cannot put {name} in /mnt/data: {exc.strerror}") from exc

    async def keep_file(self, file_id: str) -> FileInfo:
        """Make a file a session produced the caller's own: it outlives the session (its
        close and its expiry) and is never evicted, until ``delete_file``."""
        self._check_open()
        if not await asyncio.to_thread(self.files.detach, file_id):
            raise NoSuchFileError(file_id)
        return self.file(file_id)

    async def delete_file(self, file_id: str) -> None:
        """Delete a stored file; ``NoSuchFileError`` if there is none of that id."""
        self._check_open()
        try:
            deleted = await asyncio.to_thread(self.files.delete, file_id)
        except OSError as exc:
            raise FileStoreError(f"cannot delete {file_id}: {exc.strerror}") from exc
        if not deleted:
            raise NoSuchFileError(file_id)

    def file(self, file_id: str) -> FileInfo:
        info = self.files.get(file_id)
        if info is None:
            raise NoSuchFileError(file_id)
        return info

    async def download(self, file_id: str, *, session: str | None = None) -> bytes:
        """A stored file's bytes. With ``session``, a file of another session is refused."""
        info = self.file(file_id)
        if session is not None and info.session != session:
            raise InvalidInputError(f"file {file_id!r} does not belong to session {session!r}")
        return await asyncio.to_thread(self.files.read, file_id)

    async def list_session_files(self, session: str) -> list[tuple[str, int]]:
        """The regular files in a session's /mnt/data (``/``-separated names, sizes),
        looked at as the code may have left them: no link followed, within the scan's caps."""
        self._check_open()
        root = await self._sessions.files_of(self._sessions.get(session))
        found = await asyncio.to_thread(scan, root, deadline=time.monotonic() + 1.0)
        return sorted((name, signature[0]) for name, signature in found.files.items())

    async def read_session_file(self, session: str, name: str, *, max_bytes: int) -> bytes:
        """The bytes of a file in a session's /mnt/data, as the code left it (no link
        followed, no FIFO opened); ``InvalidInputError`` if missing or over ``max_bytes``."""
        self._check_open()
        root = await self._sessions.files_of(self._sessions.get(session))

        def read() -> bytes:
            fd = open_in(root, name)
            try:
                buffer = io.BytesIO()
                copy_fd(fd, buffer, max_bytes=max_bytes, deadline=time.monotonic() + 5.0)
                return buffer.getvalue()
            finally:
                os.close(fd)

        try:
            return await asyncio.to_thread(read)
        except SandboxFileError as exc:
            raise InvalidInputError(f"cannot read /mnt/data/{name}: {exc}") from None
        except OSError as exc:
            raise InvalidInputError(f"cannot read /mnt/data/{name}: {exc.strerror}") from None

    async def remove_session_file(self, session: str, name: str) -> None:
        """Delete a file at the top of a session's /mnt/data, if it is there (a link there
        is removed itself, never followed)."""
        self._check_open()
        root = await self._sessions.files_of(self._sessions.get(session))
        clean = check_file_name(name)

        def remove() -> None:
            with opened_dir(root) as fd, contextlib.suppress(FileNotFoundError):
                os.unlink(clean, dir_fd=fd)

        try:
            await asyncio.to_thread(remove)
        except OSError as exc:
            raise InvalidInputError(f"cannot remove /mnt/data/{name}: {exc.strerror}") from None

    async def reap_replicas(self, gone: Collection[str]) -> int:
        """Remove the sandboxes of the server replicas ``gone`` (their lease ran out; see
        ``Engine(replica=…)``); how many. A replica's sandboxes live in its own pid
        namespace (a container, a pod), where no engine of another can judge them by pid."""
        self._check_open()
        return await self._backend.reap_replicas(set(gone)) if gone else 0

    def file_path(self, file_id: str) -> Path:
        self.file(file_id)
        return self.files.path(file_id)

    async def close(self) -> None:
        """Remove every kernel this engine started. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._sessions.close_all()
            await self._pool.close()
        finally:
            await self._backend.close()
            if self._files is not None:
                self._files.close()
            self._context.term()

    def _check_open(self) -> None:
        if self._closed:
            raise InterpError("the engine is closed")
        if not self._started:
            raise InterpError("the engine is not started: use `async with Engine() as engine`")

    def _check_code(self, code: str | bytes) -> str:
        if isinstance(code, bytes):
            try:
                code = code.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = code[exc.start : exc.start + 1]
                raise InvalidInputError(
                    f"code is not valid UTF-8 (byte {exc.start}: {bad!r})"
                ) from exc
        if not isinstance(code, str):
            raise InvalidInputError(f"code must be str or bytes, not {type(code).__name__}")
        if not code.strip():
            raise InvalidInputError("code is empty")
        try:
            size = len(code.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidInputError("code contains characters that are not valid Unicode") from exc
        if size > self.config.max_code_bytes:
            raise InvalidInputError(
                f"code is {size} bytes, more than the limit of {self.config.max_code_bytes}"
            )
        return code

    def _check_timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self.config.timeout
        if not isinstance(timeout, int | float) or not timeout > 0:
            raise InvalidInputError(
                f"timeout must be a positive number of seconds, not {timeout!r}"
            )
        return float(timeout)
