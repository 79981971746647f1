"""``/v1/vector_stores``: File Search's stores, their files and file batches, and search."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from openai.types import VectorStore, VectorStoreDeleted, VectorStoreSearchResponse
from openai.types.vector_stores import (
    FileContentResponse,
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileDeleted,
)
from pydantic import BaseModel

from .. import _wire as wire
from .._vector_stores import POLL_AFTER_MS, VECTOR_STORE, VS_FILE
from ..deps import Owner, Page, ServicesDep
from ..protocol.vector_stores import (
    BatchCreate,
    BatchFile,
    FileCreate,
    FileModify,
    SearchBody,
    VectorStoreCreate,
    VectorStoreModify,
)
from .common import listing

router = APIRouter(prefix="/v1/vector_stores")

FileStatus = Annotated[
    Literal["in_progress", "completed", "failed", "cancelled"] | None, Query(alias="filter")
]


class SearchPage(BaseModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[VectorStoreSearchResponse]
    has_more: bool = False
    next_page: str | None = None


class ContentPage(BaseModel):
    object: Literal["vector_store.file_content.page"] = "vector_store.file_content.page"
    data: list[FileContentResponse]
    has_more: bool = False
    next_page: str | None = None


def _poll_later(response: Response, status: str) -> None:
    """Tell the SDK's polling helpers when to look again, while files are read."""
    if status == "in_progress":
        response.headers["openai-poll-after-ms"] = str(POLL_AFTER_MS)


@router.post("")
async def create_store(body: VectorStoreCreate, owner: Owner, services: ServicesDep) -> VectorStore:
    return await services.vector_stores.create(
        owner,
        name=body.name,
        description=body.description,
        metadata=body.metadata,
        expires_after=body.expires_after,
        file_ids=body.file_ids,
        chunking=body.chunking_strategy,
    )


@router.get("")
async def list_stores(
    owner: Owner, page: Page, services: ServicesDep
) -> wire.ListPage[VectorStore]:
    found = await listing(services, VECTOR_STORE, owner, page)
    found.data = await services.vector_stores.served(owner, found.data)
    return found


@router.get("/{store_id}")
async def get_store(store_id: str, owner: Owner, services: ServicesDep) -> VectorStore:
    return await services.vector_stores.get(owner, store_id)


@router.post("/{store_id}")
async def modify_store(
    store_id: str, body: VectorStoreModify, owner: Owner, services: ServicesDep
) -> VectorStore:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    return await services.vector_stores.modify(owner, store_id, changes, body.expires_after)


@router.delete("/{store_id}")
async def delete_store(store_id: str, owner: Owner, services: ServicesDep) -> VectorStoreDeleted:
    await services.vector_stores.delete(owner, store_id)
    return VectorStoreDeleted(id=store_id, object="vector_store.deleted", deleted=True)


@router.post("/{store_id}/search")
async def search(
    store_id: str, body: SearchBody, owner: Owner, services: ServicesDep
) -> SearchPage:
    await services.vector_stores.get(owner, store_id)
    ranking = body.ranking_options
    found = await services.vector_stores.search(
        owner, [store_id], body.queries(), limit=body.max_num_results, where=body.filters,
        threshold=ranking.score_threshold if ranking is not None else None,
    )  # fmt: skip
    return SearchPage(
        search_query=body.queries(),
        data=[
            VectorStoreSearchResponse(
                file_id=result.hit.file_id,
                filename=result.filename,
                score=result.hit.score,
                attributes=result.hit.attributes,
                content=[{"type": "text", "text": result.hit.text}],
            )
            for result in found
        ],
    )


# Its files.


@router.post("/{store_id}/files")
async def add_file(
    store_id: str, body: FileCreate, owner: Owner, services: ServicesDep, response: Response
) -> VectorStoreFile:
    given = BatchFile(
        file_id=body.file_id, attributes=body.attributes, chunking_strategy=body.chunking_strategy
    )
    added = await services.vector_stores.add_files(owner, store_id, [given], batch=False)
    assert isinstance(added, VectorStoreFile)
    _poll_later(response, added.status)
    return added


@router.get("/{store_id}/files")
async def list_files(
    store_id: str, owner: Owner, page: Page, services: ServicesDep, status: FileStatus = None
) -> wire.ListPage[VectorStoreFile]:
    await services.vector_stores.get(owner, store_id)
    return await listing(services, VS_FILE, owner, page, parent=store_id, where={"status": status})


@router.get("/{store_id}/files/{file_id}")
async def get_file(
    store_id: str, file_id: str, owner: Owner, services: ServicesDep, response: Response
) -> VectorStoreFile:
    found = await services.vector_stores.file(owner, store_id, file_id)
    _poll_later(response, found.status)
    return found


@router.post("/{store_id}/files/{file_id}")
async def modify_file(
    store_id: str, file_id: str, body: FileModify, owner: Owner, services: ServicesDep
) -> VectorStoreFile:
    return await services.vector_stores.relabel(owner, store_id, file_id, body.attributes)


@router.delete("/{store_id}/files/{file_id}")
async def remove_file(
    store_id: str, file_id: str, owner: Owner, services: ServicesDep
) -> VectorStoreFileDeleted:
    await services.vector_stores.remove_file(owner, store_id, file_id)
    return VectorStoreFileDeleted(id=file_id, object="vector_store.file.deleted", deleted=True)


@router.get("/{store_id}/files/{file_id}/content")
async def file_content(
    store_id: str, file_id: str, owner: Owner, services: ServicesDep
) -> ContentPage:
    found = await services.vector_stores.content(owner, store_id, file_id)
    return ContentPage(data=[FileContentResponse(type="text", text=found)])


# Its file batches.


@router.post("/{store_id}/file_batches")
async def create_batch(
    store_id: str, body: BatchCreate, owner: Owner, services: ServicesDep, response: Response
) -> VectorStoreFileBatch:
    made = await services.vector_stores.add_files(owner, store_id, body.each(), batch=True)
    assert isinstance(made, VectorStoreFileBatch)
    _poll_later(response, made.status)
    return made


@router.get("/{store_id}/file_batches/{batch_id}")
async def get_batch(
    store_id: str, batch_id: str, owner: Owner, services: ServicesDep, response: Response
) -> VectorStoreFileBatch:
    found = await services.vector_stores.batch(owner, store_id, batch_id)
    _poll_later(response, found.status)
    return found


@router.post("/{store_id}/file_batches/{batch_id}/cancel")
async def cancel_batch(
    store_id: str, batch_id: str, owner: Owner, services: ServicesDep
) -> VectorStoreFileBatch:
    return await services.vector_stores.cancel_batch(owner, store_id, batch_id)


@router.get("/{store_id}/file_batches/{batch_id}/files")
async def batch_files(
    store_id: str,
    batch_id: str,
    owner: Owner,
    page: Page,
    services: ServicesDep,
    status: FileStatus = None,
) -> wire.ListPage[VectorStoreFile]:
    await services.vector_stores.batch(owner, store_id, batch_id)
    where = {"status": status, "batch_id": batch_id}
    return await listing(services, VS_FILE, owner, page, parent=store_id, where=where)
