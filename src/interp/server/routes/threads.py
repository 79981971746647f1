"""``/v1/threads``: threads, their messages, runs and run steps. What adds to a thread or
deletes it holds the thread's lock (``Runner.threads``): a request racing a delete either
finishes first and is undone by it, or finds the thread gone."""

from __future__ import annotations

import asyncio
from typing import Any, Literal, TypeVar

from fastapi import APIRouter
from fastapi.responses import Response
from openai.types.beta import Thread, ThreadDeleted
from openai.types.beta.thread import ToolResources as ThreadResources
from openai.types.beta.thread import ToolResourcesFileSearch as ThreadFileSearch
from openai.types.beta.threads import Message, MessageDeleted
from openai.types.beta.threads.runs import RunStep

from .. import _wire as wire
from .._errors import bad_request, not_found
from .._runs import DONE, active_run_error, message_unit
from .._store import Conflict, Writes
from ..agent.context import Unit
from ..deps import Cursor, Include, Owner, Page, Services, ServicesDep
from ..protocol.assistants import (
    ImageFilePart,
    MessageCreate,
    MetadataModify,
    RunCreate,
    SubmitToolOutputs,
    ThreadAndRunCreate,
    ThreadCreate,
    ThreadModify,
)
from ..protocol.vector_stores import BatchFile, ExpiresAfter
from .assistants import resource_files
from .common import find, listing, sse

SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
"""What a run's ``include`` names to keep the text of the passages its searches found."""

THREAD_STORE_EXPIRY = ExpiresAfter(anchor="last_active_at", days=7)
"""A vector store a thread makes (inline, or for files attached for search) expires as
OpenAI's do: 7 days after it was last used."""

router = APIRouter(prefix="/v1/threads")

Live = TypeVar("Live", wire.Run, Message)


async def thread_of(services: Services, owner: str, thread_id: str) -> Thread:
    return await find(services, wire.THREAD, owner, thread_id, "thread")


async def run_of(services: Services, owner: str, thread_id: str, run_id: str) -> wire.Run:
    found = await find(services, wire.RUN, owner, run_id, "run")
    if found.thread_id != thread_id:
        raise not_found("run", run_id)
    return found


async def check_messages(services: Services, owner: str, messages: list[MessageCreate]) -> None:
    """Every file the messages attach or show is the owner's (checked before anything is
    made)."""
    attached = [a.file_id for m in messages for a in m.attachments or []]
    await wire.check_files(services.store, owner, attached, "attachments")
    shown = [
        part.image_file.file_id
        for m in messages
        if not isinstance(m.content, str)
        for part in m.content
        if isinstance(part, ImageFilePart)
    ]
    await wire.check_files(services.store, owner, shown, "content")


def add_message(tx: Writes, owner: str, thread_id: str, body: MessageCreate) -> Message:
    """A message (its files checked already), stored and in the transcript."""
    message = wire.message(
        thread_id=thread_id,
        role=body.role,
        content=wire.message_parts(body),
        attachments=[a.model_dump() for a in body.attachments or []],
        metadata=body.metadata,
    )
    tx.create("message", owner, message, parent=thread_id)
    tx.append(owner, thread_id, [message_unit(message)], ref=message.id)
    return message


async def _put_live_metadata(
    services: Services,
    kind: Literal["run", "message"],
    owner: str,
    found: Live,
    metadata: dict[str, str] | None,
) -> Live:
    """Metadata set on a run or message, under its thread's lock: on the running task's copy
    too, when it has one, so that the run's own next write keeps the change."""
    live = services.runner.modify(found.id, metadata) if metadata is not None else None
    changed: Live = live or found
    if metadata is None:
        return changed
    changed.metadata = metadata
    # Metadata alone: what the run writes meanwhile (here, or on another server) keeps it.
    await services.store.set_fields(kind, owner, changed, ["metadata"])
    return changed


async def check_active(
    services: Services, owner: str, thread_id: str, *, adding: bool = False
) -> None:
    """Refuse what an active run of the thread forbids, whichever server drives it:
    another run, or (``adding``) a new message."""
    if not services.store.shared:
        return  # one server: its own runner knows (``check_idle``)
    run_id = await services.store.active_run(owner, thread_id)
    if run_id is not None:
        raise active_run_error(thread_id, run_id, adding=adding)


