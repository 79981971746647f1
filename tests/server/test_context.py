"""Context fitting and run semantics against a model with an 8192-token window that refuses
what is over it (400 ``context_length_exceeded``), as vLLM and OpenAI do: long threads and
chains run with every request within the window; ``truncation_strategy``,
``max_prompt_tokens``, ``max_completion_tokens``, ``finish_reason``, ``max_tool_calls``
and ``truncation`` mean what OpenAI says; a run that ends early leaves nothing open."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import openai
import pytest

from .conftest import Server, server_sql, start_server
from .fake_model import FakeModel

pytestmark = [
    pytest.mark.docker,
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The Assistants API is deprecated:DeprecationWarning"),
]

WINDOW = 8192
TEXT = (
    "the quarterly revenue table lists each region with its sales units returns and margin"
    " figures so that analysts can compare trends across years"
)


def note(i: int, words: int = 60) -> str:
    """A message of about ``words`` words (the model counts each as a token)."""
    vocabulary = TEXT.split(" ")
    return f"note {i}: " + " ".join(vocabulary[(i + k) % len(vocabulary)] for k in range(words))


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeModel]:
    with FakeModel(window=WINDOW) as model:
        yield model


def code_assistant(client: openai.OpenAI, **extra: Any) -> str:
    return client.beta.assistants.create(
        model="fake-model", tools=[{"type": "code_interpreter"}], **extra
    ).id


def sent_since(fake: FakeModel, start: int) -> list[dict[str, Any]]:
    return fake.requests[start:]


def contents(request: dict[str, Any]) -> list[str]:
    return [str(m.get("content") or "") for m in request["messages"]]


def test_a_2000_message_thread_runs_with_every_request_within_the_window(
    client: openai.OpenAI, fake_model: FakeModel
) -> None:
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": note(i)} for i in range(32)]
    )

    def add(i: int) -> None:
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content=note(i))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(add, range(32, 1999)))
    client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="RUN: print(6 * 7)"
    )
    start, refused = len(fake_model.requests), len(fake_model.refused)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=code_assistant(client), poll_interval_ms=100
    )
    assert run.status == "completed", run.last_error
    sent = sent_since(fake_model, start)
    assert len(sent) == 2 and len(fake_model.refused) == refused
    for request in sent:
        assert request["prompt_tokens"] <= WINDOW
    first = contents(sent[0])
    assert first[-1] == "RUN: print(6 * 7)"
    assert not any(c.startswith("note 0:") for c in first), "the oldest messages are left out"
    # Once the model's usage has corrected the estimate, most of the window is used.
    assert sent[1]["prompt_tokens"] > WINDOW // 2
    assert contents(sent[1])[-1].strip() == "42"
    # The same thread runs again (it went over the window once and still works).
    again = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=code_assistant(client), poll_interval_ms=100
    )
    assert again.status == "completed", again.last_error


def test_last_messages_sends_that_many_of_the_threads_messages(
    client: openai.OpenAI, fake_model: FakeModel
) -> None:
    roles: list[Literal["user", "assistant"]] = ["user", "assistant"] * 3
    thread = client.beta.threads.create(
        messages=[{"role": r, "content": f"m{i}"} for i, r in enumerate(roles, 1)]
    )
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="m7")
    start = len(fake_model.requests)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=code_assistant(client, instructions="Be brief."),
        truncation_strategy={"type": "last_messages", "last_messages": 3},
        poll_interval_ms=100,
    )
    assert run.status == "completed", run.last_error
    assert run.truncation_strategy is not None and run.truncation_strategy.last_messages == 3
    assert contents(sent_since(fake_model, start)[0]) == ["Be brief.", "m5", "m6", "m7"]


def test_max_prompt_tokens_drops_earlier_messages_or_ends_the_run_incomplete(
    client: openai.OpenAI, fake_model: FakeModel
) -> None:
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": note(i, 100)} for i in range(30)]
    )
    start = len(fake_model.requests)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=code_assistant(client),
        max_prompt_tokens=600,
        poll_interval_ms=100,
    )
    assert run.status == "completed", run.last_error
    (sent,) = sent_since(fake_model, start)
    assert sent["prompt_tokens"] <= 600
    assert contents(sent)[-1] == note(29, 100) and len(sent["messages"]) < 30
    # The newest message alone is over the limit: the model is not asked.
    big = client.beta.threads.create(messages=[{"role": "user", "content": note(0, 1000)}])
    start = len(fake_model.requests)
    cut = client.beta.threads.runs.create_and_poll(
        thread_id=big.id,
        assistant_id=code_assistant(client),
        max_prompt_tokens=256,
        poll_interval_ms=100,
    )
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_prompt_tokens"
    assert len(fake_model.requests) == start


def test_max_completion_tokens_and_a_reply_cut_for_length_end_incomplete(
    client: openai.OpenAI, fake_model: FakeModel
) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    start = len(fake_model.requests)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=code_assistant(client),
        max_completion_tokens=3,
        poll_interval_ms=100,
    )
    assert run.status == "incomplete" and run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_completion_tokens"
    assert sent_since(fake_model, start)[0]["max_completion_tokens"] == 3
    assert run.usage is not None and run.usage.completion_tokens == 3
    reply = client.beta.threads.messages.list(thread_id=thread.id, order="desc").data[0]
    assert reply.status == "incomplete" and reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_tokens"
    assert reply.content[0].type == "text" and reply.content[0].text.value == "Hello from the"
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id)
    assert [s.status for s in steps.data] == ["completed"]


def assert_nothing_open(client: openai.OpenAI, thread_id: str, run_id: str) -> None:
    for message in client.beta.threads.messages.list(thread_id=thread_id).data:
        assert message.status != "in_progress", message
    for step in client.beta.threads.runs.steps.list(thread_id=thread_id, run_id=run_id).data:
        assert step.status != "in_progress", step


def test_a_stream_cut_short_fails_the_run_and_keeps_the_text_it_sent(
    client: openai.OpenAI,
) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "DROP"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=code_assistant(client), poll_interval_ms=100
    )
    assert run.status == "failed" and run.last_error is not None
    assert run.last_error.code == "server_error"
    assert "ended before it finished" in run.last_error.message
    assert_nothing_open(client, thread.id, run.id)
    reply = client.beta.threads.messages.list(thread_id=thread.id, order="desc").data[0]
    assert reply.status == "incomplete" and reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "run_failed"
    assert reply.content[0].type == "text" and reply.content[0].text.value == "partial text "


def test_a_cancelled_run_leaves_nothing_in_progress(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "RUN: import time; time.sleep(30)"}]
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=code_assistant(client))
    deadline = time.monotonic() + 30
    while not client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
    assert cancelled.status == "cancelled"
    assert_nothing_open(client, thread.id, run.id)
    (step,) = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data
    assert step.status == "cancelled" and step.cancelled_at is not None


def weather_assistant(client: openai.OpenAI) -> str:
    return client.beta.assistants.create(
        model="fake-model",
        tools=[
            {"type": "code_interpreter"},
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}},
            },
        ],
    ).id


def test_a_thread_waiting_for_tool_outputs_is_active(client: openai.OpenAI) -> None:
    """A second run or a new message on a thread in requires_action is OpenAI's 400: the
    second run had been accepted, and the first one's outputs then stranded it queued."""
    helper = weather_assistant(client)
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": 'CALL get_weather {"city": "Oslo"}'}]
    )
    waiting = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper, poll_interval_ms=100
    )
    assert waiting.status == "requires_action"
    assert waiting.expires_at is not None and waiting.expires_at > time.time() + 500
    with pytest.raises(openai.BadRequestError, match="active run"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=helper)
    with pytest.raises(openai.BadRequestError, match="Can't add messages"):
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content="hi")
    assert waiting.required_action is not None
    call = waiting.required_action.submit_tool_outputs.tool_calls[0]
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id,
        run_id=waiting.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}],
        poll_interval_ms=100,
    )
    assert done.status == "completed", done.last_error
    assert done.expires_at is None
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="thanks")


