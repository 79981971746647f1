"""The Assistants quickstart, unchanged, against a live `interp serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Server

pytestmark = pytest.mark.docker

EXAMPLE = Path(__file__).parents[2] / "examples" / "assistants_quickstart.py"


def test_the_quickstart_runs_on_interp_by_changing_only_the_base_url(server: Server) -> None:
    env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "anything"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr + server.logs()
    out = done.stdout
    # The handler printed the code as the model wrote it, then the logs the code printed.
    assert "assistant > code_interpreter" in out
    assert "solve(Eq(3 * x + 11, 14), x)" in out
    assert "output >" in out and "[1]" in out
    assert "assistant > Result: [1]" in out


RESPONSES_EXAMPLE = Path(__file__).parents[2] / "examples" / "responses_quickstart.py"


def test_the_responses_quickstart_runs_on_interp_by_changing_only_the_base_url(
    server: Server,
) -> None:
    env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "anything"}
    done = subprocess.run(
        [sys.executable, str(RESPONSES_EXAMPLE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + server.logs()
    out = done.stdout
    assert "code_interpreter >\nfrom sympy import" in out
    assert "(running)\noutput > [1]" in out
    assert "Result: [1]" in out
    assert out.rstrip().endswith("Hello from the fake model.")


SEARCH_EXAMPLE = Path(__file__).parents[2] / "examples" / "file_search.py"


def test_the_file_search_example_finds_and_cites_the_right_file(server: Server) -> None:
    env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "anything"}
    done = subprocess.run(
        [sys.executable, str(SEARCH_EXAMPLE)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr + server.logs()
    lines = done.stdout.splitlines()
    assert lines[0] == "2 of 2 files read"
    assert lines[1].startswith("leave.md (")  # the best result first
    assert "  cites leave.md" in lines, done.stdout