async def new_thread(services: Services, owner: str, body: ThreadCreate) -> Thread:
    """A thread and its messages, in one unit of work (all checked first)."""
    await resource_files(services, owner, body.tool_resources, expires=THREAD_STORE_EXPIRY)
    await check_messages(services, owner, body.messages)
    async with services.store.transaction() as tx:
        created = tx.create("thread", owner, wire.thread(body))
        for message in body.messages:
            add_message(tx, owner, created.id, message)
    return await search_attachments(services, owner, created, body.messages)


async def search_attachments(
    services: Services, owner: str, thread: Thread, messages: list[MessageCreate]
) -> Thread:
    """Files attached for ``file_search`` go into the thread's vector store (made, and
    named in its ``tool_resources``, at the first such file), as OpenAI does."""
    file_ids = [
        a.file_id
        for m in messages
        for a in m.attachments or []
        if any(tool.type == "file_search" for tool in a.tools)
    ]
    if not file_ids:
        return thread
    resources = thread.tool_resources or ThreadResources()
    found = resources.file_search.vector_store_ids if resources.file_search else None
    if found:
        store_id = found[0]
    else:
        made = await services.vector_stores.create(
            owner, name=f"vector store for {thread.id}", description=None, metadata=None,
            expires_after=THREAD_STORE_EXPIRY, file_ids=[], chunking=None,
        )  # fmt: skip
        store_id = made.id
        resources.file_search = ThreadFileSearch(vector_store_ids=[store_id])
        thread.tool_resources = resources
        await services.store.set_fields("thread", owner, thread, ["tool_resources"])
    files = [BatchFile(file_id=file_id) for file_id in dict.fromkeys(file_ids)]
    await services.vector_stores.add_files(owner, store_id, files, batch=True)
    return thread


async def begin_run(
    services: Services,
    owner: str,
    thread: Thread,
    assistant: wire.Assistant,
    body: RunCreate | ThreadAndRunCreate,
    additional: list[MessageCreate],
    extra_instructions: str | None,
    head: list[Unit] | None = None,
    include: list[str] | None = None,
) -> Response | wire.Run:
    await services.runner.settle_thread(owner, thread.id)
    services.runner.check_idle(thread.id)
    await check_active(services, owner, thread.id)
    await check_messages(services, owner, additional)
    thread = await search_attachments(services, owner, thread, additional)
    instructions = body.instructions if body.instructions is not None else assistant.instructions
    if extra_instructions:
        instructions = f"{instructions or ''}\n\n{extra_instructions}".strip()
    run = wire.run(
        thread_id=thread.id,
        assistant_obj=assistant,
        body=body,
        instructions=instructions,
        default_model=services.config.model,
    )
    # The run and its messages, in one unit: not waited for by a stream (until it is
    # committed, what reads the run or the thread's transcript finds it all the same),
    # unless other servers share the database, whose rule (one active run per thread)
    # is checked at the commit.
    try:
        async with services.store.transaction(wait=not body.stream or services.store.shared) as tx:
            for message in additional:
                add_message(tx, owner, thread.id, message)
            tx.create("run", owner, run, parent=thread.id)
    except Conflict:
        raise bad_request(f"Thread {thread.id} already has an active run.") from None
    made = None if body.stream else run.model_copy(deep=True)  # its task changes the run
    events = services.runner.start(
        owner=owner, run=run, assistant=assistant, thread=thread, head=head,
        include=SEARCH_CONTENT in (include or ()),
    )  # fmt: skip
    return sse(events.follow(DONE)) if made is None else made


@router.post("")
async def create_thread(
    owner: Owner, services: ServicesDep, body: ThreadCreate | None = None
) -> Thread:
    return await new_thread(services, owner, body or ThreadCreate())


# Before /{thread_id}, which would take "runs" for a thread id.
@router.post("/runs", response_model=None)
async def create_thread_and_run(
    body: ThreadAndRunCreate, owner: Owner, services: ServicesDep
) -> Response | wire.Run:
    assistant = await find(services, wire.ASSISTANT, owner, body.assistant_id, "assistant")
    thread_body = body.thread or ThreadCreate()
    if body.tool_resources is not None and thread_body.tool_resources is None:
        thread_body = thread_body.model_copy(update={"tool_resources": body.tool_resources})
    thread = await new_thread(services, owner, thread_body)
    return await begin_run(services, owner, thread, assistant, body, [], None)


