"""File Search's first steps, without a server: a file's text, and its chunks."""

from __future__ import annotations

import io
import itertools
import time
import zipfile
import zlib

import numpy
import pytest

from interp.server.agent.context import BYTES_PER_TOKEN
from interp.server.search import documents
from interp.server.search.chunks import Strategy, split
from interp.server.search.embedder import Builtin
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


def _pdf(content_stream: bytes, *, filtered: bool = False) -> bytes:
    """A one-page PDF whose page draws ``content_stream`` (written by hand: the objects,
    then an xref table of their offsets)."""
    stream_dict = b"/Length %d" % len(content_stream)
    if filtered:
        stream_dict += b" /Filter /FlateDecode"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< " + stream_dict + b" >>\nstream\n" + content_stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _docx(*paragraphs: str) -> bytes:
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "cell one", "cell two"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


async def test_pdf_and_docx_text_is_read_in_a_child_process() -> None:
    pdf = _pdf(b"BT /F1 12 Tf 72 720 Td (Quarterly revenue grew 12 percent) Tj ET")
    assert "Quarterly revenue grew 12 percent" in await documents.extract(".pdf", pdf)
    text = await documents.extract(".docx", _docx("First paragraph", "Zweiter Absatz ä"))
    assert "First paragraph" in text and "Zweiter Absatz ä" in text and "cell two" in text


@pytest.mark.parametrize(
    ("suffix", "data", "why"),
    [
        (".pdf", b"", "not a readable PDF"),
        (".pdf", b"%PDF-1.4\n garbage", "not a readable PDF"),
        (".docx", b"PK\x03\x04 not a zip", "not a readable DOCX"),
        (".pdf", _pdf(b"0 0 m 100 100 l S"), "no text to search"),  # a drawing, no text
    ],
)
async def test_a_broken_or_textless_document_is_refused_with_a_reason(
    suffix: str, data: bytes, why: str
) -> None:
    with pytest.raises(Unreadable, match=why):
        await documents.extract(suffix, data)


async def test_a_docx_zip_bomb_stops_at_the_memory_limit() -> None:
    # A Word file whose 3 MB document part unfolds to 3 GiB: past the child's 1 GiB.
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(_docx("real"))) as real,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb,
    ):
        for member in real.namelist():
            if member != "word/document.xml":
                bomb.writestr(member, real.read(member))
        with bomb.open("word/document.xml", "w", force_zip64=True) as part:
            for _ in range(3 * 1024):
                part.write(b" " * 1024**2)
    assert len(out.getvalue()) < 4 * 1024**2
    with pytest.raises(Unreadable, match=r"past the limits? on (time or )?memory"):
        await documents.extract(".docx", out.getvalue())


async def test_a_pdf_stream_that_inflates_past_the_limit_is_refused() -> None:
    packer = zlib.compressobj(9)
    packed = b"".join(packer.compress(b"0" * 1024**2) for _ in range(2 * 1024))
    packed += packer.flush()
    started = time.monotonic()
    # pypdf's own bound on inflating stops it (the child's memory limit is the backstop).
    with pytest.raises(Unreadable, match="Limit reached while decompressing"):
        await documents.extract(".pdf", _pdf(packed, filtered=True), seconds=20)
    assert time.monotonic() - started < 30


async def test_a_pdf_that_takes_too_long_is_stopped_at_the_cpu_limit() -> None:
    # Two million text operators: more than a second of work for the parser.
    slow = _pdf(b"BT /F1 12 Tf (x) Tj ET\n" * 2_000_000)
    started = time.monotonic()
    with pytest.raises(Unreadable, match="past the limits on time or memory"):
        await documents.extract(".pdf", slow, seconds=1)
    assert time.monotonic() - started < 1.5 * 1 + 1


async def test_a_pdf_whose_page_tree_is_cyclic_is_refused() -> None:
    looping = _pdf(b"BT (x) Tj ET").replace(b"/Kids [3 0 R]", b"/Kids [2 0 R]")
    with pytest.raises(Unreadable, match="cyclic"):
        await documents.extract(".pdf", looping, seconds=3)


def _docx_types() -> str:
    return (
        '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        'content-types"><Override PartName="/word/document.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
    )


async def test_the_builtin_embedding_model_places_meanings_near_each_other() -> None:
    """WordLlama's model, from the package's own files (no network here): a word is
    nearer its synonym's sentence than another's."""
    embed = Builtin()
    sentences = ["The car in the garage is red.", "The puppy sleeps in its kennel."]
    cars, pups = (numpy.asarray(v) for v in await embed(sentences))
    for query, near in (("automobile", cars), ("a dog", pups), ("vehicle", cars)):
        (vector,) = await embed([query])
        other = pups if near is cars else cars
        assert numpy.dot(vector, near) > numpy.dot(vector, other), query
    assert abs(float(numpy.linalg.norm(cars)) - 1) < 1e-4  # unit length
