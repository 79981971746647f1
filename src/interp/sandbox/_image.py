"""Preparing the sandbox image's build: the base root filesystem and the wheels.

No Docker here. Wheels are downloaded on the host, where pip trusts the host's CA
bundle, and installed offline inside the build, so no TLS check is weakened anywhere and
the build needs no package index.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .._exceptions import ImageError

# The Python of Debian bookworm, which the image's venv is built on.
IMAGE_PYTHON = "3.11"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
CONTEXT_FILES = ("Dockerfile", "launch.py", "requirements.txt")


@dataclass(frozen=True)
class BuildProgress:
    """One step of an image build, for a progress display."""

    stage: str
    detail: str = ""
    step: int | None = None
    total: int | None = None


def manylinux_platforms(arch: str) -> list[str]:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    tags = ["manylinux2014"] + [f"manylinux_2_{minor}" for minor in range(17, 37)]
    return [f"{tag}_{machine}" for tag in tags]


def prepare_context(arch: str, wheel_cache: Path) -> Iterator[BuildProgress | Path]:
    """Fill a temporary build context; the last item yielded is its path."""
    context = Path(tempfile.mkdtemp(prefix="interp-build-"))
    source = resources.files("interp.sandbox_image")
    for name in CONTEXT_FILES:
        (context / name).write_bytes(source.joinpath(name).read_bytes())
    wheel_cache.mkdir(parents=True, exist_ok=True)
    yield BuildProgress("wheels", f"downloading the locked wheels into {wheel_cache}")
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--python-version", IMAGE_PYTHON,
        "--implementation", "cp", "--abi", f"cp{IMAGE_PYTHON.replace('.', '')}",
        "--abi", "abi3", "--abi", "none",
        "--dest", str(wheel_cache), "--requirement", str(context / "requirements.txt"),
    ]  # fmt: skip
    for platform in manylinux_platforms(arch):
        command += ["--platform", platform]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(context, ignore_errors=True)
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ImageError(
            f"downloading the sandbox's wheels failed: {last}",
            hint="check that pip on this machine reaches a package index",
        )
    wheels = context / "wheels"
    wheels.mkdir()
    for wheel in wheel_cache.glob("*.whl"):
        _link_or_copy(wheel, wheels / wheel.name)
    yield context


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)


def debootstrap_rootfs() -> Iterator[BuildProgress | Path]:
    """Make a minimal Debian root filesystem; the last item yielded is its directory."""
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "no Debian base image can be pulled and debootstrap is not installed",
            hint="apt-get install -y debootstrap, or make debian:bookworm-slim available",
        )
    root = Path(tempfile.mkdtemp(prefix="interp-rootfs-"))
    yield BuildProgress("base", f"debootstrap {DEBIAN_SUITE} (about 30 s)")
    done = subprocess.run(
        ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(root), DEBIAN_MIRROR],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        last = (done.stdout.strip().splitlines() or ["no output"])[-1]
        raise ImageError(f"debootstrap failed: {last}", hint="it must run as root")
    # Package lists and downloaded .debs are build leftovers, not part of a base image.
    for leftover in ("var/cache/apt", "var/lib/apt/lists"):
        for path in (root / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    yield root
