"""``/v1/models`` and ``/v1/assistants``."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from openai.types import Model
from openai.types.beta import AssistantDeleted
from pydantic import BaseModel

from .. import _wire as wire
from .._errors import bad_request, not_found
from ..deps import Owner, Page, ServicesDep
from ..protocol.assistants import AssistantCreate, AssistantModify, ToolResources
from ..protocol.vector_stores import ExpiresAfter
from .common import find, listing

router = APIRouter()


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


@router.get("/v1/models")
async def models(owner: Owner, services: ServicesDep) -> ModelList:
    configured = services.config.model
    if configured:
        return ModelList(data=[Model(id=configured, object="model", created=0, owned_by="interp")])
    # As the upstream lists them, with the fields it adds (a context window) and the ones
    # it may leave out (Model requires them) filled in.
    listed = await services.model.models()
    return ModelList(data=[Model.model_validate(_MODEL | _given(found)) for found in listed])


_MODEL: dict[str, Any] = {"object": "model", "created": 0, "owned_by": "upstream"}


def _given(found: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in found.items() if value is not None}


async def resource_files(
    services: ServicesDep,
    owner: str,
    resources: ToolResources | None,
    *,
    expires: ExpiresAfter | None = None,
) -> None:
    """The files and vector stores of ``tool_resources`` are the owner's; a vector store
    given inline (``vector_stores``) is made here (expiring as ``expires`` says), and
    named by its id from then on."""
    if resources is None:
        return
    if resources.code_interpreter is not None:
        file_ids = resources.code_interpreter.file_ids
        await wire.check_files(services.store, owner, file_ids, "tool_resources")
    search = resources.file_search
    if search is None:
        return
    for store_id in search.vector_store_ids:
        await services.vector_stores.get(owner, store_id)
    if len(search.vector_store_ids) + len(search.vector_stores) > 1:
        raise bad_request(
            "file_search takes one vector store: give vector_store_ids or vector_stores.",
            param="tool_resources",
        )
    for new in search.vector_stores:
        made = await services.vector_stores.create(
            owner, name="", description=None, metadata=new.metadata, expires_after=expires,
            file_ids=new.file_ids, chunking=new.chunking_strategy,
        )  # fmt: skip
        search.vector_store_ids.append(made.id)
    search.vector_stores = []


@router.post("/v1/assistants")
async def create_assistant(
    body: AssistantCreate, owner: Owner, services: ServicesDep
) -> wire.Assistant:
    await resource_files(services, owner, body.tool_resources)
    return await services.store.create("assistant", owner, wire.assistant(body))


@router.get("/v1/assistants")
async def list_assistants(
    owner: Owner, page: Page, services: ServicesDep
) -> wire.ListPage[wire.Assistant]:
    return await listing(services, wire.ASSISTANT, owner, page)


@router.get("/v1/assistants/{assistant_id}")
async def get_assistant(assistant_id: str, owner: Owner, services: ServicesDep) -> wire.Assistant:
    return await find(services, wire.ASSISTANT, owner, assistant_id, "assistant")


@router.post("/v1/assistants/{assistant_id}")
async def modify_assistant(
    assistant_id: str, body: AssistantModify, owner: Owner, services: ServicesDep
) -> wire.Assistant:
    found = await find(services, wire.ASSISTANT, owner, assistant_id, "assistant")
    await resource_files(services, owner, body.tool_resources)
    changes = body.model_dump(exclude_unset=True)
    if body.tools is not None:
        changes["tools"] = [wire.tool(given) for given in body.tools]
    if body.tool_resources is not None:
        changes["tool_resources"] = wire.tool_resources(body.tool_resources)
    if body.response_format is not None:
        changes["response_format"] = wire.dumped(body.response_format)
    changed = wire.Assistant.model_validate(found.model_dump() | changes)
    # The fields given alone: a change another request makes meanwhile to others is kept.
    return await services.store.set_fields("assistant", owner, changed, list(changes))


@router.delete("/v1/assistants/{assistant_id}")
async def delete_assistant(
    assistant_id: str, owner: Owner, services: ServicesDep
) -> AssistantDeleted:
    if not await services.store.delete("assistant", owner, assistant_id):
        raise not_found("assistant", assistant_id)
    return AssistantDeleted(id=assistant_id, object="assistant.deleted", deleted=True)
