"""``/v1/responses`` and ``/v1/containers`` (and their files)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from openai.types.responses import ResponseItem

from .. import _wire as wire
from .. import _wire_responses as rwire
from .._containers import stored_id
from .._errors import bad_request, file_not_found
from .._responses import KEPT_EVENTS_S, item_key, served
from ..deps import Cursor, Include, ListOrder, Owner, Page, PageQuery, ServicesDep
from ..protocol.responses import ContainerCreate, ContainerFileFromId, ResponseCreate
from .common import attachment, find, listing, open_stored, spool_form, sse

router = APIRouter()


# Responses.


@router.post("/v1/responses", response_model=None)
async def create_response(
    body: ResponseCreate, owner: Owner, services: ServicesDep, request: Request
) -> Response | rwire.Response:
    response, events, task = await services.responder.start(
        owner, body, base_url=str(request.base_url)
    )
    if body.stream:
        return sse(events.follow())
    if body.background:
        return served(response, body.include)
    refusal = await asyncio.shield(task)
    if refusal is not None:
        raise refusal
    return served(response, body.include)


@router.get("/v1/responses/{response_id}", response_model=None)
async def get_response(
    response_id: str,
    owner: Owner,
    services: ServicesDep,
    include: Include,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=0)] = None,
) -> Response | rwire.Response:
    found = await find(services, rwire.RESPONSE, owner, response_id, "response")
    if not stream:
        return served(found, include)
    # A background response's stream, joined (again): from its first event (what the SDK's
    # `responses.stream(response_id=…)` needs), or after ``starting_after``.
    if not found.background:
        raise bad_request("Only a background response can be streamed again.", param="stream")
    events = services.responder.events(response_id)
    if events is None:
        raise bad_request(
            "The events of this response are no longer kept (they are kept for"
            f" {KEPT_EVENTS_S / 60:g} minutes after it ends, and not across a restart of"
            " the server): retrieve it without stream.",
            param="stream",
        )
    return sse(events.follow(after=-1 if starting_after is None else starting_after))


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, owner: Owner, services: ServicesDep) -> wire.Deleted:
    found = await find(services, rwire.RESPONSE, owner, response_id, "response")
    if found.status in ("queued", "in_progress"):
        await services.responder.cancel(owner, found)
    await services.responder.remove(owner, response_id)
    return wire.Deleted(id=response_id, object="response.deleted")


@router.post("/v1/responses/{response_id}/cancel")
async def cancel_response(response_id: str, owner: Owner, services: ServicesDep) -> rwire.Response:
    found = await find(services, rwire.RESPONSE, owner, response_id, "response")
    return served(await services.responder.cancel(owner, found), None)


@router.get("/v1/responses/{response_id}/input_items")
async def input_items(
    response_id: str, owner: Owner, page: Page, services: ServicesDep
) -> wire.ListPage[ResponseItem]:
    await find(services, rwire.RESPONSE, owner, response_id, "response")
    # Input items are found by a key of their response (an item's id is the client's).
    keyed = PageQuery(
        limit=page.limit,
        order=page.order,
        after=page.after and item_key(response_id, page.after),
        before=page.before and item_key(response_id, page.before),
    )
    return await listing(services, rwire.INPUT_ITEM, owner, keyed, parent=response_id)


# Containers.


@router.post("/v1/containers")
async def create_container(
    body: ContainerCreate, owner: Owner, services: ServicesDep
) -> rwire.Container:
    minutes = body.expires_after.minutes if body.expires_after else 20
    return await services.containers.create(
        owner,
        name=body.name,
        file_ids=list(body.file_ids),
        minutes=minutes,
        memory_limit=body.memory_limit,
    )


@router.get("/v1/containers")
async def list_containers(
    owner: Owner,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: ListOrder = "desc",
    after: Cursor = None,
    name: Annotated[str | None, Query(max_length=256)] = None,
) -> wire.ListPage[rwire.Container]:
    page = PageQuery(limit=limit, order=order, after=after)
    return await listing(services, rwire.CONTAINER, owner, page, where={"name": name})


@router.get("/v1/containers/{container_id}")
async def get_container(container_id: str, owner: Owner, services: ServicesDep) -> rwire.Container:
    return await services.containers.get(owner, container_id)


@router.delete("/v1/containers/{container_id}")
async def delete_container(container_id: str, owner: Owner, services: ServicesDep) -> wire.Deleted:
    await services.containers.delete(owner, container_id)
    return wire.Deleted(id=container_id, object="container.deleted")


@router.post("/v1/containers/{container_id}/files")
async def create_container_file(
    container_id: str, owner: Owner, services: ServicesDep, request: Request
) -> rwire.ContainerFile:
    containers = services.containers
    await containers.live(owner, container_id)
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        with tempfile.TemporaryDirectory(prefix="interp-upload-") as scratch:
            path = Path(scratch) / "upload"
            name, size = await spool_form(request, path, services.config.max_upload_bytes)
            return await containers.add_upload(owner, container_id, name, path, size=size)
    try:
        body = ContainerFileFromId.model_validate_json(await request.body())
    except ValueError:
        raise bad_request(
            "Send a multipart 'file' or a JSON body {\"file_id\": …}.", param="file_id"
        ) from None
    if await services.store.get(wire.FILE, owner, body.file_id) is None:
        raise file_not_found(body.file_id, param="file_id")
    return await containers.add_stored(owner, container_id, body.file_id, source="user")


@router.get("/v1/containers/{container_id}/files")
async def list_container_files(
    container_id: str,
    owner: Owner,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: ListOrder = "desc",
    after: Cursor = None,
) -> wire.ListPage[rwire.ContainerFile]:
    await services.containers.live(owner, container_id)
    page = PageQuery(limit=limit, order=order, after=after)
    return await listing(services, rwire.CONTAINER_FILE, owner, page, parent=container_id)


@router.get("/v1/containers/{container_id}/files/{file_id}")
async def get_container_file(
    container_id: str, file_id: str, owner: Owner, services: ServicesDep
) -> rwire.ContainerFile:
    await services.containers.live(owner, container_id)
    return await services.containers.file(owner, container_id, file_id)


@router.get("/v1/containers/{container_id}/files/{file_id}/content")
async def container_file_content(
    container_id: str, file_id: str, owner: Owner, services: ServicesDep
) -> Response:
    containers = services.containers
    await containers.live(owner, container_id)
    found = await containers.file(owner, container_id, file_id)
    path, mime = containers.stored(stored_id(found.id))
    name = found.path.rsplit("/", 1)[-1]
    return StreamingResponse(
        await open_stored(path, file_id), media_type=mime, headers=attachment(name)
    )


@router.delete("/v1/containers/{container_id}/files/{file_id}")
async def delete_container_file(
    container_id: str, file_id: str, owner: Owner, services: ServicesDep
) -> wire.Deleted:
    await services.containers.live(owner, container_id)
    await services.containers.delete_file(owner, container_id, file_id)
    return wire.Deleted(id=file_id, object="container.file.deleted")
