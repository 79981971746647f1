"""The text of an uploaded file, for File Search: plain text, Markdown, code, JSON and HTML.

What a file holds is the uploader's to choose (and may be a model's or a stranger's), so
nothing here builds a tree of it or recurses on it: text is decoded as it is, HTML goes
through a streaming tokenizer that keeps only the text, and the result is bounded.
Anything that is not text is refused with a reason, which the vector store file shows as
its ``last_error``.
"""

from __future__ import annotations

import codecs
from html.parser import HTMLParser
from pathlib import PurePosixPath

MAX_TEXT_CHARS = 32 * 1024**2
"""Text kept of one file; the rest is not searched (a 10 MB novel is about 10 M chars)."""

HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
TEXT_SUFFIXES = {
    # Prose and data.
    ".txt", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".xml", ".yaml",
    ".yml", ".toml", ".ini", ".log", ".tex",
    # Code.
    ".py", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".java", ".c", ".h", ".cc", ".cpp", ".hpp",
    ".cs", ".go", ".rs", ".rb", ".php", ".sh", ".bash", ".sql", ".r", ".swift", ".kt",
    ".scala", ".lua", ".pl", ".css",
}  # fmt: skip


class Unreadable(Exception):
    """A file whose text cannot be had; the message says why, for ``last_error``."""


def extract(name: str, data: bytes) -> str:
    """The searchable text of a file named ``name`` holding ``data``."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in TEXT_SUFFIXES | HTML_SUFFIXES and suffix:
        raise Unreadable(f"files of type {suffix!r} are not supported for search")
    text = _decode(data)
    if suffix in HTML_SUFFIXES:
        text = _html_text(text)
    if not text.strip():
        raise Unreadable("the file has no text to search")
    return text[:MAX_TEXT_CHARS]


def _decode(data: bytes) -> str:
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise Unreadable(f"the file is not valid {encoding} text") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("the file is not UTF-8 text (binary?)") from None
    if "\x00" in text:
        raise Unreadable("the file holds NUL bytes: binary, not text")
    return text


_SKIPPED = frozenset({"script", "style", "template", "noscript"})
_BREAKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED and self._skipping:
            self._skipping -= 1
        elif tag in _BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _html_text(markup: str) -> str:
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)
