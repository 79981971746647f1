"""A live `interp serve` (the real CLI, uvicorn on a free port) in front of a scripted
model, and the real `openai` client against it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import asyncpg
import docker
import openai
import pytest
from openai.types.beta.threads import Run

from ..conftest import containers_labelled
from .fake_model import MODEL, FakeModel, free_port

T = TypeVar("T")

SERVER_POSTGRES = os.environ.get("INTERP_TEST_SERVER_POSTGRES")
"""A PostgreSQL URL: every server of the suite then stores in it (a database per data
directory, so a restarted server finds its own), as `scripts/test`'s second pass runs."""

KEY_A = "key-alice-0123456789"
KEY_B = "key-bob-0123456789"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    data_dir: Path
    log: Path

    clients: list[openai.OpenAI] = field(default_factory=list)

    def client(self, key: str = "anything", **options: object) -> openai.OpenAI:
        """A client of this server, closed (its pooled connections too) when it stops."""
        options = {"max_retries": 0, **options}
        made = openai.OpenAI(base_url=self.url, api_key=key, **options)  # type: ignore[arg-type]
        self.clients.append(made)
        return made

    def stop(self) -> int:
        for made in self.clients:
            made.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.process.kill()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    tmp_path: Path,
    model_url: str,
    *extra: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Server:
    port = port or free_port()
    data_dir = tmp_path / "data"
    log = tmp_path / f"serve-{port}.log"
    environment = {
        **os.environ,
        "INTERP_DATA_DIR": str(data_dir),
        "INTERP_POOL_SIZE": "1",
        "INTERP_MEMORY": "512m",
        **(env or {}),
    }
    if SERVER_POSTGRES and "--db" not in extra and "INTERP_DB" not in environment:
        environment["INTERP_DB"] = database_for(data_dir)
    with log.open("w") as out:
        command = [sys.executable, "-m", "interp", "serve", "--port", str(port)]
        command += ["--model-base-url", model_url, "--model", MODEL, *extra]
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
            text=True,
        )
    server = Server(f"http://127.0.0.1:{port}/v1", process, data_dir, log)
    _started.append(server)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"interp serve exited {process.returncode}:\n{server.logs()}")
        try:
            urllib.request.urlopen(f"{server.url}/models", timeout=1).close()
            return server
        except urllib.error.HTTPError:
            return server  # it answers (a key may be needed)
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"interp serve did not answer:\n{server.logs()}") from None
            time.sleep(0.1)


def database_for(data_dir: Path) -> str:
    """The server database of ``data_dir`` in ``SERVER_POSTGRES``, made if new."""
    assert SERVER_POSTGRES is not None
    name = "srv_" + hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]

    async def make(connection: asyncpg.Connection) -> None:
        found = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not found:
            await connection.execute(f"CREATE DATABASE {name}")

    _on_postgres(SERVER_POSTGRES, make)
    return SERVER_POSTGRES.rsplit("/", 1)[0] + "/" + name


def _on_postgres(url: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """``work`` on a connection to ``url``, from sync code (a test's event loop or none)."""

    async def run() -> T:
        connection = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            return await work(connection)
        finally:
            await connection.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def server_sql(server: Server, sql: str, *params: Any, postgres: str | None = None) -> list[Any]:
    """Rows of ``sql`` (``?`` for parameters) on the server's own database: its SQLite file,
    or its PostgreSQL database in the suite's PostgreSQL pass (``postgres``, if the two
    dialects differ)."""
    if SERVER_POSTGRES is None:
        with sqlite3.connect(server.data_dir / "server.db") as db:
            return db.execute(sql, params).fetchall()
    numbered = iter(range(1, 100))
    statement = re.sub(r"\?", lambda _: f"${next(numbered)}", postgres or sql)

    async def run(connection: asyncpg.Connection) -> list[Any]:
        return [tuple(row) for row in await connection.fetch(statement, *params)]

    return _on_postgres(database_for(server.data_dir), run)


def follow_up(client: openai.OpenAI, thread_id: str, assistant_id: str, content: str) -> Run:
    """Post a user message and run the thread to its end."""
    client.beta.threads.messages.create(thread_id=thread_id, role="user", content=content)
    return client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=100
    )


def reply_text(client: openai.OpenAI, thread_id: str) -> str:
    """The text of the thread's newest message."""
    newest = client.beta.threads.messages.list(thread_id=thread_id, order="desc").data[0]
    part = newest.content[0]
    assert part.type == "text", part
    return part.text.value


def wait_for_step(client: openai.OpenAI, thread_id: str, run_id: str) -> None:
    """Return once the run has a step (its code is being written or runs)."""
    deadline = time.monotonic() + 30
    while not client.beta.threads.runs.steps.list(thread_id=thread_id, run_id=run_id).data:
        assert time.monotonic() < deadline, "the run made no step"
        time.sleep(0.1)


def raw_request(
    server: Server,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    under_api: bool = True,
) -> tuple[int, dict[str, Any]]:
    """A request as no SDK would send it; ``path`` is under /v1 unless ``under_api`` is
    false."""
    url = urlparse(server.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.putrequest(method, (url.path if under_api else "") + path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        if body:
            with contextlib.suppress(OSError):  # the server may answer before reading it all
                connection.send(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


_started: list[Server] = []
"""Every server ``start_server`` started, in order."""


@pytest.fixture(autouse=True)
def _no_server_outlives_its_test() -> Iterator[None]:
    """The servers a test started are stopped when it ends, however it ends: one that
    failed before its own ``stop()`` had left its server running, with its sandboxes. (A
    module's ``server`` is started before this and stops with the module.)"""
    before = len(_started)
    yield
    for server in _started[before:]:
        if server.process.poll() is None:
            server.stop()
    del _started[before:]


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeModel]:
    with FakeModel() as model:
        yield model


@pytest.fixture(scope="module")
def server(
    fake_model: FakeModel,
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
) -> Iterator[Server]:
    started = start_server(tmp_path_factory.mktemp("serve"), fake_model.url)
    yield started
    code = started.stop()
    # uvicorn shuts down gracefully, then ends by the signal it caught.
    assert code in (0, -signal.SIGTERM), started.logs()
    left = containers_labelled(docker_client, f"io.interp.owner-pid={started.process.pid}")
    assert not left, "interp serve left containers behind"
    assert "Traceback" not in started.logs(), started.logs()
    # Warnings only: no line per request or per upstream model call (the MCP SDK once set
    # the root logger to INFO, logging every model request on the event loop).
    assert "HTTP Request:" not in started.logs(), started.logs()[-2000:]


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return server.client()


__all__ = [
    "KEY_A",
    "KEY_B",
    "Server",
    "follow_up",
    "raw_request",
    "reply_text",
    "start_server",
    "wait_for_step",
]
