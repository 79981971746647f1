"""The rules of both doors, in seconds and without Docker: the app in this process behind
``httpx``'s ASGI transport, an engine without kernels (``fake_engine``), the scripted model
and the real ``openai`` client. The live-server suites run the same doors on real kernels.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx2
import openai
import pytest

from interp import Config, Engine
from interp.server import create_app

from .fake_engine import FakeEngine
from .fake_model import MODEL, FakeModel

pytestmark = [
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The Assistants API is deprecated:DeprecationWarning"),
]

WINDOW = 4096
KEY_A, KEY_B = "door-key-alice", "door-key-bob"


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeModel]:
    with FakeModel(window=WINDOW) as model:
        yield model


class Doors:
    def __init__(self, app: Any, engine: FakeEngine) -> None:
        self.app = app
        self.engine = engine
        self.clients: list[openai.AsyncOpenAI] = []

    def client(self, key: str = KEY_A) -> openai.AsyncOpenAI:
        transport = httpx2.ASGITransport(app=self.app.state.asgi)
        http = httpx2.AsyncClient(transport=transport, base_url="http://doors")
        made = openai.AsyncOpenAI(
            base_url="http://doors/v1", api_key=key, http_client=http, max_retries=0
        )
        self.clients.append(made)
        return made


@pytest.fixture
async def doors(fake_model: FakeModel, tmp_path: Path) -> AsyncIterator[Doors]:
    config = Config(
        data_dir=tmp_path / "data",
        model_base_url=fake_model.url,
        model=MODEL,
        api_keys=[KEY_A, KEY_B],
    )
    engine = FakeEngine(tmp_path / "files")
    app = create_app(config, engine=cast(Engine, engine))
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        # In a task of its own: its task groups are entered and left by the same task.
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()

    running = asyncio.create_task(lifespan())
    await asyncio.wait(
        [running, asyncio.create_task(started.wait())], return_when="FIRST_COMPLETED"
    )
    found = Doors(app, engine)
    yield found
    for client in found.clients:
        await client.close()
    stop.set()
    await running


async def code_assistant(client: openai.AsyncOpenAI, **extra: Any) -> str:
    created = await client.beta.assistants.create(
        model=MODEL, tools=[{"type": "code_interpreter"}], **extra
    )
    return created.id


async def test_a_run_is_the_threads_only_active_one_and_its_messages_wait(
    doors: Doors,
) -> None:
    client = doors.client()
    helper = await code_assistant(client)
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": "RUN: SLEEP 0.5"}]
    )
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=helper)
    with pytest.raises(openai.BadRequestError, match="active run"):
        await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=helper)
    with pytest.raises(openai.BadRequestError, match="Can't add messages"):
        await client.beta.threads.messages.create(thread_id=thread.id, role="user", content="x")
    done = await client.beta.threads.runs.poll(
        thread_id=thread.id, run_id=run.id, poll_interval_ms=20
    )
    assert done.status == "completed", done.last_error
    await client.beta.threads.messages.create(thread_id=thread.id, role="user", content="x")
    assert doors.engine.ran == [(thread.id, "SLEEP 0.5")]


async def test_tool_outputs_that_do_not_come_expire_the_run(doors: Doors) -> None:
    """On the runner's clock, moved on by the test: the run waits ``tool_outputs_timeout``
    (600 s), then reads ``expired`` (with its step) and its thread takes a new run."""
    runner = doors.app.state.services.runner
    now = [1_000_000.0]
    runner.clock = lambda: now[0]
    client = doors.client()
    helper = await client.beta.assistants.create(
        model=MODEL,
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
    )
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": 'CALL lookup {"q": 1}'}]
    )
    waiting = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=20
    )
    assert waiting.status == "requires_action" and waiting.expires_at == 1_000_600
    now[0] += 599
    with pytest.raises(openai.BadRequestError, match="active run"):
        await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=helper.id)
    now[0] += 2
    expired = await client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=waiting.id)
    assert expired.status == "expired"
    steps = await client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=waiting.id)
    assert [s.status for s in steps.data] == ["expired"]
    assert waiting.required_action is not None
    call = waiting.required_action.submit_tool_outputs.tool_calls[0]
    with pytest.raises(openai.BadRequestError, match="expired"):
        await client.beta.threads.runs.submit_tool_outputs(
            thread_id=thread.id,
            run_id=waiting.id,
            tool_outputs=[{"tool_call_id": call.id, "output": "x"}],
        )
    again = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=20
    )
    assert again.status == "requires_action"  # the thread took a new run
    now[0] += 601  # and a message expires it too, rather than being refused
    await client.beta.threads.messages.create(thread_id=thread.id, role="user", content="x")


async def test_a_run_that_goes_on_past_its_time_ends_and_its_code_is_stopped(
    doors: Doors,
) -> None:
    """Past ``run_timeout`` a run ends ``expired`` (its open step too) and a response
    ``failed``, each saying why; the code running then is stopped, not waited for."""
    services = doors.app.state.services
    services.runner.run_timeout = services.responder.run_timeout = 0.3
    client = doors.client()
    helper = await code_assistant(client)
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": "RUN: SLEEP 30"}]
    )
    started = asyncio.get_running_loop().time()
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper, poll_interval_ms=20
    )
    assert run.status == "expired" and run.expires_at is not None
    assert asyncio.get_running_loop().time() - started < 10  # the sleep did not finish
    steps = await client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id)
    assert [s.status for s in steps.data] == ["expired"]
    await client.beta.threads.messages.create(thread_id=thread.id, role="user", content="hi")
    again = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper, poll_interval_ms=20
    )
    assert again.status == "completed"  # the thread goes on
    tools: Any = [{"type": "code_interpreter", "container": {"type": "auto"}}]
    response = await client.responses.create(model=MODEL, input="RUN: SLEEP 30", tools=tools)
    assert response.status == "failed" and response.error is not None
    assert "past 0.3 s" in response.error.message
    assert [getattr(item, "status", None) for item in response.output] == ["incomplete"]


async def test_another_keys_objects_are_not_found(doors: Doors) -> None:
    alice, bob = doors.client(KEY_A), doors.client(KEY_B)
    helper = await code_assistant(alice)
    thread = await alice.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    response = await alice.responses.create(model=MODEL, input="hi")
    conversation = await alice.conversations.create()
    for attempt in (
        bob.beta.assistants.retrieve(helper),
        bob.beta.threads.retrieve(thread.id),
        bob.beta.threads.runs.create(thread_id=thread.id, assistant_id=helper),
        bob.responses.retrieve(response.id),
        bob.responses.create(model=MODEL, input="hi", previous_response_id=response.id),
        bob.conversations.retrieve(conversation.id),
        bob.conversations.items.list(conversation.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await attempt


async def test_unknown_fields_are_refused_and_what_clients_send_is_accepted(
    doors: Doors, fake_model: FakeModel
) -> None:
    client = doors.client()
    with pytest.raises(openai.BadRequestError, match="no_such_field"):
        await client.responses.create(model=MODEL, input="hi", extra_body={"no_such_field": 1})
    start = len(fake_model.requests)
    answer = await client.responses.create(
        model=MODEL,
        input="hi",
        text={"format": {"type": "json_schema", "name": "reply", "schema": {"type": "object"}}},
        reasoning={"effort": "low"},
        top_logprobs=2,
        service_tier="auto",
        prompt_cache_key="k",
        prompt_cache_retention="24h",
        safety_identifier="user-1",
        user="user-1",
    )
    assert answer.status == "completed"
    sent = fake_model.requests[start]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": {"type": "object"}},
    }
    assert sent["reasoning_effort"] == "low" and sent["top_logprobs"] == 2
    assert sent["user"] == "user-1" and "service_tier" not in sent
    helper = await client.beta.assistants.create(
        model=MODEL, response_format={"type": "json_object"}
    )
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    start = len(fake_model.requests)
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, reasoning_effort="high", poll_interval_ms=20
    )
    assert run.status == "completed", run.last_error
    sent = fake_model.requests[start]
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["reasoning_effort"] == "high"


async def test_history_a_client_carries_back_is_accepted_turn_after_turn(doors: Doors) -> None:
    """The 'carry the history yourself' pattern: input = earlier input + output, ids and
    all. Turn 3 had been a 500 (the ids were stored as they came)."""
    client = doors.client()
    history: list[Any] = []
    for turn in range(4):
        history.append({"role": "user", "content": f"turn {turn}"})
        response = await client.responses.create(model=MODEL, input=history)
        assert response.status == "completed"
        history += [item.model_dump(exclude_none=True) for item in response.output]
    items = await client.responses.input_items.list(response.id, order="asc", limit=3)
    assert [i.type for i in items.data] == ["message"] * 3
    rest = await client.responses.input_items.list(
        response.id, order="asc", after=items.data[-1].id
    )
    assert len(items.data) + len(rest.data) == len(history) - 1


async def test_a_request_the_model_refuses_is_a_400_and_nothing_is_kept(
    doors: Doors, fake_model: FakeModel
) -> None:
    client = doors.client()
    with pytest.raises(openai.BadRequestError, match="scripted failure"):
        await client.responses.create(model=MODEL, input="FAIL 400")
    listed = await client.conversations.create()  # the server goes on
    assert listed.id.startswith("conv_")
    # A stream already begun ends failed, as OpenAI's does.
    stream = await client.responses.create(model=MODEL, input="FAIL 400", stream=True)
    kinds = [event.type async for event in stream]
    assert kinds[-1] == "response.failed"


async def test_a_conversation_carries_its_turns_and_its_items_can_be_deleted(
    doors: Doors, fake_model: FakeModel
) -> None:
    client = doors.client()
    conversation = await client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "remember 7"}],
        metadata={"topic": "t"},
    )
    first = await client.responses.create(model=MODEL, input="hi", conversation=conversation.id)
    start = len(fake_model.requests)
    await client.responses.create(model=MODEL, input="and again", conversation=conversation.id)
    sent = [m["content"] for m in fake_model.requests[start]["messages"]]
    assert sent == ["remember 7", "hi", "Hello from the fake model.", "and again"]
    items = await client.conversations.items.list(conversation.id, order="asc")
    assert [i.type for i in items.data] == ["message"] * 5
    first_item = items.data[0].id
    assert first_item is not None
    await client.conversations.items.delete(first_item, conversation_id=conversation.id)
    start = len(fake_model.requests)
    await client.responses.create(model=MODEL, input="last", conversation=conversation.id)
    assert "remember 7" not in [m["content"] for m in fake_model.requests[start]["messages"]]
    with pytest.raises(openai.BadRequestError, match="Mutually exclusive"):
        await client.responses.create(
            model=MODEL, input="x", conversation=conversation.id, previous_response_id=first.id
        )
    deleted = await client.conversations.delete(conversation.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model=MODEL, input="x", conversation=conversation.id)


async def test_a_background_response_cancelled_mid_code_closes_its_items(doors: Doors) -> None:
    client = doors.client()
    response = await client.responses.create(
        model=MODEL,
        input="RUN: SLEEP 5",
        tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
        background=True,
    )
    for _ in range(200):
        found = await client.responses.retrieve(response.id)
        if found.output:
            break
        await asyncio.sleep(0.01)
    cancelled = await client.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    assert all(item.status == "incomplete" for item in cancelled.output)  # type: ignore[union-attr]


async def test_images_go_as_image_parts_or_as_markers_to_a_model_that_takes_none(
    doors: Doors, fake_model: FakeModel
) -> None:
    client = doors.client()
    image = {"type": "input_image", "image_url": "https://example.test/chart.png"}
    question = {"role": "user", "content": [{"type": "input_text", "text": "what is it"}, image]}
    start = len(fake_model.requests)
    seen = await client.responses.create(model=MODEL, input=[question])  # type: ignore[list-item]
    assert seen.status == "completed"
    parts = fake_model.requests[start]["messages"][-1]["content"]
    assert parts[1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.test/chart.png", "detail": "auto"},
    }
    fake_model.takes_images = False
    try:
        start = len(fake_model.requests)
        named = await client.responses.create(model=MODEL, input=[question])  # type: ignore[list-item]
        assert named.status == "completed", named.error
        sent = fake_model.requests[start]["messages"][-1]["content"]
        assert sent == "what is it\n[image https://example.test/chart.png]"
    finally:
        fake_model.takes_images = True


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


async def test_images_given_by_file_id_reach_the_model_and_are_the_owners_only(
    doors: Doors, fake_model: FakeModel
) -> None:
    alice, bob = doors.client(KEY_A), doors.client(KEY_B)
    chart = await alice.files.create(file=("chart.png", PNG), purpose="vision")
    doors.engine.files[chart.id] = doors.engine.files[chart.id].model_copy(
        update={"mime": "image/png"}
    )
    helper = await alice.beta.assistants.create(model=MODEL)
    thread = await alice.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it"},
                    {"type": "image_file", "image_file": {"file_id": chart.id}},
                ],
            }
        ]
    )
    start = len(fake_model.requests)
    run = await alice.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=20
    )
    assert run.status == "completed", run.last_error
    parts = fake_model.requests[start]["messages"][-1]["content"]
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert parts[1] == {"type": "image_url", "image_url": {"url": data_url, "detail": "auto"}}
    start = len(fake_model.requests)
    shown = {"type": "input_image", "file_id": chart.id, "detail": "low"}
    question: Any = [{"role": "user", "content": [shown]}]
    answer = await alice.responses.create(model=MODEL, input=question)
    assert answer.status == "completed"
    sent = fake_model.requests[start]["messages"][-1]["content"]
    assert sent == [{"type": "image_url", "image_url": {"url": data_url, "detail": "low"}}]
    # Another key's file is not found, whichever way it is named.
    bob_thread = await bob.beta.threads.create()
    with pytest.raises(openai.NotFoundError):
        await bob.beta.threads.messages.create(
            thread_id=bob_thread.id,
            role="user",
            content=[{"type": "image_file", "image_file": {"file_id": chart.id}}],
        )
    with pytest.raises(openai.NotFoundError):
        await bob.responses.create(model=MODEL, input=question)
    items: Any = [{"type": "message", **question[0]}]
    with pytest.raises(openai.NotFoundError):
        await bob.conversations.create(items=items)
