"""MCP: interp's kernels as tools for any MCP client, with the official ``mcp`` SDK.

Served over stdio (``interp mcp``) and over streamable HTTP at ``/mcp`` on ``interp
serve`` (the same keys). Tools: ``run_python``, ``upload_file``, ``list_files``,
``read_file``.

A kernel belongs to the client's session, so variables and files persist between calls:
over stdio the session is the process; over HTTP it is the MCP session (``Mcp-Session-Id``,
clients of protocol 2025-11-25 and before). Clients of the sessionless 2026 protocol carry
it themselves: every result names its session, and passing it back as ``session``
continues there. A session idle past the engine's ``hibernate_after`` is hibernated (its
next call restores its variables, and says so); one idle past ``session_max_idle`` is
gone: the next call makes a new one, and its first result says so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import mimetypes
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent
from pydantic import Field

from .. import (
    Engine,
    ExecutionFinished,
    ExecutionResult,
    ExecutionStatus,
    InterpError,
    LogChunk,
)
from .._models import ImageOutput, LogsOutput
from ..adapters._outputs import openai_outputs
from ..adapters.chat import base_packages
from ._places import Places

MAX_IMAGE_BYTES = 1024**2
"""An image up to this size comes inline as image content; a larger one as a link."""
MAX_READ_BYTES = 8 * 1024**2
PROGRESS_S = 1.0
STDIO_SESSION = "stdio"

INSTRUCTIONS = (
    "interp runs Python in sandboxed, stateful Jupyter kernels: variables, imports and files"
    " persist between run_python calls of a session. Files live in /mnt/data. There is no"
    " network access."
)


def run_description(packages: Sequence[str] = ()) -> str:
    """``run_python``'s description, naming what is installed (the image's packages and
    ``packages``)."""
    names = [*base_packages(), *(p for p in packages if p not in base_packages())]
    return (
        f"Run Python code in a stateful Jupyter kernel (Python 3.11 with {', '.join(names)})."
        " Variables and imports persist between calls of the session; files live in"
        " /mnt/data (save files for the user there). Returns what the code printed, the value"
        " of its last expression, an error with its traceback, matplotlib figures as images"
        " and files written as links. No network access: nothing else can be installed."
        " `timeout` is in seconds. Pass `session` (named in every result) to continue a"
        " session when your client does not keep one."
    )


Session = Annotated[
    str | None,
    Field(description="The session to continue (each result names it); omit for yours."),
]


_REMEMBERED = 4096
"""Sessions remembered after they ended (so that one named again is answered with a new
session and a notice) before the oldest are forgotten: each sessionless call makes one."""


@dataclass
class _Kernel:
    engine_session: str
    owner: str


class McpSessions:
    """MCP sessions -> engine sessions, per owner (an API key, or the local user)."""

    def __init__(
        self, engine: Callable[[], Engine], places: Callable[[], Places] | None = None
    ) -> None:
        self._engine = engine
        self._places = places
        self._by_key: dict[tuple[str, str], str] = {}
        """(owner, MCP session key) -> engine session id."""
        self._owners: dict[str, str] = {}
        """Engine session id -> owner."""
        self._lock = asyncio.Lock()

    async def resolve(self, ctx: Context, session: str | None) -> tuple[str, str | None]:
        """The engine session of this call, and a notice if it is a new one after expiry."""
        owner = _owner(ctx)
        engine = self._engine()
        async with self._lock:
            key: str | None = session
            if session is None:
                key = _transport_key(ctx)
            elif self._owners.get(session) != owner:
                raise InterpError(f"no session {session!r}: omit `session` to start a new one")
            current = None if key is None else self._by_key.get((owner, key))
            if current is not None and engine.has_session(current):
                return current, None
            if self._places is not None:
                created = await self._places().open(owner, _new_id())
            else:
                created = await engine.create_session(_new_id())
            if key is not None:
                self._by_key[(owner, key)] = created
            self._by_key[(owner, created)] = created
            self._owners[created] = owner
            self._forget_ended(engine)
            if current is not None:
                return created, (
                    f"A new session ({created}): the previous one was idle too long and"
                    " ended; its variables and files are gone."
                )
            return created, None

    def _forget_ended(self, engine: Engine) -> None:
        if len(self._owners) <= _REMEMBERED:
            return
        for session in list(self._owners):  # oldest first
            if len(self._owners) <= _REMEMBERED // 2:
                break
            if not engine.has_session(session):
                del self._owners[session]
        kept = self._owners
        self._by_key = {pair: found for pair, found in self._by_key.items() if found in kept}

    def owns(self, ctx: Context, engine_session: str) -> bool:
        return self._owners.get(engine_session) == _owner(ctx)

    async def end(self, owner: str, key: str) -> None:
        """The MCP session ``key`` of ``owner`` ended: so does its engine session (its
        kernel and files; they were the MCP session's)."""
        async with self._lock:
            found = self._by_key.pop((owner, key), None)
            if found is None:
                return
            self._by_key.pop((owner, found), None)
            self._owners.pop(found, None)
        engine = self._engine()
        if engine.has_session(found):
            await engine.close_session(found)

    async def close_all(self) -> None:
        """The server stops: its MCP sessions end (nothing could reach them again), and so
        do their engine sessions, rather than be hibernated for no one."""
        async with self._lock:
            ended, self._owners, self._by_key = list(self._owners), {}, {}
        engine = self._engine()
        for session in ended:
            if engine.has_session(session):
                with contextlib.suppress(InterpError):
                    await engine.close_session(session)


def _new_id() -> str:
    return "mcp_" + secrets.token_hex(12)


def _owner(ctx: Context) -> str:
    request = ctx.request_context.request
    if request is None:
        return STDIO_SESSION
    return str(getattr(request, "scope", {}).get("interp_owner", "local"))


def _transport_key(ctx: Context) -> str | None:
    """The session the transport names: stdio's, or HTTP's ``Mcp-Session-Id``; ``None``
    for a sessionless (2026 protocol) call, which starts a session of its own."""
    request = ctx.request_context.request
    if request is None:
        return STDIO_SESSION
    found = getattr(request, "headers", {}).get("mcp-session-id")
    return str(found) if found else None


def build(
    engine: Callable[[], Engine],
    places: Callable[[], Places] | None = None,
    packages: Sequence[str] = (),
) -> tuple[MCPServer, McpSessions]:
    """The MCP server over ``engine()``, and its sessions. Files the code writes are linked
    as ``interp://files/<id>`` resources, readable by the session's owner. With ``places``
    (``interp serve``'s), sessions are opened through them, each key within its share."""
    # The SDK sets up the root logger at this level unless the program already has: at its
    # default (INFO) every upstream model request was logged, through rich, on the event
    # loop, 7.5 ms of each run.
    mcp = MCPServer("interp", instructions=INSTRUCTIONS, log_level="WARNING")
    sessions = McpSessions(engine, places)

    def link(file_id: str, name: str, size: int, mime: str) -> ResourceLink:
        uri = f"interp://files/{file_id}"
        return ResourceLink(type="resource_link", uri=uri, name=name, mime_type=mime, size=size)

    def error(message: str) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)

    @mcp.tool(description=run_description(packages))
    async def run_python(
        code: Annotated[str, Field(description="The Python code to run.")],
        ctx: Context,
        timeout: Annotated[float | None, Field(gt=0, le=3600)] = None,
        session: Session = None,
    ) -> CallToolResult:
        try:
            engine_session, notice = await sessions.resolve(ctx, session)
            result = await _run(engine(), code, engine_session, timeout, ctx)
            return await _result(engine(), result, engine_session, notice, link)
        except InterpError as exc:
            return error(str(exc))

    @mcp.tool(description="Put a file in /mnt/data of the session, as text or base64.")
    async def upload_file(
        name: Annotated[str, Field(description="A plain file name, such as data.csv.")],
        content: str,
        ctx: Context,
        encoding: Literal["text", "base64"] = "text",
        session: Session = None,
    ) -> CallToolResult:
        try:
            data = (
                base64.b64decode(content, validate=True)
                if encoding == "base64"
                else (content.encode())
            )
        except (binascii.Error, ValueError):
            return error("content is not valid base64")
        try:
            engine_session, notice = await sessions.resolve(ctx, session)
            info = await engine().upload(engine_session, name, data)
        except InterpError as exc:
            return error(str(exc))
        text = f"{notice}\n" if notice else ""
        text += f"saved /mnt/data/{info.name} ({info.bytes} bytes) [session: {engine_session}]"
        return CallToolResult(content=[TextContent(type="text", text=text)])

    @mcp.tool(description="List the files in /mnt/data of the session, with their sizes.")
    async def list_files(ctx: Context, session: Session = None) -> CallToolResult:
        try:
            engine_session, notice = await sessions.resolve(ctx, session)
            found = await engine().list_session_files(engine_session)
        except InterpError as exc:
            return error(str(exc))
        lines = [notice] if notice else []
        lines += [f"/mnt/data/{name} ({size} bytes)" for name, size in found] or ["(no files)"]
        lines.append(f"[session: {engine_session}]")
        return CallToolResult(content=[TextContent(type="text", text="\n".join(lines))])

    @mcp.tool(description="Read a file of /mnt/data: text as text, images as images.")
    async def read_file(
        name: Annotated[str, Field(description="Its path under /mnt/data.")],
        ctx: Context,
        session: Session = None,
    ) -> CallToolResult:
        relative = name.removeprefix("/mnt/data/")
        try:
            engine_session, _ = await sessions.resolve(ctx, session)
            data = await engine().read_session_file(
                engine_session, relative, max_bytes=MAX_READ_BYTES
            )
        except InterpError as exc:
            return error(str(exc))
        mime = mimetypes.guess_type(relative)[0] or "application/octet-stream"
        if mime.startswith("image/") and len(data) <= MAX_IMAGE_BYTES:
            encoded = base64.b64encode(data).decode()
            return CallToolResult(
                content=[ImageContent(type="image", data=encoded, mime_type=mime)]
            )
        try:
            return CallToolResult(content=[TextContent(type="text", text=data.decode())])
        except UnicodeDecodeError:
            return error(f"/mnt/data/{relative} is binary ({len(data)} bytes, {mime})")

    @mcp.resource("interp://files/{file_id}", mime_type="application/octet-stream")
    async def stored_file(file_id: str, ctx: Context) -> bytes:
        """A file a session wrote or drew, by the id its result linked; one the caller's
        sessions did not make is not found (the SDK's own error: no traceback logged)."""
        try:
            info = engine().file(file_id)
        except InterpError:
            info = None
        if info is None or info.session is None or not sessions.owns(ctx, info.session):
            raise ResourceNotFoundError(f"no file {file_id!r}")
        return await engine().download(file_id)

    return mcp, sessions


