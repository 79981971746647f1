"""The OpenAI Agents SDK as a client of `interp serve`: its Responses model with the
``ModelSettings`` it sends, code interpreter as a hosted tool, and its conversation
session (the Conversations API) carrying the history from one run to the next."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    CodeInterpreterTool,
    ModelSettings,
    OpenAIConversationsSession,
    OpenAIResponsesModel,
    Runner,
    set_tracing_disabled,
)

from .conftest import Server
from .fake_model import FakeModel

pytestmark = pytest.mark.docker


def test_an_agent_runs_with_its_model_settings_and_a_conversation_session(
    server: Server, fake_model: FakeModel
) -> None:
    set_tracing_disabled(True)

    async def scenario() -> tuple[Any, Any, list[Any]]:
        client = openai.AsyncOpenAI(base_url=server.url, api_key="anything", max_retries=0)
        async with client:
            agent = Agent(
                name="analyst",
                instructions="Be brief.",
                model=OpenAIResponsesModel(model="fake-model", openai_client=client),
                model_settings=ModelSettings(
                    temperature=0.3,
                    top_logprobs=2,
                    prompt_cache_retention="24h",
                    truncation="auto",
                    metadata={"app": "test"},
                ),
                tools=[
                    CodeInterpreterTool(
                        tool_config={"type": "code_interpreter", "container": {"type": "auto"}}
                    )
                ],
            )
            session = OpenAIConversationsSession(openai_client=client)
            first = await Runner.run(agent, "RUN: print(6 * 7)", session=session)
            second = await Runner.run(agent, "and hello again", session=session)
            items = await session.get_items()
            return first, second, items

    start = len(fake_model.requests)
    first, second, items = asyncio.run(scenario())
    assert first.final_output == "Result: 42"
    assert second.final_output == "Hello from the fake model."
    sent = fake_model.requests[start:]
    assert sent[0]["temperature"] == 0.3 and sent[0]["top_logprobs"] == 2
    # The second run's request carries the first run, from the conversation session.
    last = [str(m.get("content")) for m in sent[-1]["messages"]]
    assert last[0] == "Be brief." and last[-1] == "and hello again"
    assert "RUN: print(6 * 7)" in last and "Result: 42" in last
    roles = [item.get("role") or item.get("type") for item in items]
    assert roles[0] == "user" and roles[-1] == "assistant"
    assert "code_interpreter_call" in roles
