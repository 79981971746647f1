"""What the suite measures. Each scenario returns a ``Measurement``; times are seconds.

Every engine figure has a baseline measured in the same run beside it: raw
jupyter_client against a local ipykernel and against the engine's own container kernel,
and a bare ``docker run --rm --network none IMAGE true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

from interp import Config, Engine, ExecutionResult, ExecutionStatus, LogChunk
from interp._engine import Engine as _Engine


@dataclass
class Measurement:
    key: str
    title: str
    samples: list[float] = field(default_factory=list)
    """Latencies, in seconds."""
    values: dict[str, float] = field(default_factory=dict)
    """Figures that are not latencies: rates, bytes, ratios."""
    baseline: bool = False
    group: str = ""


@dataclass(frozen=True)
class Plan:
    """How many samples each scenario takes."""

    cold: int
    warm: int
    execute: int
    concurrency_s: float
    processes: int

    @classmethod
    def quick(cls) -> Plan:
        return cls(cold=5, warm=15, execute=60, concurrency_s=2.0, processes=3)

    @classmethod
    def full(cls) -> Plan:
        return cls(cold=20, warm=100, execute=300, concurrency_s=5.0, processes=10)


@contextlib.asynccontextmanager
async def engine_for(data_dir: Path, **settings: Any) -> AsyncIterator[Engine]:
    config = Config(data_dir=data_dir, **settings)
    async with Engine(config) as engine:
        yield engine


def _kernel_of(engine: Engine, session: str) -> Any:
    """The engine's kernel for a session, to point a raw client at the same kernel."""
    assert isinstance(engine, _Engine)
    kernel = engine._sessions.get(session).kernel
    assert kernel is not None
    return kernel


async def cold_start(data_dir: Path, plan: Plan, runtime: str, label: str) -> list[Measurement]:
    """Container start to kernel ready, with the launch broken into its phases."""
    name = label
    total = Measurement(
        f"cold_start[{label}]",
        f"cold start, runtime {runtime}" + (" (interp's default)" if label == "default" else ""),
        group="cold start",
    )
    phases: dict[str, Measurement] = {
        phase: Measurement(f"cold_start_{phase}[{name}]", f"  {phase}", group="cold start")
        for phase in ("create", "start", "kernel ready")
    }
    # The container and the kernel alone: what preloading adds is measured apart.
    async with engine_for(data_dir, pool_size=0, runtime=runtime, preload=[]) as engine:
        for _ in range(plan.cold):
            session = await engine.create_session()
            await engine.execute("1", session=session)
            kernel = _kernel_of(engine, session)
            total.samples.append(kernel.started_s)
            created = kernel.sandbox.phases.get("create", 0.0)
            started = kernel.sandbox.phases.get("start", 0.0)
            phases["create"].samples.append(created)
            phases["start"].samples.append(started)
            phases["kernel ready"].samples.append(kernel.started_s - created - started)
            await engine.close_session(session)
    return [total, *phases.values()]


