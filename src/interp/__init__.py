"""interp: a local, sandboxed code-interpreter engine.

Runs ``code_interpreter`` tool calls in Jupyter kernels inside hardened Docker
containers and returns their outputs in OpenAI's shapes.
"""

from ._config import IMAGE_VERSION, Config
from ._engine import Engine
from ._exceptions import (
    CapacityError,
    ConfigError,
    DockerUnavailableError,
    FileStoreError,
    HibernationError,
    ImageError,
    InterpError,
    InvalidInputError,
    KernelStartError,
    NoSuchFileError,
    SandboxError,
    SessionNotFoundError,
    StoreFullError,
)
from ._models import (
    DisplayOutput,
    EngineStats,
    ErrorRaised,
    Event,
    ExecutionError,
    ExecutionFinished,
    ExecutionResult,
    ExecutionStarted,
    ExecutionStatus,
    ExitCause,
    ExitInfo,
    FileInfo,
    FileSaved,
    ImageFile,
    ImageOutput,
    ImageSaved,
    LatencySummary,
    LogChunk,
    LogsOutput,
    Output,
    SessionInfo,
)
from ._sync import SyncEngine

__version__ = "0.1.0"

__all__ = [
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
]