@router.get("/{thread_id}")
async def get_thread(thread_id: str, owner: Owner, services: ServicesDep) -> Thread:
    return await thread_of(services, owner, thread_id)


@router.post("/{thread_id}")
async def modify_thread(
    thread_id: str, body: ThreadModify, owner: Owner, services: ServicesDep
) -> Thread:
    found = await thread_of(services, owner, thread_id)
    await resource_files(services, owner, body.tool_resources, expires=THREAD_STORE_EXPIRY)
    changes: dict[str, Any] = {}
    if body.metadata is not None:
        changes["metadata"] = body.metadata
    if body.tool_resources is not None:
        changes["tool_resources"] = wire.tool_resources(body.tool_resources)
    changed = Thread.model_validate(found.model_dump() | changes)
    # The fields given alone: a change another request makes meanwhile to others is kept.
    return await services.store.set_fields("thread", owner, changed, list(changes))


@router.delete("/{thread_id}")
async def delete_thread(thread_id: str, owner: Owner, services: ServicesDep) -> ThreadDeleted:
    store, runner = services.store, services.runner
    async with runner.threads.hold(thread_id):
        await thread_of(services, owner, thread_id)
        await runner.stop(thread_id)
        runs = await store.all(wire.RUN, owner, parent=thread_id)
        async with store.transaction() as tx:
            tx.delete_children(owner, [r.id for r in runs])
            tx.delete_children(owner, [thread_id])
            tx.forget(owner, [thread_id])
            tx.delete("thread", owner, thread_id)
        if services.engine.has_session(thread_id):
            await services.engine.close_session(thread_id)
        await services.places.forget(thread_id)
    return ThreadDeleted(id=thread_id, object="thread.deleted", deleted=True)


# Messages.


@router.post("/{thread_id}/messages")
async def create_message(
    thread_id: str, body: MessageCreate, owner: Owner, services: ServicesDep
) -> Message:
    async with services.runner.threads.hold(thread_id):
        thread = await thread_of(services, owner, thread_id)
        await services.runner.settle_thread(owner, thread_id)
        services.runner.check_idle(thread_id, adding=True)
        await check_active(services, owner, thread_id, adding=True)
        await check_messages(services, owner, [body])
        async with services.store.transaction() as tx:
            made = add_message(tx, owner, thread_id, body)
        await search_attachments(services, owner, thread, [body])
        return made


@router.get("/{thread_id}/messages")
async def list_messages(
    thread_id: str, owner: Owner, page: Page, services: ServicesDep, run_id: Cursor = None
) -> wire.ListPage[Message]:
    await thread_of(services, owner, thread_id)
    return await listing(
        services, wire.MESSAGE, owner, page, parent=thread_id, where={"run_id": run_id}
    )


@router.get("/{thread_id}/messages/{message_id}")
async def get_message(
    thread_id: str, message_id: str, owner: Owner, services: ServicesDep
) -> Message:
    found = await find(services, wire.MESSAGE, owner, message_id, "message")
    if found.thread_id != thread_id:
        raise not_found("message", message_id)
    return found


@router.post("/{thread_id}/messages/{message_id}")
async def modify_message(
    thread_id: str, message_id: str, body: MetadataModify, owner: Owner, services: ServicesDep
) -> Message:
    async with services.runner.threads.hold(thread_id):
        found = await get_message(thread_id, message_id, owner, services)
        return await _put_live_metadata(services, "message", owner, found, body.metadata)


@router.delete("/{thread_id}/messages/{message_id}")
async def delete_message(
    thread_id: str, message_id: str, owner: Owner, services: ServicesDep
) -> MessageDeleted:
    await get_message(thread_id, message_id, owner, services)
    async with services.store.transaction() as tx:
        tx.delete("message", owner, message_id)
        tx.drop(owner, thread_id, message_id)
    return MessageDeleted(id=message_id, object="thread.message.deleted", deleted=True)


