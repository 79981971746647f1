"""The Assistants API as the `openai` SDK drives it, against a live `interp serve`.

Every object and event the server sends is also validated against the SDK's own types
in strict mode (no required field missing, none of the wrong type)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import time
from typing import Any

import docker
import openai
import pytest
from openai.types import FileObject
from openai.types.beta import Assistant, AssistantStreamEvent, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import CodeInterpreterToolCall, RunStep
from pydantic import BaseModel, TypeAdapter

from ..conftest import containers_labelled
from .conftest import Server, follow_up, raw_request, reply_text, wait_for_step
from .fake_model import FakeModel

pytestmark = [
    pytest.mark.docker,
    # The SDK marks the Assistants API deprecated (OpenAI shut it down): that is why we serve it.
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The Assistants API is deprecated:DeprecationWarning"),
]

STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(AssistantStreamEvent)


def strict(model: type[BaseModel], obj: BaseModel | dict[str, Any]) -> None:
    """``obj`` (as the server sent it) validates against ``model`` in strict mode."""
    data = obj.model_dump(mode="json", exclude_unset=True) if isinstance(obj, BaseModel) else obj
    model.model_validate_json(json.dumps(data), strict=True)


def assistant(client: openai.OpenAI, **extra: Any) -> Assistant:
    created = client.beta.assistants.create(
        model="gpt-4o", tools=[{"type": "code_interpreter"}], **extra
    )
    strict(Assistant, created)
    return created


def run_code(client: openai.OpenAI, code: str, **extra: Any) -> tuple[Thread, Run]:
    helper = assistant(client)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": f"RUN: {code}"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=100, **extra
    )
    return thread, run


def reply(client: openai.OpenAI, thread: Thread) -> Message:
    return client.beta.threads.messages.list(thread_id=thread.id, order="desc").data[0]


def test_a_polled_run_runs_the_code_and_keeps_every_object(client: openai.OpenAI) -> None:
    thread, run = run_code(client, "x = 6 * 7\nprint(x)")
    assert run.status == "completed", run.last_error
    strict(Run, run)
    assert run.usage is not None and run.usage.total_tokens == 30
    answer = reply(client, thread)
    strict(Message, answer)
    assert answer.role == "assistant" and answer.run_id == run.id
    assert answer.content[0].type == "text" and answer.content[0].text.value == "Result: 42"
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
    kinds = [step.type for step in steps.data]
    assert kinds == ["tool_calls", "message_creation"]
    for step in steps.data:
        strict(RunStep, step)
    call = steps.data[0].step_details.tool_calls[0]  # type: ignore[union-attr]
    assert isinstance(call, CodeInterpreterToolCall)
    assert call.code_interpreter.input == "x = 6 * 7\nprint(x)"
    assert [o.model_dump() for o in call.code_interpreter.outputs] == [
        {"type": "logs", "logs": "42\n"}
    ]
    # State persists in the thread's session: the next run sees x.
    again = follow_up(client, thread.id, run.assistant_id, "RUN: print(x + 1)")
    assert again.status == "completed"
    assert reply_text(client, thread.id) == "Result: 43"


def test_every_streamed_event_is_a_valid_sdk_event_in_order(client: openai.OpenAI) -> None:
    helper = assistant(client)
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "RUN: print('a')\nimport time; time.sleep(0.3)\nprint('b')"}
        ]
    )
    names = []
    with client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=helper.id, stream=True
    ) as stream:
        for event in stream:
            names.append(event.event)
            STREAM_EVENT.validate_json(
                json.dumps(
                    {
                        "event": event.event,
                        "data": event.data.model_dump(mode="json", exclude_unset=True),
                    }
                ),
                strict=True,
            )
    assert names[:5] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
    ]
    assert names[-1] == "thread.run.completed"
    assert names.count("thread.message.completed") == 1
    assert "thread.run.step.delta" in names and "thread.message.delta" in names


def test_create_and_run_makes_the_thread_and_runs_it(client: openai.OpenAI) -> None:
    helper = assistant(client)
    run = client.beta.threads.create_and_run_poll(
        assistant_id=helper.id,
        thread={"messages": [{"role": "user", "content": "RUN: print(2 ** 10)"}]},
        poll_interval_ms=100,
    )
    assert run.status == "completed"
    thread = client.beta.threads.retrieve(run.thread_id)
    strict(Thread, thread)
    assert reply_text(client, thread.id) == "Result: 1024"


def test_files_go_in_by_attachment_and_come_out_by_id(client: openai.OpenAI) -> None:
    uploaded = client.files.create(
        file=("sales.csv", io.BytesIO(b"region,amount\nnorth,10\nsouth,32\n")),
        purpose="assistants",
    )
    assert uploaded.filename == "sales.csv" and uploaded.bytes == 32
    strict(FileObject, uploaded)
    helper = assistant(client)
    code = (
        "import pandas as pd, matplotlib.pyplot as plt\n"
        "frame = pd.read_csv('/mnt/data/sales.csv')\n"
        "frame.assign(double=frame.amount * 2).to_csv('/mnt/data/out.csv', index=False)\n"
        "frame.plot.bar(x='region', y='amount')\nplt.show()\n"
        "print(frame.amount.sum())"
    )
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": f"RUN: {code}",
                "attachments": [{"file_id": uploaded.id, "tools": [{"type": "code_interpreter"}]}],
            }
        ]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=100
    )
    assert run.status == "completed", run.last_error
    answer = reply(client, thread)
    strict(Message, answer)
    image = answer.content[0]
    assert image.type == "image_file"
    png = client.files.content(image.image_file.file_id).read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    listed = {f.filename: f for f in client.files.list().data}
    for listed_file in listed.values():
        strict(FileObject, listed_file)
    assert "out.csv" in listed and listed["out.csv"].purpose == "assistants_output"
    written = client.files.content(listed["out.csv"].id).read()
    assert written.decode().splitlines() == ["region,amount,double", "north,10,20", "south,32,64"]
    text = answer.content[1]
    assert text.type == "text" and "42" in text.text.value
    # The reply cites the file the code wrote: a file_path annotation on that text.
    (annotation,) = text.text.annotations
    assert annotation.type == "file_path"
    assert annotation.text == "sandbox:/mnt/data/out.csv"
    assert annotation.file_path.file_id == listed["out.csv"].id
    cited = text.text.value[annotation.start_index : annotation.end_index]
    assert cited == "sandbox:/mnt/data/out.csv"


def test_files_deleted_after_they_were_given_leave_their_runs_working(
    client: openai.OpenAI, fake_model: FakeModel
) -> None:
    """A file named by an assistant's or a thread's resources or by a message, then
    deleted, is left out of /mnt/data; the runs that name it go on (they all failed)."""

    def upload(name: str) -> str:
        return client.files.create(file=(name, io.BytesIO(b"x")), purpose="assistants").id

    kept, of_assistant, of_thread, of_message = (
        upload(n) for n in ("kept.txt", "a.txt", "t.txt", "m.txt")
    )
    helper = assistant(client, tool_resources={"code_interpreter": {"file_ids": [of_assistant]}})
    attach = [{"file_id": f, "tools": [{"type": "code_interpreter"}]} for f in (kept, of_message)]
    thread = client.beta.threads.create(
        tool_resources={"code_interpreter": {"file_ids": [of_thread]}},
        messages=[
            {
                "role": "user",
                "content": "RUN: import os; print(sorted(os.listdir('/mnt/data')))",
                "attachments": attach,  # type: ignore[typeddict-item]
            }
        ],
    )
    for gone in (of_assistant, of_thread, of_message):
        client.files.delete(gone)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=100
    )
    assert run.status == "completed", run.last_error
    assert reply_text(client, thread.id) == "Result: ['kept.txt']"
    # The model is told of the file that is there, not of the deleted one.
    told = fake_model.requests[-1]["messages"]
    assert any("/mnt/data/kept.txt" in str(m.get("content")) for m in told)
    assert not any("m.txt" in str(m.get("content")) for m in told)
    # A file deleted after a run placed it: later runs still work.
    client.files.delete(kept)
    again = follow_up(client, thread.id, helper.id, "RUN: print('again')")
    assert again.status == "completed", again.last_error


def test_downloads_racing_a_files_delete_get_it_whole_or_a_404(server: Server) -> None:
    """A download begun before a delete is sent whole; one asked after it is a 404; and
    downloads racing deletes get one or the other. (Each order is made to happen: a count
    of 404s among racing downloads depends on the scheduler, and once was 0 in 100.)"""
    client = server.client()
    body = bytes(range(256)) * 8192 * 4  # 8 MiB: more than the sockets' buffers hold

    def upload() -> str:
        return client.files.create(file=("race.bin", io.BytesIO(body)), purpose="assistants").id

    file_id = upload()
    with client.files.with_streaming_response.content(file_id) as begun:
        chunks = begun.iter_bytes(64 * 1024)
        first = next(chunks)
        client.files.delete(file_id)
        assert first + b"".join(chunks) == body
    with pytest.raises(openai.NotFoundError):
        client.files.content(file_id)
    outcomes: list[str] = []

    def download(file_id: str) -> None:
        try:
            got = client.files.content(file_id).read()
        except openai.NotFoundError:
            outcomes.append("404")
            return
        assert got == body  # begun, a download is sent whole, though the file goes
        outcomes.append("whole")

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        for _ in range(10):
            file_id = upload()
            racing: list[concurrent.futures.Future[Any]] = [
                pool.submit(download, file_id) for _ in range(5)
            ]
            racing.append(pool.submit(client.files.delete, file_id))
            for future in racing:
                future.result()  # any other status (a 400 or a 500) raises here
            with pytest.raises(openai.NotFoundError):
                client.files.content(file_id)
    assert len(outcomes) == 50
    assert "Traceback" not in server.logs()


def test_function_tools_wait_for_submitted_outputs(
    client: openai.OpenAI, fake_model: FakeModel
) -> None:
    helper = client.beta.assistants.create(
        model="gpt-4o",
        tools=[
            {"type": "code_interpreter"},
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            },
        ],
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": 'CALL get_weather {"city": "Oslo"}'}]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=100
    )
    assert run.status == "requires_action"
    strict(Run, run)
    assert run.required_action is not None
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Oslo"
    }
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "sunny, 21 C"}],
        poll_interval_ms=100,
    )
    assert done.status == "completed"
    assert reply_text(client, thread.id) == "Result: sunny, 21 C"
    sent = fake_model.requests[-1]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}


def _submitted(client: openai.OpenAI, run: Run, outputs: Any) -> bool:
    try:
        client.beta.threads.runs.submit_tool_outputs(
            thread_id=run.thread_id, run_id=run.id, tool_outputs=outputs
        )
    except openai.BadRequestError:
        return False
    return True


def _cancelled(client: openai.OpenAI, run: Run) -> Run | None:
    try:
        return client.beta.threads.runs.cancel(thread_id=run.thread_id, run_id=run.id)
    except openai.BadRequestError:
        return None  # the run had ended: nothing to cancel


def test_a_cancel_racing_tool_outputs_is_kept(client: openai.OpenAI) -> None:
    """A run waiting for tool outputs, cancelled while outputs are submitted (three times
    over): a cancel that answers is kept, and one set of outputs at most is taken. The
    cancel had been answered, then overwritten by the run the outputs restarted."""
    function: Any = {"type": "function", "function": {"name": "f", "parameters": {}}}
    helper = client.beta.assistants.create(
        model="gpt-4o", tools=[{"type": "code_interpreter"}, function]
    )
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(6):
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "CALL f {}"}])
            run = client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=50
            )
            assert run.status == "requires_action" and run.required_action is not None
            (call,) = run.required_action.submit_tool_outputs.tool_calls
            outputs = [{"tool_call_id": call.id, "output": "1"}]
            submits = [pool.submit(_submitted, client, run, outputs) for _ in range(3)]
            cancelled = pool.submit(_cancelled, client, run).result()
            taken = sum(f.result() for f in submits)
            final = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
            assert taken <= 1
            if cancelled is not None:
                assert cancelled.status == "cancelled"
                assert final.status == "cancelled", (taken, final.status)
            else:
                assert final.status == "completed" and taken == 1


def test_cancel_stops_a_long_sleep_and_the_thread_goes_on(client: openai.OpenAI) -> None:
    helper = assistant(client)
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "RUN: import time\ntime.sleep(60)"}]
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=helper.id)
    wait_for_step(client, thread.id, run.id)
    time.sleep(0.5)
    began = time.monotonic()
    cancelled = client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
    assert cancelled.status == "cancelled" and time.monotonic() - began < 10
    assert cancelled.cancelled_at is not None
    after = follow_up(client, thread.id, helper.id, "RUN: print('on')")
    assert after.status == "completed"
    assert reply_text(client, thread.id) == "Result: on"


def test_a_second_run_on_a_busy_thread_is_refused(client: openai.OpenAI) -> None:
    helper = assistant(client)
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "RUN: import time\ntime.sleep(3)"}]
    )
    first = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=helper.id)
    with pytest.raises(openai.BadRequestError, match="already has an active run"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=helper.id)
    client.beta.threads.runs.cancel(thread_id=thread.id, run_id=first.id)


def test_lists_page_as_the_sdk_expects(client: openai.OpenAI) -> None:
    made = [client.beta.assistants.create(model="m", name=f"page-{i}").id for i in range(7)]
    first = client.beta.assistants.list(limit=3, order="asc")
    assert len(first.data) == 3 and first.has_more
    seen = [a.id for a in client.beta.assistants.list(limit=3, order="asc")]  # auto-paging
    assert [i for i in seen if i in made] == made
    newest = client.beta.assistants.list(limit=2, order="desc", before=made[3])
    assert [a.id for a in newest.data] == [made[5], made[4]]
    for assistant_id in made:
        assert client.beta.assistants.delete(assistant_id).deleted


def test_errors_have_openais_shape_and_the_sdks_classes(server: Server) -> None:
    client = server.client()
    with pytest.raises(openai.NotFoundError) as missing:
        client.beta.threads.retrieve("thread_nope")
    assert missing.value.body == {
        "message": "No thread found with id 'thread_nope'.",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve("t" * 10_000)
    with pytest.raises(openai.BadRequestError):
        client.beta.assistants.create(model="m", temperature=7)
    with pytest.raises(openai.BadRequestError):
        client.beta.assistants.create(model="m", tools=[{"type": "nope"}])  # type: ignore[list-item, misc]
    with pytest.raises(openai.BadRequestError):
        client.post("/assistants", body={"model": "m", "surprise": 1}, cast_to=object)
    with pytest.raises(openai.BadRequestError, match="plain name"):
        client.files.create(file=("../escape.txt", io.BytesIO(b"x")), purpose="assistants")
    thread = client.beta.threads.create()
    helper = assistant(client)
    client.beta.threads.delete(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=helper.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.create(
            thread_id=client.beta.threads.create().id,
            role="user",
            content="x",
            attachments=[{"file_id": "file-unknown", "tools": [{"type": "code_interpreter"}]}],
        )


def test_hostile_bodies_get_a_4xx_and_change_nothing(server: Server) -> None:
    status, body = raw_request(
        server,
        "POST",
        "/assistants",
        b"{not json",
        {"content-type": "application/json", "content-length": "9"},
    )
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = raw_request(
        server,
        "POST",
        "/assistants",
        b'{"model": 5}',
        {"content-type": "application/json", "content-length": "12"},
    )
    assert status == 400
    # A 600 MB upload is refused by its declared size, before a byte of it is read.
    status, body = raw_request(
        server,
        "POST",
        "/files",
        b"",
        {"content-type": "multipart/form-data; boundary=x", "content-length": str(600 * 1024**2)},
    )
    assert status == 413 and "too large" in body["error"]["message"]
    # Without a declared size the body is counted as it arrives.
    chunk = b"x" * 1024**2
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
    status, body = raw_request(
        server,
        "POST",
        "/assistants",
        framed,
        {"content-type": "application/json", "transfer-encoding": "chunked"},
    )
    assert status == 413 and "too large" in body["error"]["message"]
    # An id ending in an encoded slash, or a "../", names nothing: OpenAI's 404, not a
    # redirect to another object's path (which a client would follow, deleting that one).
    kept = server.client().files.create(file=("kept.txt", io.BytesIO(b"k")), purpose="assistants")
    for path in (f"/files/{kept.id}%2F", "/files/%2e%2e%2F", "/files/", f"/files/{kept.id}/"):
        status, body = raw_request(server, "DELETE", path, b"", {})
        assert status == 404 and body["error"]["type"] == "invalid_request_error", path
    assert server.client().files.retrieve(kept.id).id == kept.id
    assert server.process.poll() is None
    assert server.client().beta.assistants.list().data is not None


def test_model_failures_fail_the_run_clearly_and_the_thread_goes_on(client: openai.OpenAI) -> None:
    helper = assistant(client)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "BROKEN"}])
    broken = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=100
    )
    assert broken.status == "failed" and broken.last_error is not None
    assert broken.last_error.code == "invalid_prompt"
    assert "not valid JSON" in broken.last_error.message
    for status, code in ((500, "server_error"), (429, "rate_limit_exceeded")):
        failed = follow_up(client, thread.id, helper.id, f"FAIL {status}")
        assert failed.status == "failed" and failed.last_error is not None
        assert failed.last_error.code == code
    fine = follow_up(client, thread.id, helper.id, "RUN: print('fine')")
    assert fine.status == "completed"


def test_a_failed_run_streams_failed_then_done(client: openai.OpenAI) -> None:
    helper = assistant(client)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "FAIL 503"}])
    with client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=helper.id, stream=True
    ) as stream:
        names = [event.event for event in stream]
    assert names[-1] == "thread.run.failed"


def test_eight_threads_run_at_once_and_nothing_is_lost(client: openai.OpenAI) -> None:
    helper = assistant(client)

    def one(i: int) -> str:
        thread = client.beta.threads.create(
            messages=[
                {"role": "user", "content": f"RUN: import time; time.sleep(0.2); print({i} * 3)"}
            ]
        )
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=100
        )
        assert run.status == "completed", run.last_error
        return reply_text(client, thread.id)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert answers == [f"Result: {i * 3}" for i in range(8)]


def test_run_overrides_reach_the_model(client: openai.OpenAI, fake_model: FakeModel) -> None:
    helper = client.beta.assistants.create(
        model="gpt-4o", instructions="Be brief.", tools=[{"type": "code_interpreter"}]
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=helper.id,
        additional_instructions="Call the user Jane.",
        additional_messages=[{"role": "user", "content": "and hello again"}],
        temperature=0.2,
        tool_choice={"type": "code_interpreter"},
        metadata={"purpose": "test"},
        poll_interval_ms=100,
    )
    assert run.status == "completed" and run.metadata == {"purpose": "test"}
    sent = next(
        r
        for r in reversed(fake_model.requests)
        if r["messages"][-1]["content"] == "and hello again"
    )
    assert sent["messages"][0] == {"role": "system", "content": "Be brief.\n\nCall the user Jane."}
    assert [m["content"] for m in sent["messages"][1:]] == ["hi", "and hello again"]
    assert sent["temperature"] == 0.2
    assert sent["tools"][0]["function"]["name"] == "python"
    # The model is told what is installed, and that nothing else can be.
    described = sent["tools"][0]["function"]["description"]
    assert "Python 3.11 with numpy, pandas, matplotlib, scipy" in described
    assert "no pip install" in described
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "python"}}


def test_a_model_that_never_stops_calling_code_ends_incomplete(client: openai.OpenAI) -> None:
    thread, run = run_code(client, "print('LOOP')")
    assert run.status == "incomplete" and run.incomplete_details is not None
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, limit=100)
    assert len(steps.data) == 16
    assert (
        client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id).status == "incomplete"
    )


def test_objects_can_be_modified_listed_by_run_and_deleted(client: openai.OpenAI) -> None:
    thread, run = run_code(client, "print(1)")
    messages = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id)
    every = client.beta.threads.messages.list(thread_id=thread.id)
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id)
    assert [m.role for m in messages.data] == ["assistant"], (
        run.status,
        run.usage,
        [m.content for m in every.data],
        [s.step_details for s in steps.data],
    )
    message = client.beta.threads.messages.update(
        message_id=messages.data[0].id, thread_id=thread.id, metadata={"k": "v"}
    )
    assert message.metadata == {"k": "v"}
    assert client.beta.threads.runs.update(
        run_id=run.id, thread_id=thread.id, metadata={"r": "1"}
    ).metadata == {"r": "1"}
    assert client.beta.threads.update(thread.id, metadata={"t": "2"}).metadata == {"t": "2"}
    step = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    fetched = client.beta.threads.runs.steps.retrieve(
        step_id=step.id, thread_id=thread.id, run_id=run.id
    )
    strict(RunStep, fetched)
    assert client.beta.threads.messages.delete(message.id, thread_id=thread.id).deleted
    assert client.beta.threads.delete(thread.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve(run_id=run.id, thread_id=thread.id)


def test_a_dropped_stream_does_not_stop_the_run(client: openai.OpenAI) -> None:
    helper = assistant(client)
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "RUN: import time\ntime.sleep(1)\nprint('finished')"}]
    )
    with client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=helper.id, stream=True
    ) as stream:
        first = next(iter(stream))
        assert first.event == "thread.run.created"
        run_id = first.data.id
    # The client went away after the first event; the run goes on to the end.
    deadline = time.monotonic() + 30
    while (run := client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run_id)).status in (
        "queued",
        "in_progress",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert run.status == "completed"
    assert reply_text(client, thread.id) == "Result: finished"


def test_deleting_a_thread_during_its_run_removes_its_sandbox(
    client: openai.OpenAI, server: Server, docker_client: docker.DockerClient
) -> None:
    helper = assistant(client)
    marker = f"{60 + time.monotonic() % 1:.6f}"  # the sandbox is found by this argument
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": f"RUN: import subprocess\nsubprocess.run(['sleep', '{marker}'])",
            }
        ]
    )
    stream = client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=helper.id, stream=True
    )
    first = next(iter(stream))
    assert first.event == "thread.run.created"
    owner = f"io.interp.owner-pid={server.process.pid}"
    deadline = time.monotonic() + 30
    while not (sandbox := _running(docker_client, owner, ["sleep", marker])):
        assert time.monotonic() < deadline, "the run's code never started"
        time.sleep(0.1)
    assert client.beta.threads.delete(thread.id).deleted
    # Its stream says the run was cancelled (not that the server stopped), then ends.
    assert [e.event for e in stream if e.event.startswith("thread.run.")][-1:] == [
        "thread.run.cancelled"
    ]
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=first.data.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread.id)
    deadline = time.monotonic() + 10
    while sandbox in {c.id for c in containers_labelled(docker_client, owner)}:
        assert time.monotonic() < deadline, "the deleted thread's sandbox is still there"
        time.sleep(0.1)
    # The server goes on.
    after = client.beta.threads.create_and_run_poll(
        assistant_id=helper.id,
        thread={"messages": [{"role": "user", "content": "RUN: print('on')"}]},
    )
    assert after.status == "completed"


def _running(client: docker.DockerClient, label: str, command: list[str]) -> str | None:
    """The id of the sandbox (of those labelled ``label``) running ``command``, if any."""
    for container in containers_labelled(client, label):
        with contextlib.suppress(docker.errors.APIError):
            processes = client.api.top(container.id)["Processes"] or []
            if any(p[-1] == " ".join(command) for p in processes):
                return str(container.id)
    return None


def test_runs_racing_their_threads_delete_leave_no_sandbox(
    client: openai.OpenAI, server: Server, docker_client: docker.DockerClient
) -> None:
    helper = assistant(client)
    marker = f"{60 + time.monotonic() % 1:.6f}"
    code = f"RUN: import subprocess\nsubprocess.run(['sleep', '{marker}'])"
    outcomes: set[str] = set()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for _ in range(10):
            thread = client.beta.threads.create(messages=[{"role": "user", "content": code}])
            run = pool.submit(
                client.beta.threads.runs.create, thread_id=thread.id, assistant_id=helper.id
            )
            deleted = pool.submit(client.beta.threads.delete, thread.id)
            assert deleted.result().deleted
            try:
                run.result()
                outcomes.add("run created")
            except openai.NotFoundError:
                outcomes.add("404")
    # Whichever won, no code of a deleted thread goes on running.
    owner = f"io.interp.owner-pid={server.process.pid}"
    deadline = time.monotonic() + 10
    while _running(docker_client, owner, ["sleep", marker]):
        assert time.monotonic() < deadline, f"a deleted thread's code still runs ({outcomes})"
        time.sleep(0.2)
