"""A scripted chat-completions model, served on a free port: what the server's run loop
talks to in tests. It streams as OpenAI does (SSE chunks, then ``[DONE]``).

It answers by rules on the conversation so far, so that concurrent threads each get
their own script:

- last message from the user containing ``RUN: <code>``: a ``python`` call with that code
  (the code after ``RUN:`` to the end of the message, before the server's note of attached
  files); ``RAW: <code>`` sends the code as
  raw arguments instead of JSON; ``BROKEN`` sends arguments that are not JSON;
- offered ``file_search``, a question that is none of these: a search for its words;
- ``CALL <name> <json>``: a call of that function tool (``file_search`` too); with
  `` THEN RUN: <code>`` after it, once that call's result is in, a ``python`` call;
- ``FAIL <status>``: an HTTP error of that status; ``HANG``: no answer for 30 s;
  ``DROP``: some text, then the stream ends without a ``finish_reason`` or ``[DONE]``;
- a question about an equation (the Assistants quickstart's): a ``python`` call solving it
  with sympy;
- after a tool result: a text reply quoting it (``Result: …``), unless the conversation's
  first user message says ``LOOP``: then another ``python`` call, for ever;
- ``LONG``: a reply of 40 words;
- anything else: ``Hello from the fake model.``

With a ``window``, it is a model of that context window as vLLM serves one: it counts a
request's tokens by its own rule (words and punctuation, as a tokenizer the server does
not know), refuses one over the window (with ``max_completion_tokens``) as OpenAI and vLLM
do (400 ``context_length_exceeded``, naming the window), reports the count as
``usage.prompt_tokens``, advertises the window as ``max_model_len`` in ``/v1/models``
(unless ``advertise`` is false; as Ollama, with ``ollama``, it names it in ``/api/ps``
only), and cuts a reply at ``max_completion_tokens`` with
``finish_reason: "length"``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "fake-model"
EQUATION_CODE = (
    "from sympy import Eq, solve, symbols\nx = symbols('x')\nprint(solve(Eq(3 * x + 11, 14), x))"
)


SYNONYMS = [
    {"car", "automobile", "vehicle", "truck"},
    {"dog", "puppy", "canine", "hound"},
    {"red", "crimson", "scarlet"},
    {"money", "revenue", "income", "earnings"},
]
DIMENSIONS = 64


def embed(text: str) -> list[float]:
    """A bag of words: words of one synonym set share a dimension, others are hashed into
    the rest (so that meaning, here, is the synonym sets)."""
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z]+", text.lower()):
        group = next((i for i, words in enumerate(SYNONYMS) if word in words), None)
        if group is None:
            group = len(SYNONYMS) + zlib.crc32(word.encode()) % (DIMENSIONS - len(SYNONYMS))
        vector[group] += 1.0
    return vector


def _searches(body: dict[str, Any]) -> bool:
    """The request offers the ``file_search`` tool."""
    return any(t["function"]["name"] == "file_search" for t in body.get("tools") or ())


def _then_run(messages: list[dict[str, Any]]) -> str | None:
    """The code of a ``CALL … THEN RUN: <code>`` of the last user message, if no code has
    been called since it."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        return None
    content = messages[users[-1]].get("content")
    if not isinstance(content, str) or " THEN RUN:" not in content:
        return None
    since = messages[users[-1] + 1 :]
    calls = [c for m in since for c in m.get("tool_calls") or ()]
    if any(c["function"]["name"] == "python" for c in calls):
        return None
    return content.split(" THEN RUN:", 1)[1].split("\n[files attached", 1)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(value: Any) -> int:
    """Tokens as this model counts them: words and punctuation marks."""
    text = value if isinstance(value, str) else json.dumps(value)
    return len(_TOKEN.findall(text))


def request_tokens(body: dict[str, Any]) -> int:
    """A request's prompt tokens: 3 a message, its content and calls, and the tools."""
    total = count_tokens(body.get("tools") or "")
    for message in body["messages"]:
        total += 3 + count_tokens(message.get("content") or "")
        total += count_tokens(message.get("tool_calls") or "")
    return total


def _usage(prompt: int = 10, completion: int = 5) -> str:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return f"data: {json.dumps(body)}\n\n"


def _pieces(text: str, size: int = 7) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


