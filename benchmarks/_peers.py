"""interp beside its peers, in one interleaved run on the same image (``interp bench --peers``).

Each round runs every system once, in turn, so a slow moment of the machine falls on all
of them alike; a ratio is taken within a round (interp / peer) and the median of those
ratios reported. The systems:

- interp: a warm pool of preloaded kernels (its defaults);
- raw jupyter_client in a plain container: a container started for the session, the
  image's ipykernel in it, a raw ``AsyncKernelClient`` over ipc (no pool, no checks);
- llm-sandbox's plain ``ArtifactSandboxSession`` and its pooled
  ``ArtifactPooledSandboxSession`` (the ``peers`` extra), on the same image.

Workloads: W1 a new session and its first ``print``; W2 a ``print`` on a warm session;
W3 a new session's pandas + chart call until the PNG is back, and (W3 again) its second run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import docker
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import write_connection_file

from interp import ExecutionStatus

from ._scenarios import W3, Measurement, Plan, _new_session_call, engine_for

W1 = "print('hello')"
WORKLOADS = ("W1", "W2", "W3", "W3 again")
_W2_SAMPLES = 5


class _Session(Protocol):
    async def run(self, code: str, *, image: bool = False) -> None:
        """Run ``code``; with ``image``, fail unless a PNG came back."""

    async def close(self) -> None: ...


class _Interp:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def first(self, code: str, image: bool) -> tuple[float, str]:
        session, took, result = await _new_session_call(self.engine, code)
        if result.status is not ExecutionStatus.COMPLETED or (image and not result.image_ids):
            raise RuntimeError(f"interp: {result.status}: {result.logs[-300:]}")
        return took, session


class _RawSession:
    """A plain container running the image's ipykernel, reached by a raw client."""

    def __init__(self, client: docker.DockerClient, image: str, runtime: str | None) -> None:
        self._docker = client
        self._image = image
        self._runtime = runtime
        self._dir = Path(tempfile.mkdtemp(prefix="interp-peer-"))
        self._container: Any = None
        self._client: AsyncKernelClient | None = None

    async def start(self) -> None:
        os.chmod(self._dir, 0o777)  # the kernel's uid makes its sockets here
        path, _ = write_connection_file(
            str(self._dir / "connection.json"), transport="ipc", ip=str(self._dir / "k")
        )
        os.chmod(path, 0o644)
        self._container = await asyncio.to_thread(
            self._docker.containers.run,
            self._image,
            ["python", "-m", "ipykernel_launcher", "-f", path],
            detach=True,
            network_mode="none",
            volumes={str(self._dir): {"bind": str(self._dir), "mode": "rw"}},
            environment={"MPLCONFIGDIR": "/tmp/mpl"},
            runtime=self._runtime,
        )
        client = AsyncKernelClient()
        client.load_connection_file(path)
        client.start_channels()
        self._client = client
        await client.wait_for_ready(timeout=60)

    async def run(self, code: str, *, image: bool = False) -> None:
        assert self._client is not None
        pngs: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            data = msg["content"].get("data") or {}
            if msg["msg_type"] in ("display_data", "execute_result") and "image/png" in data:
                pngs.append(data["image/png"])

        reply = await self._client.execute_interactive(code, timeout=60, output_hook=hook)
        if reply["content"]["status"] != "ok" or (image and not pngs):
            raise RuntimeError(f"raw jupyter_client: {reply['content']}")

    async def close(self) -> None:
        if self._client is not None:
            self._client.stop_channels()
        if self._container is not None:
            await asyncio.to_thread(self._container.remove, force=True)
        await asyncio.to_thread(shutil.rmtree, self._dir, ignore_errors=True)


class _LLMSandboxSession:
    """llm-sandbox's session, driven from a thread (its API is synchronous)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._session: Any = None

    async def start(self) -> None:
        self._session = self._make()
        await asyncio.to_thread(self._session.__enter__)

    async def run(self, code: str, *, image: bool = False) -> None:
        result = await asyncio.to_thread(self._session.run, code, clear_plots=True)
        if result.exit_code != 0 or (image and not result.plots):
            raise RuntimeError(f"llm-sandbox: {result.exit_code}: {result.stderr[-300:]}")

    async def close(self) -> None:
        await asyncio.to_thread(self._session.__exit__, None, None, None)


def _llm_sandbox_settings(runtime: str | None) -> dict[str, Any]:
    """Its containers need a writable /sandbox (so root, as its own images run); no network
    and the OCI runtime as interp's. Its pooled sessions run a venv of their own, which is
    given the image's packages."""
    return {
        "network_mode": "none",
        "user": "root",
        "environment": {"PYTHONPATH": "/opt/venv/lib/python3.11/site-packages"},
        **({"runtime": runtime} if runtime else {}),
    }


