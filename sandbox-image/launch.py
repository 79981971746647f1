"""Start an IPython kernel in the sandbox.

The root filesystem is read-only, so per-kernel writable state (matplotlib's cache,
IPython's profile) lives in /tmp, seeded from what the image build prepared.
"""

import shutil
import sys

from ipykernel import kernelapp
from ipykernel.iostream import OutStream

shutil.copytree("/opt/interp/mplconfig", "/tmp/matplotlib", dirs_exist_ok=True)


class BoundedOutStream(OutStream):
    """stdout/stderr that sends its text on once a megabyte waits.

    ipykernel otherwise gathers everything written between two flushes (0.2 s apart) in
    memory, so a fast flood of output would exhaust the kernel's memory limit.
    """

    _waiting = 0

    def write(self, string: str) -> int | None:
        written = super().write(string)
        self._waiting += len(string)
        if self._waiting >= 1 << 20:
            self._waiting = 0
            self.flush()
        return written


kernelapp.launch_new_instance(
    argv=[
        "-f",
        sys.argv[1],
        "--HistoryManager.enabled=False",
        "--IPKernelApp.outstream_class=__main__.BoundedOutStream",
    ]
)
