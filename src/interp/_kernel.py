"""A kernel: its sandbox and a lean async client for it, over jupyter_client's channels.

The client knows nothing of timeouts or policy: callers pass deadlines in. Everything it
receives is untrusted: code in the kernel can write its own messages (it holds the key),
so a message is checked for shape once, here, and a bad one is ``MalformedMessage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient

from ._exceptions import KernelStartError, SandboxError
from ._sandbox_files import Scan
from .sandbox import Backend, Sandbox

# ipc sockets appear when the kernel binds them; retry connecting every few ms rather
# than ZMQ's default 100 ms, which would add that much to every cold start.
_RECONNECT_MS = 5


def _take_all(socket: zmq.Socket[bytes]) -> list[list[bytes]]:
    taken = []
    while True:
        try:
            taken.append(socket.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            return taken


MAX_MESSAGE_BYTES = 64 * 1024**2
"""Largest message taken from a kernel. ZMQ refuses a bigger one before it is buffered, so
one forged message cannot take the engine's memory (the kernel's own output comes in
pieces of at most 128 KiB, and images are capped far below this)."""

_IOPUB_QUEUE = 2
"""Messages ZMQ takes from a kernel ahead of the engine. Its default (1 000) let a kernel
that writes faster than the engine reads park its whole flood in the engine's memory; past
this many ZMQ stops reading, and the kernel (whose publisher waits rather than drops, see
the launcher) waits with it."""


async def _pin_socket(path: str, deadline: float) -> int:
    """An ``O_PATH`` descriptor on the socket at ``path``, once the kernel has bound it.

    At that moment no code has run in the sandbox yet, so the file is the kernel's own;
    a link or anything but a socket there is refused.
    """
    while True:
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise KernelStartError(f"the kernel made no socket at {path}") from None
            await asyncio.sleep(_RECONNECT_MS / 1000)
            continue
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        raise KernelStartError(f"{path} is not the kernel's socket")


def make_context() -> zmq.asyncio.Context:
    context = zmq.asyncio.Context()
    context.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_MS)
    context.setsockopt(zmq.LINGER, 0)
    context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    context.setsockopt(zmq.RCVHWM, _IOPUB_QUEUE)
    return context


Message = dict[str, Any]
"""A checked message: ``msg_type`` a string; ``header``, ``parent_header`` and ``content``
dicts."""


class MalformedMessage(ValueError):
    """A kernel message that could not be decoded, or is not shaped as Jupyter's are."""


def check_message(message: object) -> Message:
    """The message if its envelope has Jupyter's shape; ``MalformedMessage`` otherwise.

    The content's own fields are checked where they are used (``interp._collector``).
    """
    if not isinstance(message, dict):
        raise MalformedMessage("not a JSON object")
    for key in ("header", "parent_header", "content"):
        if not isinstance(message.get(key), dict):
            raise MalformedMessage(f"its {key} is not an object")
    if not isinstance(message.get("msg_type"), str):
        raise MalformedMessage("it has no message type")
    return message


def parent_id(message: Message) -> object:
    """The id of the request a message answers (any JSON value: compare, do not trust)."""
    return message["parent_header"].get("msg_id")


_CHANNELS = ("shell", "iopub", "control")


class _PinnedClient(AsyncKernelClient):
    """Connects each ipc channel through a descriptor held on its socket file, not by name.

    The kernel's socket directory is writable from inside the sandbox: by name, ZMQ's next
    reconnect would follow whatever link the code put there, to any socket on the host.
    """

    pinned: dict[str, int]

    def _make_url(self, channel: str) -> str:
        if channel in self.pinned:
            return f"ipc:///proc/self/fd/{self.pinned[channel]}"
        url: str = super()._make_url(channel)
        return url