@contextlib.asynccontextmanager
async def _llm_sandbox_pool(image: str, runtime: str | None) -> AsyncIterator[Any]:
    from llm_sandbox.pool import PoolConfig, create_pool_manager

    pool = await asyncio.to_thread(
        create_pool_manager,
        backend="docker",
        config=PoolConfig(max_pool_size=2, min_pool_size=2),
        lang="python",
        image=image,
        # Its pooled sessions run code with the venv its set-up makes (at fill time).
        runtime_configs=_llm_sandbox_settings(runtime),
    )
    try:
        yield pool
    finally:
        await asyncio.to_thread(pool.close)


async def _timed_round(
    opener: Callable[[], Any], results: dict[str, list[float]], interp: _Interp | None
) -> None:
    """One system's W1, W2, W3 and W3 again, appended to ``results``."""
    for workload, code, image in (("W1", W1, False), ("W3", W3, True)):
        if interp is not None:
            took, session_id = await interp.first(code, image)
            results[workload].append(took)
            session: Any = _InterpSession(interp.engine, session_id)
        else:
            t0 = time.perf_counter()
            session = await opener()
            await session.run(code, image=image)
            results[workload].append(time.perf_counter() - t0)
        try:
            if workload == "W1":
                samples = []
                for _ in range(_W2_SAMPLES):
                    t0 = time.perf_counter()
                    await session.run(W1)
                    samples.append(time.perf_counter() - t0)
                results["W2"].append(statistics.median(samples))
            else:
                t0 = time.perf_counter()
                await session.run(W3, image=True)
                results["W3 again"].append(time.perf_counter() - t0)
        finally:
            await session.close()


class _InterpSession:
    def __init__(self, engine: Any, session: str) -> None:
        self.engine = engine
        self.session = session

    async def run(self, code: str, *, image: bool = False) -> None:
        result = await self.engine.execute(code, session=self.session)
        if result.status is not ExecutionStatus.COMPLETED or (image and not result.image_ids):
            raise RuntimeError(f"interp: {result.status}: {result.logs[-300:]}")

    async def close(self) -> None:
        await self.engine.close_session(self.session)


async def peers(data_dir: Path, plan: Plan, image: str, runtime: str | None) -> list[Measurement]:
    """Every system's workloads, round by round; the median ratios interp / peer."""
    try:
        from llm_sandbox import ArtifactSandboxSession
        from llm_sandbox.pool import ArtifactPooledSandboxSession
    except ImportError:
        ArtifactSandboxSession = ArtifactPooledSandboxSession = None
    client = docker.from_env()
    names = ["interp", "raw jupyter_client"]
    if ArtifactSandboxSession is not None:
        names += ["llm-sandbox", "llm-sandbox pooled"]
    times: dict[str, dict[str, list[float]]] = {n: {w: [] for w in WORKLOADS} for n in names}
    rounds = max(3, plan.cold // 2)
    try:
        async with contextlib.AsyncExitStack() as stack:
            engine = await stack.enter_async_context(engine_for(data_dir, pool_size=2))
            await engine.warm(timeout=120)
            interp = _Interp(engine)
            openers: dict[str, Callable[[], Any]] = {}

            async def raw() -> _Session:
                session = _RawSession(client, image, runtime)
                await session.start()
                return session

            openers["raw jupyter_client"] = raw
            if ArtifactSandboxSession is not None:
                pool = await stack.enter_async_context(_llm_sandbox_pool(image, runtime))

                async def plain() -> _Session:
                    session = _LLMSandboxSession(
                        lambda: ArtifactSandboxSession(
                            image=image,
                            lang="python",
                            skip_environment_setup=True,
                            runtime_configs=_llm_sandbox_settings(runtime),
                        )
                    )
                    await session.start()
                    return session

                async def pooled() -> _Session:
                    session = _LLMSandboxSession(
                        lambda: ArtifactPooledSandboxSession(pool_manager=pool)
                    )
                    await session.start()
                    return session

                openers["llm-sandbox"] = plain
                openers["llm-sandbox pooled"] = pooled
            # One unmeasured round first: images in the page cache, pools filled.
            for measured in [False] + [True] * rounds:
                for name in names:
                    target = times[name] if measured else {w: [] for w in WORKLOADS}
                    await _timed_round(
                        openers.get(name, raw), target, interp if name == "interp" else None
                    )
    finally:
        client.close()
    return _measurements(times)


def _measurements(times: dict[str, dict[str, list[float]]]) -> list[Measurement]:
    out: list[Measurement] = []
    for workload in WORKLOADS:
        for name, by_workload in times.items():
            out.append(
                Measurement(
                    f"peer_{workload.replace(' ', '_')}[{name}]",
                    f"{workload}: {name}",
                    samples=by_workload[workload],
                    baseline=name != "interp",
                    group="peers",
                )
            )
        mine = times["interp"][workload]
        for name, by_workload in times.items():
            if name == "interp":
                continue
            ratios = [a / b for a, b in zip(mine, by_workload[workload], strict=True) if b > 0]
            ratio = Measurement(
                f"peer_ratio_{workload.replace(' ', '_')}[{name}]",
                f"  {workload}: interp / {name}, median of per-round ratios",
                group="peers",
            )
            ratio.values["ratio"] = statistics.median(ratios)
            out.append(ratio)
    return out
