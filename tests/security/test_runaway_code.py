"""Code that will not stop, waits for input, or exhausts memory, processes or threads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psutil
import pytest

from interp import Config, Engine, ExecutionStatus

from ..conftest import GVISOR

pytestmark = pytest.mark.docker


@pytest.mark.parametrize(
    "code",
    [
        "while True: pass",
        "import time\ntime.sleep(3600)",
    ],
    ids=["cpu-loop", "long-sleep"],
)
async def test_a_timeout_stops_the_code_at_the_deadline_and_the_session_goes_on(
    engine: Engine, code: str
) -> None:
    session = await engine.create_session()
    await engine.execute("kept = 'state'", session=session)
    result = await engine.execute(code, session=session, timeout=1.5)
    assert result.status is ExecutionStatus.TIMEOUT
    assert result.message is not None and "timed out after 1.5 s" in result.message
    assert 1.5 <= result.duration_s < 1.5 + engine.config.interrupt_grace + 0.5
    after = await engine.execute("print(kept)", session=session)
    assert (after.status, after.logs) == (ExecutionStatus.COMPLETED, "state\n")


@pytest.mark.parametrize(
    "code",
    [
        "import time\n"
        "while True:\n"
        "    try:\n"
        "        time.sleep(0.01)\n"
        "    except BaseException:\n"
        "        pass\n",
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True: time.sleep(0.01)\n",
    ],
    ids=["swallows-keyboard-interrupt", "ignores-sigint"],
)
async def test_code_that_ignores_interrupts_is_killed_within_the_grace(
    engine: Engine, code: str
) -> None:
    session = await engine.create_session()
    result = await engine.execute(
        "print('stubborn', flush=True)\n" + code, session=session, timeout=1
    )
    assert result.status is ExecutionStatus.TIMEOUT
    assert result.message is not None and "killed" in result.message
    assert result.logs == "stubborn\n"
    assert result.duration_s < 1 + engine.config.interrupt_grace + 1
    after = await engine.execute("print('fresh kernel')", session=session)
    assert after.logs == "fresh kernel\n"


async def test_a_fork_bomb_hits_the_pids_limit_and_others_keep_working(engine: Engine) -> None:
    host_processes = len(psutil.pids())
    bomb, bystander = await engine.create_session(), await engine.create_session()
    await engine.execute("1", session=bystander)
    code = (
        "import os\n"
        "print('forking', flush=True)\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    bombing = asyncio.create_task(engine.execute(code, session=bomb, timeout=4))
    answers = []
    while not bombing.done():
        answers.append(await engine.execute("print(6 * 7)", session=bystander, timeout=10))
    result = await bombing
    # Stopped by the pids limit, then killed at the timeout (the kernel did not stop in the
    # grace, or its processes outlived it); or, when the forks of a kernel holding the
    # preloaded data stack touch enough of its pages, by the memory limit first.
    assert result.status in (ExecutionStatus.TIMEOUT, ExecutionStatus.OOM)
    assert result.message is not None
    assert "was killed" in result.message or "ran out of memory" in result.message
    assert answers and all(a.logs == "42\n" for a in answers)
    # The bomb's processes went with its container.
    assert len(psutil.pids()) < host_processes + 50
    after = await engine.execute("print('recovered')", session=bomb)
    assert after.logs == "recovered\n"


async def test_a_thread_bomb_is_stopped_by_the_pids_limit(engine: Engine) -> None:
    code = (
        "import threading, time\n"
        "started = 0\n"
        "try:\n"
        "    while True:\n"
        "        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
        "        started += 1\n"
        "except RuntimeError as exc:\n"
        "    print('stopped:', exc)\n"
        "print(started < 256)\n"
    )
    result = await engine.execute(code, timeout=30)
    if GVISOR and result.status is ExecutionStatus.OOM:
        # gVisor's threads are its own, not host tasks the pids limit counts: there the
        # memory limit is what stops a thread bomb. The session goes on.
        after = await engine.execute("print('after')")
        assert (after.status, after.logs) == (ExecutionStatus.COMPLETED, "after\n")
        return
    assert result.status is ExecutionStatus.COMPLETED
    assert result.logs == "stopped: can't start new thread\nTrue\n"


async def test_input_fails_at_once_with_a_clear_error(engine: Engine) -> None:
    started = time.monotonic()
    result = await engine.execute("name = input('who? ')", timeout=20)
    assert result.status is ExecutionStatus.FAILED
    assert result.error is not None
    assert result.error.name == "StdinNotImplementedError"
    assert "raw_input was called, but this frontend does not support input" in result.error.value
    assert time.monotonic() - started < 5


async def test_a_memory_bomb_is_oom_killed_naming_the_limit_and_files_survive(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(memory="256m")) as engine:
        session = await engine.create_session()
        await engine.execute("open('notes.txt', 'w').write('written before')", session=session)
        bomb = "hog = []\nwhile True:\n    hog.append(bytearray(16 * 1024**2))\n"
        result = await engine.execute(bomb, session=session, timeout=60)
        assert result.status is ExecutionStatus.OOM
        assert result.message is not None and "limit 256 MiB" in result.message
        after = await engine.execute("print(open('notes.txt').read())", session=session)
        assert (after.status, after.logs) == (ExecutionStatus.COMPLETED, "written before\n")
