"""Sessions that outlive their kernel: hibernated to a snapshot and restored, on real
kernels in real containers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from interp import CapacityError, Config, Engine, HibernationError

from .conftest import assert_no_containers, containers_of
from .test_pool_sessions import eventually

pytestmark = pytest.mark.docker

SESSION_LABEL = "io.interp.session"

BUILD = """
import numpy as np, pandas as pd
from sklearn.linear_model import LinearRegression
df = pd.DataFrame({"x": np.arange(50.0), "label": [f"row{i}" for i in range(50)]})
df["y"] = 3 * df["x"] + 2
# Large buffers reach the pickler's file as memoryviews, not bytes.
wide = pd.DataFrame(np.arange(2_000_000, dtype="float64").reshape(-1, 4))
model = LinearRegression().fit(df[["x"]], df["y"])
def double(v):
    return 2 * v
class Counter:
    def __init__(self):
        self.n = 0
    def bump(self):
        self.n += 1
        return self.n
counter = Counter()
counter.bump()
same = df
fh = open("/tmp/handle.txt", "w")
gen = (i for i in range(3))
open("notes.txt", "w").write("kept in /mnt/data")
"""

CHECK = """
print(df.shape, df["label"].iloc[7], float(df["y"].sum()), wide.shape, float(wide.sum().sum()))
print(model.predict(pd.DataFrame({"x": [10.0]})).tolist(), model.coef_.tolist())
print(double(21), counter.n, isinstance(counter, Counter), same is df)
print(np.arange(3).tolist(), open("notes.txt").read())
print("fh" in globals(), "gen" in globals())
"""


def sandboxes(client: docker.DockerClient, engine: Engine, session: str) -> list[str]:
    return [c.id for c in containers_of(client, engine.id) if c.labels[SESSION_LABEL] == session]


async def test_a_hibernated_session_comes_back_with_its_values(
    make_config: Callable[..., Config], docker_client: docker.DockerClient
) -> None:
    async with Engine(make_config()) as engine:
        session = await engine.create_session()
        built = await engine.execute(BUILD, session=session)
        assert built.ok, built.logs
        before = await engine.execute(CHECK, session=session)
        assert before.logs.endswith("True True\n[0, 1, 2] kept in /mnt/data\nTrue True\n")
        info = await engine.hibernate_session(session)
        assert info.state == "hibernated" and not info.has_kernel
        assert info.snapshot_bytes is not None and info.snapshot_bytes > 16_000_000
        assert engine.stats().hibernated == 1 and engine.stats().sessions == 0
        await eventually(lambda: not sandboxes(docker_client, engine, session), timeout=15)

        back = await engine.execute(CHECK, session=session)
        assert back.ok, back.logs
        note, _, printed = back.logs.partition("]\n")
        assert "restored from a snapshot taken at" in note
        assert "fh (_io.TextIOWrapper)" in note and "gen (generator)" in note
        # The same values; what could not be kept is gone, and said.
        assert printed == before.logs.removesuffix("True True\n") + "False False\n"
        # Said once; and the session is live again.
        again = await engine.execute("print(counter.bump())", session=session)
        assert again.logs == "2\n"
        assert [s.state for s in engine.sessions()] == ["idle"]
        await engine.close_session(session)
    assert_no_containers(docker_client, engine.id)


async def test_a_snapshot_over_the_cap_is_refused_and_the_session_keeps_its_kernel(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(max_snapshot_bytes="1m")) as engine:
        session = await engine.create_session()
        await engine.execute("big = bytes(5 * 1024 * 1024)\nsmall = 1", session=session)
        with pytest.raises(HibernationError, match="'big' would take more than max_snapshot"):
            await engine.hibernate_session(session)
        assert [s.state for s in engine.sessions()] == ["idle"]
        after = await engine.execute("print(len(big), small)", session=session)
        assert after.logs.startswith("[this session was not hibernated (the value of 'big'")
        assert after.logs.endswith("5242880 1\n")
        assert not engine.files.snapshots()
        assert sorted(p.name for p in engine.session_dir(session).iterdir()) == []


async def test_a_corrupted_snapshot_gives_a_fresh_namespace_and_says_so(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config()) as engine:
        session = await engine.create_session()
        await engine.execute("x = 41", session=session)
        await engine.hibernate_session(session)
        (snapshot,) = engine.files.snapshots()
        stored = engine.files.path(snapshot.file_id)
        stored.write_bytes(stored.read_bytes()[:60] + b"\x00garbage")
        result = await engine.execute("print('x' in globals())", session=session)
        assert result.ok
        assert "could not be restored" in result.logs and result.logs.endswith("False\n")
        assert not engine.files.snapshots()


async def test_a_hostile_snapshot_never_runs_on_the_host(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """The code writes its own bytes where its snapshot goes: a pickle that would run a
    command when loaded. The host moves the bytes, never loads them; the sandbox does, and
    what it gets is no namespace."""
    marker = tmp_path / "pwned"
    hostile = f"""
