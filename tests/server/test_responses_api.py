"""The Responses and Containers APIs as the `openai` SDK uses them, against a live server."""

from __future__ import annotations

import sqlite3
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import openai
import pytest
from openai.types.responses import (
    ResponseCodeInterpreterToolCall,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseStreamEvent,
)
from pydantic import TypeAdapter

from ..conftest import containers_labelled
from .conftest import KEY_A, KEY_B, Server, raw_request, server_sql, start_server
from .fake_model import MODEL, FakeModel

pytestmark = pytest.mark.docker

AUTO: Any = [{"type": "code_interpreter", "container": {"type": "auto"}}]
OUTPUTS: Any = ["code_interpreter_call.outputs"]
CHART = (
    "import matplotlib.pyplot as plt\n"
    "plt.plot([1, 3, 2])\n"
    "plt.show()\n"
    "open('/mnt/data/table.csv', 'w').write('a,b\\n1,2\\n')\n"
    "print('written')"
)


def _code_call(response: Any) -> ResponseCodeInterpreterToolCall:
    calls = [o for o in response.output if isinstance(o, ResponseCodeInterpreterToolCall)]
    assert len(calls) == 1, response.output
    return calls[0]


def _text(response: Any) -> str:
    messages = [o for o in response.output if isinstance(o, ResponseOutputMessage)]
    return "".join(part.text for m in messages for part in m.content if part.type == "output_text")


