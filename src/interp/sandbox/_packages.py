"""The user's packages in the sandbox: a derived image from a requirements list.

``packages`` (and/or a ``requirements`` file) in the configuration name what the code
needs beyond the base image. ``interp image build`` resolves them on the host with pip's
resolver, for the sandbox's Python and platform, wheels only, the base image's lock as
constraints (so nothing it pins moves), and keeps the result as a hash-checked lock. The
wheels are downloaded on the host (TLS verified by the host, as for the base image), and
the derived image is built FROM the base with no network at all. It is tagged and
labelled by the *spec* (the list as given, and the base image it derives from; the lock's
hash is a label too: two lists may lock alike), so an engine finds the
image of its spec without resolving anything, the same spec is never built twice, and a
changed spec is refused until it is built (never served stale).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import docker
import docker.errors
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .._config import Config
from .._exceptions import ImageError
from ._docker_client import check_image, translate
from ._image import IMAGE_PYTHON, manylinux_platforms

SPEC_LABEL = "io.interp.packages-spec"
PACKAGES_LABEL = "io.interp.packages"
BASE_LABEL = "io.interp.derived-from"
LOCK_LABEL = "io.interp.packages-lock"


@dataclass(frozen=True)
class PackageSpec:
    """What the user asked for, checked: requirement strings, in the order given."""

    requirements: tuple[str, ...]
    base: str
    """The base image's id: a rebuilt base makes every derived image stale."""

    @property
    def digest(self) -> str:
        text = json.dumps({"requirements": self.requirements, "base": self.base})
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def names(self) -> list[str]:
        return [Requirement(line).name for line in self.requirements]


@dataclass(frozen=True)
class Lock:
    """The resolved packages beyond the base's: ``name==version --hash=sha256:…`` lines."""

    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]


def requirement_lines(packages: Sequence[str], requirements: Path | None) -> tuple[str, ...]:
    """The user's requirements, each checked: a name with versions, extras, markers; no
    URLs, paths or pip options (a list must not steer pip anywhere else)."""
    given: list[tuple[str, str]] = [(entry, "packages") for entry in packages]
    if requirements is not None:
        try:
            text = requirements.read_text()
        except OSError as exc:
            raise ImageError(f"cannot read {requirements}: {exc.strerror}") from None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split(" #")[0].strip()
            if line and not line.startswith("#"):
                given.append((line, f"{requirements}:{number}"))
    checked: list[str] = []
    for entry, where in given:
        if entry.startswith("-"):
            raise ImageError(f"{where}: {entry!r} is a pip option; only requirements are taken")
        try:
            parsed = Requirement(entry)
        except InvalidRequirement as exc:
            why = str(exc).splitlines()[0]  # packaging points at the spot on more lines
            raise ImageError(f"{where}: {entry!r} is not a requirement ({why})") from None
        if parsed.url:
            raise ImageError(f"{where}: {entry!r} names a URL; only index packages are taken")
        checked.append(str(parsed))
    return tuple(checked)


FULL = (
    "seaborn", "statsmodels", "pyarrow", "polars", "pypdf", "pdfplumber", "python-docx",
    "python-pptx", "reportlab", "xlsxwriter", "opencv-python-headless", "networkx",
    "beautifulsoup4", "lxml",
    # Static image export (fig.write_image) with no network and no Chrome: kaleido 0.2.1
    # ships its own browser (kaleido 1 needs a Chrome installed), and plotly 7 dropped it.
    "plotly>=6.1.1,<7", "kaleido==0.2.1",
)  # fmt: skip
"""The ``full`` profile: what OpenAI's Code Interpreter users rely on for its file types
(PDF, Word, PowerPoint, Excel, Parquet, images) and analyses, beyond ``standard``."""


def configured(config: Config) -> tuple[str, ...]:
    """The requirements a configuration adds to its image (its profile's, its packages,
    its requirements file), checked."""
    profile = FULL if config.profile == "full" else ()
    return requirement_lines([*profile, *config.packages], config.requirements)


