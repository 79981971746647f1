"""The upstream model: any OpenAI-compatible chat-completions endpoint, streamed.

The ``openai`` package is the client, but the request body is posted as it is: the
messages already have the wire shape, and the SDK's typed transform of them costs 150-240
us per message on the event loop (seconds on a long thread). A streamed completion becomes
a sequence of ``Piece``s: text, the start of a tool call, and the code of a ``python`` call
as it grows (its JSON arguments are decoded partially with ``jiter`` while they stream),
then ``Finished`` with the ``finish_reason``. One deadline bounds a whole request (retries
included) and an idle timeout a stream that stops sending. Failures of the upstream become
``UpstreamError`` with the code a run's ``last_error`` carries; a request over the model's
context window is ``ContextTooLong``, with the window when the upstream says it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jiter
import openai
from openai.types.chat import ChatCompletionChunk

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
    """``None`` when the stream ended without one: it was cut short."""
    started: bool = False


Piece = TextDelta | CallStarted | CodeDelta | Finished


class UpstreamError(Exception):
    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        """The upstream's HTTP status, when it answered one."""


class ContextTooLong(UpstreamError):
    """The upstream refused the request as over its context window (``limit`` tokens, when
    it said how many)."""

    def __init__(self, message: str, limit: int | None) -> None:
        super().__init__("context_length_exceeded", message, status=400)
        self.limit = limit


_CONTEXT_ERROR = re.compile(
    r"context.length|context window|maximum context|prompt is too long|too many tokens", re.I
)
_CONTEXT_LIMIT = re.compile(
    r"(?:maximum context length|context length|context window)(?: is| of)?\s+(\d+)", re.I
)
_WINDOW_FIELDS = ("max_model_len", "context_length", "context_window", "max_context_length")
OLLAMA_DEFAULT_WINDOW = 4096
"""Where servers put a model's context window in ``/v1/models``: vLLM, LM Studio and
OpenRouter, others."""


