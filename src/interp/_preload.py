"""What a kernel imports before it counts as ready, so the first real call finds it loaded.

The work runs at kernel start (IPython's ``exec_lines``) inside ``exec(source, {})``: the
modules land in ``sys.modules`` and matplotlib's inline backend is set up, while the
user's namespace stays exactly a fresh kernel's (no extra names; ``%who`` is empty).
With ``matplotlib.pyplot`` among the modules, one small figure is also drawn and saved,
which is most of the cost of the first chart.
"""

from __future__ import annotations

import re

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

_SOURCE = """\
import importlib, sys
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        print(f"interp: preload of {{name}} failed: {{exc}}", file=sys.__stderr__)
if "matplotlib.pyplot" in sys.modules:
    import io
    import matplotlib.pyplot as plt
    figure = plt.figure(figsize=(2, 2))
    figure.gca().plot([0, 1], [0, 1])
    figure.savefig(io.BytesIO(), format="png")
    plt.close(figure)
"""


def check_module(name: str) -> str:
    if not _MODULE.fullmatch(name):
        raise ValueError(f"not a module name: {name!r}")
    return name


def kernel_args(modules: list[str]) -> list[str]:
    """Arguments for the kernel's command line that preload ``modules`` (none if empty)."""
    if not modules:
        return []
    source = _SOURCE.format(modules=[check_module(m) for m in modules])
    # One item: traitlets appends each occurrence of a list option.
    return [f"--IPKernelApp.exec_lines=exec({source!r}, {{}})"]
