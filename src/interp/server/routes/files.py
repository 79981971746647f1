"""``/v1/files``: uploads into the engine's file store, and what the code produced."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response, StreamingResponse
from openai.types import FileDeleted, FileObject

from ... import InvalidInputError
from .. import _wire as wire
from ..deps import Cursor, ListOrder, Owner, PageQuery, ServicesDep
from .common import attachment, find, listing, open_stored, spool

router = APIRouter(prefix="/v1/files")


@router.post("")
async def upload_file(
    owner: Owner,
    services: ServicesDep,
    file: Annotated[UploadFile, File()],
    # What a client may upload for (the others name what OpenAI makes, as `assistants_output`
    # names what the code wrote).
    purpose: Annotated[Literal["assistants", "batch", "fine-tune", "vision", "user_data"], Form()],
) -> FileObject:
    with tempfile.TemporaryDirectory(prefix="interp-upload-") as scratch:
        path = Path(scratch) / "upload"
        name, size = await spool(file, path, services.config.max_upload_bytes)
        async with services.quotas.room(owner, files=1, size=size):
            info = await services.engine.create_file(name, path)
            return await services.store.create(
                "file", owner, wire.file_object(info, purpose=purpose)
            )


@router.get("")
async def list_files(
    owner: Owner,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: ListOrder = "desc",
    after: Cursor = None,
    purpose: Cursor = None,
) -> wire.ListPage[FileObject]:
    page = PageQuery(limit=limit, order=order, after=after)
    return await listing(services, wire.FILE, owner, page, where={"purpose": purpose})


@router.get("/{file_id}")
async def get_file(file_id: str, owner: Owner, services: ServicesDep) -> FileObject:
    return await find(services, wire.FILE, owner, file_id, "file")


@router.get("/{file_id}/content")
async def file_content(file_id: str, owner: Owner, services: ServicesDep) -> Response:
    found = await find(services, wire.FILE, owner, file_id, "file")
    path, mime = services.engine.file_path(file_id), services.engine.file(file_id).mime
    return StreamingResponse(
        await open_stored(path, file_id), media_type=mime, headers=attachment(found.filename)
    )


@router.delete("/{file_id}")
async def delete_file(file_id: str, owner: Owner, services: ServicesDep) -> FileDeleted:
    await find(services, wire.FILE, owner, file_id, "file")
    await services.store.delete("file", owner, file_id)
    await services.vector_stores.forget_file(owner, file_id)
    with contextlib.suppress(InvalidInputError):  # already gone from the file store
        await services.engine.delete_file(file_id)
    return FileDeleted(id=file_id, object="file", deleted=True)
