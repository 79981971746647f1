"""The Docker client: connecting, the error boundary, image checks, labels.

Docker's and the transport's exceptions become interp's here (``translate``); the
``docker`` package is imported only by this and the other ``_docker*`` modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import docker.errors
import requests

from .._config import IMAGE_VERSION
from .._exceptions import DockerUnavailableError, ImageError, SandboxError

IMAGE_VERSION_LABEL = "io.interp.image-version"
LABEL_ENGINE = "io.interp.engine"
LABEL_OWNER_PID = "io.interp.owner-pid"
LABEL_OWNER_STARTED = "io.interp.owner-started"
LABEL_OWNER_PIDNS = "io.interp.owner-pidns"
LABEL_OWNER_REPLICA = "io.interp.owner-replica"
"""The pid namespace the owner's pid is in: a pid means something only there."""
LABEL_SESSION = "io.interp.session"
LABEL_KERNEL_DIR = "io.interp.kernel-dir"

# What docker-py raises when the daemon does not answer: its own errors, or the
# transport's underneath.
UNREACHABLE = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)

_DOCKER_HINT = (
    "start the Docker engine (as root on Debian: `apt-get install -y docker.io && dockerd &`),"
    " or set DOCKER_HOST"
)


def translate(action: str) -> contextlib.AbstractContextManager[None]:
    """Turn docker and transport errors into interp's exceptions."""

    @contextlib.contextmanager
    def boundary() -> Iterator[None]:
        try:
            yield
        except docker.errors.ImageNotFound as exc:
            raise ImageError(
                f"{action}: {exc.explanation}", hint="run `interp image build`"
            ) from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"{action}: {exc.explanation or exc}") from exc
        except UNREACHABLE as exc:
            raise DockerUnavailableError(
                f"{action}: cannot reach the Docker engine ({_reason(exc)})", hint=_DOCKER_HINT
            ) from exc

    return boundary()


def _reason(exc: BaseException) -> str:
    """The innermost cause, which names what actually failed (a socket path, a refusal)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def connect() -> docker.DockerClient:
    """A client for the Docker engine named by the environment, checked to answer."""
    with translate("connecting to Docker"):
        client = docker.from_env(timeout=120)
        client.ping()
        return client


PREFERRED_RUNTIMES = ("crun",)
"""Chosen, when registered, over Docker's default (runc): same isolation and flags, and it
starts containers faster (docs/security.md, Runtimes). runsc is never chosen unasked."""


def choose_runtime(client: docker.DockerClient, wanted: str | None) -> str | None:
    """The OCI runtime to start sandboxes with; ``None`` is Docker's default.

    ``wanted`` must be registered with the engine; unset, the first of
    ``PREFERRED_RUNTIMES`` that is registered, else Docker's default.
    """
    with translate("asking Docker for its runtimes"):
        registered = set(client.info().get("Runtimes") or {})
    if wanted is not None:
        if wanted not in registered:
            names = ", ".join(sorted(r for r in registered if "." not in r))
            raise SandboxError(
                f"Docker has no runtime {wanted!r} (registered: {names})",
                hint="register it in /etc/docker/daemon.json (README: Runtimes) or pick another",
            )
        return wanted
    return next((name for name in PREFERRED_RUNTIMES if name in registered), None)


def check_image(client: docker.DockerClient, image: str) -> str:
    """Return the image's id; raise ``ImageError`` if missing or of another version."""
    with translate(f"checking image {image}"):
        try:
            found = client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise ImageError(
                f"the sandbox image {image} is not built", hint="run `interp image build`"
            ) from exc
    version = (found.labels or {}).get(IMAGE_VERSION_LABEL)
    if version != IMAGE_VERSION:
        raise ImageError(
            f"image {image} has version label {version!r}, this interp needs {IMAGE_VERSION!r}",
            hint="run `interp image build` to rebuild it",
        )
    return str(found.id)


def image_status(image: str) -> str | None:
    """The short id of ``image`` if it is present and of this interp's version."""
    client = connect()
    try:
        return check_image(client, image)[7:19]
    except ImageError:
        return None
    finally:
        client.close()