async def _run(
    engine: Engine, code: str, session: str, timeout: float | None, ctx: Context
) -> ExecutionResult:
    """Run the code; report progress every second while it runs, with its latest output."""
    began = time.monotonic()
    latest = ""
    result: ExecutionResult | None = None

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            elapsed = time.monotonic() - began
            message = f"running for {elapsed:.0f} s" + (
                f"; last output: {latest}" if latest else ""
            )
            with contextlib.suppress(Exception):  # a client that went away
                await ctx.report_progress(elapsed, timeout, message)

    reporter = asyncio.create_task(progress())
    try:
        async with contextlib.aclosing(
            engine.stream(code, session=session, timeout=timeout)
        ) as events:
            async for event in events:
                if isinstance(event, LogChunk):
                    lines = event.text.strip().splitlines()
                    latest = lines[-1][:200] if lines else latest
                elif isinstance(event, ExecutionFinished):
                    result = event.result
    finally:
        reporter.cancel()
    if result is None:
        raise InterpError("the execution ended without a result")
    return result


async def _result(
    engine: Engine,
    result: ExecutionResult,
    session: str,
    notice: str | None,
    link: Callable[[str, str, int, str], ResourceLink],
) -> CallToolResult:
    # Images and files follow as content of their own; the text is the logs and the end.
    text = "".join(o.logs for o in openai_outputs(result) if isinstance(o, LogsOutput))
    if result.status not in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED):
        text += f"[{result.message or result.status}]\n"
    if notice:
        text = f"{notice}\n{text}"
    text += f"\n[session: {session}]"
    content: list[ContentBlock] = [TextContent(type="text", text=text)]
    for output in openai_outputs(result):
        if not isinstance(output, ImageOutput):
            continue
        image = engine.file(output.image.file_id)
        if image.bytes <= MAX_IMAGE_BYTES:
            data = await engine.download(image.id)
            content.append(
                ImageContent(
                    type="image", data=base64.b64encode(data).decode(), mime_type=image.mime
                )
            )
        else:
            content.append(link(image.id, image.name, image.bytes, image.mime))
    for saved in result.files:
        content.append(link(saved.file.id, saved.file.name, saved.file.bytes, saved.file.mime))
    failed = result.status is not ExecutionStatus.COMPLETED
    return CallToolResult(content=content, is_error=failed)


__all__ = ["McpSessions", "build"]
