"""This server among the others that share its database: its replica id, its heartbeat,
and the sweep that fails the work of servers that stopped.

Each process is a replica with an id of its own, marked on the runs and responses it
makes (it drives them). Its heartbeat row says it is alive; its lease is ``lease``
seconds from its last beat. Unfinished work is failed only when its replica's lease has
run out (a replica that crashed): starting one replica never touches the live work of
another. The id a replica last had in its data directory is its previous life: its work
is failed at once at start, without waiting for the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from ._store import Holder, Store

log = logging.getLogger("interp.server")

ID_FILE = "replica-id"


RESTARTED = (
    "[The Python session was restarted: variables, imports and definitions from earlier"
    " calls are gone; the files in /mnt/data are back.]"
)


class Replicas:
    def __init__(self, store: Store, data_dir: Path, lease: float, url: str | None = None) -> None:
        self._store = store
        self._file = data_dir / ID_FILE
        self.lease = lease
        self.url = url
        """Where the other replicas reach this one, to forward calls to its kernels."""
        self.id = "rep_" + secrets.token_hex(8)
        self._sweeper: asyncio.Task[None] | None = None
        self.previous: str | None = None
        """This replica's id in its previous life (read from its data directory)."""
        self.reap: Callable[[list[str]], Awaitable[int]] | None = None
        """What removes the sandboxes of replicas that are gone (the engine's)."""

    async def start(self) -> int:
        """Take this replica's place; fail the unfinished work of replicas that are gone
        (this one's previous life included); how many were failed."""
        self.previous = previous = await asyncio.to_thread(self._previous)
        alive = [found for found in await self._store.alive(self.lease) if found != previous]
        failed = await self._store.fail_unfinished_runs(alive=alive)
        await self._store.heartbeat(self.id, self.url)
        if previous is not None:
            await self._store.inherit_kernels(previous, self.id)
        await asyncio.to_thread(self._file.write_text, self.id)
        self._store.replica = self.id
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="interp-replicas")
        return failed

    # Kernels: a thread's or a container's lives on one replica.

    @property
    def shared(self) -> bool:
        """Whether other replicas may share the database (and so hold kernels)."""
        return self._store.shared

    async def elsewhere(self, key: str) -> Holder | None:
        """The live replica other than this one that holds ``key``'s kernel, if any."""
        found = await self._store.holder(key) if self.shared else None
        if found is None or found.replica == self.id or found.heartbeat is None:
            return None
        return found if found.heartbeat >= time.time() - self.lease else None

    async def holds(self, key: str) -> bool:
        """Whether this replica still holds ``key``'s kernel (another may have taken it)."""
        found = await self._store.holder(key) if self.shared else None
        return found is None or found.replica == self.id

    async def claim(self, key: str) -> bool:
        """Hold ``key``'s kernel from now; whether it had one before (here or elsewhere),
        whose variables are gone."""
        return await self._store.claim_kernel(key, self.id) is not None

    async def chain_container(self, owner: str, response_id: str) -> str | None:
        """The container a stored response's chain runs its code in, if any."""
        chain = await self._store.chain(owner, response_id)
        return chain[0][1] if chain else None

    async def forget(self, key: str) -> None:
        await self._store.forget_kernel(key)

    def _previous(self) -> str | None:
        with contextlib.suppress(FileNotFoundError):
            return self._file.read_text().strip() or None
        return None

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.sweep()
            except Exception:  # the heartbeat goes on
                log.exception("the replica heartbeat failed")

    async def sweep(self) -> int:
        """Beat, then fail the unfinished work of replicas whose lease ran out and remove
        their sandboxes."""
        await self._store.heartbeat(self.id, self.url)
        failed = await self._store.fail_unfinished_runs(alive=await self._store.alive(self.lease))
        if failed:
            log.warning("%d runs of servers that stopped were marked failed", failed)
        await self.reap_gone()
        return failed

    async def reap_gone(self) -> None:
        """Remove the sandboxes of the replicas that are gone (this one's previous life
        included), wherever they ran."""
        if self.reap is None:
            return
        gone = await self._store.gone(self.lease)
        if self.previous is not None:
            gone.append(self.previous)
        if reaped := await self.reap(gone):
            log.warning("removed %d sandboxes of servers that stopped", reaped)
