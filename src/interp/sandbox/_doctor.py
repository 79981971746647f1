"""`interp doctor`: the Docker engine, the OCI runtime and the image, each with a fix."""

from __future__ import annotations

from dataclasses import dataclass

from .._config import IMAGE_VERSION
from .._exceptions import DockerUnavailableError, ImageError
from ._docker_client import check_image, connect


@dataclass(frozen=True)
class Check:
    """One line of `interp doctor`: what was checked, whether it holds, and what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def diagnose(image: str, runtime: str | None) -> list[Check]:
    """Check the Docker engine, the OCI runtime and the sandbox image. Blocking."""
    try:
        client = connect()
    except DockerUnavailableError as exc:
        return [Check("docker engine", False, exc.message, exc.hint or "")]
    try:
        info = client.info()
        checks = [
            Check(
                "docker engine",
                True,
                f"Docker {info.get('ServerVersion')}, cgroup v{info.get('CgroupVersion', '?')}",
            )
        ]
        runtimes = sorted(info.get("Runtimes") or {})
        wanted = runtime or str(info.get("DefaultRuntime", "runc"))
        checks.append(
            Check(
                "runtime",
                wanted in runtimes,
                f"{wanted} (available: {', '.join(runtimes)})",
                ""
                if wanted in runtimes
                else f"register {wanted} in /etc/docker/daemon.json "
                "and restart dockerd, or unset INTERP_RUNTIME",
            )
        )
        try:
            image_id = check_image(client, image)
            checks.append(
                Check("image", True, f"{image} ({image_id[7:19]}), version {IMAGE_VERSION}")
            )
        except ImageError as exc:
            checks.append(Check("image", False, exc.message, exc.hint or ""))
        return checks
    finally:
        client.close()