def test_a_streamed_response_yields_events_that_follow_the_work(
    client: openai.OpenAI, server: Server
) -> None:
    code = "print('before', flush=True)\nimport time\ntime.sleep(1.5)\n" + CHART
    arrived: list[tuple[float, Any]] = []
    with client.responses.create(
        model=MODEL, input=f"RUN: {code}", tools=AUTO, include=OUTPUTS, stream=True
    ) as stream:
        for event in stream:
            arrived.append((time.monotonic(), event))
    events = [event for _, event in arrived]
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    for event in events:
        adapter.validate_python(event.model_dump(mode="json", by_alias=True, exclude_unset=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.code_interpreter_call.in_progress",
    ]
    call = "response.code_interpreter_call"
    order = [
        f"{call}_code.delta",
        f"{call}_code.done",
        f"{call}.interpreting",
        f"{call}.completed",
        "response.output_item.done",
        "response.output_text.delta",
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.completed",
    ]
    positions = [kinds.index(kind) for kind in order]
    assert positions == sorted(positions), kinds
    added = events[2]
    assert added.item.type == "code_interpreter_call" and added.item.outputs is None
    # Interpreting is sent when the code starts, completed when it ends: 1.5 s apart.
    at = {kind: arrived[kinds.index(kind)][0] for kind in order}
    assert at[f"{call}.completed"] - at[f"{call}.interpreting"] >= 1.4
    code_text = "".join(e.delta for e in events if e.type == f"{call}_code.delta")
    assert code_text == code
    done = events[kinds.index("response.output_item.done")].item
    assert done.type == "code_interpreter_call" and done.status == "completed"
    assert done.outputs is not None
    logs = [o for o in done.outputs if o.type == "logs"]
    images = [o for o in done.outputs if o.type == "image"]
    assert "".join(o.logs for o in logs) == "before\nwritten\n"
    assert len(images) == 1
    with urllib.request.urlopen(images[0].url, timeout=10) as png:
        assert png.status == 200 and png.read().startswith(b"\x89PNG")
    annotation = events[kinds.index("response.output_text.annotation.added")].annotation
    assert annotation.type == "container_file_citation"
    assert annotation.filename == "table.csv" and annotation.container_id == done.container_id
    cited = client.containers.files.content.retrieve(
        annotation.file_id, container_id=done.container_id
    )
    assert cited.read() == b"a,b\n1,2\n"
    final = events[-1].response
    assert final.status == "completed" and final.usage is not None
    stored = client.responses.retrieve(final.id, include=OUTPUTS)
    assert _code_call(stored).outputs == done.outputs


def test_outputs_come_only_when_included(client: openai.OpenAI) -> None:
    plain = client.responses.create(model=MODEL, input="RUN: print(6 * 7)", tools=AUTO)
    assert plain.status == "completed"
    call = _code_call(plain)
    assert (call.code, call.status, call.outputs) == ("print(6 * 7)", "completed", None)
    assert "42" in _text(plain)
    included = client.responses.create(
        model=MODEL, input="RUN: print(6 * 7)", tools=AUTO, include=OUTPUTS
    )
    assert _code_call(included).outputs is not None
    assert _code_call(included).outputs[0].logs == "42\n"  # type: ignore[index,union-attr]
    assert client.responses.retrieve(plain.id).output[0].outputs is None  # type: ignore[union-attr]
    again = client.responses.retrieve(plain.id, include=OUTPUTS)
    assert _code_call(again).outputs[0].logs == "42\n"  # type: ignore[index,union-attr]


def test_previous_response_id_continues_in_the_same_container(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="RUN: kept = 41", tools=AUTO)
    second = client.responses.create(
        model=MODEL,
        input="RUN: print(kept + 1)",
        tools=AUTO,
        previous_response_id=first.id,
        include=OUTPUTS,
    )
    assert _code_call(second).container_id == _code_call(first).container_id
    assert _code_call(second).outputs[0].logs == "42\n"  # type: ignore[index,union-attr]
    items = client.responses.input_items.list(second.id)
    assert [item.type for item in items.data] == ["message"]
    # Without the chain, a new container: the variable is not there.
    alone = client.responses.create(
        model=MODEL, input="RUN: print(kept)", tools=AUTO, include=OUTPUTS
    )
    assert _code_call(alone).container_id != _code_call(first).container_id
    assert "NameError" in _code_call(alone).outputs[0].logs  # type: ignore[index,union-attr]


def test_a_response_that_runs_no_code_makes_no_container(
    client: openai.OpenAI, server: Server, docker_client: docker.DockerClient
) -> None:
    before = {c.id for c in client.containers.list(limit=100)}
    running = len(containers_labelled(docker_client, f"io.interp.owner-pid={server.process.pid}"))
    response = client.responses.create(model=MODEL, input="just say hello", tools=AUTO)
    assert response.status == "completed" and _text(response) == "Hello from the fake model."
    assert {c.id for c in client.containers.list(limit=100)} == before
    after = containers_labelled(docker_client, f"io.interp.owner-pid={server.process.pid}")
    assert len(after) <= running


def test_function_tools_round_trip_through_the_caller(client: openai.OpenAI) -> None:
    tools: list[Any] = [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    asked = client.responses.create(
        model=MODEL, input='CALL get_weather {"city": "Paris"}', tools=tools
    )
    (call,) = asked.output
    assert isinstance(call, ResponseFunctionToolCall)
    assert (call.name, call.arguments) == ("get_weather", '{"city": "Paris"}')
    answered = client.responses.create(
        model=MODEL,
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=tools,
    )
    assert _text(answered) == "Result: sunny"


def test_containers_hold_files_both_ways(client: openai.OpenAI) -> None:
    uploaded = client.files.create(file=("data.csv", b"x,y\n1,2\n3,4\n"), purpose="user_data")
    container = client.containers.create(name="analysis", file_ids=[uploaded.id])
    assert container.status == "running" and container.expires_after is not None
    assert (container.expires_after.anchor, container.expires_after.minutes) == (
        "last_active_at",
        20,
    )
    added = client.containers.files.create(container.id, file=("notes.txt", b"hello notes"))
    assert (added.path, added.source, added.bytes) == ("/mnt/data/notes.txt", "user", 11)
    tool = [{"type": "code_interpreter", "container": container.id}]
    response = client.responses.create(
        model=MODEL,
        input="RUN: import pandas as pd\n"
        "frame = pd.read_csv('/mnt/data/data.csv')\n"
        "frame.assign(z=frame.x + frame.y).to_csv('/mnt/data/out.csv', index=False)\n"
        "print(open('/mnt/data/notes.txt').read(), frame.y.sum())",
        tools=tool,  # type: ignore[arg-type]
        include=OUTPUTS,
    )
    call = _code_call(response)
    assert call.container_id == container.id
    assert call.outputs[0].logs == "hello notes 6\n"  # type: ignore[index,union-attr]
    files = {f.path: f for f in client.containers.files.list(container.id)}
    assert set(files) == {"/mnt/data/data.csv", "/mnt/data/notes.txt", "/mnt/data/out.csv"}
    assert files["/mnt/data/out.csv"].source == "assistant"
    content = client.containers.files.content.retrieve(
        files["/mnt/data/out.csv"].id, container_id=container.id
    )
    assert content.read() == b"x,y,z\n1,2,3\n3,4,7\n"
    assert (
        client.containers.files.retrieve(
            files["/mnt/data/notes.txt"].id, container_id=container.id
        ).bytes
        == 11
    )
    later = client.containers.retrieve(container.id)
    assert later.last_active_at is not None and later.last_active_at >= container.created_at
    client.containers.files.delete(files["/mnt/data/notes.txt"].id, container_id=container.id)
    assert len(client.containers.files.list(container.id).data) == 2
    gone = client.responses.create(
        model=MODEL,
        input="RUN: import os\nprint(sorted(os.listdir('/mnt/data')))",
        tools=tool,  # type: ignore[arg-type]
        include=OUTPUTS,
    )
    assert _code_call(gone).outputs[0].logs == "['data.csv', 'out.csv']\n"  # type: ignore[index,union-attr]
    assert next(iter(client.containers.list(name="analysis", limit=100))).id == container.id
    client.containers.delete(container.id)
    with pytest.raises(openai.NotFoundError):
        client.containers.retrieve(container.id)


def test_a_container_memory_limit_is_enforced(client: openai.OpenAI) -> None:
    # The test server's kernels have 512 MiB; this container's have 1 GiB.
    container = client.containers.create(name="big", memory_limit="1g")
    assert container.memory_limit == "1g"
    tool: Any = [{"type": "code_interpreter", "container": container.id}]
    fits = client.responses.create(
        model=MODEL,
        input="RUN: block = bytearray(700 * 1024**2)\nprint(len(block) // 1024**2)",
        tools=tool,
        include=OUTPUTS,
    )
    assert _code_call(fits).outputs[0].logs == "700\n"  # type: ignore[index,union-attr]
    over = client.responses.create(
        model=MODEL,
        input="RUN: more = bytearray(1500 * 1024**2)",
        tools=tool,
        include=OUTPUTS,
    )
    assert _code_call(over).status == "failed"
    assert "out of memory (limit 1024 MiB)" in _text(over)
    client.containers.delete(container.id)


def test_an_expired_container_is_openais_400(client: openai.OpenAI, server: Server) -> None:
    container = client.containers.create(
        name="short", expires_after={"anchor": "last_active_at", "minutes": 1}
    )
    # An hour passes: the container was last active long ago.
    server_sql(
        server,
        "UPDATE interp_objects SET data = json_set(data, '$.last_active_at', 0) WHERE id = ?",
        container.id,
        postgres="UPDATE interp_objects SET data = jsonb_set(data::jsonb, '{last_active_at}', '0')"
        "::json WHERE id = ?",
    )
    assert client.containers.retrieve(container.id).status == "expired"
    tool: Any = [{"type": "code_interpreter", "container": container.id}]
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=MODEL, input="RUN: print(1)", tools=tool)
    assert raised.value.message.endswith("Container is expired.")
    with pytest.raises(openai.BadRequestError, match=r"Container is expired\."):
        client.containers.files.create(container.id, file=("a.txt", b"a"))


def test_bad_requests_are_openai_errors_and_leak_nothing(
    client: openai.OpenAI, server: Server, docker_client: docker.DockerClient
) -> None:
    owner = f"io.interp.owner-pid={server.process.pid}"
    before = {c.id for c in client.containers.list(limit=100)}
    running = len(containers_labelled(docker_client, owner))
    tool: Any = [{"type": "code_interpreter", "container": "cntr_nope"}]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="RUN: 1", tools=tool)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="hi", previous_response_id="resp_nope")
    with pytest.raises(openai.BadRequestError):
        client.containers.create(name="x", memory_limit="128g")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="more than this host has"):
        client.containers.create(name="x", memory_limit="64g")
    bad_inputs: list[Any] = [
        [{"type": "message", "role": "robot", "content": "hi"}],
        [{"type": "function_call_output", "output": "no call id"}],
        [{"type": "telepathy", "content": "hi"}],
        [{"role": "user", "content": [{"type": "input_text"}]}],
    ]
    for bad in bad_inputs:
        with pytest.raises(openai.BadRequestError):
            client.responses.create(model=MODEL, input=bad)
    bad_tools: list[Any] = [
        [{"type": "code_interpreter"}],
        [{"type": "code_interpreter", "container": {"type": "manual"}}],
        [{"type": "web_search_preview_deluxe"}],
        [{"type": "function", "name": "python"}],
        [{"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-nope"]}}],
    ]
    for bad in bad_tools:
        with pytest.raises((openai.BadRequestError, openai.NotFoundError)):
            client.responses.create(model=MODEL, input="RUN: 1", tools=bad)
    with pytest.raises(openai.NotFoundError):
        client.containers.files.create("cntr_nope", file=("a.txt", b"a"))
    container = client.containers.create(name="target")
    for name in ("../escape.txt", "a/b.txt", ""):
        with pytest.raises(openai.BadRequestError):
            client.containers.files.create(container.id, file=(name, b"x"))
    status, _ = raw_request(
        server,
        "POST",
        f"/containers/{container.id}/files",
        b"",
        {"content-length": str(600 * 1024**2), "content-type": "multipart/form-data"},
    )
    assert status == 413
    client.containers.delete(container.id)
    assert {c.id for c in client.containers.list(limit=100)} == before
    assert len(containers_labelled(docker_client, owner)) <= running


