"""The text of PDF and Word (DOCX) files, read by well-kept parsers (pypdf, python-docx) in
a child process with limits.

Such files are containers of compressed streams and object graphs: a few kilobytes can
unfold into gigabytes (a zip bomb in a DOCX, a PDF stream that inflates without end) or
into work without end (cyclic PDF objects). A parser's own guards are not the bound: the
child runs with an address-space limit and a CPU limit, the parent kills it at a wall
clock deadline, and whatever happens there is a reason for ``last_error``, never a crash
of the server or a hold on its event loop.

The child is ``_reader.py``, run as a script (no import of interp: it starts in a tenth
of the time).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from .text import MAX_TEXT_CHARS, Unreadable

_READER = str(Path(__file__).with_name("_reader.py"))

SUFFIXES = {".pdf", ".docx"}
MEMORY_BYTES = 1024**3
"""The child's address space: parsers and the file's unfolded objects."""
SECONDS = 60
"""CPU time the child may use; it is killed at half as long again of wall-clock time."""


async def extract(suffix: str, data: bytes, *, seconds: int = SECONDS) -> str:
    """The text of a ``suffix`` (``.pdf``, ``.docx``) file holding ``data``."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-I", _READER, suffix, str(seconds), str(MEMORY_BYTES),
        str(MAX_TEXT_CHARS),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={},
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(child.communicate(data), seconds * 1.5)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise Unreadable(f"reading the file took over {seconds * 1.5:g} s") from None
    except BaseException:  # cancelled (the server stopping): no child outlives its reader
        child.kill()
        await asyncio.shield(child.wait())
        raise
    if child.returncode == 0:
        return out.decode()
    if child.returncode == 2 and err:
        raise Unreadable(err.decode(errors="replace").strip().splitlines()[-1][:300])
    if child.returncode in (-signal.SIGXCPU, -signal.SIGKILL) or b"MemoryError" in err:
        raise Unreadable("reading the file went past the limits on time or memory")
    raise Unreadable(f"the file could not be read (the parser exited {child.returncode})")
