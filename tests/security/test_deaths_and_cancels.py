"""Kernels that die, callers that give up, sessions closed under a running call."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from interp import Engine, ExecutionStatus, InvalidInputError, SessionNotFoundError

from ..conftest import GVISOR

pytestmark = pytest.mark.docker


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("import os\nos._exit(1)", "exited with code 1"),
        ("import os\nos.kill(os.getpid(), 9)", "killed by signal 9"),
        ("import ctypes\nctypes.string_at(0)", "killed by signal 11"),
        # The init process forwards the signal in its own time: the code waits for it, so
        # that the call cannot end first (it had, once, under gVisor).
        (
            "import os, signal, time\nos.kill(1, signal.SIGTERM)\ntime.sleep(30)",
            "killed by signal 15",
        ),
    ],
    ids=["os-exit", "sigkill-self", "segfault", "sigterm-pid-1"],
)
async def test_a_dying_kernel_is_reported_with_its_cause_and_replaced(
    engine: Engine, code: str, cause: str
) -> None:
    session = await engine.create_session()
    await engine.execute("open('kept.txt', 'w').write('kept')", session=session)
    started = time.monotonic()
    result = await engine.execute("print('last words', flush=True)\n" + code, session=session)
    assert time.monotonic() - started < 2.0
    assert result.status is ExecutionStatus.KERNEL_DIED
    assert result.message is not None and cause in result.message
    after = await engine.execute("print(open('kept.txt').read())", session=session)
    assert (after.status, after.logs) == (ExecutionStatus.COMPLETED, "kept\n")


async def test_pid_1_ignores_sigkill_from_inside(engine: Engine) -> None:
    # The kernel may signal the init process, but the kernel of a PID namespace drops
    # SIGKILL sent to its init from within: nothing happens.
    session = await engine.create_session()
    result = await engine.execute(
        f"import os\nos.kill(1, {signal.SIGKILL})\n'alive'", session=session
    )
    if GVISOR:
        # gVisor delivers it: the code ends its own sandbox, which is reported, and the
        # session gets a new kernel.
        assert result.status is ExecutionStatus.KERNEL_DIED
        after = await engine.execute("'alive'", session=session)
        assert (after.status, after.logs) == (ExecutionStatus.COMPLETED, "'alive'\n")
        return
    assert (result.status, result.logs) == (ExecutionStatus.COMPLETED, "'alive'\n")


async def _started(engine: Engine, session: str) -> None:
    marker = engine.session_dir(session) / "started"
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the code never started"
        await asyncio.sleep(0.02)


SLOW = "open('/mnt/data/started', 'w').close()\nimport time\ntime.sleep(60)\n"


async def test_a_cancelled_call_interrupts_the_kernel_and_the_session_stays_usable(
    engine: Engine,
) -> None:
    session = await engine.create_session()
    await engine.execute("state = 'kept'", session=session)
    call = asyncio.create_task(engine.execute(SLOW, session=session))
    await _started(engine, session)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    started = time.monotonic()
    after = await engine.execute("print(state)", session=session, timeout=10)
    assert (after.status, after.logs) == (ExecutionStatus.COMPLETED, "kept\n")
    assert time.monotonic() - started < 5


async def test_closing_a_session_during_a_call_stops_it_with_a_clear_result(
    engine: Engine,
) -> None:
    session = await engine.create_session()
    call = asyncio.create_task(engine.execute(SLOW, session=session))
    await _started(engine, session)
    queued = asyncio.create_task(engine.execute("1", session=session))
    await engine.close_session(session)
    result = await asyncio.wait_for(call, timeout=10)
    assert result.status is ExecutionStatus.KERNEL_DIED
    assert result.message is not None and "session was closed" in result.message
    with pytest.raises(SessionNotFoundError):
        await queued
    with pytest.raises(SessionNotFoundError):
        await engine.execute("1", session=session)


async def test_bad_input_gets_clear_errors(engine: Engine) -> None:
    session = await engine.create_session()
    with pytest.raises(InvalidInputError, match="more than the limit"):
        await engine.execute("x = 1\n" * (10 * 1024**2 // 6), session=session)
    with pytest.raises(InvalidInputError, match="not valid UTF-8"):
        await engine.execute(b"print('\xc3\x28')", session=session)
    with pytest.raises(InvalidInputError, match="code is empty"):
        await engine.execute("", session=session)
    with pytest.raises(InvalidInputError, match="timeout"):
        await engine.execute("1", session=session, timeout=-5)
    with pytest.raises(InvalidInputError, match="invalid session id"):
        await engine.create_session("../../etc")
    with pytest.raises(InvalidInputError, match="invalid file name"):
        await engine.upload(session, "../escape.txt", b"x")
    with pytest.raises(SessionNotFoundError):
        await engine.execute("1", session="no-such-session")
    # After all that, the session still works.
    assert (await engine.execute("print('fine')", session=session)).logs == "fine\n"
