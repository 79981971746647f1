"""An engine without kernels, for the door tests: the server's rules need its surface, not
its sandbox. Code "runs" by echoing itself (``ran: <code>``), at once; ``SLEEP <s>`` in the
code makes it take that long; files live in a dict; ``full`` refuses new sessions as an
engine at its capacity does."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from interp import (
    CapacityError,
    Event,
    ExecutionFinished,
    ExecutionResult,
    ExecutionStarted,
    ExecutionStatus,
    FileInfo,
    LogChunk,
    LogsOutput,
    NoSuchFileError,
    SessionInfo,
)


class FakeEngine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.opened: dict[str, set[str]] = {}
        """Session id -> the file ids placed in it."""
        self.files: dict[str, FileInfo] = {}
        self.ran: list[tuple[str, str]] = []
        """(session, code) of every execution."""
        self.full = False

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        self.opened.clear()

    def has_session(self, session: str) -> bool:
        return session in self.opened

    def sessions(self) -> list[SessionInfo]:
        now = datetime.now(UTC)
        made = {"created_at": now, "last_used_at": now, "files_dir": self.root, "state": "idle"}
        return [SessionInfo(id=s, has_kernel=False, busy=False, **made) for s in self.opened]

    async def create_session(
        self, session: str | None = None, *, file_ids: Sequence[str] = (), memory: int | None = None
    ) -> str:
        if self.full and session not in self.opened:
            raise CapacityError("64 sessions are open; close one or raise max_sessions")
        session = session or "sess_" + secrets.token_hex(6)
        placed = self.opened.setdefault(session, set())
        for file_id in file_ids:
            self.file(file_id)
            placed.add(file_id)
        return session

    async def close_session(self, session: str, *, keep_files: bool = False) -> None:
        self.opened.pop(session, None)

    async def stream(
        self, code: str | bytes, *, session: str | None = None, timeout: float | None = None
    ) -> AsyncGenerator[Event, None]:
        text = code.decode() if isinstance(code, bytes) else code
        session = session or await self.create_session()
        self.ran.append((session, text))
        run_id = "exec_" + secrets.token_hex(6)
        yield ExecutionStarted(id=run_id, session=session, code=text)
        if "SLEEP " in text:
            await asyncio.sleep(float(text.split("SLEEP ", 1)[1].split()[0]))
        logs = f"ran: {text}\n"
        yield LogChunk(stream="stdout", text=logs)
        result = ExecutionResult(
            id=run_id,
            session=session,
            code=text,
            status=ExecutionStatus.COMPLETED,
            outputs=[LogsOutput(logs=logs)],
            duration_s=0.0,
        )
        yield ExecutionFinished(result=result)

    async def create_file(self, name: str, content: bytes | Path) -> FileInfo:
        data = content.read_bytes() if isinstance(content, Path) else content  # noqa: ASYNC240
        file_id = "file-" + secrets.token_hex(12)
        (self.root / file_id).write_bytes(data)
        info = FileInfo(
            id=file_id,
            name=name,
            bytes=len(data),
            mime="application/octet-stream",
            created_at=datetime.now(UTC),
            session=None,
        )
        self.files[file_id] = info
        return info

    async def keep_file(self, file_id: str) -> FileInfo:
        return self.file(file_id)

    async def delete_file(self, file_id: str) -> None:
        self.file(file_id)
        del self.files[file_id]

    def file(self, file_id: str) -> FileInfo:
        if file_id not in self.files:
            raise NoSuchFileError(file_id)
        return self.files[file_id]

    def file_path(self, file_id: str) -> Path:
        self.file(file_id)
        return self.root / file_id

    async def remove_session_file(self, session: str, name: str) -> None:
        return None
