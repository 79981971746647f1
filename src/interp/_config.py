"""The engine's one configuration model.

Values come from keyword arguments, then ``INTERP_*`` environment variables, then a TOML
file (``INTERP_CONFIG`` or ``~/.config/interp/config.toml``), then the defaults. They are
read when a ``Config`` is constructed, never at import.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ._exceptions import ConfigError
from ._object_store import parse_file_store
from ._preload import check_module

# Bumped whenever sandbox-image/ changes in a way the engine depends on; the engine
# refuses an image whose label says otherwise.
IMAGE_VERSION = "6"

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_bytes(value: object) -> object:
    """Docker's notation: ``512m``, ``1g``, ``65536`` (binary units)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?\s*", value.lower())
        if match is None:
            raise ValueError(f"not a size: {value!r} (use e.g. 512m or 2g)")
        return int(float(match.group(1)) * _UNITS[match.group(2)])
    return value


def parse_optional_bytes(value: object) -> object:
    """A size, or ``none``/``off``/``0`` for no limit (from the environment or TOML)."""
    if isinstance(value, str) and value.strip().lower() in ("none", "off", "0", ""):
        return None
    if value == 0:
        return None
    return parse_bytes(value)


Bytes = Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)]
OptionalBytes = Annotated[Annotated[int, Field(gt=0)] | None, BeforeValidator(parse_optional_bytes)]

# Set by the sandbox's image or launcher; a kernel that got other values would not start,
# or would run code of the caller's choosing before the user's (LD_PRELOAD, PYTHONSTARTUP).
_RESERVED_ENV = re.compile(
    r"PATH|HOME|MPLBACKEND|MPLCONFIGDIR|LD_.*|PYTHON.*|JPY_.*|JUPYTER_.*|INTERP_.*"
)


def _config_file() -> Path:
    explicit = os.environ.get("INTERP_CONFIG")
    if explicit:
        return Path(explicit)
    return Path(platformdirs.user_config_dir("interp")) / "config.toml"


