"""Containers: OpenAI's name for a code interpreter's sandbox, here one engine session.

A container is stored (kind ``container``) with its files (kind ``container_file``). Every
file is backed by a file of the engine's store that the server keeps (``keep_file``), so
the session can be made again with its files (after the engine's own idle expiry or a
restart of the server) for as long as the container lives. A container file's id is its
stored file's id in another spelling (``cfile_<hex>`` for ``file-<hex>``).

A container expires when idle for its ``expires_after.minutes``: its session is closed,
its files deleted, and using it is OpenAI's 400 "Container is expired.".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import psutil

from .. import Engine, FileInfo, InterpError
from . import _wire as wire
from . import _wire_responses as rwire
from ._errors import APIError, bad_request, not_found
from ._locks import KeyedLocks
from ._places import Places
from ._quotas import Quotas
from ._store import Store
from ._wire_responses import Container, ContainerFile
from .protocol.responses import MEMORY_BYTES

log = logging.getLogger("interp.server")

DEFAULT_MINUTES = 20
SWEEP_S = 15.0
"""How often expired containers are looked for; one is also refused the moment it is used."""


def cfile_id(file_id: str) -> str:
    return "cfile_" + file_id.removeprefix("file-")


def stored_id(cfile: str) -> str:
    return "file-" + cfile.removeprefix("cfile_")


def expired_error() -> APIError:
    return bad_request("Container is expired.")


def memory_bytes(limit: str | None, *, param: str) -> int | None:
    """The bytes of a ``memory_limit``; refused above what this host has."""
    if limit is None:
        return None
    wanted = MEMORY_BYTES[limit]
    total = psutil.virtual_memory().total
    if wanted > total:
        raise bad_request(
            f"memory_limit {limit} is more than this host has ({total / 1024**3:.0f} GiB).",
            param=param,
        )
    return wanted


class Containers:
    def __init__(self, *, store: Store, engine: Engine, places: Places, quotas: Quotas) -> None:
        self._store = store
        self._quotas = quotas
        self._engine = engine
        self._places = places
        self._locks = KeyedLocks()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="interp-containers")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    # The container objects.

    async def create(
        self,
        owner: str,
        *,
        name: str,
        file_ids: list[str],
        minutes: int = DEFAULT_MINUTES,
        memory_limit: str | None = None,
        param: str = "file_ids",
    ) -> Container:
        """A new container with copies of the owner's ``/v1/files`` in its /mnt/data.

        Its session opens here, so that the files are in place (and a bad file refused)
        before the container is answered; its kernel starts with the first code.
        """
        memory = memory_bytes(memory_limit, param="memory_limit")
        await wire.check_files(self._store, owner, file_ids, param)
        created = rwire.container(name=name, minutes=minutes, memory_limit=memory_limit)
        async with self._quotas.room(owner, containers=1):
            await self._store.create("container", owner, created)
        try:
            await self._places.open(owner, created.id, memory=memory)
            for file_id in file_ids:
                await self.add_stored(owner, created.id, file_id, source="user")
        except BaseException:
            await self.delete(owner, created.id)
            raise
        return created

    async def get(self, owner: str, container_id: str) -> Container:
        """The container, expired or not; 404 if the owner has none of that id."""
        found = await self._store.get(rwire.CONTAINER, owner, container_id)
        if found is None:
            raise not_found("container", container_id)
        if found.status == "running" and _idle_out(found):
            await self._expire(owner, found)
        return found

    async def live(self, owner: str, container_id: str) -> Container:
        """The container, to be used: 400 "Container is expired." once it has expired."""
        found = await self.get(owner, container_id)
        if found.status != "running":
            raise expired_error()
        return found

    async def delete(self, owner: str, container_id: str) -> None:
        if await self._store.get(rwire.CONTAINER, owner, container_id) is None:
            raise not_found("container", container_id)
        await self._drop(owner, container_id, expire=False)

    # Using one. Whatever changes a container, its session or its files holds the
    # container's lock and reads the container afresh under it, so a request racing a
    # delete or an expiry either finishes before it (and is undone by it) or finds the
    # container gone: nothing is recorded, and no session opened, for a container no more.

    async def session(self, owner: str, container_id: str) -> str:
        """The container's engine session, opened again with its files if the engine had
        closed it; marks the container active."""
        async with self._locks.hold(container_id):
            await self._open(owner, container_id)
        return container_id

    async def touch(self, owner: str, container_id: str) -> None:
        """Mark the container active, if it still runs."""
        async with self._locks.hold(container_id):
            with contextlib.suppress(APIError):
                await self._open(owner, container_id, session=False)

    async def _open(self, owner: str, container_id: str, *, session: bool = True) -> None:
        """Under the container's lock: 404 once deleted, 400 once expired; else mark it
        active and, with ``session``, make sure its engine session is open."""
        found = await self._store.get(rwire.CONTAINER, owner, container_id)
        if found is None:
            raise not_found("container", container_id)
        if found.status != "running":
            raise expired_error()
        if session and not self._engine.has_session(container_id):
            files = await self._store.all(rwire.CONTAINER_FILE, owner, parent=container_id)
            stored = [stored_id(f.id) for f in files]
            memory = memory_bytes(found.memory_limit, param="memory_limit")
            await self._places.open(owner, container_id, file_ids=stored, memory=memory)
        found.last_active_at = wire.now()
        await self._store.set_fields("container", owner, found, ["last_active_at"])

    # Its files.

    async def add_stored(
        self, owner: str, container_id: str, file_id: str, *, source: str
    ) -> ContainerFile:
        """Put a copy of a stored file (the owner's, or one uploaded here) in /mnt/data."""
        info = self._engine.file(file_id)
        async with self._quotas.room(owner, size=info.bytes):
            copy = await self._engine.create_file(
                Path(info.name).name, self._engine.file_path(file_id)
            )
            return await self._add(owner, container_id, copy, source=source)

    async def add_upload(
        self, owner: str, container_id: str, name: str, path: Path, *, size: int
    ) -> ContainerFile:
        async with self._quotas.room(owner, size=size):
            info = await self._engine.create_file(name, path)
            return await self._add(owner, container_id, info, source="user")

    async def _add(
        self, owner: str, container_id: str, info: FileInfo, *, source: str
    ) -> ContainerFile:
        """Place a newly stored file in the container's /mnt/data and record it; deleted
        again if the container is gone."""
        try:
            async with self._locks.hold(container_id):
                await self._open(owner, container_id)
                await self._engine.create_session(container_id, file_ids=[info.id])
                return await self._record(owner, container_id, info, source=source)
        except BaseException:
            with contextlib.suppress(InterpError):
                await self._engine.delete_file(info.id)
            raise

    async def add_output(self, owner: str, container_id: str, file_id: str) -> None:
        """A file the code wrote (or an image it drew) becomes a container file, unless
        the container was deleted or expired while the code ran."""
        async with self._locks.hold(container_id):
            found = await self._store.get(rwire.CONTAINER, owner, container_id)
            if found is None or found.status != "running":
                with contextlib.suppress(InterpError):
                    await self._engine.delete_file(file_id)
                return
            info = await self._engine.keep_file(file_id)
            await self._record(owner, container_id, info, source="assistant")

    def stored(self, file_id: str) -> tuple[Path, str]:
        """Where a stored file's bytes are, and their media type."""
        return self._engine.file_path(file_id), self._engine.file(file_id).mime

    async def file(self, owner: str, container_id: str, cfile: str) -> ContainerFile:
        found = await self._store.get(rwire.CONTAINER_FILE, owner, cfile)
        if found is None or found.container_id != container_id:
            raise not_found("container file", cfile)
        return found

    async def delete_file(
        self, owner: str, container_id: str, cfile: str, *, from_session: bool = True
    ) -> None:
        """Forget a container file and delete its bytes; with ``from_session``, from the
        container's /mnt/data too (not when a newer file at its path replaces it)."""
        found = await self.file(owner, container_id, cfile)
        await self._store.delete("container_file", owner, cfile)
        if from_session and self._engine.has_session(container_id):
            name = found.path.removeprefix("/mnt/data/")
            await self._engine.remove_session_file(container_id, name)
        with contextlib.suppress(InterpError):
            await self._engine.delete_file(stored_id(cfile))

    async def _record(
        self, owner: str, container_id: str, info: FileInfo, *, source: str
    ) -> ContainerFile:
        name = Path(info.name).name
        path = f"/mnt/data/{name}"
        # The newest file at a path is the container's: an earlier one there is replaced.
        for older in await self._store.all(rwire.CONTAINER_FILE, owner, parent=container_id):
            if older.path == path:
                await self.delete_file(owner, container_id, older.id, from_session=False)
        record = rwire.container_file(
            file_id=cfile_id(info.id),
            container_id=container_id,
            size=info.bytes,
            created_at=int(info.created_at.timestamp()),
            name=name,
            source=source,
        )
        return await self._store.create("container_file", owner, record, parent=container_id)

    # Expiry.

    async def _expire(self, owner: str, container: Container) -> None:
        container.status = "expired"
        await self._drop(owner, container.id, expire=True)

    async def _drop(self, owner: str, container_id: str, *, expire: bool) -> None:
        """Mark a container expired (or delete it), close its session, delete its files."""
        async with self._locks.hold(container_id):
            found = await self._store.get(rwire.CONTAINER, owner, container_id)
            if found is not None and expire:
                found.status = "expired"
                await self._store.set_fields("container", owner, found, ["status"])
            elif found is not None:
                await self._store.delete("container", owner, container_id)
            if self._engine.has_session(container_id):
                with contextlib.suppress(InterpError):
                    await self._engine.close_session(container_id)
            await self._places.forget(container_id)
            for record in await self._store.all(rwire.CONTAINER_FILE, owner, parent=container_id):
                with contextlib.suppress(InterpError):
                    await self._engine.delete_file(stored_id(record.id))
            await self._store.delete_children(owner, [container_id])

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                for owner, container in await self._store.every(rwire.CONTAINER, "running"):
                    # Expired by the replica holding its kernel (which closes it), or by
                    # any once that one is gone.
                    if _idle_out(container) and not await self._places.elsewhere(container.id):
                        await self._expire(owner, container)
            except Exception:
                log.exception("expiring containers failed; trying again later")


def _idle_out(container: Container) -> bool:
    after = container.expires_after
    minutes = (after.minutes if after is not None else None) or DEFAULT_MINUTES
    active = container.last_active_at
    return wire.now() - (container.created_at if active is None else active) >= minutes * 60