def test_metadata_set_while_a_run_runs_is_kept(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "RUN: import time; time.sleep(1.5)"}]
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=code_assistant(client))
    deadline = time.monotonic() + 30
    while not client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    updated = client.beta.threads.runs.update(
        thread_id=thread.id, run_id=run.id, metadata={"tag": "kept"}
    )
    assert updated.metadata == {"tag": "kept"} and updated.status == "in_progress"
    done = client.beta.threads.runs.poll(thread_id=thread.id, run_id=run.id, poll_interval_ms=100)
    assert done.status == "completed" and done.metadata == {"tag": "kept"}


def test_a_failed_thread_create_leaves_no_thread(server: Server, client: openai.OpenAI) -> None:
    """Its second message names a missing file: a 404, and nothing of it is stored (the
    thread and its first message had been, under an id nobody got)."""

    def threads() -> int:
        ((found,),) = server_sql(
            server, "SELECT count(*) FROM interp_objects WHERE kind = 'thread'"
        )
        return int(found)

    before = threads()
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.create(
            messages=[
                {"role": "user", "content": "one"},
                {
                    "role": "user",
                    "content": "two",
                    "attachments": [{"file_id": "file-missing", "tools": []}],
                },
            ]
        )
    assert threads() == before


def test_a_40_deep_chain_fits_with_auto_truncation_and_disabled_is_a_400(
    client: openai.OpenAI, fake_model: FakeModel
) -> None:
    previous = None
    start = len(fake_model.requests)
    for i in range(40):
        response = client.responses.create(
            model="fake-model",
            input=note(i, 400),
            previous_response_id=previous,
            truncation="auto",
        )
        assert response.status == "completed", response.error
        previous = response.id
    sent = sent_since(fake_model, start)
    assert len(sent) == 40
    assert all(request["prompt_tokens"] <= WINDOW for request in sent)
    last = contents(sent[-1])
    assert last[-1] == note(39, 400) and not any(c == note(0, 400) for c in last)
    assert len(last) > 2, "earlier turns that fit are sent"
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="fake-model", input="go on", previous_response_id=previous)
    assert refused.value.code == "context_length_exceeded"
    assert len(fake_model.requests) == start + 40


