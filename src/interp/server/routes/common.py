"""What the routes share: finding an owner's object or answering 404, a page of a list,
the files a body names, uploads spooled to disk, stored files streamed, SSE."""

from __future__ import annotations

import asyncio
import os
import shutil
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile as StarletteUploadFile

from .. import _wire as wire
from .._errors import APIError, bad_request, not_found
from .._store import Served
from ..deps import PageQuery, Services

JSON_BODY_BYTES = 16 * 1024**2

M = TypeVar("M")


async def find(services: Services, what: Served[M], owner: str, object_id: str, name: str) -> M:
    """The owner's object, or OpenAI's 404 naming it ``name``."""
    found = await services.store.get(what, owner, object_id)
    if found is None:
        raise not_found(name, object_id)
    return found


async def listing(
    services: Services,
    what: Served[M],
    owner: str,
    page: PageQuery,
    *,
    parent: str | None = None,
    where: dict[str, str | None] | None = None,
) -> wire.ListPage[Any]:
    """A page of a list route; ``where``: fields the objects have (``None``: any)."""
    found = await services.store.page(
        what, owner, parent=parent, limit=page.limit, order=page.order, after=page.after,
        before=page.before, where=where,
    )  # fmt: skip
    return wire.page(found.data, found.has_more)


def sse(stream: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def too_large(limit: int) -> APIError:
    return APIError(413, f"Request body too large: the limit is {limit} bytes.")


async def spool(file: StarletteUploadFile, path: Path, limit: int) -> tuple[str, int]:
    """Check an uploaded file's name and size, write it to ``path``; its name and size."""
    name = file.filename or ""
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise bad_request(f"Invalid file name {name[:100]!r}: use a plain name.", param="file")
    size = file.size if file.size is not None else 0
    if size > limit:
        raise too_large(limit)
    return name, await asyncio.to_thread(_spool, file, path)


async def spool_form(request: Request, path: Path, limit: int) -> tuple[str, int]:
    """The multipart field ``file`` of a request, spooled to ``path``; its name and size."""
    async with request.form(max_files=1, max_fields=8) as form:
        file = form.get("file")
        if not isinstance(file, StarletteUploadFile):
            raise bad_request("Send the file as the multipart field 'file'.", param="file")
        return await spool(file, path, limit)


def _spool(upload: StarletteUploadFile, path: Path) -> int:
    upload.file.seek(0)
    with path.open("xb") as target:
        shutil.copyfileobj(upload.file, target, 1024**2)
        return target.tell()


async def open_stored(path: Path, file_id: str) -> AsyncIterator[bytes]:
    """A stored file's bytes in chunks, from a descriptor opened before the answer starts:
    a file deleted by then is a 404, not a broken 200; one deleted later is sent whole."""
    try:
        fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise not_found("file", file_id) from None
    return _chunks(os.fdopen(fd, "rb"))


async def _chunks(stored: BinaryIO) -> AsyncIterator[bytes]:
    with stored:
        while chunk := await asyncio.to_thread(stored.read, 1024**2):
            yield chunk


def attachment(name: str) -> dict[str, str]:
    """The ``content-disposition`` of a download named ``name`` (RFC 6266): a name in
    printable ASCII as it is, another as an ASCII stand-in and the name itself in UTF-8,
    percent-encoded (RFC 5987), which browsers and HTTP clients prefer."""
    plain = wire.quoted(name)
    value = f'attachment; filename="{plain}"'
    if plain != name:
        value += f"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
    return {"content-disposition": value}
