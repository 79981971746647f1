"""The Conversations API: a conversation is a transcript that responses continue
(``responses.create(conversation=…)``) and that its items can be read, added and deleted
through."""

from __future__ import annotations

from fastapi import APIRouter
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItem,
)

from .. import _wire as wire
from .. import _wire_responses as rwire
from .._errors import not_found
from .._responses import distinct, item_key, stored_item
from ..deps import Cursor, Limit, ListOrder, Owner, ServicesDep
from ..protocol.responses import ConversationCreate, ConversationItemsCreate, ConversationUpdate

router = APIRouter(prefix="/v1/conversations")


async def _conversation(services: ServicesDep, owner: str, conversation_id: str) -> Conversation:
    found = await services.store.get(rwire.CONVERSATION, owner, conversation_id)
    if found is None:
        raise not_found("conversation", conversation_id)
    return found


@router.post("")
async def create_conversation(
    body: ConversationCreate, owner: Owner, services: ServicesDep
) -> Conversation:
    items = [stored_item(item) for item in body.items or []]
    distinct(items, param="items")
    await services.responder.check_images(owner, items, param="items")
    created = rwire.conversation(body.metadata)
    await services.store.create("conversation", owner, created)
    await services.responder.add_items(owner, created.id, items, again=False)
    return created


@router.get("/{conversation_id}")
async def get_conversation(
    conversation_id: str, owner: Owner, services: ServicesDep
) -> Conversation:
    return await _conversation(services, owner, conversation_id)


@router.post("/{conversation_id}")
async def update_conversation(
    conversation_id: str, body: ConversationUpdate, owner: Owner, services: ServicesDep
) -> Conversation:
    found = await _conversation(services, owner, conversation_id)
    found.metadata = body.metadata
    return await services.store.set_fields("conversation", owner, found, ["metadata"])


@router.delete("/{conversation_id}")
async def delete_conversation(
    conversation_id: str, owner: Owner, services: ServicesDep
) -> ConversationDeletedResource:
    await _conversation(services, owner, conversation_id)
    async with services.store.transaction() as tx:
        tx.delete_children(owner, [conversation_id])
        tx.forget(owner, [conversation_id])
        tx.delete("conversation", owner, conversation_id)
    return ConversationDeletedResource(
        id=conversation_id, object="conversation.deleted", deleted=True
    )


@router.post("/{conversation_id}/items")
async def create_items(
    conversation_id: str,
    body: ConversationItemsCreate,
    owner: Owner,
    services: ServicesDep,
) -> wire.ListPage[ConversationItem]:
    await _conversation(services, owner, conversation_id)
    items = [stored_item(item) for item in body.items]
    distinct(items, param="items")
    await services.responder.check_images(owner, items, param="items")
    await services.responder.add_items(owner, conversation_id, items, again=False)
    return wire.page([rwire.CONVERSATION_ITEM.load(item) for item in items], False)


@router.get("/{conversation_id}/items")
async def list_items(
    conversation_id: str,
    owner: Owner,
    services: ServicesDep,
    limit: Limit = 20,
    order: ListOrder = "desc",
    after: Cursor = None,
) -> wire.ListPage[ConversationItem]:
    await _conversation(services, owner, conversation_id)
    cursor = item_key(conversation_id, after) if after is not None else None
    page = await services.store.page(
        rwire.CONVERSATION_ITEM,
        owner,
        parent=conversation_id,
        limit=limit,
        order=order,
        after=cursor,
    )
    return wire.page(page.data, page.has_more)


@router.get("/{conversation_id}/items/{item_id}")
async def get_item(
    conversation_id: str, item_id: str, owner: Owner, services: ServicesDep
) -> ConversationItem:
    await _conversation(services, owner, conversation_id)
    key = item_key(conversation_id, item_id)
    found = await services.store.get(rwire.CONVERSATION_ITEM, owner, key)
    if found is None:
        raise not_found("item", item_id)
    return found


@router.delete("/{conversation_id}/items/{item_id}")
async def delete_item(
    conversation_id: str, item_id: str, owner: Owner, services: ServicesDep
) -> Conversation:
    found = await _conversation(services, owner, conversation_id)
    key = item_key(conversation_id, item_id)
    if not await services.store.delete("conversation_item", owner, key):
        raise not_found("item", item_id)
    await services.store.drop(owner, conversation_id, item_id)
    return found