def test_max_tool_calls_and_max_output_tokens_bound_the_response(
    client: openai.OpenAI, fake_model: FakeModel
) -> None:
    looping = client.responses.create(
        model="fake-model",
        input="LOOP RUN: print('once')",
        tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
        max_tool_calls=1,
    )
    calls = [item for item in looping.output if item.type == "code_interpreter_call"]
    assert [c.status for c in calls[:2]] == ["completed", "incomplete"]
    assert all(c.status == "incomplete" for c in calls[1:])
    start = len(fake_model.requests)
    cut = client.responses.create(model="fake-model", input="LONG", max_output_tokens=16)
    assert fake_model.requests[start]["max_completion_tokens"] == 16
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert cut.output[0].type == "message" and cut.output[0].status == "incomplete"
    assert len(cut.output_text.split()) == 16


def run_long_thread(client: openai.OpenAI) -> str:
    """A thread of 24 notes of 500 words (over an 8192-token window), run to its end."""
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": note(i, 500)} for i in range(24)]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=code_assistant(client), poll_interval_ms=100
    )
    assert run.status == "completed", run.last_error
    return thread.id


def test_a_model_whose_window_is_not_advertised_is_fitted_after_its_first_refusal(
    tmp_path: Path,
) -> None:
    with FakeModel(window=WINDOW, advertise=False) as model:
        server = start_server(tmp_path, model.url, env={"INTERP_TOOL_OUTPUTS_TIMEOUT": "1"})
        try:
            client = server.client()
            thread = run_long_thread(client)
            assert len(model.refused) == 1 and model.refused[0] > WINDOW
            assert model.requests[-1]["prompt_tokens"] <= WINDOW
            again = client.beta.threads.runs.create_and_poll(
                thread_id=thread, assistant_id=code_assistant(client), poll_interval_ms=100
            )
            assert again.status == "completed" and len(model.refused) == 1
            expiring_outputs(client)
        finally:
            server.stop()


def test_an_ollama_models_window_is_the_one_it_allocated(tmp_path: Path) -> None:
    """Ollama names no window in /v1/models and cuts an over-long prompt from its start
    without a word: the window it has allocated (/api/ps) is the one fitted, from the
    first request, not the model's trained length (/api/show)."""
    with FakeModel(window=WINDOW, ollama=True) as model:
        server = start_server(tmp_path, model.url)
        try:
            client = server.client()
            run_long_thread(client)
            assert model.refused == []
            assert all(request["prompt_tokens"] <= WINDOW for request in model.requests)
        finally:
            server.stop()


def expiring_outputs(client: openai.OpenAI) -> None:
    """With tool_outputs_timeout 1 s, a run waiting for outputs ends expired, its step
    too; its outputs are then refused and the thread takes a new run."""
    helper = weather_assistant(client)
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": 'CALL get_weather {"city": "Oslo"}'}]
    )
    waiting = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper, poll_interval_ms=100
    )
    # Its second may be over before a poll sees it waiting (the door tests move a clock).
    assert waiting.status in ("requires_action", "expired"), waiting.status
    assert waiting.expires_at is not None
    deadline = time.monotonic() + 15
    while (
        found := client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=waiting.id)
    ).status != "expired":
        assert time.monotonic() < deadline, found.status
        time.sleep(0.1)
    (step,) = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=waiting.id).data
    assert step.status == "expired" and step.expired_at is not None
    (call,) = step.step_details.tool_calls  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError, match="expired"):
        client.beta.threads.runs.submit_tool_outputs(
            thread_id=thread.id,
            run_id=waiting.id,
            tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}],
        )
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="hello")
    fresh = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper, poll_interval_ms=100
    )
    assert fresh.status == "completed", fresh.last_error
