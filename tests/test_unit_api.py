"""Configuration, validation and the public surface: no Docker needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import interp
from interp import Config, ConfigError
from interp._sessions import check_file_name, check_session_id
from interp.adapters import assistants, chat, responses


def test_public_surface_is_pinned() -> None:
    assert set(interp.__all__) == {
        "IMAGE_VERSION",
        "CapacityError",
        "Config",
        "ConfigError",
        "DisplayOutput",
        "DockerUnavailableError",
        "Engine",
        "EngineStats",
        "ErrorRaised",
        "Event",
        "ExecutionError",
        "ExecutionFinished",
        "ExecutionResult",
        "ExecutionStarted",
        "ExecutionStatus",
        "ExitCause",
        "ExitInfo",
        "FileInfo",
        "FileSaved",
        "FileStoreError",
        "HibernationError",
        "ImageError",
        "ImageFile",
        "ImageOutput",
        "ImageSaved",
        "InterpError",
        "InvalidInputError",
        "KernelStartError",
        "LatencySummary",
        "LogChunk",
        "LogsOutput",
        "NoSuchFileError",
        "Output",
        "SandboxError",
        "SessionInfo",
        "SessionNotFoundError",
        "StoreFullError",
        "SyncEngine",
        "__version__",
    }


def test_the_adapters_surface_is_pinned() -> None:
    assert set(assistants.__all__) == {
        "Cursor",
        "StepStatus",
        "astep_deltas",
        "event_deltas",
        "file_annotations",
        "outputs",
        "run_step",
        "sse",
        "step_delta",
        "step_deltas",
        "tool_call",
    }
    assert set(responses.__all__) == {
        "CallStatus",
        "ImageUrl",
        "astream_events",
        "call_item",
        "data_url",
        "event_items",
        "item_id",
        "stream_events",
    }
    assert set(chat.__all__) == {
        "DESCRIPTION",
        "call_id",
        "describe",
        "code_from_tool_call",
        "handle",
        "tool_message",
        "tool_schema",
        "tool_text",
    }


def test_sizes_use_dockers_binary_units(tmp_path: Path) -> None:
    config = Config(memory="512m", tmp_size="1g", data_dir=tmp_path)
    assert config.memory == 512 * 1024**2
    assert config.tmp_size == 1024**3


def test_config_reads_interp_environment_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INTERP_MEMORY", "2g")
    monkeypatch.setenv("INTERP_CONFIG", str(tmp_path / "absent.toml"))
    assert Config().memory == 2 * 1024**3


def test_config_reads_a_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('cpus = 0.5\nruntime = "crun"\n')
    monkeypatch.setenv("INTERP_CONFIG", str(path))
    config = Config()
    assert (config.cpus, config.runtime) == (0.5, "crun")


def test_an_interp_variable_naming_no_setting_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A typo in the environment is said, with the closest setting, as the same key in the
    TOML file is: for the CLI, the server and the engine alike (each makes a Config)."""
    monkeypatch.setenv("INTERP_POOLSIZE", "5")
    with pytest.raises(ConfigError, match="INTERP_POOLSIZE is not a setting") as raised:
        Config()
    assert raised.value.field == "INTERP_POOLSIZE"
    assert raised.value.hint == "did you mean INTERP_POOL_SIZE?"
    monkeypatch.delenv("INTERP_POOLSIZE")
    monkeypatch.setenv("INTERP_POOL_SIZE", "5")
    assert Config().pool_size == 5
    # A setting of an earlier version says what took its place.
    monkeypatch.setenv("INTERP_SESSION_IDLE_TIMEOUT", "60")
    with pytest.raises(ConfigError, match="hibernate_after"):
        Config()
    monkeypatch.delenv("INTERP_SESSION_IDLE_TIMEOUT")
    with pytest.raises(ConfigError, match="session_idle_timeout: sessions idle this long"):
        Config(session_idle_timeout=60)


@pytest.mark.parametrize(
    "bad",
    [
        {"memory": "lots"},
        {"cpus": 0},
        {"timeout": -1},
        {"colour": "red"},
        {"env": {"A B": "x"}},
        {"env": {"LD_PRELOAD": "/tmp/x.so"}},
        {"env": {"PATH": "/tmp"}},
        {"env": {"MPLBACKEND": "agg"}},
        {"data_size": -1},
    ],
)
def test_invalid_config_is_a_config_error_naming_the_field(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as raised:
        Config(**bad)
    assert raised.value.field == next(iter(bad))
    assert "\n" not in str(raised.value)


def test_data_size_can_be_turned_off_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INTERP_DATA_SIZE", "none")
    assert Config(data_dir=tmp_path).data_size is None
    monkeypatch.setenv("INTERP_DATA_SIZE", "2g")
    assert Config(data_dir=tmp_path).data_size == 2 * 1024**3


def test_config_is_frozen(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path)
    with pytest.raises(ValidationError):
        config.memory = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "nul\x00", "x" * 300])
def test_file_names_that_could_escape_are_refused(name: str) -> None:
    with pytest.raises(interp.InvalidInputError):
        check_file_name(name)


def test_plain_file_names_pass() -> None:
    assert check_file_name("data 2026.csv") == "data 2026.csv"


@pytest.mark.parametrize("session", ["", "../etc", "a/b", " x", "x" * 200])
def test_bad_session_ids_are_refused(session: str) -> None:
    with pytest.raises(interp.InvalidInputError):
        check_session_id(session)
