"""Keys and owners, restarts, and a model endpoint that goes away: each with its own
`interp serve`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import openai
import pytest
from openai.types.beta import Thread
from openai.types.beta.threads import Run

from interp.server._replicas import RESTARTED

from ..conftest import containers_labelled
from .conftest import KEY_A, KEY_B, follow_up, reply_text, start_server, wait_for_step
from .fake_model import MODEL, FakeModel

pytestmark = [
    pytest.mark.docker,
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The Assistants API is deprecated:DeprecationWarning"),
]


def code_assistant(client: openai.OpenAI) -> str:
    return client.beta.assistants.create(model="m", tools=[{"type": "code_interpreter"}]).id


def test_keys_are_required_and_each_sees_only_its_own(tmp_path: Path) -> None:
    with FakeModel() as model:
        server = start_server(tmp_path, model.url, "--api-key", KEY_A, "--api-key", KEY_B)
        try:
            with pytest.raises(urllib.error.HTTPError) as missing:
                urllib.request.urlopen(f"{server.url}/assistants", timeout=10)
            assert missing.value.code == 401
            body = json.loads(missing.value.read())
            assert body["error"]["message"] == "You didn't provide an API key."
            with pytest.raises(openai.AuthenticationError):
                server.client("wrong-key-123").beta.assistants.list()
            alice, bob = server.client(KEY_A), server.client(KEY_B)
            thread = alice.beta.threads.create()
            file = alice.files.create(file=("a.txt", b"alice"), purpose="assistants")
            with pytest.raises(openai.NotFoundError):
                bob.beta.threads.retrieve(thread.id)
            with pytest.raises(openai.NotFoundError):
                bob.files.content(file.id)
            with pytest.raises(openai.NotFoundError):
                bob.beta.threads.messages.create(
                    thread_id=bob.beta.threads.create().id,
                    role="user",
                    content="x",
                    attachments=[{"file_id": file.id, "tools": [{"type": "code_interpreter"}]}],
                )
            assert [t.id for t in bob.beta.assistants.list()] == []
            assert alice.beta.threads.retrieve(thread.id).id == thread.id
        finally:
            server.stop()


def test_a_server_without_keys_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "interp",
            "serve",
            "--host",
            "0.0.0.0",
            "--model-base-url",
            "http://127.0.0.1:9/v1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "INTERP_DATA_DIR": str(tmp_path)},
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without keys" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_run_in_progress_at_a_crash_is_failed_on_restart_and_nothing_is_lost(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    with FakeModel() as model:
        server = start_server(tmp_path, model.url)
        client = server.client()
        file = client.files.create(file=("kept.txt", b"kept"), purpose="assistants")
        thread = client.beta.threads.create(
            messages=[{"role": "user", "content": "RUN: import time\ntime.sleep(60)"}]
        )
        run = client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=code_assistant(client)
        )
        deadline = time.monotonic() + 30
        while (
            client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id).status
            != "in_progress"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
        again = start_server(tmp_path, model.url)
        try:
            client = again.client()
            failed = client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id)
            assert failed.status == "failed" and failed.last_error is not None
            assert "stopped while this run was in progress" in failed.last_error.message
            assert client.files.content(file.id).read() == b"kept"
            messages = client.beta.threads.messages.list(thread_id=thread.id)
            assert len(messages.data) == 1
            # The killed server's sandboxes were reaped by the new one.
            owner = f"io.interp.owner-pid={server.process.pid}"
            assert containers_labelled(docker_client, owner) == []
        finally:
            again.stop()


def test_a_model_that_is_down_or_hangs_fails_the_run_and_the_next_one_works(
    tmp_path: Path,
) -> None:
    model = FakeModel()
    server = start_server(tmp_path, model.url, env={"INTERP_MODEL_TIMEOUT": "2"})
    try:
        client = server.client()
        assistant_id = code_assistant(client)
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
        down = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=100
        )
        assert down.status == "failed" and down.last_error is not None
        assert down.last_error.code == "server_error"
        assert "unreachable" in down.last_error.message
        with FakeModel(model.port):
            hung = follow_up(client, thread.id, assistant_id, "HANG")
            assert hung.status == "failed" and hung.last_error is not None
            assert "timed out" in hung.last_error.message
            fine = follow_up(client, thread.id, assistant_id, "RAW: print('raw code')")
            assert fine.status == "completed", fine.last_error
            assert reply_text(client, thread.id) == "Result: raw code"
    finally:
        server.stop()


def sleeping_run(client: openai.OpenAI) -> tuple[Thread, Run]:
    """A run whose code sleeps a minute, once its code runs."""
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "RUN: import time\ntime.sleep(60)"}]
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=code_assistant(client))
    wait_for_step(client, thread.id, run.id)
    return thread, run


def test_sigterm_fails_the_run_in_progress_and_removes_the_sandboxes(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    with FakeModel() as model:
        server = start_server(tmp_path, model.url)
        client = server.client()
        thread, run = sleeping_run(client)
        assert server.stop() in (0, -signal.SIGTERM)
        owner = f"io.interp.owner-pid={server.process.pid}"
        assert containers_labelled(docker_client, owner) == []
        assert "Traceback" not in server.logs()
        again = start_server(tmp_path, model.url)
        try:
            stopped = again.client().beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id)
            assert stopped.status == "failed" and stopped.last_error is not None
            assert stopped.last_error.message == "the server stopped"
        finally:
            again.stop()


def _slow_body(server_url: str, path: str, declared: int) -> socket.socket:
    """A request whose body is declared ``declared`` bytes and never comes but for one."""
    host, port = server_url.removeprefix("http://").split("/")[0].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {declared}\r\n\r\n{{"
    )
    sock.sendall(head.encode())
    return sock


def test_slow_bodies_are_cut_and_a_stop_with_uploads_and_runs_in_flight_is_bounded(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """Bodies trickled in are a 408 once their time is out (``body_timeout`` 1 s here),
    each; a SIGTERM with uploads half sent and a run executing code ends the server
    within 10 s, its run failed and no sandbox left."""
    with FakeModel() as model, contextlib.ExitStack() as sockets:
        server = start_server(tmp_path, model.url, env={"INTERP_BODY_TIMEOUT": "1"})
        try:
            started = time.monotonic()
            slow = [_slow_body(server.url, "/v1/assistants", 1000) for _ in range(20)]
            for sock in slow:
                sockets.enter_context(sock)
            for sock in slow:
                answer = sock.recv(4096).decode()
                while not answer.endswith("}"):  # the body may come in a packet of its own
                    answer += sock.recv(4096).decode()
                assert answer.startswith("HTTP/1.1 408"), answer
                assert "did not arrive in time" in answer
            assert time.monotonic() - started < 6
            client = server.client()
            thread, run = sleeping_run(client)
            for _ in range(2):
                sockets.enter_context(_slow_body(server.url, "/v1/files", 10_000_000))
            stopping = time.monotonic()
        finally:
            stopped = server.stop()
        assert stopped in (0, -signal.SIGTERM)
        assert time.monotonic() - stopping < 10
        owner = f"io.interp.owner-pid={server.process.pid}"
        assert containers_labelled(docker_client, owner) == []
        again = start_server(tmp_path, model.url)
        try:
            stopped_run = again.client().beta.threads.runs.retrieve(
                thread_id=thread.id, run_id=run.id
            )
            assert stopped_run.status == "failed"
            assert again.client().files.list().data == []  # no half upload was kept
        finally:
            again.stop()


FLOOD = "RUN: import sys\nfor _ in range(50):\n    sys.stdout.write('x' * 1_000_000)"


def peak_rss_since_reset(pid: int) -> int:
    """The most memory ``pid`` held since ``reset_peak_rss`` (the kernel's own mark)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def reset_peak_rss(pid: int) -> int:
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss_since_reset(pid)


def test_readers_that_do_not_keep_up_are_cut_and_their_runs_go_on(tmp_path: Path) -> None:
    """Four runs printing 50 MB each, streamed to clients that read nothing while they
    run: each stream is cut once it is 2 MiB behind (what waited for it let go), ending
    with an error event that says so, and the runs complete. Meanwhile the server's
    memory peaks less than 40 MB above where it was."""
    with FakeModel() as model, contextlib.ExitStack() as readers_open:
        server = start_server(tmp_path, model.url, env={"INTERP_POOL_SIZE": "4"})
        try:
            client = server.client()
            helper = code_assistant(client)
            threads = [
                client.beta.threads.create(messages=[{"role": "user", "content": FLOOD}]).id
                for _ in range(4)
            ]
            # A run first: what a server loads for its first run is not what is measured.
            warm = client.beta.threads.create(messages=[{"role": "user", "content": "RUN: 1"}])
            client.beta.threads.runs.create_and_poll(thread_id=warm.id, assistant_id=helper)
            before = reset_peak_rss(server.process.pid)
            host, port = server.url.removeprefix("http://").split("/")[0].split(":")
            body = json.dumps({"assistant_id": helper, "stream": True}).encode()
            readers = []
            for thread_id in threads:
                reader = readers_open.enter_context(
                    socket.create_connection((host, int(port)), timeout=30)
                )
                reader.sendall(
                    f"POST /v1/threads/{thread_id}/runs HTTP/1.1\r\nhost: {host}\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                    .encode() + body
                )  # fmt: skip
                readers.append(reader)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                runs = [client.beta.threads.runs.list(thread_id=t).data for t in threads]
                if all(found and found[0].status == "completed" for found in runs):
                    break
                time.sleep(0.2)
            assert all(found and found[0].status == "completed" for found in runs), runs
            grew = peak_rss_since_reset(server.process.pid) - before
            for reader in readers:
                received = bytearray()
                while b"[DONE]" not in received[-64:]:
                    chunk = reader.recv(1 << 20)
                    assert chunk, bytes(received[-300:])
                    received += chunk
                assert b"fell 2 MiB behind its run and was cut" in received[-1000:]
                # Not the whole 50 MB of output: what the sockets' buffers took, and the
                # 2 MiB the server held before the cut.
                assert len(received) < 20 * 1024**2, len(received)
            assert grew < 40 * 1024**2, grew
        finally:
            server.stop()


def test_a_key_that_floods_sessions_takes_no_place_from_another(tmp_path: Path) -> None:
    """Key B opens 8 containers (and 2 threads' sessions) on an engine of 6 sessions, 3 a
    key: each is made, B's own session idle longest giving its place up (hibernated);
    key A's runs then all complete, and B's first container, used again, comes back with
    its files and its variables."""
    env = {
        "INTERP_MAX_SESSIONS": "6",
        "INTERP_MAX_SESSIONS_PER_KEY": "3",
        "INTERP_CAPACITY_WAIT": "1",
    }
    with FakeModel() as model:
        server = start_server(tmp_path, model.url, "--api-key", KEY_A, "--api-key", KEY_B, env=env)
        try:
            alice, bob = server.client(KEY_A), server.client(KEY_B)
            first = bob.containers.create(name="first")
            bob.containers.files.create(first.id, file=("kept.txt", b"kept bytes"))
            tool: Any = [{"type": "code_interpreter", "container": first.id}]
            assert bob.responses.create(model=MODEL, input="RUN: kept = 7", tools=tool).status == (
                "completed"
            )
            for i in range(7):
                bob.containers.create(name=f"flood {i}")
            for _ in range(2):
                thread = bob.beta.threads.create(messages=[{"role": "user", "content": "RUN: 1"}])
                bob.beta.threads.runs.create_and_poll(
                    thread_id=thread.id, assistant_id=code_assistant(bob), poll_interval_ms=100
                )
            helper = code_assistant(alice)
            for i in range(5):
                thread = alice.beta.threads.create(
                    messages=[{"role": "user", "content": f"RUN: print({i} * 2)"}]
                )
                run = alice.beta.threads.runs.create_and_poll(
                    thread_id=thread.id, assistant_id=helper, poll_interval_ms=100
                )
                assert run.status == "completed", run.last_error
                assert reply_text(alice, thread.id) == f"Result: {i * 2}"
            again = bob.responses.create(
                model=MODEL, input="RUN: print(open('kept.txt').read(), kept)", tools=tool
            )
            assert again.status == "completed"
            assert "restored from a snapshot" in again.output_text
            assert "kept bytes 7" in again.output_text
        finally:
            server.stop()


def assert_over_quota(error: openai.RateLimitError, what: str) -> None:
    assert error.code == "insufficient_quota" and what in error.message, error.message
    # Room comes from deleting, not from waiting: the SDK is told not to retry.
    assert error.response.headers["retry-after"] == "60"
    assert error.response.headers["x-should-retry"] == "false"


def test_a_key_over_its_quotas_is_refused_whole_and_another_key_is_not(tmp_path: Path) -> None:
    """Files, their bytes and containers are counted per key; a request past a quota is
    a 429 that stores nothing, deleting makes room, and concurrent uploads cannot
    together pass a quota."""
    env = {
        "INTERP_MAX_FILES_PER_KEY": "3",
        "INTERP_MAX_BYTES_PER_KEY": "10000",
        "INTERP_MAX_CONTAINERS_PER_KEY": "2",
    }
    with FakeModel() as model:
        server = start_server(tmp_path, model.url, "--api-key", KEY_A, "--api-key", KEY_B, env=env)
        try:
            alice, bob = server.client(KEY_A), server.client(KEY_B, max_retries=2)

            def upload(client: openai.OpenAI, size: int) -> str:
                made = client.files.create(file=("f.bin", b"x" * size), purpose="assistants")
                return made.id

            kept = [upload(bob, 4000), upload(bob, 4000)]
            with pytest.raises(openai.RateLimitError) as over_bytes:
                upload(bob, 4000)
            assert_over_quota(over_bytes.value, "10000 bytes of files (8000 kept, 2000 free")
            kept.append(upload(bob, 1000))
            with pytest.raises(openai.RateLimitError) as over_files:
                upload(bob, 10)
            assert_over_quota(over_files.value, "at most 3 files")
            assert sorted(f.id for f in bob.files.list()) == sorted(kept)
            bob.files.delete(kept.pop())
            kept.append(upload(bob, 10))

            boxes = [bob.containers.create(name="one"), bob.containers.create(name="two")]
            with pytest.raises(openai.RateLimitError) as over_containers:
                bob.containers.create(name="three")
            assert_over_quota(over_containers.value, "at most 2 containers")
            # A container's files count with the key's bytes (8010 kept of 10000).
            with pytest.raises(openai.RateLimitError):
                bob.containers.files.create(boxes[0].id, file=("big.bin", b"x" * 2000))
            bob.containers.files.create(boxes[0].id, file=("small.bin", b"x" * 1000))
            with pytest.raises(openai.RateLimitError):
                bob.containers.files.create(boxes[1].id, file_id=kept[0])  # a 4000-byte copy
            bob.containers.delete(boxes[1].id)
            bob.containers.create(name="three")
            assert sorted(c.name for c in bob.containers.list()) == ["one", "three"]

            # Key A is untouched by B's use, and eight uploads at once that would pass
            # its quotas together: three (all that fit) are kept, the rest refused.
            with ThreadPoolExecutor(8) as pool:
                tries = [pool.submit(upload, alice, 3000) for _ in range(8)]
            made = [t.result() for t in tries if t.exception() is None]
            refused = [t.exception() for t in tries if t.exception() is not None]
            assert len(made) == 3 and len(refused) == 5, refused
            assert all(isinstance(e, openai.RateLimitError) for e in refused), refused
            assert sorted(f.id for f in alice.files.list()) == sorted(made)
        finally:
            server.stop()


def test_an_expired_session_comes_back_with_its_files(tmp_path: Path) -> None:
    with FakeModel() as model:
        server = start_server(tmp_path, model.url, env={"INTERP_SESSION_MAX_IDLE": "1"})
        try:
            client = server.client()
            data = client.files.create(file=("numbers.txt", b"1 2 3"), purpose="assistants")
            assistant_id = client.beta.assistants.create(
                model="m",
                tools=[{"type": "code_interpreter"}],
                tool_resources={"code_interpreter": {"file_ids": [data.id]}},
            ).id
            thread = client.beta.threads.create(
                messages=[
                    {
                        "role": "user",
                        "content": "RUN: kept = open('numbers.txt').read()\nprint(kept)",
                    }
                ]
            )
            first = client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=100
            )
            assert first.status == "completed"
            time.sleep(3)  # the session expires (idle > 1 s; checked every 0.25 s)
            second = follow_up(
                client,
                thread.id,
                assistant_id,
                "RUN: print('kept' in dir(), open('numbers.txt').read())",
            )
            assert second.status == "completed", second.last_error
            # The code is told its variables are gone (the fake model echoes the logs).
            assert reply_text(client, thread.id) == f"Result: {RESTARTED}\nFalse 1 2 3"
        finally:
            server.stop()


