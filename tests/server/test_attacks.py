"""What a hostile (or careless) client sends the server, through the doors in this process
(``test_doors``' app, fake engine and scripted model): ids it chooses, names that are not
ASCII, JSON that is not JSON, metadata past OpenAI's limits. Each is a 4xx that changes
nothing, or is served as it should be; never a 500."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx2
import openai
import pytest

from interp.server import _wire_responses as rwire

from .fake_model import MODEL
from .test_doors import KEY_A, KEY_B, Doors, code_assistant, doors, fake_model, pytestmark

__all__ = ["doors", "fake_model", "pytestmark"]


async def test_items_carried_by_the_client_keep_their_ids_and_never_collide(
    doors: Doors,
) -> None:
    """The documented "carry the history yourself" pattern (input = earlier input + the
    response's output) runs turn after turn; ids a client gives are its own (another key's
    ids mean nothing), and two items with one id in one request are OpenAI's 400, before
    anything is stored."""
    alice, bob = doors.client(KEY_A), doors.client(KEY_B)
    history: list[Any] = [{"type": "message", "role": "user", "content": "hi", "id": "msg_1"}]
    for turn in range(4):
        answered = await alice.responses.create(model=MODEL, input=history)
        assert answered.status == "completed"
        found = await alice.responses.retrieve(answered.id)
        assert found.output_text == answered.output_text
        history += [item.model_dump(exclude_none=True) for item in answered.output]
        history.append({"type": "message", "role": "user", "content": f"turn {turn}"})
    items = await alice.responses.input_items.list(answered.id)
    assert [item.id for item in items.data][-1] == "msg_1"  # newest first
    store = doors.app.state.services.store
    before = await store.every(rwire.RESPONSE, "in_progress")
    twice: Any = [
        {"type": "message", "role": "user", "content": "a", "id": "msg_twice"},
        {"type": "message", "role": "user", "content": "b", "id": "msg_twice"},
    ]
    with pytest.raises(openai.BadRequestError, match="Duplicate item found with id msg_twice"):
        await alice.responses.create(model=MODEL, input=twice)
    assert await store.every(rwire.RESPONSE, "in_progress") == before == []
    # Bob sending Alice's ids learns nothing: they are his items' ids like any other.
    helper = await code_assistant(alice)
    for taken in (helper, answered.id, "msg_1", "msg_unheard_of"):
        mine: Any = [{"type": "message", "role": "user", "content": "x", "id": taken}]
        assert (await bob.responses.create(model=MODEL, input=mine)).status == "completed"


async def test_a_conversations_items_are_added_once(doors: Doors) -> None:
    client = doors.client()
    item: Any = {"type": "message", "role": "user", "content": "hi", "id": "msg_first"}
    conversation = await client.conversations.create(items=[item])
    with pytest.raises(openai.BadRequestError, match="Duplicate item found with id msg_first"):
        await client.conversations.items.create(conversation.id, items=[item])
    with pytest.raises(openai.BadRequestError, match="Duplicate item"):
        await client.conversations.items.create(conversation.id, items=[item | {"id": "a"}] * 2)
    # A response that sends again what the conversation holds goes on; it is not added twice.
    answered = await client.responses.create(
        model=MODEL, input=[item], conversation=conversation.id
    )
    assert answered.status == "completed"
    listed = await client.conversations.items.list(conversation.id, order="asc")
    assert [getattr(i, "id", None) for i in listed.data][:1] == ["msg_first"]
    assert len(listed.data) == 2  # the first message and the reply


async def test_a_file_named_in_any_script_downloads_under_its_name(doors: Doors) -> None:
    client = doors.client()
    for name in ("数据.csv", "résumé 😀.txt", "plain.txt"):
        uploaded = await client.files.create(file=(name, b"a,b\n1,2\n"), purpose="assistants")
        assert uploaded.filename == name
        content = await client.files.with_raw_response.content(uploaded.id)
        disposition = content.headers["content-disposition"]
        assert disposition.isascii()
        if name == "plain.txt":
            assert disposition == 'attachment; filename="plain.txt"'
        else:
            encoded = disposition.split("filename*=UTF-8''", 1)[1]
            assert urllib.parse.unquote(encoded) == name
        assert content.content == b"a,b\n1,2\n"


async def test_json_that_is_not_json_and_metadata_past_the_limits_are_refused(
    doors: Doors,
) -> None:
    """``NaN`` and ``Infinity`` (Python writes them, JavaScript's parser refuses them) in
    any field, and metadata past 16 pairs, are OpenAI's 400, and nothing is stored."""
    client = doors.client()
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=doors.app.state.asgi))
    headers = {"authorization": f"Bearer {KEY_A}", "content-type": "application/json"}
    bodies = {
        "/v1/assistants": b'{"model": "m", "tools": [{"type": "function", "function":'
        b' {"name": "f", "parameters": {"type": "object", "maximum": NaN}}}]}',
        "/v1/responses": b'{"model": "m", "input": "hi", "text": {"format": {"type":'
        b' "json_schema", "name": "n", "schema": {"maximum": Infinity}}}}',
    }
    for path, body in bodies.items():
        answer = await http.post(f"http://doors{path}", content=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert "finite number" in answer.json()["error"]["message"]
    assert (await client.beta.assistants.list()).data == []
    many = {f"key{i}": "value" for i in range(17)}
    with pytest.raises(openai.BadRequestError, match="metadata"):
        await client.beta.assistants.create(model=MODEL, metadata=many)
    with pytest.raises(openai.BadRequestError, match="metadata"):
        await client.beta.threads.create(metadata=many)
    with pytest.raises(openai.BadRequestError, match="metadata"):
        await client.responses.create(model=MODEL, input="hi", metadata=many)
    with pytest.raises(openai.BadRequestError, match="metadata"):
        await client.beta.assistants.create(model=MODEL, metadata={"k" * 65: "v"})
    sixteen = {f"key{i}": "v" * 512 for i in range(16)}
    assert (await client.beta.threads.create(metadata=sixteen)).metadata == sixteen
    await http.aclose()


async def test_a_run_refused_for_capacity_tells_the_client_to_retry(doors: Doors) -> None:
    client = doors.client()
    helper = await code_assistant(client)
    doors.engine.full = True
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "RUN: 1"}])
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper, poll_interval_ms=20
    )
    assert run.status == "failed" and run.last_error is not None
    assert run.last_error.code == "rate_limit_exceeded"
    assert "sessions are open" in run.last_error.message
    with pytest.raises(openai.RateLimitError) as refused:
        await client.containers.create(name="no room")
    assert refused.value.response.headers["retry-after"] == "1"
