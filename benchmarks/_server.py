"""`interp serve` measured as its clients see it: the real `openai` client against a live
server (a subprocess), driven by a model that answers at once, beside the engine's own
figure for the same work in the same run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import psutil
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from interp import Config, LogChunk
from interp.server import asgi_app

from ._scenarios import Measurement, Plan, engine_for

CODE = "import time\nprint('started', flush=True)\ntime.sleep(0.05)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [choice]}  # fmt: skip
    return f"data: {json.dumps(body)}\n\n"


async def _complete(request: Request) -> StreamingResponse:
    """Zero latency: a ``python`` call of ``CODE`` for a user message, text after a tool
    or for a user's ``hi`` (a trivial run)."""
    last = (await request.json())["messages"][-1]

    async def stream() -> AsyncIterator[str]:
        if last["role"] == "tool" or last.get("content") == "hi":
            yield _chunk({"content": "done"}, "stop")
        else:
            function = {"name": "python", "arguments": json.dumps({"code": CODE})}
            call = {"index": 0, "id": f"call_{time.monotonic_ns()}", "type": "function",
                    "function": function}  # fmt: skip
            yield _chunk({"tool_calls": [call]}, "tool_calls")
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


@contextmanager
def _model() -> Iterator[str]:
    port = _free_port()
    app = Starlette(routes=[Route("/v1/chat/completions", _complete, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def _serve(
    data_dir: Path, model_url: str, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    # No preloading on either side: this measures the server, and kernels without it
    # refill between samples.
    env = {
        **os.environ,
        "INTERP_DATA_DIR": str(data_dir),
        "INTERP_POOL_SIZE": "4",
        "INTERP_PRELOAD": "[]",
        **settings,
    }
    command = [sys.executable, "-m", "interp", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--model-base-url", model_url, "--model", "m"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("interp serve did not start") from None
                time.sleep(0.1)
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


async def _first_code_output(client: openai.AsyncOpenAI, assistant_id: str) -> float:
    """From asking for a run on a new thread to the first output delta of its code."""
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    first: float | None = None
    t0 = time.perf_counter()
    stream = await client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant_id, stream=True
    )
    async for event in stream:
        if first is None and event.event == "thread.run.step.delta":
            details = event.data.delta.step_details
            calls = getattr(details, "tool_calls", None) or []
            if any(
                getattr(c, "code_interpreter", None) and c.code_interpreter.outputs for c in calls
            ):
                first = time.perf_counter() - t0
    if first is None:
        raise RuntimeError("the run streamed no code output")
    # One conversation at a time: its session (and kernel) goes with the thread, as the
    # engine's baseline closes its session.
    await client.beta.threads.delete(thread.id)
    return first


async def server(data_dir: Path, plan: Plan) -> list[Measurement]:
    """Run request to first code output through the server, beside the engine's first
    output on a new session; and runs/s for 4 threads at once."""
    ours = Measurement(
        "server_first_code_output",
        "serve: run request to first code output, new thread",
        group="server",
    )
    base = Measurement(
        "engine_first_output_new_session",
        "engine: new session to first output, warm pool",
        baseline=True,
        group="server",
    )
    added = Measurement(
        "server_added_latency",
        "serve: added to the engine's first output (paired samples)",
        group="server",
    )
    n = max(30, plan.execute // 10)
    with _model() as model_url, _serve(data_dir / "serve", model_url) as (url, _):
        client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
        async with engine_for(data_dir / "engine", pool_size=2, preload=[]) as engine:
            await engine.warm(timeout=120)
            assistant = await client.beta.assistants.create(
                model="m", tools=[{"type": "code_interpreter"}]
            )
            await _first_code_output(client, assistant.id)  # the server's first, warming up
            for _ in range(n):
                await engine.warm(timeout=120)
                ours.samples.append(await _first_code_output(client, assistant.id))
                base.samples.append(await _engine_first_output(engine))
                # Each pair ran back to back: their difference is what the server adds,
                # without the drift of the machine between samples.
                added.samples.append(ours.samples[-1] - base.samples[-1])
                await asyncio.sleep(0.7)  # the server's pool refills between samples
            throughput = await _runs_per_second(client, assistant.id, plan)
        await client.close()
    results = [ours, base, added, throughput]
    results += await _trivial_runs(data_dir / "trivial", plan)
    results += await _long_thread(data_dir / "long", plan)
    return results


async def _engine_first_output(engine: Any) -> float:
    t0 = time.perf_counter()
    session = await engine.create_session()
    first: float | None = None
    async for event in engine.stream(CODE, session=session):
        if isinstance(event, LogChunk) and first is None:
            first = time.perf_counter() - t0
    await engine.close_session(session)
    assert first is not None
    return first


async def _runs_per_second(
    client: openai.AsyncOpenAI,
    assistant_id: str,
    plan: Plan,
    width: int = 4,
    content: str = "go",
    others: Sequence[openai.AsyncOpenAI] = (),
) -> Measurement:
    """Runs a second with ``width`` threads at once, their requests spread over
    ``client`` and ``others`` (servers sharing a database)."""
    m = Measurement(f"server_runs[{width}]", f"serve: {width} threads running at once",
                    group="server")  # fmt: skip
    clients = [client, *others]
    threads = [(await client.beta.threads.create()).id for _ in range(width)]
    deadline = time.perf_counter() + 2 * plan.concurrency_s

    async def loop(thread_id: str) -> None:
        client = clients[threads.index(thread_id) % len(clients)]
        while time.perf_counter() < deadline:
            await client.beta.threads.messages.create(
                thread_id=thread_id, role="user", content=content
            )
            t0 = time.perf_counter()
            stream = await client.beta.threads.runs.create(
                thread_id=thread_id, assistant_id=assistant_id, stream=True
            )
            async for _ in stream:
                pass
            m.samples.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(t) for t in threads))
    m.values["runs_per_s"] = len(m.samples) / (time.perf_counter() - t0)
    return m


async def _trivial_runs(data_dir: Path, plan: Plan) -> list[Measurement]:
    """A trivial streamed run (one model turn, a text reply, no code) against the same
    model request sent by the same client directly, paired; and such runs with 16
    clients at once."""
    ours = Measurement("server_trivial_run", "serve: trivial streamed run, new thread",
                       group="server")  # fmt: skip
    base = Measurement("model_direct", "the model's own streamed reply, same client",
                       baseline=True, group="server")  # fmt: skip
    added = Measurement("server_trivial_overhead",
                        "serve: trivial run minus the model's reply (paired samples)",
                        group="server")  # fmt: skip
    n = max(100, plan.execute)
    with _model() as model_url, _serve(data_dir, model_url) as (url, _):
        client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
        direct = openai.AsyncOpenAI(base_url=model_url, api_key="bench", max_retries=0)
        assistant = await client.beta.assistants.create(model="m", tools=[])
        # Both read raw, to the end of the stream: what the server adds, not what the
        # SDK's parsing of its events costs the client.
        runs = client.beta.threads.runs.with_streaming_response
        completions = direct.chat.completions.with_streaming_response
        for i in range(n + 5):
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
            t0 = time.perf_counter()
            async with runs.create(
                thread_id=thread.id, assistant_id=assistant.id, stream=True
            ) as answer:
                async for _ in answer.iter_bytes():
                    pass
            server_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            async with completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            ) as answer:
                async for _ in answer.iter_bytes():
                    pass
            model_s = time.perf_counter() - t0
            if i >= 5:  # the first ones warm both up
                ours.samples.append(server_s)
                base.samples.append(model_s)
                added.samples.append(server_s - model_s)
        wide = await _runs_per_second(client, assistant.id, plan, width=16, content="hi")
        await direct.close()
        await client.close()
    return [ours, base, added, wide]


LONG_THREAD = 100_000
WINDOW = 32_768


async def _long_thread(data_dir: Path, plan: Plan) -> list[Measurement]:
    """Run start (request to the reply's first text) on a 100 000-message thread beside a
    2-message one, with the model's window at 32 768 tokens, and the server's RSS after;
    then the server's event-loop lag while such runs go on."""
    short = Measurement("run_start_short_thread", "serve: run start, 2-message thread",
                        baseline=True, group="server")  # fmt: skip
    long = Measurement(
        "run_start_long_thread", f"serve: run start, {LONG_THREAD:,}-message thread", group="server"
    )
    thread_id = await _fill_thread(data_dir / "serve", LONG_THREAD)
    n = max(10, plan.warm // 2)
    settings = {"INTERP_MODEL_CONTEXT_TOKENS": str(WINDOW)}
    with _model() as model_url, _serve(data_dir / "serve", model_url, **settings) as (url, proc):
        client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
        assistant = await client.beta.assistants.create(model="m", tools=[])
        two = await client.beta.threads.create(
            messages=[{"role": "user", "content": "hello"}, {"role": "user", "content": "hi"}]
        )
        for target in (two.id, thread_id):  # the first of each warms up
            await _run_start(client, target, assistant.id)
        for _ in range(n):
            for target, into in ((two.id, short), (thread_id, long)):
                into.samples.append(await _run_start(client, target, assistant.id))
        long.values["server_rss_mib"] = psutil.Process(proc.pid).memory_info().rss / 1024**2
        await client.close()
    lag = await _loop_lag(data_dir / "serve", thread_id, n)
    return [short, long, lag]


async def _loop_lag(data_dir: Path, thread_id: str, runs: int) -> Measurement:
    """The server's event-loop lag while a client (a process of its own) runs the long
    thread: the server runs in this process for that, so that a task on its loop can
    measure how late a 5 ms sleep wakes up."""
    lag = Measurement(
        "loop_lag_long_runs", "serve: event-loop lag during runs on that thread", group="server"
    )
    with _model() as model_url:
        config = Config(
            data_dir=data_dir,
            model_base_url=model_url,
            model="m",
            model_context_tokens=WINDOW,
            pool_size=0,
            preload=[],
        )
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(asgi_app(config), host="127.0.0.1", port=port, log_level="error")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 (uvicorn says so by a flag only)
            await asyncio.sleep(0.01)

        async def monitor() -> None:
            while True:
                t0 = time.perf_counter()
                await asyncio.sleep(0.005)
                lag.samples.append(time.perf_counter() - t0 - 0.005)

        watching = asyncio.create_task(monitor())
        try:
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-W", "ignore", "-c", _LONG_RUNS,
                f"http://127.0.0.1:{port}/v1", thread_id, str(runs),
            )  # fmt: skip
            if await client.wait():
                raise RuntimeError("the runs on the long thread failed")
        finally:
            watching.cancel()
            server.should_exit = True
            await serving
    lag.values["p99_ms"] = statistics.quantiles(lag.samples, n=100)[98] * 1000
    return lag


_LONG_RUNS = """
import sys, openai
url, thread_id, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0)
assistant = client.beta.assistants.create(model="m", tools=[])
for _ in range(runs):
    with client.beta.threads.runs.create(
        thread_id=thread_id, assistant_id=assistant.id, stream=True
    ) as stream:
        for _ in stream:
            pass
    client.beta.threads.messages.create(thread_id=thread_id, role="user", content="hi")
"""
"""Runs on the long thread, one after the other, from a process of its own."""


async def _run_start(client: openai.AsyncOpenAI, thread_id: str, assistant_id: str) -> float:
    """From asking for a run to the first text of its reply; the run goes on to its end."""
    first: float | None = None
    t0 = time.perf_counter()
    stream = await client.beta.threads.runs.create(
        thread_id=thread_id, assistant_id=assistant_id, stream=True
    )
    async for event in stream:
        if first is None and event.event == "thread.message.delta":
            first = time.perf_counter() - t0
    if first is None:
        raise RuntimeError("the run wrote no reply")
    # The next run on the thread answers this message again.
    await client.beta.threads.messages.create(thread_id=thread_id, role="user", content="hi")
    return first


async def _fill_thread(data_dir: Path, messages: int) -> str:
    """A thread of ``messages`` user messages of about 25 words each, written to the
    server's database as its routes would write them (in one transaction: the API would
    take minutes), the last one ``hi``."""
    from interp.server._runs import message_unit
    from interp.server._store import Store, Writes
    from interp.server._wire import message, text_part, thread
    from interp.server.protocol.assistants import ThreadCreate

    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    store = Store(f"sqlite:///{data_dir / 'server.db'}")
    await store.open()
    try:
        writes = Writes()
        created = writes.create("thread", "local", thread(ThreadCreate()))
        words = [
            "the",
            "quarterly",
            "table",
            "lists",
            "each",
            "region",
            "with",
            "its",
            "sales",
            "and",
            "margin",
        ]
        for i in range(messages):
            text = "hi" if i == messages - 1 else f"note {i}: " + " ".join(words * 2)
            found = message(thread_id=created.id, role="user", content=[text_part(text)])
            writes.create("message", "local", found, parent=created.id)
            writes.append("local", created.id, [message_unit(found)], ref=found.id)
        await store.submit(writes)
    finally:
        await store.close()
    return created.id
