"""Hibernation: what saving a session's variables and restoring them costs, beside a cold
start and a warm acquire in the same run; and how many sessions one machine holds with
most of them hibernated (``interp bench --sessions N``)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path

import psutil

from interp import Engine
from interp._engine import Engine as _Engine

from ._scenarios import Measurement, Plan, _acquire_samples, engine_for

FRAME_100MB = (
    "import numpy as np, pandas as pd\n"
    "frame = pd.DataFrame(np.random.default_rng(0).random((2_621_440, 5)),"
    " columns=list('abcde'))\n"
    "print(frame.memory_usage(index=False).sum())"
)
"""A DataFrame of 100 MiB of float64."""


async def hibernation(data_dir: Path, plan: Plan) -> list[Measurement]:
    """Hibernate and restore p50, for an empty namespace and a 100 MB DataFrame; the
    restore is the first call after it (``1``), the cold start and the warm acquire are
    this engine's own, measured in the same run."""
    cold = Measurement(
        "hibernation_cold_start", "cold start (same run)", baseline=True, group="hibernate"
    )
    warm = Measurement(
        "hibernation_warm_acquire", "warm acquire (same run)", baseline=True, group="hibernate"
    )
    rows = {
        (what, size): Measurement(
            f"{what}[{size}]", f"{what} a session: {label}", group="hibernate"
        )
        for what in ("hibernate", "restore")
        for size, label in (("empty", "empty namespace"), ("100MB", "100 MB DataFrame"))
    }
    snapshot = Measurement("snapshot_bytes[100MB]", "snapshot of a 100 MB DataFrame")
    async with engine_for(data_dir, pool_size=1, memory="2g", data_size="1g") as engine:
        for size, code, n in (("empty", "1", plan.warm), ("100MB", FRAME_100MB, 3)):
            for _ in range(n):
                await engine.warm(timeout=120)
                session = await engine.create_session()
                assert (await engine.execute(code, session=session)).ok
                t0 = time.perf_counter()
                info = await engine.hibernate_session(session)
                rows["hibernate", size].samples.append(time.perf_counter() - t0)
                if size == "100MB" and info.snapshot_bytes:
                    snapshot.values["bytes"] = float(info.snapshot_bytes)
                await engine.warm(timeout=120)
                t0 = time.perf_counter()
                back = await engine.execute("1", session=session)
                rows["restore", size].samples.append(time.perf_counter() - t0)
                assert "restored from a snapshot" in back.logs, back.logs
                await engine.close_session(session)
        # Every kernel this engine started (the pool's refills) was a cold start.
        cold.samples.extend(_start_samples(engine))
        warm.samples.extend(s / 1e3 for s in _acquire_samples(engine))
    return [cold, warm, *rows.values(), snapshot]


def _start_samples(engine: Engine) -> list[float]:
    assert isinstance(engine, _Engine)
    return list(engine._pool._start_s)


def _disk_of(path: Path) -> int:
    try:
        return os.lstat(path).st_blocks * 512
    except OSError:
        return 0


def _disk(path: Path) -> int:
    """Bytes the files under ``path`` take on disk (allocated blocks, not lengths)."""
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


async def sessions_held(data_dir: Path, count: int, live: int = 64) -> list[Measurement]:
    """``count`` sessions, each with a variable of its own set by its own kernel: all but
    ``live`` hibernated (capacity hibernates the idle longest as new ones come), then a
    sample restored, each giving its own value back."""
    held = Measurement("sessions_held", f"sessions held, {live} live kernels", group="capacity")
    restore = Measurement("sessions_held_restore", "restore among them", group="capacity")
    process = psutil.Process()
    rss_before = process.memory_info().rss
    began = time.perf_counter()
    async with engine_for(
        data_dir,
        pool_size=4,
        preload=[],
        max_kernels=live + 4,
        max_sessions=live,
        memory="256m",
        hibernate_after=24 * 3600,
    ) as engine:
        made = 0

        async def make(index: int) -> None:
            nonlocal made
            session = await engine.create_session(f"held-{index:06d}")
            result = await engine.execute(f"value = {index} * 7", session=session)
            assert result.ok, result.logs
            made += 1
            if made % 500 == 0:
                rate = made / (time.perf_counter() - began)
                print(f"    {made} sessions, {rate:.1f}/s", file=sys.stderr, flush=True)

        queue = iter(range(count))

        async def worker() -> None:
            for index in queue:
                await make(index)

        await asyncio.gather(*(worker() for _ in range(4)))
        stats = engine.stats()
        held.values["sessions"] = float(stats.sessions + stats.hibernated)
        held.values["live"] = float(stats.sessions)
        held.values["hibernated"] = float(stats.hibernated)
        held.values["seconds"] = time.perf_counter() - began
        # What hibernated sessions take: their snapshots and the index in the file store,
        # and their parked /mnt/data (none here: they wrote no files). The live sessions'
        # capped /mnt/data images are apart.
        kept = _disk(data_dir / "files") + _disk(data_dir / "hibernated")
        kept += sum(_disk_of(data_dir / name) for name in ("files.db", "files.db-wal"))
        held.values["disk_bytes"] = float(_disk(data_dir))
        held.values["hibernated_disk_bytes"] = float(kept)
        held.values["disk_per_hibernated"] = kept / max(1, stats.hibernated)
        held.values["engine_rss_growth"] = float(process.memory_info().rss - rss_before)
        for index in random.Random(0).sample(range(count - live), min(20, count - live)):
            t0 = time.perf_counter()
            back = await engine.execute("print(value)", session=f"held-{index:06d}")
            restore.samples.append(time.perf_counter() - t0)
            assert back.logs.endswith(f"{index * 7}\n"), back.logs
    return [held, restore]


__all__ = ["hibernation", "sessions_held"]