class KernelChannel:
    """Shell, iopub and control channels to one kernel."""

    def __init__(self, connection_info: dict[str, Any], context: zmq.asyncio.Context) -> None:
        self._closed = False
        self._client = _PinnedClient(context=context)
        self._client.load_connection_info(connection_info)  # type: ignore[arg-type]
        self._client.pinned = {}
        self._session = self._client.session
        self._connected = False

    async def _connect(self, deadline: float) -> None:
        """Pin the kernel's ipc sockets once it has made them, then open the channels."""
        if self._client.transport == "ipc":
            for channel in _CHANNELS:
                path = f"{self._client.ip}-{getattr(self._client, channel + '_port')}"
                self._client.pinned[channel] = await _pin_socket(path, deadline)
        self._client.start_channels(  # noqa: S604 (`shell` is the Jupyter channel, not a shell)
            shell=True, iopub=True, stdin=False, hb=False, control=True
        )
        self._iopub: zmq.asyncio.Socket = self._client.iopub_channel.socket
        # Synchronous views of the same sockets, for taking what has already arrived.
        self._iopub_now: zmq.Socket[bytes] = zmq.Socket.shadow(self._iopub.underlying)
        self._shell_now: zmq.Socket[bytes] = zmq.Socket.shadow(
            self._client.shell_channel.socket.underlying
        )
        self._connected = True

    async def ready(self, timeout: float) -> Message:
        """Return the kernel_info reply once the kernel answers and iopub delivers.

        A direct kernel_info round trip; the kernel is ready when the shell reply and the
        iopub status of the same request have both arrived, so no output of the first
        execution can be missed by a subscription still in flight.
        """
        deadline = time.monotonic() + timeout
        await self._connect(deadline)
        while (remaining := deadline - time.monotonic()) > 0:
            msg_id = self._client.kernel_info()
            reply = await self._reply(msg_id, remaining)
            if reply is None:
                break
            try:
                while True:
                    msg = await self._client.get_iopub_msg(timeout=0.2)
                    if msg["parent_header"].get("msg_id") == msg_id:
                        return reply
            except Empty:
                continue
        raise KernelStartError(f"the kernel did not answer within {timeout:g} s")

    async def _reply(self, msg_id: str, timeout: float) -> Message | None:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg: Message = await self._client.get_shell_msg(timeout=remaining)
            except Empty:
                return None
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg
        return None

    def execute(self, code: str) -> str:
        """Send an execute request; return its msg_id. stdin is refused, so input() fails.

        ``stop_on_error=False``: otherwise a call sent right after an interrupted one would
        be aborted by the kernel, silently, as if it had run and printed nothing.
        """
        msg_id: str = self._client.execute(
            code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False
        )
        return msg_id

    async def evaluate(self, code: str, expression: str, timeout: float) -> str:
        """Run ``code`` quietly (no output, no history, no ``_``), then evaluate
        ``expression``; its value's text, or ``SandboxError`` if there is no answer in
        time or no value (an exception, a kernel that is not IPython's).

        For the engine's own work in the kernel (snapshots): the user's next execution
        sees no trace of it but what ``code`` does. The text is the kernel's: untrusted.
        """
        msg_id: str = self._client.execute(
            code,
            silent=True,
            store_history=False,
            user_expressions={"value": expression},
            allow_stdin=False,
            stop_on_error=False,
        )
        reply = await self._reply(msg_id, timeout)
        if reply is None:
            raise SandboxError(f"the kernel did not answer within {timeout:g} s")
        found = reply["content"].get("user_expressions")
        value = found.get("value") if isinstance(found, dict) else None
        data = value.get("data") if isinstance(value, dict) else None
        text = data.get("text/plain") if isinstance(data, dict) else None
        if not isinstance(text, str):
            said = value.get("evalue") if isinstance(value, dict) else None
            raise SandboxError(f"the kernel gave no value ({str(said)[:200] or 'no reply'})")
        return text

    def iopub_frames(self) -> asyncio.Future[list[bytes]]:
        """A future for the next iopub message's raw frames (parse them with ``parse``).

        A future rather than a coroutine, so a caller can keep one receive in flight
        across deadlines without losing a message to a cancellation.
        """
        return self._iopub.recv_multipart()  # type: ignore[return-value]

    def parse(self, frames: list[bytes]) -> Message:
        """Check the signature of a message's frames, decode it and check its shape.

        Raises ``MalformedMessage`` for anything that is not a well-formed message.
        """
        try:
            _, signed = self._session.feed_identities(frames)
            message = self._session.deserialize(signed)
        except Exception as exc:  # noqa: BLE001 (whatever the frames hold: the kernel's to choose)
            raise MalformedMessage(f"undecodable ({type(exc).__name__})") from None
        return check_message(message)

    def received_iopub(self) -> list[Message | MalformedMessage]:
        """The iopub messages already received, without waiting for more."""
        taken: list[Message | MalformedMessage] = []
        for frames in _take_all(self._iopub_now):
            try:
                taken.append(self.parse(frames))
            except MalformedMessage as exc:
                taken.append(exc)
        return taken

    def discard_replies(self) -> None:
        """Drop the shell replies already received: outcomes come from iopub."""
        _take_all(self._shell_now)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        if self._connected:
            self._client.stop_channels()
        for fd in self._client.pinned.values():
            os.close(fd)
        self._client.pinned = {}


@dataclass(eq=False)
class Kernel:
    """A started, ready kernel. Belongs to one session for its whole life."""

    sandbox: Sandbox
    channel: KernelChannel
    files_dir: Path
    """The host directory mounted at /mnt/data."""
    started_s: float
    """Seconds from asking for the sandbox to the kernel answering."""
    kill_reason: str | None = None
    """Why the engine killed the kernel on purpose, when it did."""
    last_scan: Scan | None = None
    """/mnt/data as the last execution left it: the next one's starting point, unless the
    engine itself wrote there since (then ``None``)."""
    _doomed: bool = field(default=False, repr=False)
    _removed: bool = field(default=False, repr=False)

    @property
    def alive(self) -> bool:
        return self.sandbox.exit_info is None and not self._doomed

    async def kill(self, reason: str | None = None) -> None:
        """Kill the kernel; from now on it counts as dead, even before Docker says so."""
        self._doomed = True
        self.kill_reason = reason
        await self.sandbox.kill()

    async def remove(self) -> None:
        if self._removed:
            return
        self._doomed = True
        if not self.channel.closed:
            self.channel.close()
        await self.sandbox.remove()
        self._removed = True


async def start_kernel(
    backend: Backend,
    context: zmq.asyncio.Context,
    *,
    files_dir: Path,
    session: str,
    timeout: float,
) -> Kernel:
    """Start a sandboxed kernel and wait until it answers; clean up if it never does."""
    began = time.perf_counter()
    sandbox = await backend.start(files_dir=files_dir, session=session)
    channel = KernelChannel(sandbox.connection_info, context)
    ready = asyncio.ensure_future(channel.ready(timeout))
    died = asyncio.ensure_future(sandbox.wait())
    try:
        await asyncio.wait({ready, died}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            exit_info = died.result()
            raise KernelStartError(f"the kernel ended while starting: {exit_info.describe()}")
        ready.result()
        sandbox.seal()
    except BaseException:
        ready.cancel()
        channel.close()
        with contextlib.suppress(SandboxError):
            await sandbox.remove()
        raise
    finally:
        died.cancel()
    return Kernel(
        sandbox=sandbox,
        channel=channel,
        files_dir=files_dir,
        started_s=time.perf_counter() - began,
    )
