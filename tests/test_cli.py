"""The `interp` command as a person uses it: real processes, real containers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import docker
import pytest
from PIL import Image

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent


def interp(
    *args: str,
    tmp_path: Path,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interp", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path, env),
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def run_from_stdin(
    code: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], IO[str], IO[str]]]:
    """`interp run -` given ``code`` on stdin, still running: the process, its stdout and
    its stderr, to read while it runs."""
    with subprocess.Popen(
        [sys.executable, "-m", "interp", "run", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=_env(tmp_path),
        text=True,
    ) as process:
        assert process.stdin and process.stdout and process.stderr
        process.stdin.write(code)
        process.stdin.close()
        yield process, process.stdout, process.stderr


def _env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "INTERP_DATA_DIR": str(tmp_path / "data"), **(extra or {})}


def test_run_the_chart_example_prints_and_saves_the_png(tmp_path: Path) -> None:
    done = interp("run", str(ROOT / "examples" / "chart.py"), "--out", "figs", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "90 days of sales" in done.stdout
    png = tmp_path / "figs" / "chart-1.png"
    assert "figure saved: figs/chart-1.png" in done.stderr.replace(str(tmp_path) + "/", "")
    with Image.open(png) as image:
        assert image.format == "PNG"


def test_output_streams_while_the_code_runs(tmp_path: Path) -> None:
    # The code waits for a file that the test only creates after it has read the first
    # line: if output were held back until the end, this would never finish.
    code = (
        "import os, time\n"
        "print('first', flush=True)\n"
        "for _ in range(600):\n"
        "    if os.path.exists('/mnt/data/go'): break\n"
        "    time.sleep(0.05)\n"
        "else:\n"
        "    raise SystemExit('never released')\n"
        "print('second')\n"
    )
    with run_from_stdin(code, tmp_path) as (process, stdout, _):
        assert stdout.readline() == "first\n"
        (session_dir,) = [d for d in (tmp_path / "data" / "sessions").glob("*/*") if d.is_dir()]
        (session_dir / "go").write_text("")
        assert stdout.read() == "second\n"
        assert process.wait(timeout=60) == 0


def test_files_the_code_writes_are_saved_to_the_output_directory(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("n\n1\n2\n")
    code = (
        "import pandas as pd\n"
        "table = pd.read_csv('in.csv').assign(m=lambda d: d.n * 10)\n"
        "table.to_csv('out.csv', index=False)\n"
    )
    done = interp("run", "-", "--file", "in.csv", tmp_path=tmp_path, stdin=code.encode())
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "interp-out" / "out.csv").read_text() == "n,m\n1,10\n2,20\n"
    assert not (tmp_path / "interp-out" / "in.csv").exists()


def test_json_prints_the_assistants_tool_call(tmp_path: Path) -> None:
    done = interp("exec", "-c", "print('hi')\n1 + 1", "--json", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    import json

    call = json.loads(done.stdout)
    assert call["type"] == "code_interpreter"
    assert call["id"].startswith("call_")
    assert call["code_interpreter"] == {
        "input": "print('hi')\n1 + 1",
        "outputs": [{"type": "logs", "logs": "hi\n2\n"}],
    }


@pytest.mark.parametrize(
    ("code", "exit_code", "said"),
    [
        ("raise ValueError('nope')", 1, "ValueError: nope"),
        ("while True: pass", 124, "timeout"),
        ("x = bytearray(4 * 1024**3)", 137, "out of memory"),
        ("import os; os._exit(9)", 70, "kernel died"),
    ],
)
def test_exit_codes_follow_the_outcome(
    tmp_path: Path, code: str, exit_code: int, said: str
) -> None:
    done = interp("exec", "-c", code, "--timeout", "2", "--memory", "256m", tmp_path=tmp_path)
    assert done.returncode == exit_code, done.stderr
    assert said in done.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["run", "missing.py"], None, "no such file: missing.py"),
        (["run", "-"], b"", "code is empty"),
        (["run", "-"], b"print('\xff')", "not UTF-8"),
        (["exec", "-c", "1", "--memory", "lots"], None, "invalid configuration: memory"),
        (["exec", "-c", "1", "--file", "nope.csv"], None, "no such file: nope.csv"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(
    tmp_path: Path, args: list[str], stdin: bytes | None, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "interp", *args],
        input=stdin,
        capture_output=True,
        cwd=tmp_path,
        env=_env(tmp_path),
        timeout=60,
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2
    assert message in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_unreachable_docker_is_a_clear_error(tmp_path: Path) -> None:
    started = time.monotonic()
    done = interp(
        "exec", "-c", "1", tmp_path=tmp_path, env={"DOCKER_HOST": "unix:///nonexistent.sock"}
    )
    assert done.returncode == 3
    assert "cannot reach the Docker engine" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 30


def test_doctor_reports_a_healthy_setup(tmp_path: Path) -> None:
    done = interp("doctor", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("docker engine", "runtime", "image", "kernel"):
        assert check in done.stdout
    assert "FAIL" not in done.stdout
    # Each registered runtime is tried with a real container.
    assert "runtime runc" in done.stdout and "starts a container in" in done.stdout


def test_an_unknown_runtime_is_refused_by_doctor_and_run(tmp_path: Path) -> None:
    done = interp("doctor", "--runtime", "nosuch", tmp_path=tmp_path)
    assert done.returncode == 1
    assert "register nosuch" in done.stdout.replace("\n", " ").replace("│", " ")
    ran = interp("exec", "-c", "1", "--runtime", "nosuch", tmp_path=tmp_path)
    assert ran.returncode != 0
    assert "Traceback" not in ran.stderr


def test_doctor_says_what_to_do_without_docker(tmp_path: Path) -> None:
    done = interp("doctor", tmp_path=tmp_path, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert done.returncode == 1
    assert "FAIL" in done.stdout
    assert "start the Docker engine" in done.stdout.replace("\n", " ").replace("│", " ")


def test_pool_status_shows_a_warm_pool_and_the_sessions_kept(tmp_path: Path) -> None:
    done = interp("pool", "status", "--size", "1", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pool of 1" in done.stdout
    assert "idle kernel memory" in done.stdout
    assert "sess_" not in done.stdout  # its probe's session is closed, not kept
    # A session an engine hibernated at its close is listed, with its snapshot's size.
    kept = (
        "from interp import SyncEngine\n"
        "with SyncEngine() as e: e.create_session('kept'); e.execute('x = 1', session='kept')"
    )
    made = subprocess.run(
        [sys.executable, "-c", kept], env=_env(tmp_path, None), capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    done = interp("pool", "status", "--size", "1", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "kept" in line)
    assert "hibernated" in row and "KiB" in row


def test_sigterm_during_a_run_removes_the_sandbox(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    code = "print('running', flush=True)\nimport time\ntime.sleep(300)\n"
    with run_from_stdin(code, tmp_path) as (process, stdout, stderr):
        assert stdout.readline() == "running\n"
        owned: dict[str, Any] = {"label": f"io.interp.owner-pid={process.pid}"}
        assert docker_client.containers.list(filters=owned)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 130
        assert "Traceback" not in stderr.read()
    assert docker_client.containers.list(all=True, filters=owned) == []
