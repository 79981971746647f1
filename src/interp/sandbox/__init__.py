"""Isolation backends: where kernels run."""

from __future__ import annotations

from .._config import Config
from ._base import Backend, Sandbox, Usage


def make_backend(config: Config, *, engine_id: str, replica: str | None = None) -> Backend:
    if config.backend == "process":
        from ._process import ProcessBackend

        return ProcessBackend(config)
    from ._docker import DockerBackend

    return DockerBackend(config, engine_id=engine_id, replica=replica)


__all__ = ["Backend", "Sandbox", "Usage", "make_backend"]