import os, pickle, sys, types
class Evil:
    def __reduce__(self):
        return (os.system, ({f"touch {marker}; touch /tmp/ran-in-sandbox"!r},))
fake = types.ModuleType("cloudpickle")
def dump(obj, file, protocol=None):
    file.write(pickle.dumps(Evil()))
fake.dump = dump
sys.modules["cloudpickle"] = fake
x = 41
"""
    async with Engine(make_config()) as engine:
        session = await engine.create_session()
        assert (await engine.execute(hostile, session=session)).ok
        await engine.hibernate_session(session)
        result = await engine.execute(
            "import os; print('x' in globals(), os.path.exists('/tmp/ran-in-sandbox'))",
            session=session,
        )
        assert "could not be restored (TypeError: its namespace is not a dict" in result.logs
        assert result.logs.endswith("False True\n")  # ran, in the sandbox only
        assert not marker.exists()


async def test_a_link_planted_at_the_snapshot_name_is_replaced_not_followed(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    target = tmp_path / "host-file"
    target.write_text("host secret")
    async with Engine(make_config(backend="docker")) as engine:
        session = await engine.create_session()
        plant = f"import os; os.symlink({str(target)!r}, '/mnt/data/.interp-snapshot'); x = 1"
        assert (await engine.execute(plant, session=session)).ok
        await engine.hibernate_session(session)
        assert target.read_text() == "host secret"
        back = await engine.execute("print(x)", session=session)
        assert back.logs.endswith("1\n"), back.logs


async def test_capacity_hibernates_instead_of_dropping(
    make_config: Callable[..., Config], docker_client: docker.DockerClient
) -> None:
    config = make_config(pool_size=0, max_kernels=1, max_sessions=2, capacity_wait=2)
    async with Engine(config) as engine:
        first = await engine.create_session()
        await engine.execute("x = 'first'", session=first)
        # A second session needs the only kernel: the first is hibernated for it.
        second = await engine.create_session()
        await engine.execute("x = 'second'", session=second)
        assert {s.id: s.state for s in engine.sessions()} == {
            first: "hibernated",
            second: "idle",
        }
        # A third session needs a live place: the second is hibernated for it.
        third = await engine.create_session()
        assert (await engine.execute("print(x)", session=first)).logs.endswith("first\n")
        assert (await engine.execute("print(x)", session=second)).logs.endswith("second\n")
        assert engine.stats().sessions <= 2
        # Busy sessions are not hibernated: a new one waits, then is refused.
        running = engine.execute("import time; time.sleep(6)", session=second)
        with pytest.raises(CapacityError):
            await asyncio.gather(running, engine.execute("1", session=third))
    assert_no_containers(docker_client, engine.id)


async def test_an_engine_restart_keeps_a_sessions_variables_and_files(
    make_config: Callable[..., Config], docker_client: docker.DockerClient
) -> None:
    config = make_config()
    async with Engine(config) as engine:
        await engine.create_session("analysis")
        await engine.execute("x = 41\nopen('data.csv', 'w').write('a,b')", session="analysis")
    assert_no_containers(docker_client, engine.id)
    async with Engine(config) as engine:
        (info,) = engine.sessions()
        assert (info.id, info.state) == ("analysis", "hibernated")
        assert info.snapshot_bytes
        result = await engine.execute("print(x + 1, open('data.csv').read())", session="analysis")
        assert result.logs.endswith("42 a,b\n")
        await engine.close_session("analysis")
        assert not engine.files.snapshots()
    assert not list((config.data_dir / "hibernated").iterdir())


async def test_idle_sessions_hibernate_then_close(
    make_config: Callable[..., Config], docker_client: docker.DockerClient
) -> None:
    config = make_config(pool_size=0, hibernate_after=0.5, session_max_idle=600)
    async with Engine(config) as engine:
        session = await engine.create_session()
        await engine.execute("x = 7", session=session)
        await eventually(lambda: engine.sessions()[0].state == "hibernated", timeout=15)
        await eventually(lambda: not sandboxes(docker_client, engine, session), timeout=15)
        assert (await engine.execute("print(x)", session=session)).logs.endswith("7\n")
    config = make_config(pool_size=0, hibernate_after=0.3, session_max_idle=1.5)
    async with Engine(config) as engine:
        (info,) = engine.sessions()  # hibernated at the close above
        assert info.state == "hibernated"
        await eventually(lambda: engine.sessions() == [], timeout=15)
        assert not engine.files.snapshots()
        assert engine.files.used_bytes == 0
