"""The warm pool and sessions, on real containers."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import docker
import pytest

from interp import CapacityError, Config, Engine

from .conftest import assert_no_containers, containers_of

pytestmark = pytest.mark.docker

SESSION_LABEL = "io.interp.session"


async def eventually(condition: Callable[[], Awaitable[bool] | bool], timeout: float) -> None:
    """Poll ``condition`` until it holds; fail at ``timeout``. Waits for state, not time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


def started_warm(client: docker.DockerClient, engine: Engine) -> set[str]:
    """Ids of the engine's running containers started for the pool (no session label).

    Labels cannot change, so a warm kernel leased later keeps its empty label.
    """
    return {
        c.id
        for c in containers_of(client, engine.id)
        if c.status == "running" and c.labels.get(SESSION_LABEL) == ""
    }


WINDOW = "import time\nt0 = time.time()\ntime.sleep(1)\nprint(t0, time.time())"


def window(logs: str) -> tuple[float, float]:
    start, end = logs.split()
    return float(start), float(end)


async def test_two_sessions_execute_at_the_same_time(engine: Engine) -> None:
    one, two = await engine.create_session(), await engine.create_session()
    first, second = await asyncio.gather(
        engine.execute(WINDOW, session=one), engine.execute(WINDOW, session=two)
    )
    a, b = window(first.logs), window(second.logs)
    # Each ran for a second; both started before either ended: they overlapped.
    assert max(a[0], b[0]) < min(a[1], b[1])


async def test_calls_on_one_session_run_one_at_a_time_in_arrival_order(engine: Engine) -> None:
    session = await engine.create_session()
    await engine.execute("order = []", session=session)
    calls = [
        engine.execute(WINDOW.replace("time.sleep(1)", f"order.append({i}); time.sleep(0.2)"),
                       session=session)
        for i in range(3)
    ]  # fmt: skip
    results = await asyncio.gather(*calls)
    windows = sorted(window(r.logs) for r in results)
    for earlier, later in itertools.pairwise(windows):
        assert earlier[1] <= later[0]
    assert (await engine.execute("order", session=session)).logs == "[0, 1, 2]\n"


async def test_a_new_session_gets_a_warm_kernel_and_the_pool_refills(
    make_config: Callable[..., Config], docker_client: docker.DockerClient
) -> None:
    async with Engine(make_config(pool_size=2)) as engine:
        await engine.warm(timeout=60)
        warm = started_warm(docker_client, engine)
        assert len(warm) == 2
        session = await engine.create_session()
        result = await engine.execute("import socket; print(socket.gethostname())", session=session)
        # Docker names a container's host after its id: the code ran in a warm kernel.
        assert result.logs.strip() in {container_id[:12] for container_id in warm}
        stats = engine.stats()
        assert stats.acquire.n == 1
        assert stats.leased == 1
        await engine.warm(timeout=60)
        assert engine.stats().pool_ready == 2
        assert len(started_warm(docker_client, engine)) == 3
    assert_no_containers(docker_client, engine.id)


async def test_a_pool_of_two_serves_a_third_session_by_a_cold_start(
    make_config: Callable[..., Config], docker_client: docker.DockerClient
) -> None:
    async with Engine(make_config(pool_size=2)) as engine:
        await engine.warm(timeout=60)
        sessions = [await engine.create_session() for _ in range(3)]
        results = await asyncio.gather(*(engine.execute("1 + 1", session=s) for s in sessions))
        assert [r.logs for r in results] == ["2\n"] * 3
        # Warm kernels carry no session label; the one started for a session does.
        labelled = [
            c.labels[SESSION_LABEL]
            for c in containers_of(docker_client, engine.id)
            if c.labels.get(SESSION_LABEL)
        ]
        assert len(labelled) == 1
        assert labelled[0] in sessions
    assert_no_containers(docker_client, engine.id)


async def test_a_pooled_kernel_killed_from_outside_is_replaced(
    make_config: Callable[..., Config], docker_client: docker.DockerClient
) -> None:
    async with Engine(make_config(pool_size=2)) as engine:
        await engine.warm(timeout=60)
        before = started_warm(docker_client, engine)
        victim = sorted(before)[0]
        docker_client.api.kill(victim)

        def replaced() -> bool:
            now = started_warm(docker_client, engine)
            stats = engine.stats()
            return stats.kernels_died == 1 and stats.pool_ready == 2 and len(now) == 2

        await eventually(replaced, timeout=30)
        assert victim not in started_warm(docker_client, engine)
        result = await engine.execute("print('ok')", session=await engine.create_session())
        assert result.logs == "ok\n"
    assert_no_containers(docker_client, engine.id)


async def test_an_idle_session_is_closed_and_its_container_removed(
    make_config: Callable[..., Config], docker_client: docker.DockerClient
) -> None:
    config = make_config(pool_size=0, session_max_idle=0.5, hibernate_after=600)
    async with Engine(config) as engine:
        session = await engine.create_session()
        await engine.execute("x = 1", session=session)
        files_dir = engine.session_dir(session)
        assert containers_of(docker_client, engine.id)
        await eventually(lambda: engine.sessions() == [], timeout=15)
        await eventually(lambda: not containers_of(docker_client, engine.id), timeout=15)
        await eventually(lambda: not files_dir.exists(), timeout=15)
        with pytest.raises(Exception, match="no session"):
            await engine.execute("x", session=session)


