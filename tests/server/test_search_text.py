"""File Search's first steps, without a server: a file's text, and its chunks."""

from __future__ import annotations

import itertools
import time

import pytest

from interp.server.agent.context import BYTES_PER_TOKEN
from interp.server.search.chunks import Strategy, split
from interp.server.search.text import Unreadable, extract


def test_text_markdown_code_and_json_are_read_as_they_are() -> None:
    for name in ("notes.txt", "README.md", "main.py", "data.json", "Makefile"):
        assert extract(name, "héllo wörld\n".encode()) == "héllo wörld\n"
    assert extract("bom.txt", "\ufeffwith a BOM".encode()) == "with a BOM"
    assert extract("wide.txt", "UTF-16 text".encode("utf-16")) == "UTF-16 text"


def test_html_keeps_its_text_and_drops_scripts_and_styles() -> None:
    page = (
        "<html><head><style>p { color: red }</style><script>alert('x')</script></head>"
        "<body><h1>Quarterly report</h1><p>Revenue &amp; costs</p></body></html>"
    )
    text = extract("report.html", page.encode())
    assert "Quarterly report" in text and "Revenue & costs" in text
    assert "alert" not in text and "color" not in text


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("empty.txt", b"", "no text"),
        ("blank.md", b" \n\t\n", "no text"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
        ("nul.txt", b"text\x00more", "NUL"),
        ("photo.png", b"whatever", "'.png' are not supported"),
        ("only-tags.html", b"<div><script>x()</script></div>", "no text"),
    ],
)
def test_what_is_not_text_is_refused_with_a_reason(name: str, data: bytes, why: str) -> None:
    with pytest.raises(Unreadable, match=why):
        extract(name, data)


def test_hostile_nesting_is_read_in_linear_time() -> None:
    # 200 000 levels of JSON or HTML: nothing recurses on the file, so no RecursionError
    # and no quadratic blow-up.
    started = time.monotonic()
    deep_json = "[" * 200_000 + "1" + "]" * 200_000
    assert extract("deep.json", deep_json.encode()) == deep_json
    deep_html = "<div>" * 200_000 + "needle" + "</div>" * 200_000
    assert extract("deep.html", deep_html.encode()).strip() == "needle"
    assert time.monotonic() - started < 10


def test_chunks_hold_the_budget_overlap_and_cover_the_text() -> None:
    words = [f"word{i}" for i in range(5000)]
    strategy = Strategy(max_tokens=100, overlap_tokens=50)
    chunks = split(" ".join(words), strategy)
    budget = 100 * BYTES_PER_TOKEN
    assert all(len(chunk.encode()) <= budget for chunk in chunks)
    assert chunks[0].split()[0] == "word0" and chunks[-1].split()[-1] == "word4999"
    for before, after in itertools.pairwise(chunks):
        shared = set(before.split()) & set(after.split())
        # About half a chunk repeats in the next (the overlap), and the text advances.
        assert 0.3 * budget <= len(" ".join(sorted(shared)).encode()) <= 0.6 * budget
        assert after.split()[-1] not in before.split()
    assert set(" ".join(chunks).split()) == set(words)


def test_a_word_over_the_budget_is_cut_and_blank_text_has_no_chunks() -> None:
    strategy = Strategy(max_tokens=100, overlap_tokens=0)
    long_word = "é" * 1000  # 2 000 bytes, over the 300-byte budget
    chunks = split(f"start {long_word} end", strategy)
    assert "".join(chunks).replace("start", "").replace("end", "").replace(" ", "") == long_word
    assert all(len(chunk.encode()) <= 100 * BYTES_PER_TOKEN for chunk in chunks)
    assert split("  \n ", strategy) == []
    assert split("one", Strategy()) == ["one"]


@pytest.mark.parametrize(("size", "overlap"), [(99, 0), (4097, 0), (800, 401), (800, -1)])
def test_a_static_strategy_outside_openais_bounds_is_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunk"):
        Strategy(max_tokens=size, overlap_tokens=overlap)
