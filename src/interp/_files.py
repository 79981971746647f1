"""The file store: produced images and files on disk, their metadata in SQLite.

Bytes never stay in memory longer than one write; ids look like OpenAI's (``file-…``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ._exceptions import InvalidInputError
from ._models import FileInfo

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    mime TEXT NOT NULL,
    created_at TEXT NOT NULL,
    session TEXT
)
"""


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


class FileStore:
    """Files under ``root/files``, indexed in ``root/files.db``."""

    def __init__(self, root: Path) -> None:
        self._dir = root / "files"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(root / "files.db", check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)

    def path(self, file_id: str) -> Path:
        if not file_id.startswith("file-") or not file_id[5:].isalnum():
            raise InvalidInputError(f"not a file id: {file_id!r}")
        return self._dir / file_id

    async def save(self, data: bytes, *, name: str, mime: str, session: str | None) -> FileInfo:
        return await asyncio.to_thread(self._save, data, name, mime, session)

    def _save(self, data: bytes, name: str, mime: str, session: str | None) -> FileInfo:
        return self._through_scratch(lambda path: path.write_bytes(data), name, mime, session)

    def _index(self, info: FileInfo) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
                (
                    info.id,
                    info.name,
                    info.bytes,
                    info.mime,
                    info.created_at.isoformat(),
                    info.session,
                ),
            )

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

    def _through_scratch(
        self, write: Callable[[Path], object], name: str, mime: str, session: str | None
    ) -> FileInfo:
        """Write a new file at a scratch path, then adopt it; nothing is left on failure."""
        scratch = self.scratch_path()
        try:
            write(scratch)
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise
        return self._adopt(scratch, name, mime, session)

    def scratch_path(self) -> Path:
        """A fresh path beside the store, for a file to be adopted later."""
        scratch = self._dir / "scratch"
        scratch.mkdir(exist_ok=True)
        return scratch / secrets.token_hex(12)

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
        os.replace(path, self.path(info.id))
        self._index(info)
        return info

    async def copy_in(
        self, source: Path, *, name: str, mime: str, session: str | None
    ) -> FileInfo | None:
        """Store a copy of a regular file; ``None`` if it is not one (a planted symlink)."""
        return await asyncio.to_thread(self._copy_in, source, name, mime, session)

    def _copy_in(self, source: Path, name: str, mime: str, session: str | None) -> FileInfo | None:
        try:
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                return None

            def copy(path: Path) -> None:
                with path.open("wb") as dst:
                    shutil.copyfileobj(src, dst)

            return self._through_scratch(copy, name, mime, session)

    def read(self, file_id: str) -> bytes:
        """A stored file's bytes. Refuses anything but a regular file in the store itself:
        a symlink planted at a stored path is never followed."""
        try:
            fd = os.open(self.path(file_id), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {file_id}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as stored:
            if not stat.S_ISREG(os.fstat(stored.fileno()).st_mode):
                raise InvalidInputError(f"cannot read {file_id}: not a regular file")
            return stored.read()

    def get(self, file_id: str) -> FileInfo | None:
        self.path(file_id)
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, bytes, mime, created_at, session FROM files WHERE id = ?",
                (file_id,),
            ).fetchone()
        if row is None:
            return None
        return FileInfo(
            id=row[0],
            name=row[1],
            bytes=row[2],
            mime=row[3],
            created_at=datetime.fromisoformat(row[4]),
            session=row[5],
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