async def test_sessions_beyond_the_maximum_get_a_capacity_error(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(pool_size=0, max_sessions=1, capacity_wait=0.3)) as engine:
        busy = await engine.create_session()
        running = asyncio.create_task(engine.execute("import time; time.sleep(3)", session=busy))
        await eventually(lambda: engine.sessions()[0].state == "running", timeout=15)
        started = time.monotonic()
        with pytest.raises(CapacityError, match="1 sessions are live and running code"):
            await engine.create_session()
        assert time.monotonic() - started < 2
        assert (await running).ok


async def test_kernels_beyond_the_maximum_get_a_capacity_error_not_a_hang(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(pool_size=0, max_kernels=1, capacity_wait=0.3)) as engine:
        holder = await engine.create_session()
        await engine.execute("1", session=holder)
        busy = asyncio.create_task(engine.execute("import time; time.sleep(3)", session=holder))
        await eventually(lambda: engine.sessions()[0].busy, timeout=5)
        started = time.monotonic()
        with pytest.raises(CapacityError, match="all 1 kernels are in use"):
            await engine.execute("1", session=await engine.create_session())
        assert time.monotonic() - started < 5
        await busy
        # Once the holder is idle, its kernel makes room for the next session.
        result = await engine.execute("print('room')", session=await engine.create_session())
        assert result.logs == "room\n"


async def test_a_capacity_wait_ends_when_a_kernel_frees_up(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(pool_size=0, max_kernels=1, capacity_wait=30)) as engine:
        holder = await engine.create_session()
        await engine.execute("1", session=holder)
        busy = asyncio.create_task(engine.execute("import time; time.sleep(2)", session=holder))
        await eventually(lambda: engine.sessions()[0].busy, timeout=5)
        began = time.monotonic()
        waiting = asyncio.create_task(engine.execute("print('got it')"))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # the only kernel is busy: it waits
        result = await asyncio.wait_for(waiting, timeout=30)
        assert result.logs == "got it\n"
        assert time.monotonic() - began >= 1  # it got the kernel once the holder was idle
        await busy


async def test_sessions_and_stats_describe_the_engine(engine: Engine) -> None:
    session = await engine.create_session("thread-1")
    assert await engine.create_session("thread-1") == "thread-1"
    await engine.execute("1", session=session)
    (info,) = engine.sessions()
    assert (info.id, info.has_kernel, info.busy) == ("thread-1", True, False)
    assert info.files_dir == engine.session_dir(session)
    stats = engine.stats()
    assert stats.sessions == 1
    assert stats.kernels_started >= 1
    assert stats.cold_start.p50_ms is not None and stats.cold_start.p50_ms > 0


ORPHANED_ENGINE = """
import asyncio, sys
from interp import Config, Engine

async def main():
    engine = Engine(Config(data_dir=sys.argv[1], pool_size=2))
    await engine.start()
    session = await engine.create_session()
    await engine.execute("open('left.txt', 'w').write('behind')", session=session)
    await engine.warm(timeout=60)
    print(engine.id, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def start_and_kill_an_engine(data_dir: Path) -> str:
    """Run an engine in another process, SIGKILL it once warm; return its id."""
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(ORPHANED_ENGINE), str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    ) as orphan:
        assert orphan.stdout is not None
        engine_id = orphan.stdout.readline().strip()
        os.kill(orphan.pid, signal.SIGKILL)
        orphan.wait()
    return engine_id


async def test_containers_of_a_killed_engine_are_reaped_and_others_left_alone(
    make_config: Callable[..., Config], docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    stranger = docker_client.containers.run(
        Config().image,
        ["sleep", "300"],
        detach=True,
        network_mode="none",
        labels={"test": "not-interp"},
    )
    try:
        data = tmp_path / "data"
        orphan_id = await asyncio.to_thread(start_and_kill_an_engine, data)
        # Two warm kernels and the session's.
        assert len(containers_of(docker_client, orphan_id)) == 3
        (left,) = data.glob(f"sessions/*-{orphan_id}/*/left.txt")
        async with Engine(make_config()) as engine:
            assert containers_of(docker_client, orphan_id) == []
            stranger.reload()
            assert stranger.status == "running"
            # Its pool and session directories are gone, unmounted where they were capped;
            # the new engine's own are in place.
            owners = [d.name for d in data.glob("*/*-*") if d.parent.name in ("pool", "sessions")]
            assert sorted(owners) == [owners[0]] * 2 and owners[0].endswith(engine.id)
            mounts = await asyncio.to_thread(Path("/proc/mounts").read_text)
            assert str(left.parent) not in mounts
    finally:
        stranger.remove(force=True)


TERMINATED_ENGINE = """
import sys, time
from interp import Config, SyncEngine

engine = SyncEngine(Config(data_dir=sys.argv[1], pool_size=2))
engine.warm(timeout=60)
engine.execute("1", session=engine.create_session())
engine.warm(timeout=60)
print(engine.id, flush=True)
if sys.argv[2] == "wait":
    time.sleep(3600)
"""


def test_sigterm_makes_an_engine_remove_its_containers(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(TERMINATED_ENGINE), str(tmp_path), "wait"],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            engine_id = process.stdout.readline().strip()
            assert len(containers_of(docker_client, engine_id)) == 3
            process.terminate()
            assert process.wait(timeout=60) == 128 + signal.SIGTERM
        finally:
            process.kill()
    assert_no_containers(docker_client, engine_id)


def test_a_script_that_never_closes_its_engine_leaves_no_containers(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TERMINATED_ENGINE), str(tmp_path), "exit"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert_no_containers(docker_client, done.stdout.strip())
