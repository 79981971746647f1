"""`interp doctor`: the Docker engine, the OCI runtime and the image, each with a fix."""

from __future__ import annotations

import time
from dataclasses import dataclass

import docker
import docker.errors

from .._config import IMAGE_VERSION
from .._exceptions import DockerUnavailableError, ImageError
from ._docker_client import PREFERRED_RUNTIMES, check_image, connect
from ._packages import image_for


@dataclass(frozen=True)
class Check:
    """One line of `interp doctor`: what was checked, whether it holds, and what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False
    """A failure here does not make the setup unhealthy (a runtime not in use)."""


def diagnose(image: str, runtime: str | None, requirements: tuple[str, ...] = ()) -> list[Check]:
    """Check the Docker engine, the OCI runtime, the sandbox image and the one derived
    with ``requirements`` (the user's packages). Blocking."""
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
        preferred = [name for name in PREFERRED_RUNTIMES if name in runtimes]
        wanted = runtime or (preferred[0] if preferred else str(info.get("DefaultRuntime", "runc")))
        checks.append(
            Check(
                "runtime",
                wanted in runtimes,
                f"{wanted} (registered: {', '.join(r for r in runtimes if '.' not in r)})",
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
        if requirements:
            try:
                derived = image_for(client, image, requirements)
                checks.append(Check("packages", True, f"{derived}: {' '.join(requirements)}"))
                image = derived
            except ImageError as exc:
                checks.append(Check("packages", False, exc.message, exc.hint or ""))
                return checks
        # Docker also lists containerd's shims by their long names: the OCI runtimes only.
        oci = [name for name in runtimes if not name.startswith("io.containerd.")]
        checks += [_try_runtime(client, image, name, in_use=name == wanted) for name in oci]
        return checks
    finally:
        client.close()


def _try_runtime(client: docker.DockerClient, image: str, runtime: str, *, in_use: bool) -> Check:
    """Start a real container of the image with ``runtime``: whether it works, and how fast."""
    began = time.perf_counter()
    try:
        client.containers.run(
            image, ["true"], runtime=runtime, network_mode="none", remove=True, user="1000:1000"
        )
    except docker.errors.DockerException as exc:
        said = str(getattr(exc, "explanation", None) or exc).strip().splitlines()
        return Check(
            f"runtime {runtime}",
            False,
            said[-1][:200] if said else type(exc).__name__,
            "the runtime in use must start containers" if in_use else "not in use: optional",
            optional=not in_use,
        )
    took = time.perf_counter() - began
    used = " (in use)" if in_use else ""
    return Check(f"runtime {runtime}", True, f"starts a container in {took:.2f} s{used}")
