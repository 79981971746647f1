"""Per-key quotas on what a key keeps on the server: its files, their bytes (container
files' included) and its live containers.

Sessions are shared out by ``Places``; these bound the disk and the objects, so that one
key cannot fill the store every key writes to. A request that would pass a quota is
refused whole with a 429 (``insufficient_quota``); deleting files or containers makes room.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ._errors import APIError
from ._locks import KeyedLocks
from ._store import Store

RETRY_AFTER = 60
"""Seconds a client told it is over a quota may wait: room comes from deletes, not time."""


@dataclass(frozen=True)
class Limits:
    files: int
    bytes: int
    containers: int


class Quotas:
    def __init__(self, store: Store, limits: Limits) -> None:
        self._store = store
        self.limits = limits
        self._locks = KeyedLocks()

    @asynccontextmanager
    async def room(
        self, owner: str, *, files: int = 0, size: int = 0, containers: int = 0
    ) -> AsyncIterator[None]:
        """Check that ``owner`` has room for what it is adding, then hold its room while
        the body adds it: the key's requests check (and add) one at a time, so two
        cannot both pass a quota that has room for one."""
        async with self._locks.hold(owner):
            used = await self._store.usage(owner)
            limits = self.limits
            if files and used.files + files > limits.files:
                raise _over(f"{limits.files} files", "Delete some files")
            if size and used.bytes + size > limits.bytes:
                room = max(limits.bytes - used.bytes, 0)
                raise _over(
                    f"{limits.bytes} bytes of files ({used.bytes} kept, {room} free, this"
                    f" needs {size})",
                    "Delete some files or containers",
                )
            if containers and used.containers + containers > limits.containers:
                raise _over(f"{limits.containers} containers", "Delete some containers")
            yield


def _over(what: str, remedy: str) -> APIError:
    return APIError(
        429,
        f"This API key may keep at most {what}. {remedy} to make room.",
        type="insufficient_quota",
        code="insufficient_quota",
        retry_after=RETRY_AFTER,
        retry_now=False,
    )
