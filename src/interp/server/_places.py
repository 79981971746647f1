"""The engine's live sessions as places that keys hold: a thread's, a container's, an
MCP session's. A key holds at most ``per_key`` of them, and the engine ``total``. A new
one that would pass either limit first takes the place of the session idle longest (the
key's own when the key is at its quota, else anyone's): that session is hibernated (its
variables saved, its kernel removed; its next call restores them), or, if its variables
cannot be saved, closed with its stored files kept and opened again at its next call
without its variables. Only when every candidate is running code is the new one refused
(``CapacityError``: OpenAI's 429, ``rate_limit_exceeded`` for a run), so that no key can
take every place from the others, and an idle session never keeps a place someone
needs. Hibernated sessions hold no place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from .. import CapacityError, Engine, HibernationError, SessionInfo
from ._replicas import RESTARTED, Replicas

log = logging.getLogger("interp.server")


class Places:
    def __init__(
        self, engine: Engine, *, per_key: int, total: int, replicas: Replicas | None = None
    ) -> None:
        self._engine = engine
        self.per_key = per_key
        self.total = total
        self._replicas = replicas
        self._owners: dict[str, str] = {}
        """Session id -> the owner it was opened for."""
        self._restarted: set[str] = set()
        """Sessions opened again (after a reclaim, an expiry, a restart, on another
        replica), whose next call is to say so."""
        self._lock = asyncio.Lock()

    async def open(
        self,
        owner: str,
        session: str,
        *,
        file_ids: Sequence[str] = (),
        memory: int | None = None,
    ) -> str:
        """The session, opened for ``owner`` if it is not open (making room as above);
        ``file_ids`` are put in its /mnt/data either way."""
        engine, replicas = self._engine, self._replicas
        # Taken over by another replica since: this kernel's variables are stale.
        if replicas and engine.has_session(session) and not await replicas.holds(session):
            log.info("session %s is held by another replica now", session)
            await engine.close_session(session, keep_files=True)
        if not engine.has_session(session):
            async with self._lock:
                if not engine.has_session(session):
                    await self._make_room(owner)
                    await engine.create_session(session, file_ids=file_ids, memory=memory)
                    self._owners[session] = owner
                    if replicas is not None and await replicas.claim(session):
                        self._restarted.add(session)
                    return session
        if file_ids:
            await engine.create_session(session, file_ids=file_ids)
        return session

    async def elsewhere(self, session: str) -> bool:
        """Whether another live replica holds the session's kernel."""
        return self._replicas is not None and await self._replicas.elsewhere(session) is not None

    def restart_note(self, session: str) -> str | None:
        """What the next call in ``session`` is to say first (once): that its kernel is
        a new one."""
        if session in self._restarted:
            self._restarted.discard(session)
            return RESTARTED
        return None

    async def forget(self, session: str) -> None:
        """The thread or container is deleted: its kernel's record goes too."""
        self._restarted.discard(session)
        if self._replicas is not None:
            await self._replicas.forget(session)

    async def _make_room(self, owner: str) -> None:
        sessions = self._engine.sessions()
        for gone in set(self._owners) - {info.id for info in sessions}:  # closed meanwhile
            del self._owners[gone]
        live = {info.id: info for info in sessions if info.state != "hibernated"}
        mine = [live[s] for s, held_by in self._owners.items() if held_by == owner and s in live]
        if len(mine) >= self.per_key:
            await self._give_up(mine, f"this key holds its {self.per_key} sessions")
        elif len(live) >= self.total:
            await self._give_up(list(live.values()), f"{self.total} sessions are open")

    async def _give_up(self, candidates: list[SessionInfo], full: str) -> None:
        idle = sorted((s for s in candidates if not s.busy), key=lambda s: s.last_used_at)
        if not idle:
            raise CapacityError(
                f"{full} and each is running code", hint="try again when one has finished"
            )
        session = idle[0].id
        log.info("session %s gives its place up (%s; idle longest)", session, full)
        try:
            await self._engine.hibernate_session(session)
        except HibernationError as exc:
            log.info("session %s is closed instead: %s", session, exc.message)
            await self._engine.close_session(session, keep_files=True)
            self._owners.pop(session, None)


__all__ = ["Places"]
