"""The sandbox contract, checked on the running container and from inside it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psutil
import pytest

from interp import Config, Engine, ExecutionStatus, SandboxError

from .conftest import containers_of

pytestmark = pytest.mark.docker


async def _container(engine: Engine, client: docker.DockerClient, session: str) -> Any:
    await engine.execute("1", session=session)
    (container,) = client.containers.list(
        filters={"label": [f"io.interp.engine={engine.id}", f"io.interp.session={session}"]}
    )
    return container


async def test_container_has_every_isolation_flag(
    engine: Engine, docker_client: docker.DockerClient
) -> None:
    session = await engine.create_session()
    container = await _container(engine, docker_client, session)
    host = container.attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == 512 * 1024**2
    assert host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == engine.config.pids
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Init"] is True
    assert host["Privileged"] is False
    assert "/tmp" in host["Tmpfs"] and "size=" in host["Tmpfs"]["/tmp"]
    assert not host["PortBindings"]
    assert "docker.sock" not in json.dumps(container.attrs["Mounts"])
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert set(mounts) == {"/run/interp", "/mnt/data"}
    # A warm kernel's directory was made in the pool and moved to the session since.
    assert Path(mounts["/mnt/data"]["Source"]).is_relative_to(engine.config.data_dir)
    user = container.attrs["Config"]["User"]
    assert user and not user.startswith("0")
    labels = container.attrs["Config"]["Labels"]
    assert labels["io.interp.owner-pid"] == str(os.getpid())
    assert "io.interp.owner-started" in labels


async def test_kernel_environment_is_an_allow_list(
    engine: Engine, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERP_TEST_SECRET", "hunter2")
    result = await engine.execute("import os; print(sorted(os.environ))")
    names = set(eval(result.logs))  # a printed list of str
    assert "INTERP_TEST_SECRET" not in names
    assert names <= {
        "PATH", "HOME", "LANG", "TZ", "HOSTNAME", "MPLCONFIGDIR", "MPLBACKEND",
        "PYTHONDONTWRITEBYTECODE", "JPY_PARENT_PID", "PYDEVD_USE_FRAME_EVAL",
        "CLICOLOR", "CLICOLOR_FORCE", "FORCE_COLOR", "PAGER", "GIT_PAGER", "TERM",
        "COLUMNS", "LINES",
    }  # fmt: skip


async def test_inside_there_is_no_network_no_root_and_no_capabilities(engine: Engine) -> None:
    code = r"""
import os, socket
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("network: open")
except OSError as exc:
    print("network: closed", exc.errno)
try:
    socket.getaddrinfo("pypi.org", 443)
    print("dns: works")
except OSError:
    print("dns: fails")
print("uid:", os.getuid())
lines = open("/proc/self/status").read().splitlines()
status = dict(l.split(":\t", 1) for l in lines if ":\t" in l)
print("CapEff:", status["CapEff"].strip(), "CapBnd:", status["CapBnd"].strip())
print("NoNewPrivs:", status["NoNewPrivs"].strip())
try:
    open("/etc/owned", "w")
    print("root fs: writable")
except OSError as exc:
    print("root fs:", exc.strerror)
