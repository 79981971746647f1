"""Two `interp serve` replicas on one PostgreSQL (each its own data directory, as two
machines have), the real `openai` SDK and the scripted model: starting one leaves the
other's live work alone, and a replica that dies has its work failed within its lease."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import docker
import openai
import pytest

from ..conftest import containers_labelled
from .conftest import Server, start_server
from .fake_model import FakeModel
from .test_server_lifecycle import code_assistant

POSTGRES = os.environ.get("INTERP_TEST_POSTGRES_URL")
LEASE = "3"

pytestmark = [
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The Assistants API is deprecated:DeprecationWarning"),
]


@pytest.fixture
def database() -> Iterator[str]:
    if POSTGRES is None:
        pytest.skip("no PostgreSQL: scripts/test starts one (INTERP_TEST_POSTGRES_URL)")
    name = "interp_" + secrets.token_hex(6)
    admin = POSTGRES.replace("+asyncpg", "")

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f"CREATE DATABASE {name}"))
    yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def replica(root: Path, name: str, model: FakeModel, database: str) -> Server:
    """A replica with its own directory (its data, as another machine's would be)."""
    (root / name).mkdir(exist_ok=True)
    return start_server(
        root / name, model.url, "--db", database, env={"INTERP_REPLICA_LEASE": LEASE}
    )


def sleeping(client: openai.OpenAI, seconds: float) -> tuple[str, str]:
    """A run whose code sleeps, once it is running: its thread and run ids."""
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": f"RUN: import time\ntime.sleep({seconds})"}]
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=code_assistant(client))
    deadline = time.monotonic() + 30
    while client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return thread.id, run.id


def test_starting_a_replica_leaves_anothers_live_run_alone(
    tmp_path: Path, database: str, docker_client: docker.DockerClient
) -> None:
    with FakeModel() as model:
        a = replica(tmp_path, "a", model, database)
        try:
            thread_id, run_id = sleeping(a.client(), 6)
            b = replica(tmp_path, "b", model, database)
            try:
                # The thread's rules hold through B too: no second run, no message.
                other = b.client()
                with pytest.raises(openai.BadRequestError, match="already has an active run"):
                    other.beta.threads.runs.create(
                        thread_id=thread_id, assistant_id=code_assistant(other)
                    )
                with pytest.raises(openai.BadRequestError, match="while a run"):
                    other.beta.threads.messages.create(thread_id, role="user", content="hi")
                # Metadata set through B while A drives the run outlives A's writes.
                other.beta.threads.runs.update(
                    run_id, thread_id=thread_id, metadata={"set": "through b"}
                )
                seen: list[str] = []
                deadline = time.monotonic() + 60
                while not seen or seen[-1] in ("queued", "in_progress"):
                    assert time.monotonic() < deadline, seen
                    run = b.client().beta.threads.runs.retrieve(run_id, thread_id=thread_id)
                    seen.append(run.status)
                    time.sleep(0.2)
                assert set(seen) == {"in_progress", "completed"}, seen
                for server in (a, b):
                    ended = server.client().beta.threads.runs.retrieve(run_id, thread_id=thread_id)
                    assert ended.metadata == {"set": "through b"}
            finally:
                b.stop()
        finally:
            a.stop()


def test_a_dead_replicas_run_is_failed_within_its_lease(
    tmp_path: Path, database: str, docker_client: docker.DockerClient
) -> None:
    with FakeModel() as model:
        a = replica(tmp_path, "a", model, database)
        b = replica(tmp_path, "b", model, database)
        try:
            thread_id, run_id = sleeping(a.client(), 60)
            a.process.send_signal(signal.SIGKILL)
            a.process.wait(30)
            killed = time.monotonic()
            while True:
                run = b.client().beta.threads.runs.retrieve(run_id, thread_id=thread_id)
                if run.status not in ("queued", "in_progress"):
                    break
                # The lease, then a sweep (every third of it), then a second's grace.
                assert time.monotonic() - killed < float(LEASE) * 2 + 1, "still in progress"
                time.sleep(0.2)
            assert run.status == "failed" and run.last_error is not None
            assert "server stopped" in run.last_error.message
        finally:
            b.stop()
            # A restarted replica cleans what its previous life left (its sandboxes, its
            # mounts).
            again = replica(tmp_path, "a", model, database)
            again.stop()
        owner = f"io.interp.owner-pid={a.process.pid}"
        assert containers_labelled(docker_client, owner) == []


def test_runs_started_at_once_through_two_replicas_make_one_active_run(
    tmp_path: Path, database: str, docker_client: docker.DockerClient
) -> None:
    """Eight run requests on one idle thread, at once, half through each replica: the
    database's rule (one active run per thread) lets exactly one through."""
    with FakeModel() as model:
        a = replica(tmp_path, "a", model, database)
        b = replica(tmp_path, "b", model, database)
        try:
            clients = [a.client(), b.client()]
            assistant_id = code_assistant(clients[0])
            thread = clients[0].beta.threads.create(
                messages=[{"role": "user", "content": "RUN: import time\ntime.sleep(3)"}]
            )

            def start(number: int) -> str:
                try:
                    clients[number % 2].beta.threads.runs.create(
                        thread_id=thread.id, assistant_id=assistant_id
                    )
                    return "started"
                except openai.BadRequestError as exc:
                    return "refused" if "already has an active run" in exc.message else exc.message

            with ThreadPoolExecutor(8) as pool:
                outcomes = list(pool.map(start, range(8)))
            assert sorted(outcomes) == ["refused"] * 7 + ["started"], outcomes
            runs = clients[1].beta.threads.runs.list(thread_id=thread.id)
            assert len(runs.data) == 1
        finally:
            a.stop()
            b.stop()
