"""``/v1/models`` and ``/v1/assistants``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .. import _wire as wire
from .._errors import not_found
from ..deps import Owner, Page, ServicesDep
from ..protocol.assistants import AssistantCreate, AssistantModify, ToolResources
from .common import check_files, find, listing

router = APIRouter()


@router.get("/v1/models")
async def models(owner: Owner, services: ServicesDep) -> dict[str, Any]:
    configured = services.config.model
    if configured:
        data = [{"id": configured, "object": "model", "created": 0, "owned_by": "interp"}]
    else:
        data = await services.model.models()
    return {"object": "list", "data": data}


async def resource_files(
    services: ServicesDep, owner: str, resources: ToolResources | None
) -> None:
    """The files of ``tool_resources`` are the owner's."""
    if resources is not None and resources.code_interpreter is not None:
        await check_files(services, owner, resources.code_interpreter.file_ids, "tool_resources")


@router.post("/v1/assistants")
async def create_assistant(
    body: AssistantCreate, owner: Owner, services: ServicesDep
) -> dict[str, Any]:
    await resource_files(services, owner, body.tool_resources)
    return await services.store.create("assistant", owner, wire.assistant(body))


@router.get("/v1/assistants")
async def list_assistants(owner: Owner, page: Page, services: ServicesDep) -> dict[str, Any]:
    return await listing(services, "assistant", owner, page)


@router.get("/v1/assistants/{assistant_id}")
async def get_assistant(assistant_id: str, owner: Owner, services: ServicesDep) -> dict[str, Any]:
    return await find(services, "assistant", owner, assistant_id, "assistant")


@router.post("/v1/assistants/{assistant_id}")
async def modify_assistant(
    assistant_id: str, body: AssistantModify, owner: Owner, services: ServicesDep
) -> dict[str, Any]:
    found = await find(services, "assistant", owner, assistant_id, "assistant")
    await resource_files(services, owner, body.tool_resources)
    changes = body.model_dump(exclude_unset=True)
    if body.tools is not None:
        changes["tools"] = [wire.tool(given) for given in body.tools]
    if body.tool_resources is not None:
        changes["tool_resources"] = wire.tool_resources(body.tool_resources)
    if body.response_format is not None:
        changes["response_format"] = wire.dumped(body.response_format)
    found.update(changes)
    return await services.store.put("assistant", owner, found)


@router.delete("/v1/assistants/{assistant_id}")
async def delete_assistant(
    assistant_id: str, owner: Owner, services: ServicesDep
) -> dict[str, Any]:
    if not await services.store.delete("assistant", owner, assistant_id):
        raise not_found("assistant", assistant_id)
    return {"id": assistant_id, "object": "assistant.deleted", "deleted": True}
