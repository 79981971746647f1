"""Start an IPython kernel in the sandbox.

The root filesystem is read-only, so per-kernel writable state (matplotlib's cache,
IPython's profile) lives in /tmp, seeded from what the image build prepared.
"""

import shutil
import sys

shutil.copytree("/opt/interp/mplconfig", "/tmp/matplotlib", dirs_exist_ok=True)

from ipykernel import kernelapp  # noqa: E402

kernelapp.launch_new_instance(argv=["-f", sys.argv[1], "--HistoryManager.enabled=False"])