class Config(BaseSettings):
    """How the engine runs kernels. Every field has a usable default."""

    model_config = SettingsConfigDict(env_prefix="INTERP_", frozen=True, extra="forbid")

    backend: Literal["docker", "process"] = "docker"
    """``docker`` isolates; ``process`` runs kernels as local processes with no isolation."""
    image: str = f"interp-sandbox:{IMAGE_VERSION}"
    packages: list[str] = Field(default_factory=list)
    """Packages the code needs beyond the image's (``["seaborn", "polars==1.*"]``):
    requirements pip resolves for the sandbox; kernels then run on an image derived from
    ``image`` with them, which ``interp image build`` makes."""
    requirements: Path | None = None
    """A requirements file, added to ``packages`` (requirements only: no pip options)."""
    profile: Literal["standard", "full"] = "standard"
    """``full`` adds what OpenAI's Code Interpreter users rely on for its file types and
    analyses (seaborn, statsmodels, polars, pyarrow, PDF, Word, PowerPoint, Excel writers,
    OpenCV, networkx, plotly with offline image export, ...), built like ``packages``."""
    runtime: str | None = None
    """OCI runtime for the containers (``runc``, ``crun``, ``runsc``), registered with Docker.
    Unset: crun when Docker has it (faster to start, same isolation), else Docker's default."""

    memory: Bytes = 1024**3
    """Memory limit per kernel; swap is set equal, so the kernel cannot swap."""
    cpus: float = Field(1.0, gt=0)
    pids: int = Field(256, gt=8)
    tmp_size: Bytes = 256 * 1024**2
    """Size of the kernel's writable /tmp (the root filesystem is read-only)."""
    data_size: OptionalBytes = 1024**3
    """Cap of each session's /mnt/data (a loop-mounted filesystem; needs root). ``None``
    (``none`` or ``0`` in the environment or TOML): no cap."""
    preload: list[str] = Field(default_factory=lambda: ["numpy", "pandas", "matplotlib.pyplot"])
    """Modules a kernel imports before it is ready (pooled and cold-started alike), so the
    first call finds them loaded; the user's namespace stays a fresh kernel's. ``[]``: none."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra variables for the kernel. Nothing of the host's environment is passed."""

    pool_size: int = Field(2, ge=0)
    """Ready kernels kept warm, so a new session never waits for a container to start."""
    max_kernels: int = Field(16, gt=0)
    """Kernels alive at once: warm ones plus those leased to sessions."""
    max_sessions: int = Field(64, gt=0)
    max_sessions_per_key: int | None = Field(None, gt=0)
    """``interp serve``: sessions one API key may hold (threads', containers', MCP's);
    past it, the key's session idle longest gives its place up. Unset: a quarter of
    ``max_sessions`` with API keys, all of them without."""
    max_files_per_key: int = Field(10_000, gt=0)
    """``interp serve``: files one API key may keep (uploads and what its code wrote)."""
    max_bytes_per_key: OptionalBytes = None
    """``interp serve``: bytes of files one API key may keep, container files included.
    Unset: a quarter of ``store_size`` with API keys, all of it without."""
    max_containers_per_key: int = Field(100, gt=0)
    """``interp serve``: containers one API key may keep that have not expired."""
    capacity_wait: float = Field(30.0, ge=0)
    """How long a new session or kernel waits for room before ``CapacityError``."""
    hibernate_after: float = Field(1800.0, gt=0)
    """A session unused this long is hibernated: its kernel saves its variables to disk and
    is removed; the session's next call restores them in a new kernel."""
    session_max_idle: float = Field(7 * 24 * 3600.0, gt=0)
    """A session unused this long (hibernated or not) is closed: its variables and the
    files it stored are deleted."""
    max_snapshot_bytes: Bytes = 1024**3
    """Largest snapshot of one session's variables; a session whose variables take more is
    not hibernated (it keeps its kernel, and its next call says why)."""

    timeout: float = Field(60.0, gt=0)
    """Default limit of one execution, in seconds."""
    interrupt_grace: float = Field(2.0, gt=0)
    """After a timeout's interrupt, how long the kernel has to become idle before it is killed."""
    start_timeout: float = Field(60.0, gt=0)
    max_code_bytes: int = Field(1024**2, gt=0)
    max_upload_bytes: int = Field(512 * 1024**2, gt=0)
    max_log_bytes: int = Field(1024**2, gt=0)
    """Logs kept per execution; beyond it the middle is cut with a marker."""
    max_images: int = Field(32, gt=0)
    """Images kept per execution."""
    max_image_bytes: Bytes = 16 * 1024**2
    """Largest image kept."""
    max_files: int = Field(64, gt=0)
    """Files created or changed in /mnt/data that one execution stores and reports; a note
    counts the rest, which stay in /mnt/data."""
    max_files_bytes: Bytes = 512 * 1024**2
    """Bytes of changed files one execution stores, counted by logical size (a sparse file
    counts whole); files beyond it stay in /mnt/data, with a note."""
    max_full_output_bytes: Bytes = 64 * 1024**2
    """When logs are cut, the whole output is stored as a file up to this size."""
    store_size: Bytes = 10 * 1024**3
    """Budget of the file store. A file that does not fit evicts files of closed sessions,
    oldest first; if still too big, it is not stored."""

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_cache_dir("interp")))
    """Where session files, produced files and the file index live."""
    file_store: str | None = None
    """Where stored files' bytes of record live besides ``data_dir``: unset, nowhere else;
    ``s3://BUCKET[/PREFIX]``, an S3 bucket that servers sharing a database share too
    (endpoint, region and credentials from the ``AWS_*`` variables)."""

    # `interp serve`.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model_base_url: str | None = None
    """The OpenAI-compatible chat-completions endpoint runs are driven by."""
    model_api_key: str | None = None
    model_timeout: float = Field(600.0, gt=0)
    """Seconds a model request may take before the run fails with ``server_error``."""
    model_idle_timeout: float = Field(60.0, gt=0)
    """Seconds a model's stream may send nothing, once it has started, before the run fails."""
    model_context_tokens: int | None = Field(None, ge=256)
    """The context window of models the upstream does not report one for (``/v1/models``:
    vLLM's ``max_model_len``, ``context_length``) and ``model_contexts`` does not name;
    unknown, the window is learnt from the upstream's first refusal of a request as too long."""
    model_contexts: dict[str, Annotated[int, Field(ge=256)]] = Field(default_factory=dict)
    """Context windows by model name, over what the upstream reports."""
    replica_lease: float = Field(30.0, gt=0)
    """Seconds after its last heartbeat (every third of it) that a server sharing the
    database is taken as gone: its unfinished runs and responses are then failed."""
    replica_url: str | None = None
    """The URL other servers sharing the database reach this one at (``http://HOST:PORT``):
    a run or a container call that lands on another is forwarded here while this server
    holds its kernel. Unset: not forwarded; the other starts a kernel of its own and the
    code is told its session was restarted."""
    embedding_model: str = Field("builtin", min_length=1)
    """What File Search ranks by meaning with, besides keywords: ``builtin`` (a small model
    shipped in a package, run in the server), a model the upstream serves at
    ``/v1/embeddings`` (Ollama, vLLM and OpenAI do), or ``none`` (keywords alone)."""
    tool_outputs_timeout: float = Field(600.0, gt=0)
    """Seconds a run waits in ``requires_action`` for its tool outputs before it ``expired``."""
    body_timeout: float = Field(10.0, gt=0)
    body_min_rate: int = Field(16 * 1024, gt=0)
    """A request body gets ``body_timeout`` seconds, and then must have come at
    ``body_min_rate`` bytes a second: a slower one is refused (408)."""
    run_timeout: float = Field(600.0, gt=0)
    """Seconds a run (or a response) may run, all its model turns and code included (not
    its wait for tool outputs): past them, a run ends ``expired``, a response ``failed``."""
    model: str | None = None
    """The model a run uses when neither it nor its assistant names one; also what
    ``GET /v1/models`` lists (else the upstream's list)."""
    db: str | None = None
    """SQLAlchemy URL of the server's database (``sqlite:///path`` or
    ``postgresql+asyncpg://…``); SQLite in ``data_dir`` if unset."""
    api_keys: list[Annotated[str, Field(min_length=8)]] = Field(default_factory=list)
    """Bearer keys the server accepts (each sees only what it created); none: no key
    needed, and the server listens on loopback only."""

    @field_validator("preload")
    @classmethod
    def _module_names(cls, value: list[str]) -> list[str]:
        return [check_module(name) for name in value]

    @field_validator("file_store")
    @classmethod
    def _file_store_url(cls, value: str | None) -> str | None:
        if value:
            parse_file_store(value)
        return value or None

    @field_validator("env")
    @classmethod
    def _no_reserved_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"not an environment variable name: {name!r}")
            if _RESERVED_ENV.fullmatch(name):
                raise ValueError(f"{name} is set by interp's launcher and cannot be changed")
        return value

    def __init__(self, **values: Any) -> None:
        _check_environment()
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _config_error(exc) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=_config_file()),
        )


