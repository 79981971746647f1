"""Every exception interp raises derives from InterpError.

    InterpError
    ├── ConfigError          the configuration is invalid
    ├── InvalidInputError    the caller's code or arguments cannot be run
    │   └── NoSuchFileError  no stored file has that id (never stored, or deleted)
    ├── SessionNotFoundError the session id is unknown or closed
    ├── CapacityError        no kernel could be had in the allowed wait
    ├── HibernationError     a session's variables could not be saved
    ├── FileStoreError       the host's file store failed (disk full, permissions)
    │   └── StoreFullError   a file does not fit in the store's size budget
    └── SandboxError         the isolation layer failed (not the user's code)
        ├── DockerUnavailableError  no Docker engine answers
        ├── ImageError              the sandbox image is missing or of the wrong version
        └── KernelStartError        a kernel did not become ready

Errors raised by the user's code are not exceptions: they are data in
``ExecutionResult.error``. Docker, ZMQ and Jupyter errors are translated into these
at the boundary of the module that talks to them.
"""

from __future__ import annotations


class InterpError(Exception):
    """Root of interp's exceptions. ``hint`` says what the user can do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} ({self.hint})"


class ConfigError(InterpError):
    """The configuration is invalid. ``field`` names the setting at fault, if one is."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field


class InvalidInputError(InterpError):
    """The code or an argument given to the engine cannot be run."""


class NoSuchFileError(InvalidInputError):
    """No stored file has the id given: it was never stored, or has been deleted."""

    def __init__(self, file_id: str) -> None:
        super().__init__(f"no file {file_id!r}")
        self.file_id = file_id


class SessionNotFoundError(InterpError):
    """The session id is unknown or the session was closed."""


class CapacityError(InterpError):
    """No kernel or session slot became free within the allowed wait."""


class HibernationError(InterpError):
    """A session's variables could not be saved (over ``max_snapshot_bytes``, a kernel that
    did not answer, a full store): the session keeps its kernel, and its next call says
    why."""


class FileStoreError(InterpError):
    """The host's file store failed: the disk is full, or a file cannot be written."""


class StoreFullError(FileStoreError):
    """A file does not fit in the file store's size budget, even after eviction."""


class SandboxError(InterpError):
    """The sandbox layer failed for a reason other than the user's code."""


class DockerUnavailableError(SandboxError):
    """No Docker engine answered."""


class ImageError(SandboxError):
    """The sandbox image is missing, or its version label is not the one expected."""


class KernelStartError(SandboxError):
    """A kernel was started but did not become ready."""
