"""Building the sandbox image with Docker (the build context is prepared in ``_image``)."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import docker
import docker.errors

from .._config import IMAGE_VERSION
from .._exceptions import ImageError
from ._docker_client import check_image, connect, translate
from ._image import BuildProgress, debootstrap_rootfs, prepare_context
from ._packages import (
    PackageSpec,
    derived_context,
    derived_tag,
    find_derived,
    labels,
    resolve,
)

BASE_IMAGE = "debian:bookworm-slim"
LOCAL_BASE_IMAGE = "interp-base:bookworm"


def build_image(image: str, wheel_cache: Path) -> Iterator[BuildProgress]:
    """Build the sandbox image, yielding progress. Blocking: for the CLI's use."""
    client = connect()
    try:
        base = yield from _base_image(client)
        arch = str(client.info().get("Architecture", "x86_64"))
        context: Path | None = None
        for item in prepare_context(arch, wheel_cache):
            if isinstance(item, Path):
                context = item
            else:
                yield item
        assert context is not None
        try:
            yield from _docker_build(client, context, image, base)
        finally:
            shutil.rmtree(context, ignore_errors=True)
            with contextlib.suppress(docker.errors.APIError):
                client.images.prune(filters={"label": "io.interp.build-stage=true"})
        check_image(client, image)
        yield BuildProgress("done", f"built {image}")
    finally:
        client.close()


def build_derived(
    base_image: str, requirements: tuple[str, ...], wheel_cache: Path, *, force: bool = False
) -> Iterator[BuildProgress]:
    """Build the image of ``requirements`` derived from ``base_image`` (built already),
    yielding progress; nothing if one of the same spec exists (unless ``force``)."""
    client = connect()
    try:
        spec = PackageSpec(requirements, check_image(client, base_image))
        found = find_derived(client, spec)
        if found is not None and not force:
            yield BuildProgress("done", f"{found} is up to date (the same packages)")
            return
        arch = str(client.info().get("Architecture", "x86_64"))
        yield BuildProgress("lock", "resolving " + ", ".join(spec.names))
        lock = resolve(spec, arch)
        yield BuildProgress("wheels", f"downloading {len(lock.lines)} wheels into {wheel_cache}")
        context = derived_context(lock, arch, wheel_cache)
        tag = derived_tag(base_image, spec)
        try:
            yield from _docker_build(
                client,
                context,
                tag,
                base_image,
                labels=labels(spec, lock, base_image),
                network="none",
            )
        finally:
            shutil.rmtree(context, ignore_errors=True)
            with contextlib.suppress(docker.errors.APIError):
                client.images.prune(filters={"label": "io.interp.build-stage=true"})
        yield BuildProgress("done", f"built {tag}")
    finally:
        client.close()


def _base_image(client: docker.DockerClient) -> Generator[BuildProgress, None, str]:
    for candidate in (BASE_IMAGE, LOCAL_BASE_IMAGE):
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.get(candidate)
            return candidate
    yield BuildProgress("base", f"pulling {BASE_IMAGE}")
    try:
        client.images.pull(BASE_IMAGE)
        return BASE_IMAGE
    except docker.errors.APIError as exc:
        yield BuildProgress("base", f"cannot pull {BASE_IMAGE} ({exc.explanation}); making it")
    root: Path | None = None
    for item in debootstrap_rootfs():
        if isinstance(item, Path):
            root = item
        else:
            yield item
    assert root is not None
    yield BuildProgress("base", f"importing the root filesystem as {LOCAL_BASE_IMAGE}")
    try:
        with tempfile.TemporaryDirectory(prefix="interp-base-") as scratch:
            tarball = Path(scratch) / "rootfs.tar"
            subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
            repository, tag = LOCAL_BASE_IMAGE.split(":")
            with translate("importing the base image"):
                client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return LOCAL_BASE_IMAGE


def _docker_build(
    client: docker.DockerClient,
    context: Path,
    image: str,
    base: str,
    *,
    labels: dict[str, str] | None = None,
    network: str | None = None,
) -> Iterator[BuildProgress]:
    step_pattern = re.compile(r"^Step (\d+)/(\d+) : (.*)")
    with translate(f"building {image}"):
        stream = client.api.build(
            path=str(context),
            tag=image,
            buildargs={"BASE": base, "INTERP_IMAGE_VERSION": IMAGE_VERSION},
            rm=True,
            forcerm=True,
            decode=True,
            labels=labels,
            network_mode=network,
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageError(f"building {image} failed: {str(chunk['error']).strip()}")
            line = str(chunk.get("stream", "")).strip()
            match = step_pattern.match(line)
            if match:
                step, total, what = match.groups()
                yield BuildProgress("build", what[:80], int(step), int(total))
