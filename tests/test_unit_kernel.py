"""The kernel client's side of the seam: sockets pinned by descriptor, messages checked."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest
import zmq

from interp import KernelStartError
from interp._kernel import MalformedMessage, _pin_socket, check_message


class Listener:
    """A host socket that counts who connects to it."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen()
        self.sock.setblocking(False)

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


async def test_a_pinned_socket_is_not_followed_to_a_link_planted_in_its_place(
    tmp_path: Path,
) -> None:
    kernel_dir, host = tmp_path / "kernel", tmp_path / "host"
    kernel_dir.mkdir()
    host.mkdir()
    listener = Listener(host / "daemon.sock")
    context = zmq.Context()
    context.setsockopt(zmq.RECONNECT_IVL, 5)
    context.setsockopt(zmq.LINGER, 0)
    pub = context.socket(zmq.PUB)
    pub.bind(f"ipc://{kernel_dir}/k-2")
    fd = await _pin_socket(f"{kernel_dir}/k-2", time.monotonic() + 5)
    pinned = context.socket(zmq.SUB)
    pinned.connect(f"ipc:///proc/self/fd/{fd}")
    by_name = context.socket(zmq.SUB)
    by_name.connect(f"ipc://{kernel_dir}/k-2")
    try:
        await asyncio.sleep(0.1)
        # The code closes the kernel's socket and leaves a link to a host socket instead.
        pub.close()
        (kernel_dir / "k-2").unlink(missing_ok=True)
        (kernel_dir / "k-2").symlink_to(host / "daemon.sock")
        await asyncio.sleep(0.3)
        reached = listener.connections()
        by_name.close()
        await asyncio.sleep(0.05)
        assert reached >= 1  # by name, the reconnect follows the link: the hole is real
        pinned_reconnects = listener.connections()
        await asyncio.sleep(0.3)
        assert listener.connections() == 0, pinned_reconnects
    finally:
        pinned.close()
        by_name.close()
        context.term()
        os.close(fd)
        listener.sock.close()


async def test_a_link_or_a_plain_file_is_not_taken_for_the_kernels_socket(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("x")
    (tmp_path / "k-1").symlink_to(tmp_path / "target")
    (tmp_path / "k-2").write_text("x")
    for name in ("k-1", "k-2"):
        with pytest.raises(KernelStartError, match="not the kernel's socket"):
            await _pin_socket(str(tmp_path / name), time.monotonic() + 1)
    with pytest.raises(KernelStartError, match="made no socket"):
        await _pin_socket(str(tmp_path / "k-3"), time.monotonic() + 0.05)


@pytest.mark.parametrize(
    "message",
    [
        [],
        {"header": {}, "parent_header": "x", "content": {}, "msg_type": "stream"},
        {"header": {}, "parent_header": {}, "content": [], "msg_type": "stream"},
        {"header": {}, "parent_header": {}, "content": {}, "msg_type": 3},
    ],
)
def test_a_message_of_the_wrong_shape_is_malformed(message: object) -> None:
    with pytest.raises(MalformedMessage):
        check_message(message)
