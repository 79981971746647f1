"""Preloaded kernels: the data stack is imported before the kernel counts as ready, and
the user's namespace is still a fresh kernel's."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from interp import Config, Engine, ExecutionStatus

pytestmark = pytest.mark.docker

LOOK = (
    "import json, sys\n"
    "print(json.dumps({'names': sorted(get_ipython().user_ns),"
    " 'count': get_ipython().execution_count,"
    " 'loaded': [m for m in ('numpy', 'pandas', 'matplotlib.pyplot', 'debugpy')"
    " if m in sys.modules]}))"
)
"""What the user sees of a kernel. debugpy is left out of the image (its import was 80 ms
of every kernel start), so ipykernel must not have loaded it."""


async def look(config: Config) -> tuple[dict[str, object], str]:
    async with Engine(config) as engine:
        await engine.warm(timeout=120)
        session = await engine.create_session()
        who = await engine.execute("%who", session=session)
        seen = await engine.execute(LOOK, session=session)
        chart = await engine.execute(
            "import matplotlib.pyplot as plt\nplt.plot([1, 2])", session=session
        )
        assert chart.status is ExecutionStatus.COMPLETED and len(chart.image_ids) == 1
        return json.loads(seen.logs), who.logs


async def test_a_preloaded_kernel_looks_fresh_and_disabling_preload_works(
    make_config: Callable[..., Config],
) -> None:
    preloaded, who = await look(make_config())
    fresh, fresh_who = await look(make_config(preload=[], data_dir=make_config().data_dir / "b"))
    assert preloaded["loaded"] == ["numpy", "pandas", "matplotlib.pyplot"]
    assert fresh["loaded"] == []
    # The same names and the same execution count: preloading left no trace for the user.
    assert preloaded["names"] == fresh["names"]
    assert preloaded["count"] == fresh["count"]
    assert who == fresh_who == "Interactive namespace is empty.\n"


async def test_a_module_that_cannot_be_imported_does_not_stop_the_kernel(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(preload=["no_such_module", "numpy"])) as engine:
        result = await engine.execute("import sys\nprint('numpy' in sys.modules)")
    assert result.logs == "True\n"


def test_preload_takes_module_names_only() -> None:
    from interp import ConfigError

    with pytest.raises(ConfigError, match="preload"):
        Config(preload=["os; import shutil"])