def package_names(config: Config) -> list[str]:
    """The names of the packages a configuration adds to the image."""
    return [Requirement(line).name for line in configured(config)]


def _base_lock() -> str:
    return resources.files("interp.sandbox_image").joinpath("requirements.txt").read_text()


def _pinned(lock_text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lock_text.splitlines():
        found = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line.strip())
        if found:
            pins[canonicalize_name(found.group(1))] = found.group(2)
    return pins


def resolve(spec: PackageSpec, arch: str) -> Lock:
    """Resolve the spec on the host for the sandbox (pip's resolver, wheels only, the
    base's pins as constraints); ``ImageError`` naming the package and why."""
    with tempfile.TemporaryDirectory(prefix="interp-lock-") as scratch:
        constraints = Path(scratch) / "constraints.txt"
        base = _base_lock()
        constraints.write_text(base)
        report = Path(scratch) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
            "--quiet", "--disable-pip-version-check", "--report", str(report),
            "--only-binary=:all:", "--python-version", IMAGE_PYTHON, "--implementation",
            "cp", "--abi", f"cp{IMAGE_PYTHON.replace('.', '')}", "--abi", "abi3",
            "--abi", "none", "--target", str(Path(scratch) / "target"),
            "--constraint", str(constraints), *spec.requirements,
        ]  # fmt: skip
        for platform in manylinux_platforms(arch):
            command += ["--platform", platform]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ImageError(_why(done.stderr, arch))
        installed = json.loads(report.read_text())["install"]
    pins = _pinned(base)
    lines = []
    for item in installed:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if pins.get(canonicalize_name(name)) == version:
            continue  # in the base already
        digest = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if not digest:
            raise ImageError(f"{name} {version}: the index gave no sha256 to check it by")
        lines.append(f"{canonicalize_name(name)}=={version} --hash=sha256:{digest}")
    return Lock(tuple(sorted(lines)))


def _why(stderr: str, arch: str) -> str:
    """pip's refusal in one line, naming the package."""
    platform = f"CPython {IMAGE_PYTHON} on Linux {arch}"
    missing = re.search(r"No matching distribution found for (\S+)", stderr)
    if missing:
        return (
            f"{missing.group(1)}: no version of it has a wheel for the sandbox ({platform}):"
            " it does not exist on the index, or publishes no such wheel"
        )
    conflict = re.search(r"Cannot install (.+?) because these package versions", stderr)
    if conflict:
        causes = re.findall(r"^\s+(.+ depends on .+)$", stderr, re.MULTILINE)
        because = "; ".join(dict.fromkeys(causes)) or "conflicting dependencies"
        return f"{conflict.group(1)} conflicts with the sandbox's pinned packages: {because}"
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR:")]
    last = errors[-1] if errors else (stderr.strip().splitlines() or ["no output"])[-1]
    return f"resolving the packages failed: {last.removeprefix('ERROR: ')}"


def derived_context(lock: Lock, arch: str, wheel_cache: Path) -> Path:
    """A build context for the derived image: the lock, its wheels, the Dockerfile."""
    context = Path(tempfile.mkdtemp(prefix="interp-derived-"))
    try:
        (context / "packages.lock").write_text(lock.text)
        wheels = context / "wheels"
        wheels.mkdir()
        wheel_cache.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--disable-pip-version-check", "--require-hashes", "--only-binary=:all:",
            "--python-version", IMAGE_PYTHON, "--implementation", "cp",
            "--abi", f"cp{IMAGE_PYTHON.replace('.', '')}", "--abi", "abi3", "--abi", "none",
            "--dest", str(wheel_cache), "--requirement", str(context / "packages.lock"),
        ]  # fmt: skip
        for platform in manylinux_platforms(arch):
            command += ["--platform", platform]
        if lock.lines:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise ImageError(f"downloading the packages' wheels failed: {last}")
        wanted = {line.split("==")[0] for line in lock.lines}
        for wheel in wheel_cache.glob("*.whl"):
            if canonicalize_name(wheel.name.split("-")[0]) in wanted:
                shutil.copy2(wheel, wheels / wheel.name)
        (context / "Dockerfile").write_text(_DOCKERFILE)
        return context
    except BaseException:
        shutil.rmtree(context, ignore_errors=True)
        raise


