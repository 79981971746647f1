"""The engine's results and stream events, as typed, immutable models."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExecutionStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    """The code raised: see ``ExecutionResult.error``."""
    TIMEOUT = "timeout"
    KERNEL_DIED = "kernel_died"
    OOM = "oom"


class ExitCause(StrEnum):
    EXITED = "exited"
    SIGNALED = "signaled"
    OOM_KILLED = "oom_killed"


class ExitInfo(_Model):
    """Why a kernel's sandbox ended."""

    cause: ExitCause
    code: int | None = None
    signal: int | None = None

    def describe(self) -> str:
        if self.cause is ExitCause.OOM_KILLED:
            return "killed: out of memory"
        if self.cause is ExitCause.SIGNALED:
            return f"killed by signal {self.signal}"
        return f"exited with code {self.code}"


class LogsOutput(_Model):
    type: Literal["logs"] = "logs"
    logs: str


class ImageFile(_Model):
    file_id: str
    mime: str = "image/png"
    """``image/png`` or ``image/jpeg``."""


class ImageOutput(_Model):
    type: Literal["image"] = "image"
    image: ImageFile


RICH_MIME_TYPES = (
    "text/html",
    "text/markdown",
    "text/latex",
    "image/svg+xml",
    "application/json",
)
"""What a display keeps besides plain text and raster images, in this order of preference."""


class DisplayOutput(_Model):
    """A rich display (a DataFrame's HTML, an SVG, JSON, LaTeX), kept as Jupyter sent it.

    Its plain-text form, if it had one, is in the logs too, where a model reads it.
    """

    type: Literal["display"] = "display"
    data: dict[str, JsonValue]
    """The representations by MIME type, among ``RICH_MIME_TYPES``."""
    text: str | None = None
    """The ``text/plain`` representation."""

    @property
    def html(self) -> str | None:
        value = self.data.get("text/html")
        return value if isinstance(value, str) else None


Output = Annotated[LogsOutput | ImageOutput | DisplayOutput, Field(discriminator="type")]


class ExecutionError(_Model):
    """An exception raised by the user's code."""

    name: str
    value: str
    traceback: str
    """Readable traceback, ANSI colour codes removed."""


class FileInfo(_Model):
    """A file in the file store."""

    id: str
    name: str
    bytes: int
    mime: str
    created_at: datetime
    session: str | None


class FileSaved(_Model):
    """A file the code wrote in /mnt/data, copied into the file store."""

    type: Literal["file"] = "file"
    file: FileInfo
    path: str
    """Where the code (and a model citing it) sees it: ``sandbox:/mnt/data/<name>``."""


class ExecutionResult(_Model):
    """The outcome of one execution, with outputs in OpenAI's code_interpreter order."""

    id: str
    """Tool-call id, ``call_…``."""
    session: str
    code: str
    status: ExecutionStatus
    outputs: list[Output]
    error: ExecutionError | None = None
    message: str | None = None
    """What the engine has to say when the code did not simply complete (timeout, death)."""
    duration_s: float
    cpu_s: float | None = None
    """CPU time the kernel used during this execution, where the sandbox can tell."""
    peak_memory_bytes: int | None = None
    """Peak memory of the kernel's sandbox so far, where the sandbox can tell."""
    truncated_bytes: int = 0
    """Log bytes cut out of ``outputs`` by the log cap."""
    full_output_file_id: str | None = None
    """When logs were cut: the stored file holding the whole output."""
    dropped_images: int = 0
    """Images not kept because of the per-execution image cap."""
    files: list[FileSaved] = []
    """Files the code created or changed in /mnt/data, stored with ids."""

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.COMPLETED

    @property
    def logs(self) -> str:
        return "".join(o.logs for o in self.outputs if isinstance(o, LogsOutput))

    @property
    def image_ids(self) -> list[str]:
        return [o.image.file_id for o in self.outputs if isinstance(o, ImageOutput)]


class SessionInfo(_Model):
    id: str
    created_at: datetime
    last_used_at: datetime
    files_dir: Path
    """The host directory the session's code sees as /mnt/data."""
    has_kernel: bool
    busy: bool
    state: Literal["running", "idle", "hibernated"]
    """``hibernated``: its variables are saved (``snapshot_bytes``), it holds no kernel,
    and it does not count against ``max_sessions``."""
    snapshot_bytes: int | None = None
    snapshot_taken_at: datetime | None = None


class LatencySummary(_Model):
    """Recent latencies, in milliseconds."""

    n: int
    p50_ms: float | None
    p95_ms: float | None


class EngineStats(_Model):
    pool_ready: int
    pool_starting: int
    leased: int
    sessions: int
    """Live sessions: running or idle (at most ``max_sessions``)."""
    hibernated: int
    """Sessions whose variables are saved and that hold no kernel."""
    kernels_started: int
    kernel_start_failures: int
    kernels_died: int
    """Kernels that died on their own (crash, OOM, killed from outside), pooled or leased."""
    acquire: LatencySummary
    """From asking the pool for a kernel to holding a ready one."""
    cold_start: LatencySummary
    """From asking the backend for a sandbox to the kernel answering."""
    idle_kernel_memory_bytes: int | None
    """Median memory in use by a ready kernel in the pool, where the sandbox can tell."""


class ExecutionStarted(_Model):
    type: Literal["started"] = "started"
    id: str
    session: str
    code: str


class LogChunk(_Model):
    """Text the code wrote, in the order written."""

    type: Literal["log"] = "log"
    stream: Literal["stdout", "stderr", "result"]
    text: str


class ImageSaved(_Model):
    type: Literal["image"] = "image"
    file: FileInfo


class ErrorRaised(_Model):
    """The code raised; its traceback is in the logs too."""

    type: Literal["error"] = "error"
    error: ExecutionError


class ExecutionFinished(_Model):
    type: Literal["finished"] = "finished"
    result: ExecutionResult


Event = Annotated[
    ExecutionStarted
    | LogChunk
    | ImageSaved
    | DisplayOutput
    | ErrorRaised
    | FileSaved
    | ExecutionFinished,
    Field(discriminator="type"),
]
