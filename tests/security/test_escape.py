"""Attempts to see or reach beyond the sandbox: host files, secrets, network, privilege, disk."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from interp import Config, Engine, ExecutionStatus
from interp._storage import Storage

from ..conftest import GVISOR

pytestmark = pytest.mark.docker

SECRET = "sk-test-do-not-leak-4242"


async def probe(engine: Engine, code: str, session: str | None = None) -> dict[str, object]:
    """Run code that prints one JSON object; return it."""
    result = await engine.execute(code, session=session, timeout=30)
    assert result.status is ExecutionStatus.COMPLETED, result.logs
    found: dict[str, object] = json.loads(result.logs.strip().splitlines()[-1])
    return found


async def test_host_secrets_in_the_engine_environment_do_not_reach_the_kernel(
    make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    async with Engine(make_config()) as engine:
        found = await probe(
            engine,
            "import os, json, glob\n"
            "texts = [open(p, 'rb').read().decode(errors='replace')\n"
            "         for p in glob.glob('/proc/[0-9]*/environ') if os.access(p, os.R_OK)]\n"
            "print(json.dumps({'env': dict(os.environ), 'procs': texts}))",
        )
    assert SECRET not in json.dumps(found)
    assert "OPENAI_API_KEY" not in found["env"]  # type: ignore[operator]


async def test_nothing_of_the_host_is_visible(engine: Engine, tmp_path: Path) -> None:
    session = await engine.create_session()
    host_paths = [str(tmp_path), str(engine.config.data_dir), "/work", "/root/.cache"]
    found = await probe(
        engine,
        "import os, json\n"
        f"host_paths = {host_paths!r}\n"
        "def readable(p):\n"
        "    try:\n"
        "        open(p).read(); return True\n"
        "    except OSError:\n"
        "        return False\n"
        "print(json.dumps({\n"
        "    'shadow': readable('/etc/shadow'),\n"
        "    'docker_sock': [p for p in ('/var/run/docker.sock', '/run/docker.sock')\n"
        "                    if os.path.exists(p)],\n"
        "    'host_paths': [p for p in host_paths if os.path.exists(p)],\n"
        "    'mounts': sorted(l.split()[1] for l in open('/proc/mounts')\n"
        "                     if l.split()[1].startswith(('/mnt', '/run/interp', '/home'))),\n"
        "}))",
        session,
    )
    assert found == {
        "shadow": False,
        "docker_sock": [],
        "host_paths": [],
        "mounts": ["/mnt/data", "/run/interp"],
    }


async def test_a_session_cannot_see_another_sessions_files(engine: Engine) -> None:
    alice, bob = await engine.create_session(), await engine.create_session()
    await engine.execute("open('/mnt/data/alice.txt', 'w').write('private')", session=alice)
    found = await probe(
        engine,
        "import os, json\n"
        "print(json.dumps({'mine': os.listdir('/mnt/data'),\n"
        "                  'parent': os.listdir('/mnt/data/..')}))",
        bob,
    )
    assert found["mine"] == []
    assert "alice.txt" not in json.dumps(found)


async def test_the_network_is_unreachable_and_dns_fails(engine: Engine) -> None:
    found = await probe(
        engine,
        "import socket, json\n"
        "def connect(host, port):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=3).close(); return 'open'\n"
        "    except OSError as exc:\n"
        "        return exc.errno\n"
        "def resolve(name):\n"
        "    try:\n"
        "        socket.getaddrinfo(name, 443); return 'resolved'\n"
        "    except OSError:\n"
        "        return 'failed'\n"
        "print(json.dumps({\n"
        "    'public': connect('1.1.1.1', 443), 'private': connect('10.0.0.1', 80),\n"
        "    'docker_host': connect('172.17.0.1', 2375), 'dns': resolve('pypi.org'),\n"
        "    'interfaces': sorted(i for _, i in socket.if_nameindex()),\n"
        "}))",
    )
    assert found["dns"] == "failed"
    assert found["interfaces"] == ["lo"]
    for target in ("public", "private", "docker_host"):
        # gVisor's network stack says "no route to host" where Linux's says "unreachable".
        unreachable = {errno.ENETUNREACH, errno.EHOSTUNREACH} if GVISOR else {errno.ENETUNREACH}
        assert found[target] in unreachable, (target, found[target])


async def test_no_privilege_can_be_gained(engine: Engine) -> None:
    found = await probe(
        engine,
        "import ctypes, ctypes.util, os, json, subprocess\n"
        "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status') if ':\\t' in l)\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)\n"
        "PR_GET_NO_NEW_PRIVS = 39\n"
        "mounted = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)\n"
        "mount_errno = ctypes.get_errno()\n"
        "setuid = subprocess.run(['find', '/', '-xdev', '-perm', '/6000', '-type', 'f'],\n"
        "                        capture_output=True, text=True).stdout.split()\n"
        "su = subprocess.run(['su', '-c', 'id -u'], capture_output=True, input='')\n"
        "try:\n"
        "    os.setuid(0); became_root = True\n"
        "except PermissionError:\n"
        "    became_root = False\n"
        "print(json.dumps({\n"
        "    'uid': os.getuid(), 'euid': os.geteuid(),\n"
        "    'cap_eff': status['CapEff'].strip(), 'cap_prm': status['CapPrm'].strip(),\n"
        "    'no_new_privs': libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),\n"
        "    'mount': [mounted, mount_errno], 'setuid_files': setuid,\n"
        "    'su_exit': su.returncode, 'became_root': became_root,\n"
        "}))",
    )
    assert found["uid"] != 0 and found["euid"] != 0
    assert found["cap_eff"] == found["cap_prm"] == "0000000000000000"
    assert found["no_new_privs"] == 1
    assert found["mount"] == [-1, errno.EPERM]
    assert found["setuid_files"] == []
    assert found["su_exit"] != 0
    assert found["became_root"] is False


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/tmp/fill", errno.ENOSPC), ("/fill", errno.EROFS), ("/usr/lib/fill", errno.EROFS)],
)
async def test_filling_the_disk_outside_mnt_data_fails_inside(
    make_config: Callable[..., Config], path: str, expected: int
) -> None:
    async with Engine(make_config(tmp_size="32m")) as engine:
        found = await probe(
            engine,
            "import json\n"
            "written = 0\n"
            "try:\n"
            f"    with open({path!r}, 'wb') as f:\n"
            "        while True:\n"
            "            f.write(b'x' * 1024**2); f.flush(); written += 1\n"
            "except OSError as exc:\n"
            "    root = [l.split()[3] for l in open('/proc/self/mounts') if l.split()[1] == '/']\n"
            "    print(json.dumps({'errno': exc.errno, 'mib': written, 'root': root}))",
        )
    if GVISOR and expected == errno.EROFS:
        # gVisor checks permission before the read-only mount: EACCES, on a root that is
        # mounted read-only all the same.
        assert found["errno"] in (errno.EROFS, errno.EACCES)
        assert found["root"][-1].split(",")[0] == "ro"  # type: ignore[index]
    else:
        assert found["errno"] == expected
    assert int(found["mib"]) <= 32  # type: ignore[call-overload]


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user, the kernel runs as the engine's")
async def test_the_kernels_socket_directory_on_the_host_takes_no_writes(engine: Engine) -> None:
    """/run/interp is a directory on the host's disk, outside every cap: once the kernel
    has made its sockets, the code can add, grow or take back nothing there."""
    found = await probe(
        engine,
        "import json, os\n"
        "tries = {}\n"
        "for name, act in [\n"
        "    ('new file', lambda: open('/run/interp/fill', 'wb').write(b'x' * 1024**2)),\n"
        "    ('append', lambda: open('/run/interp/connection.json', 'ab').write(b'x')),\n"
        "    ('chmod', lambda: os.chmod('/run/interp', 0o777)),\n"
        "    ('unlink', lambda: os.unlink('/run/interp/k-1')),\n"
        "]:\n"
        "    try:\n"
        "        act(); tries[name] = 'done'\n"
        "    except OSError as exc:\n"
        "        tries[name] = exc.errno\n"
        "print(json.dumps(tries))",
    )
    assert set(found) == {"new file", "append", "chmod", "unlink"}
    assert all(outcome in (errno.EACCES, errno.EPERM) for outcome in found.values()), found
    # The kernel still answers through those sockets.
    assert (await engine.execute("print(1 + 1)")).logs == "2\n"


@pytest.mark.skipif(
    Storage(1).cap_bytes is None, reason="capping /mnt/data needs root, loop devices, mkfs.ext4"
)
async def test_filling_mnt_data_stops_at_the_per_session_cap(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(data_size="32m")) as engine:
        session = await engine.create_session()
        found = await probe(
            engine,
            "import json\n"
            "written = 0\n"
            "try:\n"
            "    with open('/mnt/data/fill', 'wb') as f:\n"
            "        while True:\n"
            "            f.write(b'x' * 1024**2); f.flush(); written += 1\n"
            "except OSError as exc:\n"
            "    print(json.dumps({'errno': exc.errno, 'mib': written}))",
            session,
        )
        assert found["errno"] == errno.ENOSPC
        assert int(found["mib"]) <= 32  # type: ignore[call-overload]
        # On the host, the session's files take no more than the cap.
        files_dir = engine.session_dir(session)
        image = files_dir.with_name(files_dir.name + ".img")
        assert image.stat().st_blocks * 512 <= 33 * 1024**2
        # Once the code deletes what it wrote, the session can write again.
        after = await engine.execute(
            "import os; os.remove('/mnt/data/fill'); open('/mnt/data/ok', 'w').write('ok')",
            session=session,
        )
        assert after.status is ExecutionStatus.COMPLETED
    assert not image.exists()
    assert not files_dir.exists()


async def test_a_planted_symlink_in_the_file_store_is_never_followed(engine: Engine) -> None:
    result = await engine.execute("import matplotlib.pyplot as plt\nplt.plot([1])\nplt.show()")
    (file_id,) = result.image_ids
    stored = engine.file_path(file_id)
    stored.unlink()
    os.symlink("/etc/hostname", stored)
    with pytest.raises(Exception, match="cannot read"):
        await engine.download(file_id)
