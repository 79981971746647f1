"""The file store: produced images and files on disk, their metadata in SQLite.

With an object store (``interp._object_store``: ``file_store = "s3://…"``) the bucket holds
the bytes of record and the directory is also a cache of the files other engines stored.

Bytes never stay in memory longer than one write; ids look like OpenAI's (``file-…``).
The store has a size budget: a new file that does not fit first evicts, oldest first, the
files of sessions that are closed; if that is not enough, it is refused
(``StoreFullError``). Files given by the caller (``create_file``, uploads) and files of
open sessions are never evicted; they go when deleted, or when their session closes.

Methods without ``async`` block: call them from a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sqlite3
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ._exceptions import InvalidInputError, StoreFullError
from ._models import FileInfo
from ._object_store import S3Objects
from ._owner import stale_dirs
from ._sandbox_files import copy_fd, remove_tree

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    mime TEXT NOT NULL,
    created_at TEXT NOT NULL,
    session TEXT,
    cached INTEGER NOT NULL DEFAULT 0
)
"""
_SELECT = "SELECT id, name, bytes, mime, created_at, session FROM files"
# Hibernated sessions: each one's snapshot (a file of the session in ``files``), with what
# was not kept. A row lives from the hibernation to the restore (or the session's end).
_SNAPSHOTS = """
CREATE TABLE IF NOT EXISTS snapshots (
    session TEXT PRIMARY KEY,
    file_id TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    taken_at TEXT NOT NULL,
    skipped TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""
SNAPSHOT_MIME = "application/vnd.interp.snapshot"


@dataclass(frozen=True)
class Snapshot:
    """A hibernated session's saved variables, as the store keeps them."""

    session: str
    file_id: str
    bytes: int
    taken_at: datetime
    skipped: list[tuple[str, str]]
    """Names not kept, each with its value's type."""
    created_at: datetime
    """When the session was created."""

    @classmethod
    def _of(cls, row: tuple[str, str, int, str, str, str]) -> Snapshot:
        return cls(
            session=row[0],
            file_id=row[1],
            bytes=row[2],
            taken_at=datetime.fromisoformat(row[3]),
            skipped=[(str(n), str(t)) for n, t in json.loads(row[4])],
            created_at=datetime.fromisoformat(row[5]),
        )


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def _info(row: tuple[str, str, int, str, str, str | None]) -> FileInfo:
    return FileInfo(
        id=row[0],
        name=row[1],
        bytes=row[2],
        mime=row[3],
        created_at=datetime.fromisoformat(row[4]),
        session=row[5],
    )