async def warm_pool(data_dir: Path, plan: Plan) -> list[Measurement]:
    """Warm acquire, first execution on a new session, refill rate, replacement time."""
    acquire = Measurement("warm_acquire", "warm acquire (pool hit)", group="pool")
    first = Measurement("first_execution", "first execution, new session", group="pool")
    refill = Measurement("refill", "pool refill", group="pool")
    replaced = Measurement("dead_kernel_replaced", "dead kernel replaced, ready", group="pool")
    size = 4
    began = time.perf_counter()
    # Pool mechanics, without preloading (see ``first_real_result`` for its cost).
    async with engine_for(data_dir, pool_size=size, preload=[]) as engine:
        await engine.warm(timeout=120)
        refill.values["kernels_per_s"] = size / (time.perf_counter() - began)
        refill.samples.append(time.perf_counter() - began)
        idle = engine.stats().idle_kernel_memory_bytes
        for _ in range(plan.warm):
            session, took, result = await _new_session_call(engine, "1 + 1")
            first.samples.append(took)
            assert result.status is ExecutionStatus.COMPLETED
            await engine.close_session(session)
        acquire.samples.extend(s / 1e3 for s in _acquire_samples(engine)[-plan.warm :])
        for _ in range(max(3, plan.cold // 2)):
            await engine.warm(timeout=120)
            session = await engine.create_session()
            await engine.execute("1", session=session)
            died = await engine.execute("import os; os._exit(1)", session=session)
            assert died.status is ExecutionStatus.KERNEL_DIED
            t0 = time.perf_counter()
            await engine.execute("1", session=session)
            replaced.samples.append(time.perf_counter() - t0)
            await engine.close_session(session)
    memory = Measurement("memory_idle_kernel", "memory of an idle pooled kernel", group="memory")
    if idle is not None:
        memory.values["bytes"] = float(idle)
    return [acquire, first, refill, replaced, memory]


W3 = (
    "import matplotlib.pyplot as plt, numpy as np, pandas as pd\n"
    "frame = pd.DataFrame({'x': np.arange(100),"
    " 'y': np.random.default_rng(0).normal(size=100).cumsum()})\n"
    "print(frame.describe())\n"
    "frame.plot(x='x', y='y')\n"
    "plt.show()"
)
"""The call a code interpreter exists for: pandas, a description, a chart."""


async def first_real_result(data_dir: Path, plan: Plan) -> list[Measurement]:
    """A new session's pandas + chart call, warm preloaded pool, until the PNG is back;
    its second run beside a raw client's on the same kernel; what preloading costs."""
    first = Measurement("w3_first", "new session: pandas + chart, PNG back", group="w3")
    second = Measurement("w3_second", "same session: pandas + chart again", group="w3")
    raw = Measurement(
        "w3_raw_second",
        "raw jupyter_client, same kernel: pandas + chart again",
        baseline=True,
        group="w3",
    )
    refill = Measurement("refill_preloaded", "pool refill, preloaded kernels", group="w3")
    trivial = Measurement(
        "first_execution_preloaded", "first execution (1+1), new session, preloaded", group="w3"
    )
    size = 2
    began = time.perf_counter()
    async with engine_for(data_dir, pool_size=size) as engine:
        await engine.warm(timeout=120)
        refill.values["kernels_per_s"] = size / (time.perf_counter() - began)
        idle = engine.stats().idle_kernel_memory_bytes
        for _ in range(max(8, plan.warm // 4)):
            session, took, _ = await _new_session_call(engine, "1 + 1")
            trivial.samples.append(took)
            await engine.close_session(session)
            session, took, result = await _new_session_call(engine, W3)
            first.samples.append(took)
            assert result.image_ids, result.logs
            # The refill of the kernel this session took (a preloaded kernel starting) done
            # first: the pair below is compared on CPUs that nothing else uses.
            await engine.warm(timeout=120)
            t0 = time.perf_counter()
            await engine.execute(W3, session=session)
            second.samples.append(time.perf_counter() - t0)
            async with _raw_client(engine, session) as client:
                t0 = time.perf_counter()
                await client.execute_interactive(W3, timeout=60, output_hook=lambda msg: None)
                raw.samples.append(time.perf_counter() - t0)
            await engine.close_session(session)
    memory = Measurement(
        "memory_idle_kernel_preloaded", "memory of an idle preloaded kernel", group="memory"
    )
    if idle is not None:
        memory.values["bytes"] = float(idle)
    return [first, second, raw, trivial, refill, memory]


async def _new_session_call(engine: Engine, code: str) -> tuple[str, float, ExecutionResult]:
    """Once the pool is full: a new session, and the seconds its first call of ``code``
    took. The caller closes the session."""
    await engine.warm(timeout=120)
    session = await engine.create_session()
    t0 = time.perf_counter()
    result = await engine.execute(code, session=session)
    return session, time.perf_counter() - t0, result


def _acquire_samples(engine: Engine) -> list[float]:
    assert isinstance(engine, _Engine)
    return [s * 1e3 for s in engine._pool._acquire_s]


EXECUTIONS: dict[str, str] = {
    "1+1": "1+1",
    "print 1 KB": "print('x' * 1024)",
    "1 MB of output": "print('x' * (1024 * 1024))",
    "pandas groupby": (
        "df = pd.DataFrame({'k': np.arange(10_000) % 10, 'v': np.arange(10_000)})\n"
        "df.groupby('k').v.sum()"
    ),
}


async def executions(data_dir: Path, plan: Plan) -> list[Measurement]:
    """Round trips on a warm session, beside raw jupyter_client on the same kernel."""
    out: list[Measurement] = []
    async with engine_for(data_dir, pool_size=1) as engine:
        session = await engine.create_session()
        await engine.execute("import numpy as np, pandas as pd", session=session)
        # The pool's refill (a container and a kernel starting) done first, so that no
        # sample shares the CPUs with it.
        await engine.warm(timeout=120)
        out += await _trivial_beside_raw(engine, session, plan.execute)
        out += await _first_output_beside_raw(engine, session, max(10, plan.execute // 3))
        for label, code in EXECUTIONS.items():
            if label == "1+1":
                continue
            n = plan.execute if "MB" not in label else max(5, plan.execute // 10)
            m = Measurement(f"execute[{label}]", f"execute {label}", group="execute")
            for _ in range(n):
                t0 = time.perf_counter()
                result = await engine.execute(code, session=session)
                m.samples.append(time.perf_counter() - t0)
                assert result.status is ExecutionStatus.COMPLETED, result.logs
            out.append(m)
        figure = Measurement("execute[figure first]", "execute first figure", group="execute")
        later = Measurement("execute[figure later]", "execute later figures", group="execute")
        plot = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"
        for i in range(max(3, plan.execute // 10)):
            t0 = time.perf_counter()
            result = await engine.execute(plot, session=session)
            (figure if i == 0 else later).samples.append(time.perf_counter() - t0)
            assert result.image_ids
        out += [figure, later]
    return out


async def _trivial_beside_raw(engine: Engine, session: str, n: int) -> list[Measurement]:
    """``1+1`` through the engine and through a raw client on the same kernel, alternating,
    so that both see the same kernel at the same moment."""
    ours = Measurement("execute[1+1]", "execute 1+1", group="execute")
    raw = Measurement(
        "raw_client_engine_kernel",
        "raw jupyter_client, same container kernel: 1+1",
        baseline=True,
        group="execute",
    )
    async with _raw_client(engine, session) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            result = await engine.execute("1+1", session=session)
            ours.samples.append(time.perf_counter() - t0)
            assert result.logs == "2\n"
            t0 = time.perf_counter()
            await client.execute_interactive("1+1", timeout=30, output_hook=lambda msg: None)
            raw.samples.append(time.perf_counter() - t0)
    return [ours, raw]


async def _first_output_beside_raw(engine: Engine, session: str, n: int) -> list[Measurement]:
    """From sending code that prints, then works on, to its first output arriving: through
    ``engine.stream`` (coalescing window included) and through a raw client."""
    code = "import time\nprint('started', flush=True)\ntime.sleep(0.05)"
    ours = Measurement(
        "stream_first_output", "stream: first output of running code", group="execute"
    )
    raw = Measurement(
        "raw_client_first_output",
        "raw jupyter_client, same container kernel: first output",
        baseline=True,
        group="execute",
    )
    async with _raw_client(engine, session) as client:
        for _ in range(n):
            firsts: list[float] = []
            t0 = time.perf_counter()
            async for event in engine.stream(code, session=session):
                if isinstance(event, LogChunk) and not firsts:
                    firsts.append(time.perf_counter() - t0)
            ours.samples.append(firsts[0])
            raw.samples.append(await _raw_first_output(client, code))
    return [ours, raw]


async def _raw_first_output(client: AsyncKernelClient, code: str) -> float:
    """Seconds from sending ``code`` to its first ``stream`` message, by a raw client."""
    firsts: list[float] = []
    t0 = time.perf_counter()

    def first_stream(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream" and not firsts:
            firsts.append(time.perf_counter() - t0)

    await client.execute_interactive(code, timeout=30, output_hook=first_stream)
    return firsts[0]


@contextlib.asynccontextmanager
async def _raw_client(engine: Engine, session: str) -> AsyncIterator[AsyncKernelClient]:
    """A raw jupyter_client, ready, on the engine's own kernel of ``session``."""
    client = AsyncKernelClient()
    client.load_connection_info(_kernel_of(engine, session).sandbox.connection_info)
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        yield client
    finally:
        client.stop_channels()


async def local_ipykernel(plan: Plan) -> list[Measurement]:
    """Raw jupyter_client against a local ipykernel: no container, no engine."""
    start = Measurement(
        "raw_local_start", "raw jupyter_client, local ipykernel: start to ready",
        baseline=True, group="cold start",
    )  # fmt: skip
    execute = Measurement(
        "raw_local_execute", "raw jupyter_client, local ipykernel: 1+1",
        baseline=True, group="execute",
    )  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="interp-bench-ipc-"))
    for i in range(plan.cold):
        # Over ipc, as the engine's kernels are.
        manager = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=f"{scratch}/k{i}")
        t0 = time.perf_counter()
        await manager.start_kernel()
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=60)
            start.samples.append(time.perf_counter() - t0)
            if i == 0:
                for _ in range(plan.execute):
                    t1 = time.perf_counter()
                    await client.execute_interactive("1+1", timeout=30, output_hook=lambda m: None)
                    execute.samples.append(time.perf_counter() - t1)
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return [start, execute]


def docker_run_true(image: str, plan: Plan, runtime: str, label: str) -> Measurement:
    m = Measurement(
        f"docker_run_true[{label}]",
        f"docker run --rm --network none IMAGE true, runtime {runtime}",
        baseline=True,
        group="cold start",
    )
    command = ["docker", "run", "--rm", "--network", "none", "--runtime", runtime]
    for _ in range(plan.cold):
        t0 = time.perf_counter()
        subprocess.run([*command, image, "true"], check=True, capture_output=True)
        m.samples.append(time.perf_counter() - t0)
    return m


async def concurrency(data_dir: Path, plan: Plan) -> list[Measurement]:
    """N sessions executing trivial code in a loop: total throughput and latency."""
    out = []
    async with engine_for(data_dir, pool_size=8, max_kernels=16) as engine:
        await engine.warm(timeout=120)
        for width in (1, 2, 4, 8):
            sessions = [await engine.create_session() for _ in range(width)]
            for s in sessions:
                await engine.execute("1", session=s)
            m = Measurement(f"concurrency[{width}]", f"{width} sessions, 1+1 in a loop",
                            group="concurrency")  # fmt: skip
            deadline = time.perf_counter() + plan.concurrency_s

            async def loop(session: str, m: Measurement = m, deadline: float = deadline) -> None:
                while time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    await engine.execute("1+1", session=session)
                    m.samples.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*(loop(s) for s in sessions))
            m.values["executions_per_s"] = len(m.samples) / (time.perf_counter() - t0)
            out.append(m)
            for s in sessions:
                await engine.close_session(s)
        with_sessions = Measurement(
            "memory_engine_8_sessions", "engine process RSS with 8 sessions", group="memory"
        )
        sessions = [await engine.create_session() for _ in range(8)]
        for s in sessions:
            await engine.execute("1", session=s)
        with_sessions.values["bytes"] = float(psutil.Process().memory_info().rss)
        out.append(with_sessions)
    return out


def interp_run(plan: Plan, data_dir: Path) -> Measurement:
    """`interp run examples/hello.py` as a whole process."""
    m = Measurement("interp_run_hello", "interp run hello.py (whole process)", group="cli")
    with tempfile.TemporaryDirectory() as scratch:
        hello = Path(scratch) / "hello.py"
        hello.write_text("print('hello from the sandbox')\n")
        env = {**os.environ, "INTERP_DATA_DIR": str(data_dir)}
        for _ in range(plan.processes):
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "interp", "run", str(hello)],
                check=True, capture_output=True, env=env, cwd=scratch,
            )  # fmt: skip
            m.samples.append(time.perf_counter() - t0)
    return m


async def timed(label: str, work: Callable[[], Awaitable[list[Measurement]]]) -> list[Measurement]:
    print(f"  {label} …", file=sys.stderr, flush=True)
    return await work()
