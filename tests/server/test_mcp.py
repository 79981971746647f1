"""interp as an MCP server, through the official `mcp` SDK's client: over stdio (`interp
mcp`) and over streamable HTTP (`/mcp` on a live `interp serve`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent

from interp import InterpError
from interp.server import _mcp

from .conftest import KEY_A, KEY_B, Server, raw_request, start_server
from .fake_engine import FakeEngine
from .fake_model import FakeModel

pytestmark = pytest.mark.docker


def _text(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def _session_of(result: CallToolResult) -> str:
    return _text(result).rsplit("[session: ", 1)[1].split("]", 1)[0]


def _stdio(data_dir: Path, **settings: str) -> Client:
    env = {
        "PATH": os.environ["PATH"],
        "INTERP_DATA_DIR": str(data_dir),
        "INTERP_POOL_SIZE": "1",
        "INTERP_MEMORY": "512m",
        **settings,
    }
    return Client(
        StdioServerParameters(command=sys.executable, args=["-m", "interp", "mcp"], env=env),
        read_timeout_seconds=120,
    )


def _http(server: Server, *, mode: str = "legacy") -> Client:
    return Client(server.url.removesuffix("/v1") + "/mcp", mode=mode, read_timeout_seconds=60)


@contextlib.asynccontextmanager
async def _http_with_key(server: Server, key: str) -> AsyncIterator[Client]:
    url = server.url.removesuffix("/v1") + "/mcp"
    headers = {"authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


async def test_stdio_keeps_state_in_its_kernel_and_returns_figures(tmp_path: Path) -> None:
    async with _stdio(tmp_path / "a") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {"run_python", "upload_file", "list_files", "read_file"}
        assert "/mnt/data" in (tools["run_python"].description or "")
        assert "pandas" in (tools["run_python"].description or "")
        first = await client.call_tool("run_python", {"code": "kept = 41"})
        assert not first.is_error, _text(first)
        second = await client.call_tool(
            "run_python",
            {
                "code": "import matplotlib.pyplot as plt\n"
                "plt.plot([1, 2, 3])\nplt.show()\n"
                "open('/mnt/data/out.txt', 'w').write('file body')\n"
                "print(kept + 1)"
            },
        )
        assert not second.is_error, _text(second)
        assert _text(second).startswith("42\n")
        images = [c for c in second.content if isinstance(c, ImageContent)]
        assert len(images) == 1 and images[0].mime_type == "image/png"
        assert base64.b64decode(images[0].data).startswith(b"\x89PNG")
        (link,) = [c for c in second.content if isinstance(c, ResourceLink)]
        assert link.name == "out.txt" and link.size == 9
        read = await client.read_resource(str(link.uri))
        assert base64.b64decode(read.contents[0].blob) == b"file body"  # type: ignore[union-attr]
        uploaded = await client.call_tool(
            "upload_file", {"name": "data.csv", "content": "a,b\n1,2\n"}
        )
        assert not uploaded.is_error, _text(uploaded)
        listed = _text(await client.call_tool("list_files", {}))
        assert "/mnt/data/data.csv (8 bytes)" in listed and "/mnt/data/out.txt (9 bytes)" in listed
        assert _text(await client.call_tool("read_file", {"name": "data.csv"})) == "a,b\n1,2\n"
        failed = await client.call_tool("run_python", {"code": "1 / 0"})
        assert failed.is_error and "ZeroDivisionError" in _text(failed)
    # Another process, another session: nothing of the first.
    async with _stdio(tmp_path / "b") as other:
        alone = await other.call_tool("run_python", {"code": "print(kept)"})
        assert alone.is_error and "NameError" in _text(alone)


async def test_a_hibernated_session_comes_back_and_says_so(tmp_path: Path) -> None:
    async with _stdio(tmp_path / "data", INTERP_HIBERNATE_AFTER="0.5") as client:
        first = await client.call_tool("run_python", {"code": "kept = 1"})
        assert not first.is_error
        await asyncio.sleep(3)  # idle > 0.5 s; the engine looks every 0.125 s
        after = await client.call_tool("run_python", {"code": "print(kept + 1)"})
        assert "restored from a snapshot taken at" in _text(after)
        assert "2\n" in _text(after)
    # The process ended, and its session with it: no one could reach a hibernated one.
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "files.db")) as db:
        assert db.execute("SELECT count(*) FROM snapshots").fetchone() == (0,)


async def test_a_session_that_expired_says_so_in_its_next_result(tmp_path: Path) -> None:
    async with _stdio(tmp_path / "data", INTERP_SESSION_MAX_IDLE="1") as client:
        first = await client.call_tool("run_python", {"code": "kept = 1"})
        assert not first.is_error and not _text(first).startswith("A new session")
        await asyncio.sleep(3)  # idle > 1 s; the engine looks every 0.25 s
        after = await client.call_tool("run_python", {"code": "print('kept' in dir())"})
        assert _text(after).startswith("A new session")
        assert "variables and files are gone" in _text(after)
        assert "False\n" in _text(after)


async def test_bad_tool_input_is_a_tool_error_not_a_crash(tmp_path: Path) -> None:
    async with _stdio(tmp_path / "data") as client:
        bad_calls: list[tuple[str, dict[str, Any]]] = [
            ("upload_file", {"name": "../escape.txt", "content": "x"}),
            ("upload_file", {"name": "a.bin", "content": "%%%", "encoding": "base64"}),
            ("read_file", {"name": "missing.txt"}),
            ("read_file", {"name": "../../etc/passwd"}),
            ("run_python", {"code": "print(1)", "session": "mcp_not_mine"}),
            ("run_python", {"code": "print(1)", "timeout": -1}),
            ("run_python", {}),
        ]
        for name, arguments in bad_calls:
            result = await client.call_tool(name, arguments)
            assert result.is_error, (name, arguments, _text(result))
        fine = await client.call_tool("run_python", {"code": "print('still here')"})
        assert _text(fine).startswith("still here\n")


async def test_http_sessions_keep_their_own_state(server: Server) -> None:
    async with _http(server) as one, _http(server) as two:
        assert not (await one.call_tool("run_python", {"code": "mine = 'one'"})).is_error
        assert not (await two.call_tool("run_python", {"code": "mine = 'two'"})).is_error
        assert _text(await one.call_tool("run_python", {"code": "print(mine)"})).startswith("one\n")
        assert _text(await two.call_tool("run_python", {"code": "print(mine)"})).startswith("two\n")


async def test_sessionless_clients_continue_by_the_named_session(server: Server) -> None:
    async with _http(server, mode="auto") as client:
        first = await client.call_tool("run_python", {"code": "kept = 'here'"})
        session = _session_of(first)
        again = await client.call_tool("run_python", {"code": "print(kept)", "session": session})
        assert _text(again).startswith("here\n")
        fresh = await client.call_tool("run_python", {"code": "print(kept)"})
        assert fresh.is_error and "NameError" in _text(fresh)


async def test_two_sessions_run_at_once_with_progress(server: Server) -> None:
    code = "import time\nstart = time.time()\ntime.sleep(2.5)\nprint(start, time.time())"
    reported: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append((progress, message))

    async def run(client: Client, report: bool) -> tuple[float, float]:
        result = await client.call_tool(
            "run_python", {"code": code}, progress_callback=on_progress if report else None
        )
        assert not result.is_error, _text(result)
        start, end = _text(result).split("\n", 1)[0].split()
        return float(start), float(end)

    async with _http(server) as one, _http(server) as two:
        await one.call_tool("run_python", {"code": "1"})
        await two.call_tool("run_python", {"code": "1"})
        began = time.monotonic()
        (a_start, a_end), (b_start, b_end) = await asyncio.gather(run(one, True), run(two, False))
        assert time.monotonic() - began < 4.5
    assert a_start < b_end and b_start < a_end  # the two ran at the same time
    assert len(reported) >= 2 and reported[-1][0] >= 1.0
    assert all(message and message.startswith("running for") for _, message in reported)


def test_an_mcp_session_is_its_makers(fake_model: FakeModel, tmp_path: Path) -> None:
    """Another key naming an MCP session finds none (404), to use it or to end it; its
    maker's session goes on, and its end ends its sandbox session."""
    server = start_server(tmp_path, fake_model.url, "--api-key", KEY_A, "--api-key", KEY_B)
    url = server.url.removesuffix("/v1") + "/mcp"
    base = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    try:
        with httpx2.Client(timeout=30) as http:
            made = http.post(url, json=hello, headers={**base, "authorization": f"Bearer {KEY_A}"})
            assert made.status_code == 200, made.text
            session = made.headers["mcp-session-id"]
            alice = {**base, "authorization": f"Bearer {KEY_A}", "mcp-session-id": session}
            bob = {**base, "authorization": f"Bearer {KEY_B}", "mcp-session-id": session}
            for method in ("POST", "DELETE"):
                answer = http.request(method, url, json=listing, headers=bob)
                assert answer.status_code == 404, answer.text
                assert answer.json()["error"]["code"] == "session_not_found"
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert http.post(url, json=initialized, headers=alice).status_code == 202
            tools = http.post(url, json=listing, headers=alice)
            assert tools.status_code == 200 and "run_python" in tools.text
            arguments = {"code": "print(6 * 7)"}
            params = {"name": "run_python", "arguments": arguments}
            call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params}
            ran = http.post(url, json=call, headers=alice)
            assert "42" in ran.text
            sandbox = ran.text.split("[session: ", 1)[1].split("]", 1)[0]
            assert list(server.data_dir.glob(f"sessions/*/{sandbox}"))
            assert http.delete(url, headers=alice).status_code == 200
            # Its sandbox session ended with it (it had stayed open for an hour).
            assert not list(server.data_dir.glob(f"sessions/*/{sandbox}"))
    finally:
        server.stop()