def test_another_owners_responses_and_containers_are_not_found(
    fake_model: FakeModel, tmp_path: Path
) -> None:
    server = start_server(tmp_path, fake_model.url, "--api-key", KEY_A, "--api-key", KEY_B)
    try:
        alice, bob = server.client(KEY_A), server.client(KEY_B)
        response = alice.responses.create(model=MODEL, input="RUN: secret = 1", tools=AUTO)
        container_id = _code_call(response).container_id
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(response.id)
        with pytest.raises(openai.NotFoundError):
            bob.containers.retrieve(container_id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.create(model=MODEL, input="hi", previous_response_id=response.id)
        tool: Any = [{"type": "code_interpreter", "container": container_id}]
        with pytest.raises(openai.NotFoundError):
            bob.responses.create(model=MODEL, input="RUN: print(secret)", tools=tool)
        with pytest.raises(openai.AuthenticationError):
            server.client("wrong-key").containers.list()
    finally:
        server.stop()


def test_a_background_response_can_be_polled_and_cancelled(client: openai.OpenAI) -> None:
    started = client.responses.create(
        model=MODEL,
        input="RUN: print('started', flush=True)\nimport time\ntime.sleep(60)",
        tools=AUTO,
        background=True,
    )
    assert started.status in ("queued", "in_progress")
    deadline = time.monotonic() + 30
    while (found := client.responses.retrieve(started.id)).output == [] or (
        found.output[0].status != "interpreting"  # type: ignore[union-attr]
    ):
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    began = time.monotonic()
    cancelled = client.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    assert time.monotonic() - began < 10
    assert client.responses.retrieve(started.id).status == "cancelled"
    # The container goes on: its kernel was interrupted, not lost.
    container_id = _code_call(found).container_id
    tool: Any = [{"type": "code_interpreter", "container": container_id}]
    after = client.responses.create(
        model=MODEL, input="RUN: print('after')", tools=tool, include=OUTPUTS
    )
    assert _code_call(after).outputs[0].logs == "after\n"  # type: ignore[index,union-attr]


def test_a_dropped_background_stream_is_joined_again_where_it_left_off(
    client: openai.OpenAI,
) -> None:
    code = "print('one', flush=True)\nimport time\ntime.sleep(1.5)\nprint('two')"
    first: list[Any] = []
    with client.responses.create(
        model=MODEL, input=f"RUN: {code}", tools=AUTO, background=True, stream=True
    ) as stream:
        for event in stream:
            first.append(event)
            if event.type == "response.code_interpreter_call.interpreting":
                break  # the connection drops while the code runs
    response_id = first[0].response.id
    last_seen = first[-1].sequence_number
    with client.responses.retrieve(response_id, stream=True, starting_after=last_seen) as rest:
        resumed = list(rest)
    # Nothing lost, nothing twice: the numbers go on from where the first stream stopped.
    numbers = [e.sequence_number for e in first + resumed]
    assert numbers == list(range(len(numbers)))
    assert resumed[0].sequence_number == last_seen + 1
    assert resumed[-1].type == "response.completed"
    assert "two" in str(resumed[-1].response.output)  # the code ran on while no one listened
    # Ended, it can be joined again from the start, as the SDK's stream helper does.
    with client.responses.stream(response_id=response_id, starting_after=last_seen) as again:
        helped = [e.sequence_number for e in again]
        final = again.get_final_response()
    assert helped == numbers[last_seen + 1 :]
    assert final.status == "completed" and final.id == response_id
    # Only a background response has a stream to join; a deleted one has none.
    direct = client.responses.create(model=MODEL, input="hello")
    with pytest.raises(openai.BadRequestError, match="background"):
        client.responses.retrieve(direct.id, stream=True)
    with pytest.raises(openai.BadRequestError):
        client.responses.retrieve(response_id, stream=True, starting_after=-1)
    client.responses.delete(response_id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response_id, stream=True)


def test_deleting_a_container_while_its_code_runs_ends_that_call(
    client: openai.OpenAI, server: Server
) -> None:
    started = client.responses.create(
        model=MODEL,
        input="RUN: print('started', flush=True)\nimport time\ntime.sleep(60)",
        tools=AUTO,
        background=True,
    )
    deadline = time.monotonic() + 30
    while (found := client.responses.retrieve(started.id)).output == [] or (
        found.output[0].status != "interpreting"  # type: ignore[union-attr]
    ):
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    container_id = _code_call(found).container_id
    began = time.monotonic()
    client.containers.delete(container_id)
    while (done := client.responses.retrieve(started.id)).status in ("queued", "in_progress"):
        assert time.monotonic() - began < 10, done
        time.sleep(0.1)
    # The call fails, saying why, and the model is told: the response itself completes.
    assert done.status == "completed"
    assert _code_call(done).status == "failed"
    assert "the session was closed during the execution" in _text(done)
    with pytest.raises(openai.NotFoundError):
        client.containers.retrieve(container_id)
    assert not _session_dirs(server, container_id)


def test_uploads_racing_a_containers_delete_leave_nothing_behind(
    client: openai.OpenAI, server: Server
) -> None:
    deleted: list[str] = []
    outcomes: set[str] = set()
    for round_ in range(8):
        container = client.containers.create(name=f"race-{round_}")
        deleted.append(container.id)
        uploads = ThreadPoolExecutor(3)
        racing = [
            uploads.submit(
                client.containers.files.create, container.id, file=("race.txt", b"x" * 200_000)
            )
            for _ in range(3)
        ]
        client.containers.delete(container.id)
        for upload in racing:
            try:
                upload.result()
                outcomes.add("uploaded before the delete")
            except openai.NotFoundError:
                outcomes.add("404")
        uploads.shutdown()
        with pytest.raises(openai.NotFoundError):
            client.containers.files.list(container.id)
    # Whichever won each race, the deleted containers left no file, record or session.
    for container_id in deleted:
        assert not _session_dirs(server, container_id)
        query = "SELECT count(*) FROM interp_objects WHERE parent = ?"
        assert server_sql(server, query, container_id) == [(0,)]
    # The engine's file index is SQLite in its data directory, whatever the server's is.
    with sqlite3.connect(server.data_dir / "files.db") as files:
        assert files.execute("SELECT count(*) FROM files WHERE name = 'race.txt'").fetchone() == (
            0,
        )
    assert outcomes


def _session_dirs(server: Server, session: str) -> list[Path]:
    """The engine's directories of ``session`` (its /mnt/data): there while it is open."""
    return list((server.data_dir / "sessions").glob(f"*/{session}"))