# Runs.


@router.post("/{thread_id}/runs", response_model=None)
async def create_run(
    thread_id: str, body: RunCreate, owner: Owner, services: ServicesDep, include: Include
) -> Response | wire.Run:
    store = services.store
    async with services.runner.threads.hold(thread_id):
        # The thread's newest units are read while the request is checked: the run's first
        # turn needs them (unless it adds messages first).
        reading = None if body.additional_messages else store.newest(owner, thread_id)
        head = asyncio.ensure_future(reading) if reading else None
        try:
            found = await store.get_pair(
                owner, (wire.THREAD, thread_id), (wire.ASSISTANT, body.assistant_id)
            )
            thread, assistant = found
            if thread is None:
                raise not_found("thread", thread_id)
            if assistant is None:
                raise not_found("assistant", body.assistant_id)
        except BaseException:
            if head is not None:
                head.cancel()
                await asyncio.gather(head, return_exceptions=True)
            raise
        return await begin_run(
            services,
            owner,
            thread,
            assistant,
            body,
            body.additional_messages or [],
            body.additional_instructions,
            await head if head is not None else None,
            include,
        )


@router.get("/{thread_id}/runs")
async def list_runs(
    thread_id: str, owner: Owner, page: Page, services: ServicesDep
) -> wire.ListPage[wire.Run]:
    await thread_of(services, owner, thread_id)
    return await listing(services, wire.RUN, owner, page, parent=thread_id)


@router.get("/{thread_id}/runs/{run_id}")
async def get_run(thread_id: str, run_id: str, owner: Owner, services: ServicesDep) -> wire.Run:
    found = await run_of(services, owner, thread_id, run_id)
    return await services.runner.settle(owner, found)


@router.post("/{thread_id}/runs/{run_id}")
async def modify_run(
    thread_id: str, run_id: str, body: MetadataModify, owner: Owner, services: ServicesDep
) -> wire.Run:
    async with services.runner.threads.hold(thread_id):
        found = await run_of(services, owner, thread_id, run_id)
        return await _put_live_metadata(services, "run", owner, found, body.metadata)


@router.post("/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(thread_id: str, run_id: str, owner: Owner, services: ServicesDep) -> wire.Run:
    # Under the thread's lock, as tool outputs are submitted: a cancel racing them either
    # comes first (and the outputs are refused) or cancels the run they restart.
    async with services.runner.threads.hold(thread_id):
        found = await run_of(services, owner, thread_id, run_id)
        return await services.runner.cancel(owner, found)


@router.post("/{thread_id}/runs/{run_id}/submit_tool_outputs", response_model=None)
async def submit_tool_outputs(
    thread_id: str,
    run_id: str,
    body: SubmitToolOutputs,
    owner: Owner,
    services: ServicesDep,
) -> Response | wire.Run:
    async with services.runner.threads.hold(thread_id):
        run = await run_of(services, owner, thread_id, run_id)
        thread = await thread_of(services, owner, thread_id)
        assistant = await find(services, wire.ASSISTANT, owner, run.assistant_id, "assistant")
        events = await services.runner.submit_tool_outputs(
            owner=owner,
            run=run,
            assistant=assistant,
            thread=thread,
            outputs={o.tool_call_id: o.output for o in body.tool_outputs},
        )
        # As it restarts (queued): its task goes on changing it.
        restarted = run.model_copy(deep=True)
    if not body.stream:
        return restarted
    return sse(events.follow(DONE))


@router.get("/{thread_id}/runs/{run_id}/steps")
async def list_steps(
    thread_id: str, run_id: str, owner: Owner, page: Page, services: ServicesDep
) -> wire.ListPage[RunStep]:
    await run_of(services, owner, thread_id, run_id)
    return await listing(services, wire.STEP, owner, page, parent=run_id)


@router.get("/{thread_id}/runs/{run_id}/steps/{step_id}")
async def get_step(
    thread_id: str, run_id: str, step_id: str, owner: Owner, services: ServicesDep
) -> RunStep:
    found = await find(services, wire.STEP, owner, step_id, "run step")
    if found.run_id != run_id or found.thread_id != thread_id:
        raise not_found("run step", step_id)
    return found
