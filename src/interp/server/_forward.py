"""Calls to a kernel held by another replica go to that replica.

A thread's or a container's kernel is a process on the machine of the replica that
opened it (recorded in the shared database, see ``_replicas``). A request that would run
code in it or change its /mnt/data (a run, a run's cancel or tool outputs, a container's
file upload or removal, a container's deletion, a response naming a container or
continuing a chain that has one) and lands on another replica is sent on, as it came, to the
holder's ``replica_url`` while the holder's lease holds, and its answer (a stream
included) comes back through. Without a URL, or when the holder does not answer, the
request is served here: this replica then takes the kernel over, and the code's next
call says its session was restarted (``Places``). A load balancer hashing on the thread
or container id in the path makes forwarding rare; it is what keeps it correct without one.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2 as httpx
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from ._errors import APIError, send_error
from ._replicas import Replicas

log = logging.getLogger("interp.server")

FORWARDED = "x-interp-forwarded-by"
"""Set on a forwarded request: its receiver serves it, never sends it on again."""

_KERNEL_PATHS = [
    ("POST", re.compile(r"/v1/threads/([^/]+)/runs(?:/[^/]+/(?:cancel|submit_tool_outputs))?")),
    ("POST", re.compile(r"/v1/containers/([^/]+)/files")),
    ("DELETE", re.compile(r"/v1/containers/([^/]+)(?:/files/[^/]+)?")),
]
_RESPONSES = "/v1/responses"
_HOLDER_GONE = "The server holding this conversation's Python session stopped answering."
_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"host",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
}


def kernel_key(method: str, path: str) -> str | None:
    """The thread or container whose kernel a request works, if it works one."""
    for wanted, pattern in _KERNEL_PATHS:
        if method == wanted and (found := pattern.fullmatch(path.rstrip("/"))):
            return found.group(1)
    return None


class Forward:
    """ASGI middleware: see the module's docstring. ``replicas()`` is ``None`` until the
    app has started."""

    def __init__(
        self,
        app: Any,
        replicas: Callable[[], Replicas | None],
        owner: Callable[[Request], str],
    ) -> None:
        self.app = app
        self.replicas = replicas
        self.owner = owner
        # No read timeout: a forwarded run streams for as long as the run runs.
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        replicas = self.replicas()
        if (
            replicas is None
            or not replicas.shared
            or scope["type"] != "http"
            or _header(scope, FORWARDED.encode()) is not None
        ):
            await self.app(scope, receive, send)
            return
        key = kernel_key(scope["method"], scope["path"])
        if scope["method"] == "POST" and scope["path"].rstrip("/") == _RESPONSES:
            # The container is named in the body (a JSON body, bounded by the body limit).
            try:
                body = await _read_body(receive)
            except StarletteHTTPException as exc:  # too big or too slow (the body limit)
                await send_error(send, APIError(exc.status_code, str(exc.detail)))
                return
            key = await self._response_key(replicas, scope, body)
            receive = _replay(body, receive)
        holder = None
        if key is not None and self._owner(scope) is not None:
            holder = await replicas.elsewhere(key)
        if holder is None or not holder.url:
            await self.app(scope, receive, send)
        elif not await self._send_on(holder.url, replicas.id, scope, receive, send):
            log.warning("replica %s did not answer: %s is served here", holder.replica, key)
            await self.app(scope, receive, send)

    def _owner(self, scope: Scope) -> str | None:
        """The request's owner; ``None`` without a valid key (such a request goes
        nowhere: the app answers it)."""
        try:
            return self.owner(Request(scope))
        except APIError:
            return None

    async def _response_key(self, replicas: Replicas, scope: Scope, body: bytes) -> str | None:
        """The container a response's code would run in, if it names or continues one."""
        try:
            request = json.loads(body)
        except ValueError:
            return None
        if not isinstance(request, dict):
            return None
        for tool in request.get("tools") or ():
            if isinstance(tool, dict) and isinstance(tool.get("container"), str):
                return str(tool["container"])
        previous, owner = request.get("previous_response_id"), self._owner(scope)
        if isinstance(previous, str) and owner is not None:
            return await replicas.chain_container(owner, previous)
        return None

    async def _send_on(
        self, base: str, replica: str, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        """Forward the request to ``base``; ``False`` if it could not be sent there (and
        nothing of it was read)."""
        read = False

        async def body() -> AsyncIterator[bytes]:
            nonlocal read
            read = True
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        headers.append((FORWARDED.encode(), replica.encode()))
        url = base.rstrip("/") + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        request = self._client.build_request(scope["method"], url, headers=headers, content=body())
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError:
            if not read:
                return False
            # It went away with the request half sent: what it did of it is unknown.
            await send_error(send, APIError(502, _HOLDER_GONE, type="server_error"))
            return True
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k, v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP
                    ],
                }
            )
            try:
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError:
                log.warning("replica at %s went away while answering", base)
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()
        return True

    async def close(self) -> None:
        await self._client.aclose()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body read already given again first."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None
