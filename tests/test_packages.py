"""The user's packages in the sandbox: a list checked, resolved on the host against the
base image's pins, and an image derived from the base with them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from interp import ImageError
from interp._config import IMAGE_VERSION
from interp.adapters.chat import DESCRIPTION, describe
from interp.sandbox._packages import PackageSpec, requirement_lines, resolve

from .test_cli import interp

BASE = f"interp-sandbox:{IMAGE_VERSION}"


def test_a_list_is_requirements_only(tmp_path: Path) -> None:
    given = ["seaborn", "polars==1.*", "Pillow [extra] ; python_version>'3'"]
    expected = ("seaborn", "polars==1.*", 'Pillow[extra]; python_version > "3"')
    assert requirement_lines(given, None) == expected
    for entry, why in [
        ("numpy>=1 ,, <3", "is not a requirement"),
        ("--index-url=https://evil.example/simple", "is a pip option"),
        ("-e .", "is a pip option"),
        ("pkg @ https://evil.example/pkg.whl", "names a URL"),
        ("seaborn===", "is not a requirement"),
    ]:
        with pytest.raises(ImageError, match=why) as refused:
            requirement_lines([entry], None)
        assert "\n" not in str(refused.value)
    listed = tmp_path / "requirements.txt"
    listed.write_text("# ours\nseaborn  # the charts\n\nstatsmodels>=0.14\n")
    assert requirement_lines(["polars"], listed) == ("polars", "seaborn", "statsmodels>=0.14")
    listed.write_text("seaborn\n-r other.txt\n")
    with pytest.raises(ImageError, match=r"requirements.txt:2: '-r other.txt' is a pip option"):
        requirement_lines([], listed)


def test_the_code_tool_names_what_is_installed_and_that_nothing_else_can_be() -> None:
    from interp.server._mcp import run_description

    for text in (describe(["seaborn", "numpy"]), run_description(["seaborn", "numpy"])):
        named = text.split("Python 3.11 with ")[1]
        assert named.startswith("numpy, pandas, matplotlib, scipy, sympy, pillow")
        assert named.count("numpy") == 1 and "tabulate, seaborn" in named
        assert "nothing else can be installed" in text
    assert "seaborn" not in DESCRIPTION


def _spec(*requirements: str) -> PackageSpec:
    return PackageSpec(requirements, base="sha256:test")


def test_a_list_resolves_to_a_hashed_lock_that_moves_no_pin_of_the_base() -> None:
    lock = resolve(_spec("seaborn", "polars==1.*"), "x86_64")
    names = {line.split("==")[0] for line in lock.lines}
    assert {"seaborn", "polars"} <= names
    # numpy, pandas and matplotlib are the base's, at the base's versions: not relocked.
    assert not names & {"numpy", "pandas", "matplotlib"}
    assert all(" --hash=sha256:" in line for line in lock.lines)
    assert resolve(_spec("polars==1.*", "seaborn"), "x86_64") == lock  # same list, same lock


@pytest.mark.parametrize(
    ("requirement", "said"),
    [
        (
            "interp-no-such-package-3f9c",
            "interp-no-such-package-3f9c: no version of it has a wheel",
        ),
        # Published as a source archive only: nothing to install without a compiler.
        ("pycrypto", "pycrypto: no version of it has a wheel"),
        ("numpy<2", "conflicts with the sandbox's pinned packages"),
    ],
)
def test_what_cannot_be_installed_is_one_line_naming_it(requirement: str, said: str) -> None:
    with pytest.raises(ImageError, match=said) as refused:
        resolve(_spec(requirement), "x86_64")
    assert "\n" not in str(refused.value)


@pytest.fixture
def derived_images(docker_client: docker.DockerClient) -> Iterator[None]:
    """Derived images the test built are removed at its end (the base is kept)."""
    before = {image.id for image in docker_client.images.list(BASE + "*")}
    yield
    for image in docker_client.images.list(filters={"label": "io.interp.packages-spec"}):
        if image.id is not None and image.id not in before:
            docker_client.images.remove(image.id, force=True)


@pytest.mark.docker
@pytest.mark.timeout(600)
def test_a_derived_image_is_built_once_used_and_kept_apart(
    tmp_path: Path, docker_client: docker.DockerClient, derived_images: None
) -> None:
    base_id = docker_client.images.get(BASE).id
    packages = {"INTERP_PACKAGES": json.dumps(["seaborn", "polars==1.*"])}
    built = interp("image", "build", tmp_path=tmp_path, env=packages)
    assert built.returncode == 0, built.stderr
    (tmp_path / "chart.py").write_text(
        "import polars as pl, seaborn as sns\n"
        "frame = pl.DataFrame({'x': [1, 2, 3], 'y': [2, 4, 3]})\n"
        "sns.lineplot(x=frame['x'].to_list(), y=frame['y'].to_list())\n"
        "import matplotlib.pyplot as plt\nplt.show()\n"
        "print(pl.__version__.split('.')[0], frame['y'].sum())\n"
    )
    ran = interp("run", "chart.py", "--out", "figs", tmp_path=tmp_path, env=packages)
    assert ran.returncode == 0, ran.stderr
    assert "1 9" in ran.stdout
    assert (tmp_path / "figs" / "chart-1.png").stat().st_size > 1000  # seaborn's chart

    # The same list again: nothing to build.
    t0 = time.monotonic()
    again = interp("image", "build", tmp_path=tmp_path, env=packages)
    assert again.returncode == 0 and "up to date (the same packages)" in again.stderr
    assert time.monotonic() - t0 < 20

    # A changed list is refused until built, and the old one still runs meanwhile.
    changed = {"INTERP_PACKAGES": json.dumps(["seaborn", "polars==1.*", "tabulate"])}
    refused = interp("run", "chart.py", tmp_path=tmp_path, env=changed)
    assert refused.returncode != 0
    assert "with your packages (seaborn, polars, tabulate) is not built" in refused.stderr
    assert "interp image build" in refused.stderr
    assert interp("run", "chart.py", tmp_path=tmp_path, env=packages).returncode == 0
    doctor = interp("doctor", tmp_path=tmp_path, env={**changed, "COLUMNS": "300"})
    assert doctor.returncode != 0
    assert "with your packages (seaborn, polars, tabulate) is not built" in doctor.stdout
    # Built, the changed list has an image (and a tag) of its own; both lists run.
    assert interp("image", "build", tmp_path=tmp_path, env=changed).returncode == 0
    assert interp("run", "chart.py", tmp_path=tmp_path, env=changed).returncode == 0
    assert interp("run", "chart.py", tmp_path=tmp_path, env=packages).returncode == 0

    # A package that cannot be installed: one line, exit 2, the base untouched.
    bogus = {"INTERP_PACKAGES": json.dumps(["interp-no-such-package-3f9c"])}
    failed = interp("image", "build", tmp_path=tmp_path, env=bogus)
    assert failed.returncode == 2, failed.stderr
    (said,) = [line for line in failed.stderr.splitlines() if line.startswith("interp:")]
    assert "interp-no-such-package-3f9c: no version of it has a wheel" in said
    assert docker_client.images.get(BASE).id == base_id

    # Listed with its packages; pruned once no configuration uses it.
    listed = interp("image", "list", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [BASE, "(base)"] in [[row[0], row[3]] for row in rows]
    (derived,) = [row[0] for row in rows if row[3] == "seaborn polars==1.*"]
    (newer,) = [row[0] for row in rows if row[3] == "seaborn polars==1.* tabulate"]
    assert derived != newer and derived.startswith(BASE + "-")
    kept = interp("image", "prune", tmp_path=tmp_path, env=packages)
    assert kept.returncode == 0 and f"kept {derived}" in kept.stderr
    assert f"removed {newer}" in kept.stdout
    pruned = interp("image", "prune", tmp_path=tmp_path, env=changed)
    assert pruned.returncode == 0 and f"removed {derived}" in pruned.stdout
    assert docker_client.images.get(BASE).id == base_id


@pytest.mark.docker
def test_kernels_on_a_derived_image_keep_every_hardening_flag(
    tmp_path: Path, docker_client: docker.DockerClient, derived_images: None
) -> None:
    """The derived image changes what is installed, nothing of how a kernel runs."""
    packages = {"INTERP_PACKAGES": json.dumps(["tabulate"])}  # in the base: an empty lock
    assert interp("image", "build", tmp_path=tmp_path, env=packages).returncode == 0
    code = (
        "import socket, os\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "except OSError as exc:\n    print('no network:', type(exc).__name__)\n"
        "print(os.getuid())\n"
    )
    env = {**os.environ, **packages, "INTERP_DATA_DIR": str(tmp_path / "data")}
    ran = subprocess.run(
        [sys.executable, "-m", "interp", "run", "-"], input=code, capture_output=True,
        text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "no network: OSError" in ran.stdout or "no network:" in ran.stdout
    assert ran.stdout.strip().endswith("1000")


FULL_CHECK = """
import io, pdfplumber, pypdf, docx, pptx
print('pdf:', pdfplumber.open('report.pdf').pages[0].extract_text())
print('pdf again:', pypdf.PdfReader('report.pdf').pages[0].extract_text())
print('docx:', docx.Document('memo.docx').paragraphs[0].text)
deck = pptx.Presentation('deck.pptx')
print('pptx:', deck.slides[0].shapes.title.text)

