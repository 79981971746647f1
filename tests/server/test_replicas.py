"""Two `interp serve` replicas on one PostgreSQL (each its own data directory, as two
machines have), the real `openai` SDK and the scripted model: starting one leaves the
other's live work alone, and a replica that dies has its work failed within its lease."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import docker
import openai
import pytest

from interp.server._replicas import RESTARTED

from ..conftest import S3Server, containers_labelled
from .conftest import Server, raw_request, start_server
from .fake_model import MODEL, FakeModel, free_port
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


@pytest.fixture
def shared(database: str, s3_server: S3Server) -> Shared:
    return Shared(database, s3_server.bucket_url(), s3_server.env)


@dataclass(frozen=True)
class Shared:
    """What replicas share: a database and a bucket."""

    database: str
    bucket: str
    env: dict[str, str]


def replica(root: Path, name: str, model: FakeModel, shared: Shared, *, url: bool = True) -> Server:
    """A replica with its own directory (its data, as another machine's would be), that
    the others reach at its URL (with ``url``)."""
    (root / name).mkdir(exist_ok=True)
    port = free_port()
    env = {"INTERP_REPLICA_LEASE": LEASE, **shared.env}
    if url:
        env["INTERP_REPLICA_URL"] = f"http://127.0.0.1:{port}"
    return start_server(
        root / name,
        model.url,
        "--db",
        shared.database,
        "--file-store",
        shared.bucket,
        env=env,
        port=port,
    )


AUTO: Any = [{"type": "code_interpreter", "container": {"type": "auto"}}]
OUTPUTS: Any = ["code_interpreter_call.outputs"]


def response_logs(response: Any) -> list[str]:
    return [
        output.logs
        for item in response.output
        if item.type == "code_interpreter_call"
        for output in item.outputs or ()
        if output.type == "logs"
    ]


def run_code(client: openai.OpenAI, thread_id: str, code: str) -> list[str]:
    """Run ``code`` on the thread (streamed, as the quickstart does); its logs."""
    client.beta.threads.messages.create(thread_id, role="user", content=f"RUN: {code}")
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=code_assistant(client)
    ) as stream:
        stream.until_done()
        run = stream.get_final_run()
    assert run.status == "completed", run.last_error
    return code_logs(client, thread_id, run.id)


def code_logs(client: openai.OpenAI, thread_id: str, run_id: str) -> list[str]:
    steps = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id, order="asc")
    return [
        output.logs
        for step in steps
        if step.step_details.type == "tool_calls"
        for call in step.step_details.tool_calls
        if call.type == "code_interpreter"
        for output in call.code_interpreter.outputs
        if output.type == "logs"
    ]


def sleeping(server: Server, seconds: float, *file_ids: str) -> tuple[str, str]:
    """A run whose code sleeps, once the code runs (its thread has ``file_ids`` for the
    code): its thread and run ids."""
    client = server.client()
    marker = secrets.token_hex(8)
    tools: list[Any] = [{"type": "code_interpreter"}]
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": f"RUN: open({marker!r}, 'w').close()\n"
                f"import time\ntime.sleep({seconds})",
                "attachments": [{"file_id": file_id, "tools": tools} for file_id in file_ids],
            }
        ]
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=code_assistant(client))
    deadline = time.monotonic() + 30
    while not any(server.data_dir.rglob(marker)):  # in the session's /mnt/data
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "in_progress"
    return thread.id, run.id


def test_starting_a_replica_leaves_anothers_live_run_alone(
    tmp_path: Path, shared: Shared, docker_client: docker.DockerClient
) -> None:
    with FakeModel() as model:
        a = replica(tmp_path, "a", model, shared)
        try:
            thread_id, run_id = sleeping(a, 6)
            b = replica(tmp_path, "b", model, shared)
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
    tmp_path: Path, shared: Shared, docker_client: docker.DockerClient
) -> None:
    with FakeModel() as model:
        a = replica(tmp_path, "a", model, shared)
        b = replica(tmp_path, "b", model, shared)
        try:
            # A file uploaded through A is B's too, byte for byte.
            data = "région,ventes\nnord,10\n".encode() * 1000
            uploaded = a.client().files.create(file=("ventes.csv", data), purpose="assistants")
            assert b.client().files.content(uploaded.id).read() == data

            thread_id, run_id = sleeping(a, 60, uploaded.id)
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
            # B removes A's sandboxes as well, by A's lease (a pid says nothing across
            # the pid namespaces replicas may run in): in the same sweep, then a forced
            # removal each (up to a second or two on a busy machine).
            owner = f"io.interp.owner-pid={a.process.pid}"
            while containers_labelled(docker_client, owner):
                assert time.monotonic() - killed < float(LEASE) * 2 + 5, "sandboxes left"
                time.sleep(0.2)

            # The thread goes on through B, with every file it had.
            client = b.client()
            code = (
                "import hashlib\nprint(hashlib.sha256(open('ventes.csv', 'rb').read()).hexdigest())"
            )
            client.beta.threads.messages.create(thread_id, role="user", content=f"RUN: {code}")
            run = client.beta.threads.runs.create_and_poll(
                thread_id=thread_id, assistant_id=code_assistant(client), poll_interval_ms=100
            )
            assert run.status == "completed", run.last_error
            (logs,) = code_logs(client, thread_id, run.id)
            # The kernel is a new one, and the code is told so, once.
            assert logs.startswith(RESTARTED), logs
            assert hashlib.sha256(data).hexdigest() in logs
            assert run_code(client, thread_id, "print('again')") == ["again\n"]
        finally:
            b.stop()
            # A restarted replica cleans what its previous life left (its sandboxes, its
            # mounts).
            again = replica(tmp_path, "a", model, shared)
            again.stop()
        assert containers_labelled(docker_client, f"io.interp.owner-pid={a.process.pid}") == []


def test_a_threads_variables_are_reached_through_either_replica(
    tmp_path: Path, shared: Shared, docker_client: docker.DockerClient
) -> None:
    """A run that lands on the replica not holding the thread's kernel is forwarded to
    the one that does (its stream too); without a URL to forward to, the other replica
    starts a kernel of its own and the code is told its session was restarted."""
    with FakeModel() as model:
        a = replica(tmp_path, "a", model, shared)
        b = replica(tmp_path, "b", model, shared)
        c = replica(tmp_path, "c", model, shared, url=False)
        d = replica(tmp_path, "d", model, shared, url=False)
        try:
            thread_id = a.client().beta.threads.create().id
            assert run_code(a.client(), thread_id, "x = 41") == []
            assert run_code(b.client(), thread_id, "print(x + 1)") == ["42\n"]
            assert run_code(a.client(), thread_id, "x += 1\nprint(x)") == ["42\n"]

            # Responses: a chain's container, and a container named, reached through B.
            first = a.client().responses.create(model=MODEL, input="RUN: z = 5", tools=AUTO)
            chained = b.client().responses.create(
                model=MODEL,
                input="RUN: print(z)",
                tools=AUTO,
                previous_response_id=first.id,
                include=OUTPUTS,
            )
            assert response_logs(chained) == ["5\n"]
            (call,) = [o for o in chained.output if o.type == "code_interpreter_call"]
            named: Any = [{"type": "code_interpreter", "container": call.container_id}]
            again = b.client().responses.create(
                model=MODEL, input="RUN: print(z * 2)", tools=named, include=OUTPUTS
            )
            assert response_logs(again) == ["10\n"]
            # A body read to find its container is still held to the body limit (sent
            # chunked, so it is counted as it comes, not refused by its length).
            huge = b'{"model": "m", "input": "' + b"x" * (17 * 1024**2) + b'"}'
            pieces = [huge[i : i + 1024**2] for i in range(0, len(huge), 1024**2)]
            chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
            status, body = raw_request(b, "POST", "/responses", chunked, headers)
            assert status == 413 and body["error"]["type"] == "invalid_request_error"
            # Deleted through B, the container's kernel goes on A, which holds it.
            b.client().containers.delete(call.container_id)
            label = f"io.interp.session={call.container_id}"
            assert containers_labelled(docker_client, label) == []

            # Without URLs, D takes the thread over from C: said once, in the step and
            # to the model; C's kernel is stale then, and C gives it up rather than run
            # on old variables.
            thread_id = c.client().beta.threads.create().id
            assert run_code(c.client(), thread_id, "y = 1") == []
            (logs,) = run_code(d.client(), thread_id, "print('y' in globals())")
            assert logs == f"{RESTARTED}\nFalse\n"
            told = [m for m in model.requests[-1]["messages"] if m["role"] == "tool"]
            assert RESTARTED in told[-1]["content"]
            assert run_code(d.client(), thread_id, "y = 2") == []
            (logs,) = run_code(c.client(), thread_id, "print('y' in globals())")
            assert logs == f"{RESTARTED}\nFalse\n"
            # B cannot reach C (no URL): B takes over; then C forwards to B, which it can.
            (logs,) = run_code(b.client(), thread_id, "y = 3\nprint('y' in globals())")
            assert logs == f"{RESTARTED}\nTrue\n"
            assert run_code(c.client(), thread_id, "print(y)") == ["3\n"]
        finally:
            for server in (a, b, c, d):
                server.stop()


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[Callable[[list[Server]], str]]:
    """deploy/nginx.conf in front of the given replicas (Debian's nginx): its URL."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("no nginx: scripts/setup installs Debian's nginx-light")
    started: list[subprocess.Popen[bytes]] = []

    def start(replicas: list[Server]) -> str:
        conf = (Path(__file__).parents[2] / "deploy" / "nginx.conf").read_text()
        names = re.findall(r"server (\S+):8000", conf)
        assert len(names) == len(replicas)
        for name, server in zip(names, replicas, strict=True):
            conf = conf.replace(f"{name}:8000", urlsplit(server.url).netloc)
        port = free_port()
        conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        conf = conf.replace("http {", "http {\n    access_log off;", 1)
        (tmp_path / "nginx.conf").write_text(conf)
        directives = f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;"
        command = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
        started.append(subprocess.Popen([*command, "-g", directives]))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"http://127.0.0.1:{port}/v1"
            except OSError:
                assert started[-1].poll() is None, (tmp_path / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.05)

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


def test_the_deploy_balancer_keeps_each_thread_on_one_replica(
    tmp_path: Path,
    shared: Shared,
    balancer: Callable[[list[Server]], str],
    docker_client: docker.DockerClient,
) -> None:
    """deploy/nginx.conf before two replicas that cannot forward (no URLs): every run of a
    thread reaches the replica holding its kernel (no restart said, its variable kept),
    and 20 threads are spread over both."""
    with FakeModel() as model:
        a = replica(tmp_path, "a", model, shared, url=False)
        b = replica(tmp_path, "b", model, shared, url=False)
        try:
            url = balancer([a, b])
            client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
            threads = [client.beta.threads.create().id for _ in range(20)]
            for number, thread_id in enumerate(threads):
                assert run_code(client, thread_id, f"x = {number}") == []
            for number, thread_id in enumerate(threads):
                assert run_code(client, thread_id, "print(x)") == [f"{number}\n"]
            client.close()

            async def holders() -> set[str]:
                connection = await asyncpg.connect(shared.database.replace("+asyncpg", ""))
                try:
                    rows = await connection.fetch(
                        "SELECT DISTINCT replica FROM interp_kernels WHERE key = ANY($1)", threads
                    )
                finally:
                    await connection.close()
                return {row[0] for row in rows}

            assert len(asyncio.run(holders())) == 2  # 20 threads all on one: about 1 in 10^5
        finally:
            a.stop()
            b.stop()


def test_runs_started_at_once_through_two_replicas_make_one_active_run(
    tmp_path: Path, shared: Shared, docker_client: docker.DockerClient
) -> None:
    """Eight run requests on one idle thread, at once, half through each replica: the
    database's rule (one active run per thread) lets exactly one through."""
    with FakeModel() as model:
        a = replica(tmp_path, "a", model, shared)
        b = replica(tmp_path, "b", model, shared)
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