def _upstream_message(exc: openai.APIStatusError) -> str:
    """What the upstream said, once (the SDK's own message repeats the whole body)."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:500]
    return exc.message[:500]


def _status_error(exc: openai.APIStatusError) -> UpstreamError:
    said = _upstream_message(exc)
    message = f"the model endpoint answered {exc.status_code}: {said}"
    code = exc.body.get("code") if isinstance(exc.body, dict) else None
    if exc.status_code in (400, 413, 422) and (
        code == "context_length_exceeded" or _CONTEXT_ERROR.search(said)
    ):
        found = _CONTEXT_LIMIT.search(said)
        return ContextTooLong(message, int(found.group(1)) if found else None)
    if isinstance(exc, openai.RateLimitError):
        return UpstreamError(
            "rate_limit_exceeded", f"the model endpoint is rate limited: {said}", status=429
        )
    kind = "invalid_prompt" if 400 <= exc.status_code < 500 else "server_error"
    return UpstreamError(kind, message, status=exc.status_code)


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
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 600.0,
        idle_timeout: float = 60.0,
    ) -> None:
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        # The deadline below bounds a request with its retry; the client's own timeout only
        # backs it up.
        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=1
        )
        self._listed: dict[str, dict[str, Any]] | None = None
        self._ollama: dict[str, int | None] = {}

    async def close(self) -> None:
        await self.client.close()

    async def models(self) -> list[dict[str, Any]]:
        page = await self.client.models.list()
        return [model.model_dump() for model in page.data]

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """The upstream's embeddings of ``texts`` (``/v1/embeddings``), in their order;
        ``UpstreamError`` when it cannot give them."""
        try:
            found = await self.client.embeddings.create(
                model=model, input=texts, encoding_format="float"
            )
        except openai.APIStatusError as exc:
            raise UpstreamError(
                "server_error", f"the embedding model answered {exc.status_code}: {exc.message}"
            ) from None
        except openai.APIError as exc:
            raise UpstreamError("server_error", f"the embedding model failed: {exc}") from None
        ordered = sorted(found.data, key=lambda item: item.index)
        if len(ordered) != len(texts):
            raise UpstreamError("server_error", "the embedding model gave too few embeddings")
        return [list(item.embedding) for item in ordered]

    async def context_window(self, name: str) -> int | None:
        """The model's context window as the upstream's ``/v1/models`` reports it (asked
        once; ``None`` when it does not say or cannot be asked)."""
        if self._listed is None:
            try:
                async with asyncio.timeout(10):
                    self._listed = {str(m.get("id")): m for m in await self.models()}
            except (openai.APIError, TimeoutError):
                self._listed = {}
        found = self._listed.get(name) or {}
        for field_name in _WINDOW_FIELDS:
            value = found.get(field_name)
            if isinstance(value, int) and value > 0:
                return value
        if name not in self._ollama:  # asked once a model, as /v1/models is
            try:
                async with asyncio.timeout(10):
                    self._ollama[name] = await self._ollama_window(name)
            except (openai.APIError, TimeoutError):
                self._ollama[name] = None
        return self._ollama[name]

    async def _ollama_window(self, name: str) -> int | None:
        """Ollama's window for a model (``None`` from a server that is not Ollama).

        Its ``/v1/models`` names none, and a prompt over the window is cut from its start
        without a word (the instructions go first): the window it allocated for the model
        when it is loaded (``/api/ps``), else the model's ``num_ctx``, else the smallest of
        its defaults (4096; more with more VRAM, which the API does not say)."""
        root = str(self.client.base_url).rstrip("/").removesuffix("/v1")
        shown = await self.client.post(f"{root}/api/show", body={"model": name}, cast_to=object)
        if not isinstance(shown, dict) or "model_info" not in shown:
            return None
        running = await self.client.get(f"{root}/api/ps", cast_to=object)
        loaded = running.get("models") if isinstance(running, dict) else None
        names = {name, f"{name}:latest"}
        for model in loaded or []:
            size = model.get("context_length")
            if model.get("name") in names and isinstance(size, int) and size > 0:
                return size
        for line in str(shown.get("parameters") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "num_ctx" and value.strip().isdigit():
                return int(value.strip())
        return OLLAMA_DEFAULT_WINDOW

    async def stream(self, request: dict[str, Any]) -> AsyncIterator[Piece]:
        """Stream one completion as pieces; the last one is ``Finished``."""
        done = Finished()
        calls: dict[int, ToolCall] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        body = {**request, "stream": True, "stream_options": {"include_usage": True}}
        started = time.monotonic()
        try:
            async with asyncio.timeout_at(deadline):
                stream = await self.client.post(
                    "/chat/completions",
                    body=body,
                    cast_to=ChatCompletionChunk,
                    stream=True,
                    stream_cls=openai.AsyncStream[ChatCompletionChunk],
                )
            chunks = aiter(stream)
            while True:
                # Before the first chunk the model may be reading a long prompt: only the
                # deadline applies. After it, a stream silent for ``idle_timeout`` is dead.
                limit = (
                    deadline if not done.started else min(deadline, loop.time() + self.idle_timeout)
                )
                try:
                    async with asyncio.timeout_at(limit):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                done.started = True
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
        except TimeoutError:
            waited = time.monotonic() - started
            what = (
                f"its stream sent nothing for {self.idle_timeout:g} s"
                if loop.time() < deadline
                else f"no whole answer within {self.timeout:g} s"
            )
            raise UpstreamError(
                "server_error", f"the model endpoint timed out: {what} ({waited:.1f} s)"
            ) from None
        except openai.APIConnectionError as exc:
            kind = "timed out" if isinstance(exc, openai.APITimeoutError) else "is unreachable"
            raise UpstreamError("server_error", f"the model endpoint {kind}") from None
        except openai.APIStatusError as exc:
            raise _status_error(exc) from None
        except openai.APIError as exc:
            raise UpstreamError("server_error", f"the model endpoint failed: {exc}") from None
        done.calls = [calls[index] for index in sorted(calls)]
        yield done
