"""Start an IPython kernel in the sandbox.

The root filesystem is read-only, so per-kernel writable state (matplotlib's cache,
IPython's profile) lives in /tmp, seeded from what the image build prepared.
"""

import re
import shutil
import sys

import zmq
from ipykernel import kernelapp
from ipykernel.iostream import OutStream

shutil.copytree("/opt/interp/mplconfig", "/tmp/matplotlib", dirs_exist_ok=True)


_PIECE = 128 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")


class BoundedOutStream(OutStream):
    """stdout/stderr that sends its text on in messages of at most about 128 KiB.

    ipykernel otherwise gathers everything written between two flushes (0.2 s apart) in
    memory, so a fast flood of output would exhaust the kernel's memory limit, and one
    large write would reach the engine as one message of that size. Each message is
    copied a few times on its way to a client (decoded, kept, streamed): small pieces keep
    what a flood costs the host small (four 50 MB floods through `interp serve`: +68 MB
    at 1 MiB a message, +34 MB at 128 KiB, for the same time). Text that is not valid
    Unicode (a lone surrogate) would make the whole message fail to send, taking the valid
    text around it along: it is mended here, as U+FFFD.
    """

    _waiting = 0

    def write(self, string: str) -> int | None:
        if not isinstance(string, str):
            return super().write(string)  # ipykernel's own TypeError
        if not string.isascii():
            string = _SURROGATE.sub("\ufffd", string)
        for start in range(0, len(string), _PIECE):
            piece = string[start : start + _PIECE]
            super().write(piece)
            self._waiting += len(piece)
            if self._waiting >= _PIECE:
                self._waiting = 0
                self.flush()
        return len(string)


_IOPUB_QUEUE = 8
"""Messages iopub holds for a reader that is behind (ZMQ's default, 1 000, can be a GiB)."""


class App(kernelapp.IPKernelApp):
    def init_iopub(self, context: zmq.Context) -> None:
        """Make iopub wait for a reader that is behind instead of dropping its messages.

        The engine takes only a couple of messages ahead of what it has handled, so that a
        flood cannot fill the host's memory. Past a short queue here the kernel waits too
        (a write blocks in its flush), rather than hoarding the flood until the memory
        limit kills it or dropping output, or the message that says the execution ended.
        iopub is the last socket the kernel makes from this context.
        """
        context.setsockopt(zmq.SNDHWM, _IOPUB_QUEUE)
        super().init_iopub(context)
        self.iopub_thread.socket.setsockopt(zmq.XPUB_NODROP, 1)


App.launch_instance(
    argv=[
        "-f",
        sys.argv[1],
        "--HistoryManager.enabled=False",
        "--IPKernelApp.outstream_class=__main__.BoundedOutStream",
        # The engine's own options, such as the modules to preload.
        *sys.argv[2:],
    ]
)
