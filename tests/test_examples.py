"""The examples run as a user runs them, each in its own process, against real Docker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, data_dir: Path) -> str:
    """Run ``examples/<name>``; return its stdout once it exits successfully."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "INTERP_DATA_DIR": str(data_dir)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_sync_facade_runs_the_quickstart_flow(tmp_path: Path) -> None:
    out = run_example("quickstart_sync.py", data_dir=tmp_path)
    assert "The answer is 42" in out
    assert "status: completed" in out


def test_the_chat_run_loop_streams_and_saves_what_the_code_made(tmp_path: Path) -> None:
    saved = tmp_path / "out"
    out = run_example("run_loop_chat.py", str(saved), data_dir=tmp_path / "data")
    assert "north: 379 in total\nsouth: 314 in total\n" in out
    assert "assistant: North sold 379" in out
    assert (saved / "sales_report.xlsx").read_bytes()[:2] == b"PK"
    (chart,) = saved.glob("file-*.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_mcp_client_runs_code_twice_in_one_kernel(tmp_path: Path) -> None:
    out = run_example("mcp_client.py", data_dir=tmp_path)
    assert "tools: run_python, upload_file, list_files, read_file" in out
    assert "np.int64(45)" in out or "\n45\n" in out
    assert "[an image: image/png," in out
