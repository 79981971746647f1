"""The Docker daemon goes away under live sessions, then comes back."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import time

import docker
import psutil
import pytest

from interp import Engine, ExecutionStatus, InterpError

# Restarts the machine's Docker daemon: not in the default run (see README).
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def local_dockerd() -> psutil.Process | None:
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "dockerd":
            return process
    return None


def wait_for_docker(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            docker.from_env().close()  # connecting asks the daemon for its version
            return
        except docker.errors.DockerException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.skipif(os.geteuid() != 0, reason="restarting dockerd needs root")
# The daemon vanishing leaves sockets in docker-py's connection pool that it never closes.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_calls_fail_clearly_while_docker_is_down_and_recover_after(engine: Engine) -> None:
    daemon = local_dockerd()
    if daemon is None:
        pytest.skip("the Docker daemon is not a local process this test can restart")
    command = daemon.cmdline()
    session = await engine.create_session()
    await engine.execute("open('kept.txt', 'w').write('kept')", session=session)

    daemon.terminate()
    await asyncio.to_thread(daemon.wait, 60)
    try:
        with pytest.raises(InterpError, match="Docker"):
            await engine.execute("print('anyone?')", session=session, timeout=2)
    finally:
        # setsid -f: the daemon outlives this test and its process. Its output must not go
        # to a pipe of ours: the daemon would hold it open and `run` would wait forever.
        restart = ["setsid", "-f", *command]
        await asyncio.to_thread(
            subprocess.run,
            restart,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        await asyncio.to_thread(wait_for_docker, 60)

    deadline = time.monotonic() + 60
    while True:
        try:
            result = await engine.execute("print(open('kept.txt').read())", session=session)
        except InterpError:
            result = None
        if result is not None and result.status is ExecutionStatus.COMPLETED:
            break
        assert time.monotonic() < deadline, "the engine did not recover"
        await asyncio.sleep(0.5)
    assert result.logs == "kept\n"
    # Collect the broken connections now, while this test's warning filters apply.
    gc.collect()
