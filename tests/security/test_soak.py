"""Soak: 4 sessions x 500 executions of prints, plots, errors and timeouts.

Not in the default run: `.venv/bin/pytest -m slow tests/security/test_soak.py -s`.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Callable

import docker
import psutil
import pytest

from interp import Config, Engine, ExecutionStatus

from ..conftest import assert_no_containers

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SESSIONS = 4
CALLS = 500

MIX = [
    ("print", "print('n', {i})", ExecutionStatus.COMPLETED),
    ("plot", "import matplotlib.pyplot as plt\nplt.plot([{i}, 1])\nplt.show()",
     ExecutionStatus.COMPLETED),
    ("error", "raise ValueError({i})", ExecutionStatus.FAILED),
    ("print", "x = {i}\nprint(x)", ExecutionStatus.COMPLETED),
]  # fmt: skip
TIMEOUT = ("timeout", "import time\ntime.sleep(5)", ExecutionStatus.TIMEOUT)


@pytest.mark.timeout(3600)
async def test_soak(make_config: Callable[..., Config], docker_client: docker.DockerClient) -> None:
    async with Engine(make_config(pool_size=2)) as engine:
        gc.collect()
        rss_start = psutil.Process().memory_info().rss
        outcomes: Counter[str] = Counter()
        lost: list[str] = []
        latencies: list[float] = []

        async def worker(n: int) -> None:
            session = await engine.create_session()
            for i in range(CALLS):
                kind, template, expected = MIX[(i + n) % len(MIX)]
                if i % 50 == 49:
                    kind, template, expected = TIMEOUT
                started = time.perf_counter()
                timeout = 0.5 if kind == "timeout" else 30
                result = await engine.execute(
                    template.format(i=i), session=session, timeout=timeout
                )
                latencies.append(time.perf_counter() - started)
                outcomes[kind] += 1
                if result.status is not expected:
                    lost.append(f"{kind} {i}: {result.status}")
                elif kind == "print" and str(i) not in result.logs:
                    lost.append(f"{kind} {i}: logs {result.logs!r}")
                elif kind == "plot" and len(result.image_ids) != 1:
                    lost.append(f"{kind} {i}: images {result.image_ids}")

        began = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(SESSIONS)))
        took = time.perf_counter() - began
        gc.collect()
        growth = psutil.Process().memory_info().rss - rss_start
        latencies.sort()
        print(
            f"\nsoak: {sum(outcomes.values())} executions in {took:.1f} s {dict(outcomes)};"
            f" p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms,"
            f" p95 {latencies[int(len(latencies) * 0.95)] * 1e3:.1f} ms;"
            f" engine RSS growth {growth / 1024**2:.1f} MiB; lost {len(lost)}"
        )
        assert lost == []
        assert growth < 100 * 1024**2
    assert_no_containers(docker_client, engine.id)