class FileStore:
    """Files under ``root/files``, indexed in ``root/files.db``, within ``max_bytes``.

    ``owner`` names this engine's scratch directory (see ``interp._owner``); scratch
    directories of engines that are gone are removed when a store opens.
    ``is_open(session)`` tells whether a session's files are still in use. With
    ``remote``, every file is written there too before it counts as stored, and a file
    missing here is looked for there (a copy kept as ``cached``: evicted first, as it can
    be fetched again).
    """

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        owner: str,
        is_open: Callable[[str], bool] = lambda session: False,
        remote: S3Objects | None = None,
    ) -> None:
        self._dir = root / "files"
        scratch_parent = self._dir / "scratch"
        scratch_parent.mkdir(parents=True, exist_ok=True)
        for stale in stale_dirs(scratch_parent):
            remove_tree(stale)
        self._scratch = scratch_parent / owner
        self._scratch.mkdir(exist_ok=True)
        self._max_bytes = max_bytes
        self._is_open = is_open
        self._remote = remote
        if remote is not None:
            remote.open()
        self._db = sqlite3.connect(root / "files.db", check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            # Under WAL, NORMAL cannot corrupt the index; it spares an fsync per stored file.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.execute(_SNAPSHOTS)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
            if "cached" not in columns:  # a store made before there were copies
                self._db.execute("ALTER TABLE files ADD COLUMN cached INTEGER NOT NULL DEFAULT 0")
            self._used: int = self._db.execute(
                "SELECT COALESCE(SUM(bytes), 0) FROM files"
            ).fetchone()[0]

    @property
    def used_bytes(self) -> int:
        return self._used

    def path(self, file_id: str) -> Path:
        if not file_id.startswith("file-") or not file_id[5:].isalnum():
            raise InvalidInputError(f"not a file id: {file_id!r}")
        return self._dir / file_id

    async def save(self, data: bytes, *, name: str, mime: str, session: str | None) -> FileInfo:
        return await asyncio.to_thread(self._save, data, name, mime, session)

    def _save(self, data: bytes, name: str, mime: str, session: str | None) -> FileInfo:
        return self._through_scratch(lambda path: path.write_bytes(data), name, mime, session)

    async def put(
        self, content: bytes | Path, *, name: str, mime: str, session: str | None
    ) -> FileInfo:
        """Store bytes, or a copy of a host file the caller chose (links are followed)."""
        if isinstance(content, Path):
            return await asyncio.to_thread(self._put_copy, content, name, mime, session)
        return await self.save(content, name=name, mime=mime, session=session)

    def _put_copy(self, source: Path, name: str, mime: str, session: str | None) -> FileInfo:
        return self._through_scratch(
            lambda path: shutil.copyfile(source, path), name, mime, session
        )

    def store_fd(
        self,
        source: int,
        *,
        name: str,
        mime: str,
        session: str | None,
        max_bytes: int,
        deadline: float,
    ) -> FileInfo:
        """Store a copy of an open regular file, within ``max_bytes`` and ``deadline``.

        See ``interp._sandbox_files.copy_fd`` for what is refused.
        """

        def copy(path: Path) -> None:
            with path.open("xb") as target:
                copy_fd(source, target, max_bytes=max_bytes, deadline=deadline)

        return self._through_scratch(copy, name, mime, session)

    def _through_scratch(
        self, write: Callable[[Path], object], name: str, mime: str, session: str | None
    ) -> FileInfo:
        """Write a new file at a scratch path, then adopt it; nothing is left on failure."""
        scratch = self.scratch_path()
        try:
            write(scratch)
            return self._adopt(scratch, name, mime, session)
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise

    def scratch_path(self) -> Path:
        """A fresh path beside the store, for a file to be adopted later."""
        return self._scratch / secrets.token_hex(12)

    async def adopt(self, path: Path, *, name: str, mime: str, session: str | None) -> FileInfo:
        """Move a file written at ``scratch_path()`` into the store."""
        return await asyncio.to_thread(self._adopt, path, name, mime, session)

    def _adopt(self, path: Path, name: str, mime: str, session: str | None) -> FileInfo:
        info = FileInfo(
            id=new_file_id(),
            name=name,
            bytes=path.stat().st_size,
            mime=mime,
            created_at=datetime.now(UTC),
            session=session,
        )
        if self._remote is not None:
            self._remote.put(info.id, path, _metadata(info), mime)
        try:
            with self._lock:
                self._make_room(info.bytes)
                self._insert(path, info, cached=False)
        except BaseException:
            if self._remote is not None:
                self._remote.delete(info.id)
            raise
        return info

    def _insert(self, path: Path, info: FileInfo, *, cached: bool) -> None:
        """Move a file into the store and index it (under the lock, room made)."""
        os.replace(path, self.path(info.id))
        with self._db:
            self._db.execute(
                "INSERT INTO files (id, name, bytes, mime, created_at, session, cached)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    info.id,
                    info.name,
                    info.bytes,
                    info.mime,
                    info.created_at.isoformat(),
                    info.session,
                    int(cached),
                ),
            )
        self._used += info.bytes

    def _make_room(self, size: int) -> None:
        """Evict, oldest first, until ``size`` more bytes fit: files of closed sessions
        (from everywhere); with a remote, also any file's copy here (it can be fetched
        again), copies of others' files first."""
        if self._used + size <= self._max_bytes:
            return
        # Without a remote, only session files may go; with one, any copy here.
        rows = self._db.execute(
            "SELECT id, bytes, session, cached FROM files WHERE session IS NOT NULL OR ?"
            " ORDER BY cached DESC, created_at, rowid",
            (self._remote is not None,),
        ).fetchall()
        for file_id, nbytes, session, cached in rows:
            if self._used + size <= self._max_bytes:
                return
            if session is not None and not cached and not self._is_open(session):
                self._forget(file_id, nbytes)
            elif self._remote is not None:
                self._forget(file_id, nbytes, everywhere=False)
        if self._used + size > self._max_bytes:
            raise StoreFullError(
                f"the file store is full: {size} bytes do not fit in {self._max_bytes}"
                f" ({self._used} in use by files that cannot be evicted)",
                hint="delete files you no longer need or raise store_size",
            )

    def _forget(self, file_id: str, nbytes: int, *, everywhere: bool = True) -> None:
        with self._db:
            self._db.execute("DELETE FROM files WHERE id = ?", (file_id,))
        self.path(file_id).unlink(missing_ok=True)
        self._used -= nbytes
        if everywhere and self._remote is not None:
            self._remote.delete(file_id)

    def delete(self, file_id: str) -> bool:
        """Delete a stored file; ``False`` if there was none of that id."""
        self.path(file_id)
        with self._lock:
            row = self._db.execute("SELECT bytes FROM files WHERE id = ?", (file_id,)).fetchone()
            if row is not None:
                self._forget(file_id, row[0])
                return True
        if self._remote is None or not self._remote.exists(file_id):
            return False
        self._remote.delete(file_id)
        return True

    def detach(self, file_id: str) -> bool:
        """Make a file the caller's own: no longer its session's, so it outlives the
        session and is never evicted. ``False`` if there is no file of that id."""
        info = self.get(file_id)
        if info is None:
            return False
        with self._lock, self._db:
            self._db.execute("UPDATE files SET session = NULL, cached = 0 WHERE id = ?", (file_id,))
        if self._remote is not None:
            self._remote.relabel(
                file_id, _metadata(info.model_copy(update={"session": None})), info.mime
            )
        return True

    def keep_snapshot(
        self,
        source: int,
        *,
        session: str,
        skipped: list[tuple[str, str]],
        taken_at: datetime,
        created_at: datetime,
        max_bytes: int,
        deadline: float,
    ) -> Snapshot:
        """Store the snapshot open at ``source`` as the session's, in place of any before
        (copied within ``max_bytes`` and ``deadline``, as ``store_fd``)."""
        info = self.store_fd(
            source,
            name=".snapshot",
            mime=SNAPSHOT_MIME,
            session=session,
            max_bytes=max_bytes,
            deadline=deadline,
        )
        kept = Snapshot(session, info.id, info.bytes, taken_at, skipped, created_at)
        with self._lock:
            before = self._db.execute(
                "SELECT file_id FROM snapshots WHERE session = ?", (session,)
            ).fetchone()
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO snapshots"
                    " (session, file_id, bytes, taken_at, skipped, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        session,
                        info.id,
                        info.bytes,
                        taken_at.isoformat(),
                        json.dumps(skipped),
                        created_at.isoformat(),
                    ),
                )
        if before is not None:
            self.delete(before[0])
        return kept

    def snapshots(self) -> list[Snapshot]:
        """Every hibernated session's snapshot."""
        with self._lock:
            rows = self._db.execute(
                "SELECT session, file_id, bytes, taken_at, skipped, created_at FROM snapshots"
            ).fetchall()
        return [Snapshot._of(row) for row in rows]

    def claim_snapshot(self, session: str) -> Snapshot | None:
        """Take the session's snapshot out of the hibernated ones (its file stays until
        deleted): ``None`` if it has none, or another engine on this store took it."""
        with self._lock, self._db:
            row = self._db.execute(
                "DELETE FROM snapshots WHERE session = ?"
                " RETURNING session, file_id, bytes, taken_at, skipped, created_at",
                (session,),
            ).fetchone()
        return None if row is None else Snapshot._of(row)

    def delete_session(self, session: str) -> int:
        """Delete every file a session stored, its snapshot too; return how many."""
        with self._lock:
            with self._db:
                self._db.execute("DELETE FROM snapshots WHERE session = ?", (session,))
            rows = self._db.execute(
                "SELECT id, bytes FROM files WHERE session = ?", (session,)
            ).fetchall()
            for file_id, nbytes in rows:
                self._forget(file_id, nbytes)
        return len(rows)

    def read(self, file_id: str) -> bytes:
        """A stored file's bytes. Refuses anything but a regular file in the store itself:
        a symlink planted at a stored path is never followed."""
        if self.get(file_id) is None:
            raise InvalidInputError(f"cannot read {file_id}: no such file")
        try:
            fd = os.open(self.path(file_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {file_id}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as stored:
            if not stat.S_ISREG(os.fstat(stored.fileno()).st_mode):
                raise InvalidInputError(f"cannot read {file_id}: not a regular file")
            return stored.read()

    def get(self, file_id: str) -> FileInfo | None:
        """A file's info; with a remote, a file stored by another engine is fetched here
        first (its bytes, to be placed or read)."""
        self.path(file_id)
        with self._lock:
            row = self._db.execute(_SELECT + " WHERE id = ?", (file_id,)).fetchone()
        if row is not None:
            return _info(row)
        return None if self._remote is None else self._fetch(self._remote, file_id)

    def _fetch(self, remote: S3Objects, file_id: str) -> FileInfo | None:
        scratch = self.scratch_path()
        try:
            fetched = remote.fetch(file_id, scratch, max_bytes=self._max_bytes)
            if fetched is None:
                return None
            meta = fetched.metadata
            info = FileInfo(
                id=file_id,
                name=meta.get("name") or file_id,
                bytes=scratch.stat().st_size,
                mime=meta.get("mime") or "application/octet-stream",
                created_at=datetime.fromisoformat(meta["created-at"])
                if "created-at" in meta
                else datetime.now(UTC),
                session=meta.get("session") or None,
            )
            with self._lock:
                row = self._db.execute(_SELECT + " WHERE id = ?", (file_id,)).fetchone()
                if row is not None:  # fetched meanwhile by another thread
                    return _info(row)
                self._make_room(info.bytes)
                self._insert(scratch, info, cached=True)
            return info
        finally:
            scratch.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._remote is not None:
            self._remote.close()
        remove_tree(self._scratch)


def _metadata(info: FileInfo) -> dict[str, str]:
    """What another engine needs to know of a file it fetches."""
    return {
        "name": info.name,
        "mime": info.mime,
        "created-at": info.created_at.isoformat(),
        "session": info.session or "",
    }