print("pid 1:", open("/proc/1/cmdline").read().split("\0")[0])
"""
    result = await engine.execute(code)
    lines = result.logs.splitlines()
    assert lines[0].startswith("network: closed")
    assert lines[1] == "dns: fails"
    assert lines[2] != "uid: 0"
    assert lines[3] == "CapEff: 0000000000000000 CapBnd: 0000000000000000"
    assert lines[4] == "NoNewPrivs: 1"
    assert lines[5] == "root fs: Read-only file system"
    assert "init" in lines[6]


async def test_kernel_is_reached_over_ipc_with_no_tcp_listener(
    engine: Engine, docker_client: docker.DockerClient
) -> None:
    session = await engine.create_session()
    container = await _container(engine, docker_client, session)
    # Root's once the kernel is ready (the kernel's user can no longer write there).
    connection = json.loads(
        container.exec_run(["cat", "/run/interp/connection.json"], user="0:0").output.decode()
    )
    assert connection["transport"] == "ipc"
    assert len(connection["key"]) >= 32
    # Inside, nothing listens on TCP but ipykernel's pipe for the output of forked
    # children, on the loopback of the sandbox's own, unconnected network namespace.
    result = await engine.execute(
        "import psutil\n"
        "conns = psutil.net_connections('tcp')\n"
        "print(sorted({c.laddr.ip for c in conns if c.status == 'LISTEN'}))",
        session=session,
    )
    assert result.logs in ("[]\n", "['127.0.0.1']\n")
    # The engine itself opens no TCP listener to reach the kernel.
    listening = [c for c in psutil.Process().net_connections("tcp") if c.status == "LISTEN"]
    assert listening == []


async def test_session_files_are_on_the_host_as_soon_as_written(engine: Engine) -> None:
    session = await engine.create_session()
    result = await engine.execute(
        "open('/mnt/data/out.csv', 'w').write('a,b\\n1,2\\n')\nimport os; print(os.getcwd())",
        session=session,
    )
    assert result.logs == "/mnt/data\n"
    assert (engine.session_dir(session) / "out.csv").read_text() == "a,b\n1,2\n"


async def test_uploaded_files_are_visible_in_mnt_data(engine: Engine, tmp_path: Path) -> None:
    session = await engine.create_session()
    await engine.upload(session, "data.csv", b"x,y\n1,2\n3,4\n")
    result = await engine.execute(
        "import pandas as pd\nprint(pd.read_csv('/mnt/data/data.csv').y.sum())", session=session
    )
    assert (result.status, result.logs) == (ExecutionStatus.COMPLETED, "6\n")


async def test_an_upload_replaces_a_planted_symlink_instead_of_writing_through_it(
    engine: Engine, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("host file")
    session = await engine.create_session()
    os.symlink(victim, engine.session_dir(session) / "data.csv")
    await engine.upload(session, "data.csv", b"uploaded")
    assert victim.read_text() == "host file"
    assert (engine.session_dir(session) / "data.csv").read_bytes() == b"uploaded"


async def test_closing_the_engine_removes_its_containers(
    make_config: Any, docker_client: docker.DockerClient
) -> None:
    engine = Engine(make_config())
    await engine.start()
    for _ in range(2):
        await engine.execute("1", session=await engine.create_session())
    running = docker_client.containers.list(filters={"label": f"io.interp.engine={engine.id}"})
    assert len(running) >= 2
    await engine.close()
    assert not docker_client.containers.list(
        all=True, filters={"label": f"io.interp.engine={engine.id}"}
    )


async def test_the_runtime_is_crun_when_registered_else_dockers_default(
    engine: Engine, docker_client: docker.DockerClient
) -> None:
    registered = docker_client.info()["Runtimes"]
    session = await engine.create_session()
    container = await _container(engine, docker_client, session)
    wanted = engine.config.runtime or ("crun" if "crun" in registered else None)
    # Docker records the runtime it used; unset means its default.
    assert container.attrs["HostConfig"]["Runtime"] == (
        wanted or docker_client.info()["DefaultRuntime"]
    )


async def test_an_unregistered_runtime_is_refused_with_the_registered_ones(
    make_config: Any,
) -> None:
    engine = Engine(make_config(runtime="no-such-runtime", pool_size=0))
    with pytest.raises(SandboxError, match=r"no runtime 'no-such-runtime' \(registered: .*runc"):
        await engine.start()
    await engine.close()


async def test_a_session_memory_limit_replaces_the_engines_and_is_enforced(
    engine: Engine, docker_client: docker.DockerClient
) -> None:
    session = await engine.create_session(memory=256 * 1024**2)
    container = await _container(engine, docker_client, session)
    assert container.attrs["HostConfig"]["Memory"] == 256 * 1024**2
    assert container.attrs["HostConfig"]["MemorySwap"] == 256 * 1024**2
    result = await engine.execute("x = bytearray(400 * 1024**2)", session=session)
    assert result.status is ExecutionStatus.OOM
    assert result.message is not None and "limit 256 MiB" in result.message
    # The session's next kernel has the session's limit too.
    container = await _container(engine, docker_client, session)
    assert container.attrs["HostConfig"]["Memory"] == 256 * 1024**2


async def test_a_reaper_in_another_pid_namespace_removes_no_live_sandbox(
    engine: Engine, docker_client: docker.DockerClient
) -> None:
    """An engine in a pid namespace of its own (a replica in a container, a pod) sees this
    engine's pid as dead; it must leave this engine's live sandboxes alone."""
    session = await engine.create_session()
    container = await _container(engine, docker_client, session)
    labels = container.attrs["Config"]["Labels"]
    assert labels["io.interp.owner-pidns"] == str(os.stat("/proc/self/ns/pid").st_ino)
    reaper = (
        "import docker\nfrom interp.sandbox._reaper import reap_orphans\n"
        "print(reap_orphans(docker.from_env()))"
    )
    child = await asyncio.create_subprocess_exec(
        "unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", reaper,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    assert out.decode().strip() == "0"  # it reaped nothing
    container.reload()
    assert container.status == "running"
    assert (await engine.execute("print('still here')", session=session)).logs == "still here\n"


async def test_a_gone_replicas_sandboxes_are_removed_by_another_and_no_others(
    make_config: Callable[..., Config], tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """A server replica's sandboxes name it; the replicas sharing its database remove them
    once its lease has run out, whatever pid namespace it ran in, and nobody else's."""
    async with (
        Engine(make_config(data_dir=tmp_path / "a"), replica="rep_a") as a,
        Engine(make_config(data_dir=tmp_path / "b"), replica="rep_b") as b,
    ):
        session = await a.create_session()
        container = await _container(a, docker_client, session)
        assert container.attrs["Config"]["Labels"]["io.interp.owner-replica"] == "rep_a"
        assert await b.reap_replicas({"rep_c"}) == 0
        container.reload()
        assert container.status == "running"
        assert await b.reap_replicas({"rep_a"}) >= 1  # its session's and its pool's
        with pytest.raises(docker.errors.NotFound):
            container.reload()
        assert containers_of(docker_client, b.id)  # B's own pool is still there