async def test_mcp_over_http_needs_the_servers_key(fake_model: FakeModel, tmp_path: Path) -> None:
    server = start_server(tmp_path, fake_model.url, "--api-key", KEY_A)
    try:
        async with _http_with_key(server, KEY_A) as client:
            result = await client.call_tool("run_python", {"code": "print(2 + 2)"})
            assert _text(result).startswith("4\n")
            # A file that is not the caller's is not found: said to it, not logged as a crash.
            with pytest.raises(Exception, match="no file 'file-nope'"):
                await client.read_resource("interp://files/file-nope")
        assert "Traceback" not in server.logs()
        with pytest.raises(BaseExceptionGroup):
            async with _http_with_key(server, "not-the-key") as refused:
                await refused.list_tools()
        for headers in ({}, {"authorization": "Bearer not-the-key"}):
            status, body = raw_request(
                server,
                "POST",
                "/mcp",
                b"{}",
                {"content-type": "application/json", "content-length": "2", **headers},
                under_api=False,
            )
            assert status == 401 and body["error"]["code"] == "invalid_api_key"
    finally:
        server.stop()


async def test_sessions_of_sessionless_calls_are_forgotten_once_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every sessionless call makes a session: once many have ended, the oldest are
    forgotten (named again: "no session"), the recent still answered with a new one."""
    monkeypatch.setattr(_mcp, "_REMEMBERED", 8)
    engine = FakeEngine(tmp_path)
    sessions = _mcp.McpSessions(lambda: engine)  # type: ignore[arg-type, return-value]
    request = SimpleNamespace(headers={}, scope={"interp_owner": "key"})
    call = SimpleNamespace(request_context=SimpleNamespace(request=request))
    made = []
    for _ in range(20):
        session, _notice = await sessions.resolve(call, None)  # type: ignore[arg-type]
        made.append(session)
        await engine.close_session(session)  # it ends (idle, say)
    with pytest.raises(InterpError, match="no session"):
        await sessions.resolve(call, made[0])  # type: ignore[arg-type]
    again, notice = await sessions.resolve(call, made[-1])  # type: ignore[arg-type]
    assert again not in made and notice is not None and "A new session" in notice
