"""The upstream model: any OpenAI-compatible chat-completions endpoint, streamed.

The ``openai`` package is the client. A streamed completion becomes a sequence of
``Piece``s: text, the start of a tool call, and the code of a ``python`` call as it grows
(its JSON arguments are decoded partially with ``jiter`` while they stream). Failures of
the upstream become ``UpstreamError`` with the code a run's ``last_error`` carries.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jiter
import openai

CODE_TOOL = "python"


@dataclass
class ToolCall:
    index: int
    id: str
    name: str
    arguments: str = ""
    code: str = ""
    """The code of a ``python`` call so far (decoded from the partial arguments)."""


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class CallStarted:
    call: ToolCall


@dataclass(frozen=True)
class CodeDelta:
    call: ToolCall
    text: str


@dataclass
class Finished:
    calls: list[ToolCall] = field(default_factory=list)
    text: str = ""
    usage: dict[str, int] | None = None
    finish_reason: str | None = None


Piece = TextDelta | CallStarted | CodeDelta | Finished


class UpstreamError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def partial_code(arguments: str) -> str:
    """The ``code`` string of partial JSON arguments as far as it has arrived.

    Models that send the code itself rather than JSON get it back as it is.
    """
    stripped = arguments.lstrip()
    if not stripped:
        return ""
    if not stripped.startswith(("{", '"')):
        return arguments
    try:
        parsed = jiter.from_json(arguments.encode(), partial_mode="trailing-strings")
    except ValueError:
        return ""
    if isinstance(parsed, str):
        return parsed
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) else ""


def chat_tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A tool call as an assistant message of a chat request carries it."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def code_arguments(code: str) -> str:
    """The arguments of a ``python`` call of ``code``, as the model is offered it."""
    return json.dumps({"code": code})


def final_code(call: ToolCall) -> str:
    """The complete code of a finished ``python`` call; ``UpstreamError`` if unreadable."""
    try:
        parsed = jiter.from_json(call.arguments.encode()) if call.arguments.strip() else {}
    except ValueError:
        if call.arguments.lstrip().startswith(("{", '"')):
            raise UpstreamError(
                "invalid_prompt",
                f"the model's {CODE_TOOL} call had arguments that are not valid JSON",
            ) from None
        return call.arguments
    if isinstance(parsed, str):
        return parsed
    code = parsed.get("code") if isinstance(parsed, dict) else None
    if not isinstance(code, str) or not code.strip():
        raise UpstreamError("invalid_prompt", f"the model's {CODE_TOOL} call had no code")
    return code


class Model:
    def __init__(self, *, base_url: str, api_key: str, timeout: float = 600.0) -> None:
        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=1
        )

    async def close(self) -> None:
        await self.client.close()

    async def models(self) -> list[dict[str, Any]]:
        page = await self.client.models.list()
        return [model.model_dump() for model in page.data]

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[Piece]:
        """Stream one completion as pieces; the last one is ``Finished``."""
        done = Finished()
        calls: dict[int, ToolCall] = {}
        try:
            stream = await self.client.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            )
            async for chunk in stream:
                if chunk.usage is not None:
                    done.usage = {
                        "prompt_tokens": chunk.usage.prompt_tokens,
                        "completion_tokens": chunk.usage.completion_tokens,
                        "total_tokens": chunk.usage.total_tokens,
                    }
                for choice in chunk.choices[:1]:
                    if choice.finish_reason:
                        done.finish_reason = choice.finish_reason
                    delta = choice.delta
                    if delta.content:
                        done.text += delta.content
                        yield TextDelta(delta.content)
                    for part in delta.tool_calls or []:
                        call = calls.get(part.index)
                        if call is None:
                            name = part.function.name if part.function else None
                            call = ToolCall(
                                index=part.index,
                                id=part.id or f"call_{len(calls)}",
                                name=name or "",
                            )
                            calls[part.index] = call
                            yield CallStarted(call)
                        arguments = part.function.arguments if part.function else None
                        if not arguments:
                            continue
                        call.arguments += arguments
                        if call.name == CODE_TOOL:
                            code = partial_code(call.arguments)
                            if code.startswith(call.code) and len(code) > len(call.code):
                                added, call.code = code[len(call.code) :], code
                                yield CodeDelta(call, added)
        except openai.APIConnectionError as exc:
            kind = "timed out" if isinstance(exc, openai.APITimeoutError) else "is unreachable"
            raise UpstreamError("server_error", f"the model endpoint {kind}") from None
        except openai.RateLimitError as exc:
            raise UpstreamError(
                "rate_limit_exceeded", f"the model endpoint is rate limited: {exc.message}"
            ) from None
        except openai.APIStatusError as exc:
            code = "invalid_prompt" if 400 <= exc.status_code < 500 else "server_error"
            raise UpstreamError(
                code, f"the model endpoint answered {exc.status_code}: {exc.message}"
            ) from None
        except openai.APIError as exc:
            raise UpstreamError("server_error", f"the model endpoint failed: {exc}") from None
        done.calls = [calls[index] for index in sorted(calls)]
        yield done
