"""Sessions: a conversation's kernel and its /mnt/data directory.

Calls on one session run one at a time, in arrival order; different sessions run
concurrently. A session whose kernel died gets a fresh one on its next call, with its
files kept.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ._exceptions import InvalidInputError
from ._pool import Kernel

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


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


@dataclass
class Session:
    id: str
    files_dir: Path
    created_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    kernel: Kernel | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    async def close(self) -> None:
        """Remove the kernel and the session's files."""
        self.closed = True
        if self.kernel is not None:
            await self.kernel.remove()
            self.kernel = None
        await asyncio.to_thread(shutil.rmtree, self.files_dir, True)
