"""The HTTP routes of the Responses and Containers APIs (see ``_api`` for what every route
shares: owners, error JSON, body limits)."""

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response, StreamingResponse

from . import _wire as wire
from . import _wire_responses as rwire
from ._containers import Containers, stored_id
from ._errors import bad_request, file_not_found
from ._responses import KEPT_EVENTS_S, Responder, item_key, served
from ._store import Kind, Store
from ._wire import Cursor, Limit, ListOrder


def _include(request: Request) -> list[str]:
    """``include`` of a query, as ``include=…`` or as the ``openai`` SDK sends it,
    ``include[]=…``."""
    params = request.query_params
    return [*params.getlist("include"), *params.getlist("include[]")][:16]


def add_routes(
    app: FastAPI,
    *,
    store: Callable[[], Store],
    find: Callable[[Kind, str, str, str], Awaitable[dict[str, Any]]],
    listing: Callable[..., Awaitable[dict[str, Any]]],
    responder: Callable[[], Responder],
    containers: Callable[[], Containers],
    owner: Any,
    upload: Callable[[Request, Path], Any],
    open_stored: Callable[[Path, str], Awaitable[AsyncIterator[bytes]]],
    sse: Callable[[Any], StreamingResponse],
) -> None:
    """``find`` and ``listing`` are ``_api``'s (an owner's object or 404, a page of a list
    route); ``upload(request, path)`` spools a multipart ``file`` to ``path`` and returns
    its name; ``open_stored`` opens a stored file to stream; ``sse`` wraps an event stream."""
    Owner = Annotated[str, owner]

    # Responses.

    @app.post("/v1/responses", response_model=None)
    async def create_response(
        body: rwire.ResponseCreate, who: Owner, request: Request
    ) -> Response | dict[str, Any]:
        response, events, task = await responder().start(who, body, base_url=str(request.base_url))
        if body.stream:
            return sse(events.follow())
        if body.background:
            return served(response, body.include)
        refusal = await asyncio.shield(task)
        if refusal is not None:
            raise refusal
        return served(response, body.include)

    @app.get("/v1/responses/{response_id}", response_model=None)
    async def get_response(
        response_id: str,
        who: Owner,
        request: Request,
        stream: bool = False,
        starting_after: Annotated[int | None, Query(ge=0)] = None,
    ) -> Response | dict[str, Any]:
        found = await find("response", who, response_id, "response")
        if not stream:
            return served(found, _include(request))
        # A background response's stream, joined (again): from its first event (what the
        # SDK's `responses.stream(response_id=…)` needs), or after ``starting_after``.
        if not found["background"]:
            raise bad_request("Only a background response can be streamed again.", param="stream")
        events = responder().events(response_id)
        if events is None:
            raise bad_request(
                "The events of this response are no longer kept (they are kept for"
                f" {KEPT_EVENTS_S / 60:g} minutes after it ends, and not across a restart of"
                " the server): retrieve it without stream.",
                param="stream",
            )
        return sse(events.follow(after=-1 if starting_after is None else starting_after))

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str, who: Owner) -> dict[str, Any]:
        found = await find("response", who, response_id, "response")
        if found["status"] in ("queued", "in_progress"):
            await responder().cancel(who, found)
        await store().delete_children(who, [response_id])
        await store().forget(who, [response_id])
        await store().delete("response", who, response_id)
        responder().forget(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    @app.post("/v1/responses/{response_id}/cancel")
    async def cancel_response(response_id: str, who: Owner) -> dict[str, Any]:
        found = await find("response", who, response_id, "response")
        return served(await responder().cancel(who, found), None)

    @app.get("/v1/responses/{response_id}/input_items")
    async def input_items(
        response_id: str,
        who: Owner,
        limit: Limit = 20,
        order: ListOrder = "desc",
        after: Cursor = None,
        before: Cursor = None,
    ) -> dict[str, Any]:
        await find("response", who, response_id, "response")
        return await listing(
            "input_item",
            who,
            parent=response_id,
            limit=limit,
            order=order,
            after=after and item_key(response_id, after),
            before=before and item_key(response_id, before),
        )

    # Containers.

    @app.post("/v1/containers")
    async def create_container(body: rwire.ContainerCreate, who: Owner) -> dict[str, Any]:
        minutes = body.expires_after.minutes if body.expires_after else 20
        return await containers().create(
            who,
            name=body.name,
            file_ids=list(body.file_ids),
            minutes=minutes,
            memory_limit=body.memory_limit,
        )

    @app.get("/v1/containers")
    async def list_containers(
        who: Owner,
        limit: Limit = 20,
        order: ListOrder = "desc",
        after: Cursor = None,
        name: Annotated[str | None, Query(max_length=256)] = None,
    ) -> dict[str, Any]:
        return await listing(
            "container",
            who,
            parent=None,
            limit=limit,
            order=order,
            after=after,
            before=None,
            where={"name": name},
        )

    @app.get("/v1/containers/{container_id}")
    async def get_container(container_id: str, who: Owner) -> dict[str, Any]:
        return await containers().get(who, container_id)

    @app.delete("/v1/containers/{container_id}")
    async def delete_container(container_id: str, who: Owner) -> dict[str, Any]:
        await containers().delete(who, container_id)
        return {"id": container_id, "object": "container.deleted", "deleted": True}

    @app.post("/v1/containers/{container_id}/files")
    async def create_container_file(
        container_id: str, who: Owner, request: Request
    ) -> dict[str, Any]:
        await containers().live(who, container_id)
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            with tempfile.TemporaryDirectory(prefix="interp-upload-") as scratch:
                path = Path(scratch) / "upload"
                name = await upload(request, path)
                return await containers().add_upload(who, container_id, name, path)
        try:
            body = rwire.ContainerFileFromId.model_validate_json(await request.body())
        except ValueError:
            raise bad_request(
                "Send a multipart 'file' or a JSON body {\"file_id\": …}.", param="file_id"
            ) from None
        if await store().get("file", who, body.file_id) is None:
            raise file_not_found(body.file_id, param="file_id")
        return await containers().add_stored(who, container_id, body.file_id, source="user")

    @app.get("/v1/containers/{container_id}/files")
    async def list_container_files(
        container_id: str,
        who: Owner,
        limit: Limit = 20,
        order: ListOrder = "desc",
        after: Cursor = None,
    ) -> dict[str, Any]:
        await containers().live(who, container_id)
        return await listing(
            "container_file",
            who,
            parent=container_id,
            limit=limit,
            order=order,
            after=after,
            before=None,
        )

    @app.get("/v1/containers/{container_id}/files/{file_id}")
    async def get_container_file(container_id: str, file_id: str, who: Owner) -> dict[str, Any]:
        await containers().live(who, container_id)
        return await containers().file(who, container_id, file_id)

    @app.get("/v1/containers/{container_id}/files/{file_id}/content")
    async def container_file_content(container_id: str, file_id: str, who: Owner) -> Response:
        await containers().live(who, container_id)
        found = await containers().file(who, container_id, file_id)
        engine_id = stored_id(found["id"])
        path, mime = containers().stored(engine_id)
        name = found["path"].rsplit("/", 1)[-1]
        return StreamingResponse(
            await open_stored(path, file_id),
            media_type=mime,
            headers={"content-disposition": f'attachment; filename="{wire.quoted(name)}"'},
        )

    @app.delete("/v1/containers/{container_id}/files/{file_id}")
    async def delete_container_file(container_id: str, file_id: str, who: Owner) -> dict[str, Any]:
        await containers().live(who, container_id)
        await containers().delete_file(who, container_id, file_id)
        return {"id": file_id, "object": "container.file.deleted", "deleted": True}