def labels(spec: PackageSpec, lock: Lock, base_image: str) -> dict[str, str]:
    return {
        SPEC_LABEL: spec.digest,
        LOCK_LABEL: lock.digest,
        PACKAGES_LABEL: " ".join(spec.requirements),
        BASE_LABEL: base_image,
    }


def find_derived(client: docker.DockerClient, spec: PackageSpec) -> str | None:
    """The tag of the image built for ``spec``, if there is one."""
    with translate("looking for the sandbox image with your packages"):
        found = client.images.list(filters={"label": f"{SPEC_LABEL}={spec.digest}"})
    tags = [tag for image in found for tag in image.tags]
    return tags[0] if tags else None


def image_for(client: docker.DockerClient, base_image: str, requirements: tuple[str, ...]) -> str:
    """The image kernels run on: ``base_image``, or the one derived from it with
    ``requirements``; ``ImageError`` with the command that builds a missing one."""
    base = check_image(client, base_image)
    if not requirements:
        return base_image
    spec = PackageSpec(requirements, base)
    found = find_derived(client, spec)
    if found is None:
        raise ImageError(
            f"the sandbox image with your packages ({', '.join(spec.names)}) is not built",
            hint="run `interp image build`",
        )
    return found


@dataclass(frozen=True)
class ImageRow:
    tag: str
    id: str
    size_mb: float
    packages: str
    """The derived image's requirements; empty for a base image."""


def sandbox_images(client: docker.DockerClient) -> list[ImageRow]:
    """The sandbox images here: bases, and the images derived from them."""
    with translate("listing the sandbox images"):
        found = client.images.list(filters={"label": "io.interp.image-version"})
    rows = [
        ImageRow(
            tag,
            str(image.id)[7:19],
            round(int(image.attrs.get("Size", 0)) / 1e6, 1),
            (image.labels or {}).get(PACKAGES_LABEL, ""),
        )
        for image in found
        for tag in image.tags
    ]
    return sorted(rows, key=lambda row: (row.packages != "", row.tag))


def prune_derived(client: docker.DockerClient, keep: str | None) -> list[str]:
    """Remove the derived images but ``keep`` (the configured one), and those a container
    still uses; the tags removed."""
    removed = []
    for row in sandbox_images(client):
        if not row.packages or row.tag == keep:
            continue
        try:
            client.images.remove(row.tag)
        except docker.errors.APIError:  # a container uses it: kept
            continue
        removed.append(row.tag)
    return removed


def derived_tag(base_image: str, spec: PackageSpec) -> str:
    """``interp-sandbox:6`` and a spec ``abc…`` -> ``interp-sandbox:6-abc…``: one tag per
    list (two lists may lock alike, and each keeps its image until pruned)."""
    return f"{base_image}-{spec.digest[:12]}"


# The new packages go in a stage of their own and only they are copied over: the final
# image is the base plus one layer of them (the wheels never land in a layer).
_DOCKERFILE = """\
ARG BASE
FROM ${BASE} AS build
USER root
COPY wheels/ /wheels/
COPY packages.lock /packages.lock
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --no-deps --require-hashes \\
    --find-links /wheels --target /opt/extra -r /packages.lock \\
 && /opt/venv/bin/python -m compileall -q /opt/extra

FROM ${BASE}
COPY --from=build /opt/extra/ /opt/venv/lib/python3.11/site-packages/
COPY packages.lock /opt/interp/packages.lock
"""
