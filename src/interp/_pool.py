"""The pool that keeps ready kernels warm, and the bound on kernels alive.

A pooled kernel is started before anyone asks, with an empty files directory of its own.
Leasing hands it to one session for the rest of its life: it is never returned to the
pool nor given to another session, and it is removed when the session ends.

``max_kernels`` is a hard bound, under any concurrency: a slot is taken before the first
``await`` of a start (``_reserved``) and given back only once a kernel is gone. When every
slot is taken, the kernel of the session idle longest is removed (``reclaim``) before a
caller is made to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

from ._exceptions import CapacityError, InterpError, SandboxError
from ._kernel import Kernel
from ._models import LatencySummary
from ._storage import Storage

log = logging.getLogger("interp.pool")

# After a failed start, the pool waits this long before trying again, so that a broken
# image or a full disk does not turn the refill into a busy loop.
_RETRY_AFTER_FAILURE_S = 1.0
_LATENCY_WINDOW = 1000


class StartKernel(Protocol):
    """Starts a ready kernel whose /mnt/data is ``files_dir`` (see ``start_kernel``)."""

    def __call__(self, files_dir: Path, session: str) -> Awaitable[Kernel]: ...


def _summary(samples: deque[float]) -> LatencySummary:
    if not samples:
        return LatencySummary(n=0, p50_ms=None, p95_ms=None)
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return LatencySummary(n=len(ordered), p50_ms=statistics.median(ordered) * 1e3, p95_ms=p95 * 1e3)


class KernelPool:
    """Keeps ``size`` ready kernels, within ``max_kernels`` alive in all."""

    def __init__(
        self,
        start: StartKernel,
        *,
        size: int,
        max_kernels: int,
        capacity_wait: float,
        pool_dir: Path,
        storage: Storage,
    ) -> None:
        self._storage = storage
        self._start_kernel = start
        self.reclaim: Callable[[], Awaitable[bool]] | None = None
        """Frees a slot by removing an idle session's kernel, if one can be found."""
        self._size = min(size, max_kernels)
        self._max = max_kernels
        self._capacity_wait = capacity_wait
        self._pool_dir = pool_dir
        self._ready: deque[Kernel] = deque()
        self._leased: set[Kernel] = set()
        self._starting = 0
        self._reserved = 0
        """Slots taken by kernels being started or removed."""
        self._refills: set[asyncio.Task[None]] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()
        self._refill_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self._last_failure: float = 0.0
        self.kernels_started = 0
        self.start_failures = 0
        self.kernels_died = 0
        self._acquire_s: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._start_s: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    @property
    def ready(self) -> int:
        return len(self._ready)

    @property
    def starting(self) -> int:
        return self._starting

    @property
    def leased(self) -> int:
        return len(self._leased)

    def idle_memory(self) -> int | None:
        """Median memory in use by the ready kernels."""
        used = [m for k in self._ready if (m := k.sandbox.usage().memory_bytes) is not None]
        return int(statistics.median(used)) if used else None

    def acquire_latency(self) -> LatencySummary:
        return _summary(self._acquire_s)

    def start_latency(self) -> LatencySummary:
        return _summary(self._start_s)

    def start(self) -> None:
        """Begin filling the pool in the background."""
        self._storage.remove_stale(self._pool_dir.parent)
        self._pool_dir.mkdir(parents=True, exist_ok=True)
        self._refill_task = asyncio.create_task(self._refill_loop(), name="interp-pool-refill")

    async def warm(self, timeout: float | None = None) -> None:
        """Wait until the pool holds ``size`` ready kernels."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self._ready) >= self._size or self._closed)

    async def acquire(
        self, *, session: str, files_dir: Path | None = None, deadline: float | None = None
    ) -> Kernel:
        """A ready kernel for ``session``: a warm one, else a cold start, else a bounded wait.

        The kernel brings a fresh directory of its own, which the caller moves into place;
        given ``files_dir`` (a session's capped storage, kept from an earlier kernel), a
        cold start mounts that instead, so its files need no copying. The wait ends at
        ``deadline`` (``time.monotonic``; ``capacity_wait`` from now if not given).
        """
        began = time.perf_counter()
        if deadline is None:
            deadline = time.monotonic() + self._capacity_wait
        while True:
            if self._closed:
                raise InterpError("the kernel pool is closed")
            while self._ready and files_dir is None:
                kernel = self._ready.popleft()
                if kernel.alive:
                    self._lease(kernel, began)
                    return kernel
                async with self._slot():
                    await self._discard(kernel)
            if self._total() < self._max:
                async with self._slot():
                    kernel = await self._start_with_storage(session=session, files_dir=files_dir)
                    self._lease(kernel, began)
                return kernel
            if self.reclaim is not None and await self.reclaim():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CapacityError(
                    f"all {self._max} kernels are in use; none became free within"
                    f" {self._capacity_wait:g} s",
                    hint="close idle sessions or raise max_kernels",
                )
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()

    async def release(self, kernel: Kernel) -> None:
        """Remove a leased kernel for good; its slot is free once the kernel is gone."""
        try:
            await kernel.remove()
        finally:
            self._leased.discard(kernel)
            await self._notify()

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold one of ``max_kernels`` slots; callers check room and enter with no await
        in between, so no two of them can take the last slot."""
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1
            await self._notify()

    def _lease(self, kernel: Kernel, began: float) -> None:
        self._leased.add(kernel)
        self._acquire_s.append(time.perf_counter() - began)
        self._wake.set()

    def _total(self) -> int:
        return len(self._ready) + len(self._leased) + self._reserved

    async def _start(self, *, session: str, files_dir: Path) -> Kernel:
        self._starting += 1
        try:
            kernel = await self._start_kernel(files_dir, session)
        except InterpError:
            self.start_failures += 1
            self._last_failure = time.monotonic()
            raise
        finally:
            self._starting -= 1
        self.kernels_started += 1
        self._start_s.append(kernel.started_s)
        watcher = asyncio.create_task(self._watch(kernel), name="interp-kernel-watch")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return kernel

    async def _start_with_storage(self, *, session: str, files_dir: Path | None) -> Kernel:
        """Start a kernel on ``files_dir``, or on fresh storage in the pool's directory."""
        if files_dir is not None:
            return await self._start(session=session, files_dir=files_dir)
        fresh = self._pool_dir / secrets.token_hex(8)
        try:
            await asyncio.to_thread(self._storage.create, fresh)
            return await self._start(session=session, files_dir=fresh)
        except BaseException:
            await asyncio.to_thread(self._storage.remove, fresh)
            raise

    async def _refill_loop(self) -> None:
        while not self._closed:
            self._wake.clear()
            wanted = self._size - len(self._ready) - len(self._refills)
            room = self._max - self._total()
            for _ in range(max(0, min(wanted, room))):
                # The slot is taken here, before the task first awaits.
                self._reserved += 1
                task = asyncio.create_task(self._refill_one(), name="interp-pool-start")
                self._refills.add(task)
                task.add_done_callback(self._refills.discard)
            await self._wake.wait()

    async def _refill_one(self) -> None:
        """Start one pooled kernel in a slot already reserved for it."""
        try:
            pause = self._last_failure + _RETRY_AFTER_FAILURE_S - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            try:
                kernel = await self._start_with_storage(session="", files_dir=None)
            except (InterpError, OSError) as exc:
                # str(): a log record holding the exception would keep its frames alive,
                # and with them the broken connections they reference.
                log.warning("could not start a pooled kernel: %s", str(exc))
                self._last_failure = time.monotonic()
                return
            if self._closed:
                await kernel.remove()
                await asyncio.to_thread(self._storage.remove, kernel.files_dir)
                return
            self._ready.append(kernel)
        finally:
            self._reserved -= 1
            await self._notify()

    async def _watch(self, kernel: Kernel) -> None:
        """Count deaths; a pooled kernel that dies is dropped and replaced at once."""
        await kernel.sandbox.wait()
        if kernel in self._ready:
            self._ready.remove(kernel)
            async with self._slot():
                await self._discard(kernel)
        elif kernel in self._leased and not kernel.channel.closed:
            self.kernels_died += 1

    async def _discard(self, kernel: Kernel) -> None:
        self.kernels_died += 1
        with contextlib.suppress(SandboxError):
            await kernel.remove()
        await asyncio.to_thread(self._storage.remove, kernel.files_dir)

    async def wake(self) -> None:
        """Tell waiting callers to look again (a session has become idle, say)."""
        await self._notify()

    async def _notify(self) -> None:
        self._wake.set()
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        self._closed = True
        await self._notify()
        tasks = [t for t in (self._refill_task, *self._refills, *self._watchers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        kernels = [*self._ready, *self._leased]
        self._ready.clear()
        self._leased.clear()
        for kernel in kernels:
            with contextlib.suppress(SandboxError):
                await kernel.remove()
        await asyncio.to_thread(self._storage.remove_tree, self._pool_dir)