class FakeModel:
    def __init__(
        self,
        port: int | None = None,
        *,
        window: int | None = None,
        advertise: bool = True,
        ollama: bool = False,
    ) -> None:
        self.window = window
        self.advertise = advertise and not ollama
        self.ollama = ollama
        self.requests: list[dict[str, Any]] = []
        """Every request answered (not refused as too long)."""
        self.refused: list[int] = []
        """The token counts of requests refused as over the window."""
        self.takes_images = True
        """False: a request with image parts is a 400, as a text-only model's server's."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._complete, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/api/show", self._show, methods=["POST"]),
                Route("/api/ps", self._running, methods=["GET"]),
            ]
        )
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> FakeModel:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake model did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    async def _models(self, request: Request) -> Response:
        model: dict[str, Any] = {"id": MODEL, "object": "model", "created": 0, "owned_by": "t"}
        if self.window is not None and self.advertise:
            model["max_model_len"] = self.window
        return JSONResponse({"object": "list", "data": [model]})

    async def _embeddings(self, request: Request) -> Response:
        """Embeddings that know a few synonyms (``embed``), as ``/v1/embeddings`` serves
        them; the model ``broken-embedder`` answers 500."""
        body = await request.json()
        if body.get("model") == "broken-embedder":
            return JSONResponse({"error": {"message": "embedder down"}}, status_code=500)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": embed(text)}
            for i, text in enumerate(texts)
        ]
        usage = {"prompt_tokens": 0, "total_tokens": 0}
        return JSONResponse(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    async def _show(self, request: Request) -> Response:
        """Ollama's model details: its trained context in ``model_info`` (not what it
        serves), no ``num_ctx`` parameter."""
        if not self.ollama:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        info = {"general.architecture": "llama", "llama.context_length": 131072}
        return JSONResponse({"parameters": "temperature 0.7", "model_info": info})

    async def _running(self, request: Request) -> Response:
        """Ollama's loaded models, each with the window it allocated (the one it serves)."""
        if not self.ollama:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        loaded = {"name": f"{MODEL}:latest", "model": f"{MODEL}:latest"}
        return JSONResponse({"models": [{**loaded, "context_length": self.window}]})

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        if not self.takes_images and any(
            isinstance(m.get("content"), list) for m in body["messages"]
        ):
            error = {"message": "image input is not supported by this model", "code": None}
            return JSONResponse({"error": error}, status_code=400)
        if self.window is not None:
            tokens = request_tokens(body)
            wanted = tokens + (body.get("max_completion_tokens") or 0)
            if wanted > self.window:
                self.refused.append(tokens)
                message = (
                    f"This model's maximum context length is {self.window} tokens. However,"
                    f" you requested {wanted} tokens ({tokens} in the messages). Please"
                    " reduce the length of the messages."
                )
                error = {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
                return JSONResponse({"error": error}, status_code=400)
            body["prompt_tokens"] = tokens
        self.requests.append(body)
        last = body["messages"][-1]
        content = last.get("content") or ""
        if isinstance(content, list):  # text and image parts: the text is what it reads
            content = "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
        if last["role"] == "user" and content == "HANG":
            await asyncio.sleep(30)
        if last["role"] == "user" and "FAIL " in content:
            status = int(content.split("FAIL ", 1)[1].split()[0])
            return JSONResponse(
                {"error": {"message": "scripted failure", "type": "server_error", "code": None}},
                status_code=status,
            )
        users = [m for m in body["messages"] if m["role"] == "user"]
        looping = bool(users) and "LOOP" in (users[0].get("content") or "")
        return StreamingResponse(
            self._stream(last, content, looping, body), media_type="text/event-stream"
        )

    async def _stream(
        self, last: dict[str, Any], content: str, looping: bool, body: dict[str, Any]
    ) -> AsyncIterator[str]:
        usage = _usage()
        if self.window is not None:
            reply = "Hello from the fake model."
            if content == "LONG":
                reply = " ".join(f"word{i}" for i in range(40))
            cap = body.get("max_completion_tokens")
            words = _TOKEN.findall(reply)
            plain = last["role"] != "tool" and not content.startswith(("RUN:", "CALL "))
            if plain and cap and len(words) > cap:
                yield _chunk({"content": " ".join(words[:cap])})
                yield _chunk({}, "length")
                yield _usage(body["prompt_tokens"], cap)
                yield "data: [DONE]\n\n"
                return
            usage = _usage(body["prompt_tokens"], len(words))
        if last["role"] == "user" and content == "DROP":
            # The upstream's connection ends mid-reply: no finish_reason, no [DONE].
            yield _chunk({"content": "partial text "})
            return
        if last["role"] == "tool" and looping:
            last, content = {"role": "user"}, "RUN: print('again')"
        then = _then_run(body["messages"])
        if last["role"] == "tool" and then is not None:
            last, content = {"role": "user"}, "RUN:" + then
        if last["role"] == "tool":
            for piece in _pieces(f"Result: {content.strip()}"):
                yield _chunk({"content": piece})
                await asyncio.sleep(0)
            yield _chunk({}, "stop")
        elif (
            last["role"] == "user"
            and not content.startswith("CALL ")
            and (
                "RUN:" in content
                or "RAW:" in content
                or "BROKEN" in content
                or "equation" in content
            )
        ):
            if "equation" in content:
                arguments = json.dumps({"code": EQUATION_CODE})
            elif "BROKEN" in content:
                arguments = '{"code": "print(1)'  # never closed
            elif "RAW:" in content:
                arguments = content.split("RAW:", 1)[1].strip()
            else:
                code = content.split("RUN:", 1)[1].split("\n[files attached", 1)[0]
                arguments = json.dumps({"code": code.strip()})
            yield _chunk({"role": "assistant", "content": None})
            yield _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": f"call_{time.monotonic_ns()}",
                            "type": "function",
                            "function": {"name": "python", "arguments": ""},
                        }
                    ]
                }
            )
            for piece in _pieces(arguments):
                yield _chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                await asyncio.sleep(0)
            yield _chunk({}, "tool_calls")
        elif last["role"] == "user" and (content.startswith("CALL ") or _searches(body)):
            if content.startswith("CALL "):
                _, name, arguments = content.split(" THEN RUN:", 1)[0].split(" ", 2)
            else:
                name, arguments = "file_search", json.dumps({"query": content})
            yield _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": f"call_{time.monotonic_ns()}",
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    ]
                }
            )
            yield _chunk({}, "tool_calls")
        elif last["role"] == "user" and content == "LONG":
            for i in range(40):
                yield _chunk({"content": f"word{i} "})
            yield _chunk({}, "stop")
        else:
            for piece in _pieces("Hello from the fake model."):
                yield _chunk({"content": piece})
            yield _chunk({}, "stop")
        yield usage
        yield "data: [DONE]\n\n"
