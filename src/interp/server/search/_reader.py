"""Reads one PDF or DOCX file's text under limits; run by ``documents.extract`` as
``python -I _reader.py SUFFIX SECONDS MEMORY_BYTES MAX_CHARS``: the file on stdin, its text
(UTF-8) on stdout, or a one-line reason on stderr and exit status 2. Imports nothing of
interp, so that it starts quickly."""

import io
import resource
import sys


class Unreadable(Exception):
    pass


def _pdf_text(data: bytes, max_chars: int) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        raise Unreadable("the PDF is encrypted")
    pages: list[str] = []
    size = 0
    for page in reader.pages:
        pages.append(page.extract_text() or "")
        size += len(pages[-1])
        if size > max_chars:
            break
    return "\n\n".join(pages)


def _docx_text(data: bytes) -> str:
    import docx

    document = docx.Document(io.BytesIO(data))
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append("\t".join(cell.text for cell in row.cells))
    return "\n".join(parts)


def _main() -> int:
    suffix, seconds, memory, max_chars = sys.argv[1], *map(int, sys.argv[2:5])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))
    data = sys.stdin.buffer.read()
    try:
        text = _pdf_text(data, max_chars) if suffix == ".pdf" else _docx_text(data)
    except Unreadable as exc:
        print(exc, file=sys.stderr)
        return 2
    except MemoryError:
        print("reading the file went past the limit on memory", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 (a hostile file may make a parser raise anything)
        print(f"the file is not a readable {suffix[1:].upper()}: {exc}"[:300], file=sys.stderr)
        return 2
    if not text.strip():
        print("the file has no text to search (a scan without a text layer?)", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(text[:max_chars].encode(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
