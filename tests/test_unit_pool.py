"""The pool's leases and capacity, with a fake kernel starter: fast, and exact about
concurrency (every start takes real event-loop turns, as a container start does)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from interp import CapacityError
from interp._kernel import Kernel
from interp._models import ExitCause, ExitInfo
from interp._pool import KernelPool
from interp._storage import Storage


class FakeSandbox:
    def __init__(self) -> None:
        self.exit_info: ExitInfo | None = None
        self._ended = asyncio.Event()
        self.removed = False

    async def wait(self) -> ExitInfo:
        await self._ended.wait()
        assert self.exit_info is not None
        return self.exit_info

    def end(self) -> None:
        self.exit_info = ExitInfo(cause=ExitCause.SIGNALED, code=137, signal=9)
        self._ended.set()

    async def kill(self) -> None:
        self.end()

    async def remove(self) -> None:
        await asyncio.sleep(0.01)  # removal takes time; the slot stays taken meanwhile
        self.end()
        self.removed = True


class FakeChannel:
    closed = False

    def close(self) -> None:
        self.closed = True


class Starter:
    """Starts fake kernels, counting how many are alive at once."""

    def __init__(self) -> None:
        self.alive = 0
        self.most_alive = 0
        self.started = 0

    async def __call__(self, files_dir: Path, session: str) -> Kernel:
        self.alive += 1
        self.most_alive = max(self.most_alive, self.alive)
        self.started += 1
        await asyncio.sleep(0.02)
        sandbox = FakeSandbox()
        kernel = Kernel(sandbox=sandbox, channel=FakeChannel(), files_dir=files_dir, started_s=0.02)  # type: ignore[arg-type]
        original = sandbox.remove

        async def remove() -> None:
            await original()
            self.alive -= 1

        sandbox.remove = remove  # type: ignore[method-assign]
        return kernel


def make_pool(tmp_path: Path, starter: Starter, **settings: Any) -> KernelPool:
    options: dict[str, Any] = {"size": 0, "max_kernels": 1, "capacity_wait": 5.0}
    options.update(settings)
    return KernelPool(
        starter, pool_dir=tmp_path / "pool" / "owner", storage=Storage(None), **options
    )


async def test_max_kernels_holds_with_four_concurrent_sessions(tmp_path: Path) -> None:
    starter = Starter()
    pool = make_pool(tmp_path, starter, max_kernels=1, capacity_wait=0.3)
    pool.start()
    try:
        results = await asyncio.gather(
            *(pool.acquire(session=f"s{i}") for i in range(4)), return_exceptions=True
        )
        kernels = [r for r in results if isinstance(r, Kernel)]
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(kernels) == 1
        assert len(errors) == 3 and all(isinstance(e, CapacityError) for e in errors)
        assert starter.most_alive == 1
    finally:
        await pool.close()


async def test_a_capacity_wait_ends_when_a_kernel_is_gone(tmp_path: Path) -> None:
    starter = Starter()
    pool = make_pool(tmp_path, starter, max_kernels=1, capacity_wait=5.0)
    pool.start()
    try:
        first = await pool.acquire(session="a")
        waiting = asyncio.create_task(pool.acquire(session="b"))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # it really waits
        await pool.release(first)
        second = await asyncio.wait_for(waiting, 2)
        assert second is not first
        assert starter.most_alive == 1  # the slot was free only once the first was gone
    finally:
        await pool.close()


async def test_the_refill_and_sessions_share_the_bound(tmp_path: Path) -> None:
    starter = Starter()
    pool = make_pool(tmp_path, starter, size=2, max_kernels=2, capacity_wait=0.3)
    pool.start()
    try:
        got = await asyncio.gather(
            *(pool.acquire(session=f"s{i}") for i in range(5)), return_exceptions=True
        )
        assert sum(isinstance(k, Kernel) for k in got) == 2
        await asyncio.sleep(0.1)
        assert starter.most_alive <= 2
        assert pool.ready + pool.leased <= 2
    finally:
        await pool.close()


async def test_a_pooled_kernel_that_dies_is_replaced_within_the_bound(tmp_path: Path) -> None:
    starter = Starter()
    pool = make_pool(tmp_path, starter, size=1, max_kernels=1)
    pool.start()
    try:
        await pool.warm(2)
        before = starter.started
        kernel = pool._ready[0]
        kernel.sandbox.end()  # type: ignore[attr-defined]
        for _ in range(100):
            await asyncio.sleep(0.02)
            if pool.ready == 1 and starter.started > before:
                break
        assert pool.ready == 1 and starter.started == before + 1
        assert starter.most_alive == 1
    finally:
        await pool.close()


@pytest.mark.parametrize("deadline_in", [0.0, 0.2])
async def test_a_caller_deadline_bounds_the_wait(tmp_path: Path, deadline_in: float) -> None:
    starter = Starter()
    pool = make_pool(tmp_path, starter, max_kernels=1, capacity_wait=60)
    pool.start()
    loop = asyncio.get_running_loop()
    try:
        await pool.acquire(session="a")
        began = loop.time()
        with pytest.raises(CapacityError):
            await pool.acquire(session="b", deadline=time.monotonic() + deadline_in)
        assert loop.time() - began < deadline_in + 0.5
    finally:
        await pool.close()
