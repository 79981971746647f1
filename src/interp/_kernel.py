"""A lean async client for one Jupyter kernel, over jupyter_client's async channels.

It knows nothing of timeouts or policy: callers pass deadlines in.
"""

from __future__ import annotations

import asyncio
import time
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient

from ._exceptions import KernelStartError

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


def make_context() -> zmq.asyncio.Context:
    context = zmq.asyncio.Context()
    context.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_MS)
    context.setsockopt(zmq.LINGER, 0)
    return context


Message = dict[str, Any]


class KernelChannel:
    """Shell, iopub and control channels to one kernel."""

    def __init__(self, connection_info: dict[str, Any], context: zmq.asyncio.Context) -> None:
        self._closed = False
        self._client = AsyncKernelClient(context=context)
        self._client.load_connection_info(connection_info)  # type: ignore[arg-type]
        self._client.start_channels(  # noqa: S604 (`shell` is the Jupyter channel, not a shell)
            shell=True, iopub=True, stdin=False, hb=False, control=True
        )
        self._session = self._client.session
        self._iopub: zmq.asyncio.Socket = self._client.iopub_channel.socket
        # Synchronous views of the same sockets, for taking what has already arrived.
        self._iopub_now: zmq.Socket[bytes] = zmq.Socket.shadow(self._iopub.underlying)
        self._shell_now: zmq.Socket[bytes] = zmq.Socket.shadow(
            self._client.shell_channel.socket.underlying
        )

    async def ready(self, timeout: float) -> Message:
        """Return the kernel_info reply once the kernel answers and iopub delivers.

        A direct kernel_info round trip; the kernel is ready when the shell reply and the
        iopub status of the same request have both arrived, so no output of the first
        execution can be missed by a subscription still in flight.
        """
        deadline = time.monotonic() + timeout
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

    def iopub_frames(self) -> asyncio.Future[list[bytes]]:
        """A future for the next iopub message's raw frames (parse them with ``parse``).

        A future rather than a coroutine, so a caller can keep one receive in flight
        across deadlines without losing a message to a cancellation.
        """
        return self._iopub.recv_multipart()  # type: ignore[return-value]

    def parse(self, frames: list[bytes]) -> Message:
        """Check the signature of a message's frames and decode it."""
        _, signed = self._session.feed_identities(frames)
        message: Message = self._session.deserialize(signed)
        return message

    def received_iopub(self) -> list[Message]:
        """The iopub messages already received, without waiting for more."""
        return [self.parse(frames) for frames in _take_all(self._iopub_now)]

    def discard_replies(self) -> None:
        """Drop the shell replies already received: outcomes come from iopub."""
        _take_all(self._shell_now)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._client.stop_channels()