_REPLACED = {
    "session_idle_timeout": "sessions idle this long are hibernated now: see hibernate_after,"
    " and session_max_idle for when they are closed",
    "session_max_lifetime": "removed: a session is closed after session_max_idle unused",
}
"""Settings of earlier versions, and what took their place."""


def _check_environment() -> None:
    """An ``INTERP_*`` variable that names no setting is a typo (or a setting of another
    version): an error, as the same key in the TOML file is, naming the closest setting.
    ``INTERP_CONFIG`` names the file; ``INTERP_TEST_*`` are interp's own tests'."""
    known = {f"INTERP_{name.upper()}" for name in Config.model_fields} | {"INTERP_CONFIG"}
    for name in os.environ:
        upper = name.upper()
        if (
            not upper.startswith("INTERP_")
            or upper in known
            or upper.startswith(("INTERP_TEST_", "INTERP_BENCH_"))
        ):
            continue
        names = sorted(known_name.removeprefix("INTERP_") for known_name in known)
        close = difflib.get_close_matches(upper.removeprefix("INTERP_"), names, n=1)
        hint = f"did you mean INTERP_{close[0]}?" if close else "the README lists the settings"
        hint = _REPLACED.get(upper.removeprefix("INTERP_").lower(), hint)
        raise ConfigError(f"{name} is not a setting of interp", field=name, hint=hint)


def _config_error(exc: ValidationError) -> ConfigError:
    """One line per invalid setting, naming it, as ``ConfigError``."""
    errors = exc.errors()
    lines = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"]) or "config"
        said = _REPLACED.get(where) or error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {said}")
    first = errors[0]["loc"] if errors else ()
    field = str(first[0]) if first else None
    return ConfigError("invalid configuration: " + "; ".join(lines), field=field)