from reportlab.pdfgen import canvas
page = canvas.Canvas('out.pdf'); page.drawString(72, 720, 'written in the sandbox'); page.save()
written = docx.Document(); written.add_paragraph('written in the sandbox'); written.save('out.docx')
slides = pptx.Presentation()
slide = slides.slides.add_slide(slides.slide_layouts[0]); slide.shapes.title.text = 'written'
slides.save('out.pptx')
import xlsxwriter
book = xlsxwriter.Workbook('out.xlsx'); book.add_worksheet().write(0, 0, 42); book.close()
print('read back:', pypdf.PdfReader('out.pdf').pages[0].extract_text().strip())

import plotly.express as px
px.line(x=[1, 2, 3], y=[2, 4, 3]).write_image('plot.png')
import cv2, numpy as np
print('png:', cv2.imread('plot.png').shape[2])
import polars as pl, pyarrow.parquet as pq
pl.DataFrame({'a': [1, 2, 3]}).write_parquet('t.parquet')
print('parquet:', pq.read_table('t.parquet').num_rows)
import statsmodels.api as sm, networkx as nx, bs4, seaborn
fit = sm.OLS([1.0, 2.0, 3.0], sm.add_constant([1.0, 2.0, 3.0])).fit()
print('ols:', round(fit.params[1], 3), 'path:', nx.shortest_path(nx.path_graph(4), 0, 3))
print('html:', bs4.BeautifulSoup('<p>hi</p>', 'lxml').p.text)
"""


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_the_full_profile_reads_and_writes_openais_file_types(
    tmp_path: Path, docker_client: docker.DockerClient, derived_images: None
) -> None:
    import pptx

    from .server.test_search_text import _docx, _pdf

    (tmp_path / "report.pdf").write_bytes(
        _pdf(b"BT /F1 12 Tf 72 720 Td (Revenue grew 12 percent) Tj ET")
    )
    (tmp_path / "memo.docx").write_bytes(_docx("Minutes of the meeting"))
    deck = pptx.Presentation()
    deck.slides.add_slide(deck.slide_layouts[0]).shapes.title.text = "Quarterly review"
    deck.save(str(tmp_path / "deck.pptx"))
    (tmp_path / "check.py").write_text(FULL_CHECK)
    full = {"INTERP_PROFILE": "full"}
    built = interp("image", "build", tmp_path=tmp_path, env=full, timeout=800)
    assert built.returncode == 0, built.stderr
    files = [arg for name in ("report.pdf", "memo.docx", "deck.pptx") for arg in ("--file", name)]
    ran = interp("run", "check.py", *files, "--out", "out", tmp_path=tmp_path, env=full)
    assert ran.returncode == 0, ran.stderr
    logs = ran.stdout
    for said in (
        "pdf: Revenue grew 12 percent", "pdf again: Revenue grew 12 percent",
        "docx: Minutes of the meeting", "pptx: Quarterly review",
        "read back: written in the sandbox", "png: 3", "parquet: 3", "ols: 1.0",
        "path: [0, 1, 2, 3]", "html: hi",
    ):  # fmt: skip
        assert said in logs, logs
    written = {path.name for path in (tmp_path / "out").iterdir()}
    assert {"out.pdf", "out.docx", "out.pptx", "out.xlsx", "plot.png"} <= written