def test_a_threads_variables_outlive_a_restart(tmp_path: Path) -> None:
    with FakeModel() as model:
        server = start_server(tmp_path, model.url)
        client = server.client()
        assistant_id = client.beta.assistants.create(
            model="m", tools=[{"type": "code_interpreter"}]
        ).id
        thread = client.beta.threads.create(
            messages=[{"role": "user", "content": "RUN: x = 41\nprint('set')"}]
        )
        first = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=100
        )
        assert first.status == "completed"
        assert server.stop() in (0, -signal.SIGTERM)
        again = start_server(tmp_path, model.url)
        try:
            client = again.client()
            second = follow_up(client, thread.id, assistant_id, "RUN: print(x + 1)")
            assert second.status == "completed", second.last_error
            # The model reads the note, once, then the value (the fake model echoes logs).
            reply = reply_text(client, thread.id)
            assert reply.startswith("Result: [this session was restored from a snapshot taken")
            assert reply.endswith("]\n42")
            third = follow_up(client, thread.id, assistant_id, "RUN: print(x)")
            assert third.status == "completed"
            assert reply_text(client, thread.id) == "Result: 41"
        finally:
            again.stop()


def test_responses_and_containers_outlive_a_restart(tmp_path: Path) -> None:
    with FakeModel() as model:
        server = start_server(tmp_path, model.url)
        client = server.client()
        container = client.containers.create(name="kept")
        client.containers.files.create(container.id, file=("kept.txt", b"kept bytes"))
        tool: Any = [{"type": "code_interpreter", "container": container.id}]
        first = client.responses.create(
            model=MODEL, input="RUN: variable = 1\nprint('ran')", tools=tool
        )
        assert first.status == "completed"
        assert server.stop() in (0, -signal.SIGTERM)
        again = start_server(tmp_path, model.url)
        try:
            client = again.client()
            assert client.responses.retrieve(first.id).status == "completed"
            assert client.containers.retrieve(container.id).status == "running"
            # The container's session was hibernated at the stop: it comes back with its
            # files and its variables, and the code is told.
            second = client.responses.create(
                model=MODEL,
                previous_response_id=first.id,
                input="RUN: print(open('/mnt/data/kept.txt').read(), variable)",
                tools=tool,
                include=["code_interpreter_call.outputs"],
            )
            call = second.output[0]
            assert call.type == "code_interpreter_call", second.output
            assert call.outputs is not None
            logs = call.outputs[0].logs  # type: ignore[union-attr]
            assert logs.startswith("[this session was restored from a snapshot taken at")
            assert logs.endswith("]\nkept bytes 1\n")
        finally:
            again.stop()
