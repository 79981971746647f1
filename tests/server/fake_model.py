"""A scripted chat-completions model, served on a free port: what the server's run loop
talks to in tests. It streams as OpenAI does (SSE chunks, then ``[DONE]``).

It answers by rules on the conversation so far, so that concurrent threads each get
their own script:

- last message from the user containing ``RUN: <code>``: a ``python`` call with that code
  (the code after ``RUN:`` to the end of the message, before the server's note of attached
  files); ``RAW: <code>`` sends the code as
  raw arguments instead of JSON; ``BROKEN`` sends arguments that are not JSON;
- ``CALL <name> <json>``: a call of that function tool;
- ``FAIL <status>``: an HTTP error of that status; ``HANG``: no answer for 30 s;
- a question about an equation (the Assistants quickstart's): a ``python`` call solving it
  with sympy;
- after a tool result: a text reply quoting it (``Result: …``), unless the conversation's
  first user message says ``LOOP``: then another ``python`` call, for ever;
- anything else: ``Hello from the fake model.``
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
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


def _usage() -> str:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    return f"data: {json.dumps(body)}\n\n"


def _pieces(text: str, size: int = 7) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


class FakeModel:
    def __init__(self, port: int | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._complete, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
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
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "t"}],
            }
        )

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        last = body["messages"][-1]
        content = last.get("content") or ""
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
            self._stream(last, content, looping), media_type="text/event-stream"
        )

    async def _stream(
        self, last: dict[str, Any], content: str, looping: bool = False
    ) -> AsyncIterator[str]:
        if last["role"] == "tool" and looping:
            last, content = {"role": "user"}, "RUN: print('again')"
        if last["role"] == "tool":
            for piece in _pieces(f"Result: {content.strip()}"):
                yield _chunk({"content": piece})
                await asyncio.sleep(0)
            yield _chunk({}, "stop")
        elif last["role"] == "user" and (
            "RUN:" in content or "RAW:" in content or "BROKEN" in content or "equation" in content
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
        elif last["role"] == "user" and content.startswith("CALL "):
            _, name, arguments = content.split(" ", 2)
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
        else:
            for piece in _pieces("Hello from the fake model."):
                yield _chunk({"content": piece})
            yield _chunk({}, "stop")
        yield _usage()
        yield "data: [DONE]\n\n"
