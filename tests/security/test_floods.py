"""Floods of output and images: capped in the result, nothing lost, engine memory bounded."""

from __future__ import annotations

import gc
from collections.abc import Callable

import psutil
import pytest

from interp import Config, Engine, ExecutionStatus, LogsOutput

pytestmark = pytest.mark.docker


async def test_a_200_mb_print_flood_is_capped_and_its_head_stored_within_the_cap(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(timeout=120)) as engine:
        await engine.execute("1")
        gc.collect()
        rss_before = psutil.Process().memory_info().rss
        code = (
            "import sys\n"
            "print('BEGIN')\n"
            "line = 'x' * 1023 + '\\n'\n"
            "block = line * 1024\n"
            "for _ in range(200):\n"
            "    sys.stdout.write(block)\n"
            "print('END')\n"
        )
        result = await engine.execute(code)
        rss_growth = psutil.Process().memory_info().rss - rss_before
        assert result.status is ExecutionStatus.COMPLETED
        logs = result.logs
        assert logs.startswith("BEGIN\n") and logs.endswith("END\n")
        assert len(logs.encode()) <= engine.config.max_log_bytes + 200
        total = 6 + 200 * 1024**2 + 4
        assert result.truncated_bytes == total - (len(logs.encode()) - _marker_bytes(logs))
        assert result.full_output_file_id is not None
        assert f"the output is stored as {result.full_output_file_id}" in logs
        # The stored output stops at its cap, and says how much more there was.
        cap = engine.config.max_full_output_bytes
        info = engine.file(result.full_output_file_id)
        assert cap < info.bytes < cap + 200
        with engine.file_path(result.full_output_file_id).open("rb") as full:
            assert full.read(6) == b"BEGIN\n"
            full.seek(cap)
            assert f"[... {total - cap} more bytes of output not stored".encode() in full.read()
        # The engine never held the flood: its memory grew by far less than 200 MB.
        assert rss_growth < 80 * 1024**2, rss_growth


def _marker_bytes(logs: str) -> int:
    start = logs.index("\n[... ")
    end = logs.index(" ...]\n", start) + len(" ...]\n")
    return len(logs[start:end].encode())


async def test_a_million_tiny_prints_are_capped_too(engine: Engine) -> None:
    result = await engine.execute("for i in range(1_000_000):\n    print(i)", timeout=120)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.logs.startswith("0\n1\n2\n")
    assert result.logs.endswith("999998\n999999\n")
    assert result.full_output_file_id is not None
    assert engine.file(result.full_output_file_id).bytes == sum(
        len(str(i)) + 1 for i in range(1_000_000)
    )


async def test_a_hundred_figures_are_capped_with_a_note(engine: Engine) -> None:
    code = (
        "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\n"
        "for i in range(100):\n"
        "    plt.figure(figsize=(1, 1), dpi=40)\n"
        "    plt.plot([0, i])\n"
        "    plt.show()\n"
    )
    result = await engine.execute(code, timeout=120)
    assert result.status is ExecutionStatus.COMPLETED
    assert len(result.image_ids) == engine.config.max_images
    assert result.dropped_images == 100 - engine.config.max_images
    last = result.outputs[-1]
    assert isinstance(last, LogsOutput)
    limit = engine.config.max_images
    assert (
        last.logs == f"[images after the first {limit} not kept: at most {limit} per execution]\n"
    )


async def test_a_gigantic_figure_is_not_kept_and_says_why(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(max_image_bytes="1m")) as engine:
        code = (
            "import numpy as np, matplotlib.pyplot as plt\n"
            "plt.figure(figsize=(12, 12), dpi=100)\n"
            "plt.imshow(np.random.default_rng(0).random((1200, 1200, 3)))\n"
            "plt.show()\n"
        )
        result = await engine.execute(code, timeout=120)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.image_ids == []
    assert "not kept: over the limit of 1.0 MiB" in result.logs
