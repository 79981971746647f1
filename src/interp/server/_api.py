"""The HTTP layer: OpenAI's Assistants v2 routes over the store, the run loop and the engine;
the Responses and Containers routes (``_api_responses``) and MCP (``/mcp``) beside them.

Every request is authorised (a bearer key names its owner; without configured keys one
implicit owner) and every query is by owner: another owner's id reads as not found.
Bodies are validated (unknown fields refused); every error is OpenAI's JSON with the
status the ``openai`` SDK maps to its exception classes; nothing a client sends is a 500.
"""

import asyncio
import contextlib
import gc
import hashlib
import hmac
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from .. import Config, Engine
from .._exceptions import (
    CapacityError,
    InterpError,
    InvalidInputError,
    NoSuchFileError,
    SessionNotFoundError,
    StoreFullError,
)
from . import _wire as wire
from ._api_responses import add_routes
from ._containers import Containers
from ._errors import APIError, bad_request, file_not_found, not_found
from ._mcp import build as build_mcp
from ._responses import Responder
from ._runs import DONE, Runner, message_unit
from ._store import Kind, Store, Writes
from ._wire import Cursor, Limit, ListOrder
from .agent.context import Unit, Windows
from .agent.model import Model, UpstreamError
from .agent.turn import Agent
from .deps import Services
from .routes import conversations

log = logging.getLogger("interp.server")

_LOCAL_OWNER = "local"
_JSON_BODY_BYTES = 16 * 1024**2


async def preflight(config: Config) -> None:
    """Check what serving needs before serving: the database opens and has the schema.

    Raises ``ConfigError`` saying what is wrong, so the command can say it in one line.
    """
    await asyncio.to_thread(config.data_dir.mkdir, parents=True, exist_ok=True)
    store = Store(db_url(config))
    try:
        await store.open()
    finally:
        await store.close()


def db_url(config: Config) -> str:
    """The server's database: ``config.db``, else SQLite in the data directory."""
    if config.db:
        return config.db
    return f"sqlite+aiosqlite:///{config.data_dir / 'server.db'}"


def _owner_of(keys: tuple[str, ...]) -> Callable[[Request], str]:
    digests = {k: "key_" + hashlib.sha256(k.encode()).hexdigest()[:24] for k in keys}

    def owner(request: Request) -> str:
        if not keys:
            return _LOCAL_OWNER
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer":
            for key, digest in digests.items():
                if hmac.compare_digest(token.encode(), key.encode()):
                    return digest
        raise APIError(
            401,
            "Incorrect API key provided." if token else "You didn't provide an API key.",
            code="invalid_api_key",
        )

    return owner


class _BodyLimit:
    """Refuse bodies over the limit (413) while they arrive, without buffering them."""

    def __init__(self, app: Any, *, upload_bytes: int) -> None:
        self.app = app
        self.upload_bytes = upload_bytes

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        upload = path == "/v1/files" or (
            path.startswith("/v1/containers/") and path.endswith("/files")
        )
        limit = self.upload_bytes + 1024**2 if upload else _JSON_BODY_BYTES
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(send, _too_large(limit))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Raised where the route reads its body: answered by the app's handler.
                    raise StarletteHTTPException(413, _too_large(limit).message)
            return message

        await self.app(scope, counted, send)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"Request body too large: the limit is {limit} bytes.")


async def _send_error(send: Send, error: APIError) -> None:
    response = JSONResponse(error.body(), status_code=error.status)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def _engine_error(exc: InterpError) -> APIError:
    if isinstance(exc, NoSuchFileError):
        return not_found("file", exc.file_id)
    if isinstance(exc, InvalidInputError):
        return bad_request(exc.message)
    if isinstance(exc, SessionNotFoundError):
        return APIError(404, exc.message, code="not_found")
    if isinstance(exc, StoreFullError | CapacityError):
        return APIError(429, str(exc), type="server_error", code="capacity_exceeded")
    return APIError(500, f"The sandbox failed: {exc}", type="server_error")


class _WithMcp:
    """``/mcp`` (and below) to the MCP app, for a key's owner; the rest to the API."""

    def __init__(self, api: Any, mcp: Any, owner: Callable[[Request], str]) -> None:
        self.api = api
        self.mcp = mcp
        self.owner = owner

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/mcp" or path.startswith("/mcp/")):
            await self.api(scope, receive, send)
            return
        try:
            owner = self.owner(Request(scope))
        except APIError as exc:
            await _send_error(send, exc)
            return
        inner = dict(scope, path="/" + path[len("/mcp") :].lstrip("/"), interp_owner=owner)
        await self.mcp(inner, receive, send)


def create_app(config: Config, *, engine: Engine | None = None) -> FastAPI:
    """The ASGI app; the engine (``engine``, else one made from ``config``), store and
    model client live for the app's lifespan."""
    holder: dict[str, Services] = {}
    mcp = build_mcp(lambda: holder["state"].engine)
    mcp_app = mcp.streamable_http_app(streamable_http_path="/", host=config.host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(config.data_dir.mkdir, parents=True, exist_ok=True)
        store = Store(db_url(config))
        await store.open()
        failed = await store.fail_unfinished_runs()
        if failed:
            log.warning("%d runs left in progress by a stop were marked failed", failed)
        sandbox = engine or Engine(config)
        try:
            await sandbox.start()
        except BaseException:
            await sandbox.close()
            await store.close()
            raise
        model = Model(
            base_url=config.model_base_url or "http://127.0.0.1:11434/v1",
            api_key=config.model_api_key or "none",
            timeout=config.model_timeout,
            idle_timeout=config.model_idle_timeout,
        )
        windows = Windows(
            model, default=config.model_context_tokens, table=dict(config.model_contexts)
        )
        agent = Agent(model, windows)
        runner = Runner(
            store=store,
            engine=sandbox,
            agent=agent,
            default_model=config.model,
            tool_outputs_timeout=config.tool_outputs_timeout,
        )
        containers = Containers(store=store, engine=sandbox)
        responder = Responder(
            store=store,
            engine=sandbox,
            agent=agent,
            containers=containers,
            default_model=config.model,
        )
        containers.start()
        holder["state"] = app.state.services = Services(
            store, sandbox, model, runner, containers, responder
        )
        # What start-up made lives as long as the server: out of the collector's full
        # passes, which otherwise walk it all (a pause of about 200 ms a pass, once a long
        # thread's run has allocated enough to trigger one).
        gc.collect()
        gc.freeze()
        try:
            async with mcp.session_manager.run():
                yield
        finally:
            await responder.close()
            await containers.close()
            await runner.close()
            await model.close()
            await sandbox.close()
            await store.close()

    # No redirect of a path with a trailing slash: an id ending in an encoded "/" (or a
    # "../") would be sent on to another object's path rather than answered 404.
    app = FastAPI(
        title="interp",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redirect_slashes=False,
    )
    owner_of = _owner_of(tuple(config.api_keys))
    app.state.owner_of = owner_of
    owner_dep = Depends(owner_of)
    Owner = Annotated[str, owner_dep]

    def state() -> Services:
        return holder["state"]

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        if first.get("type") == "json_invalid":
            error = bad_request("We could not parse the JSON body of your request.")
        else:
            where = ".".join(loc)
            error = bad_request(
                f"Invalid value for '{where}': {first.get('msg', 'invalid')}"
                if where
                else str(first.get("msg", "Invalid request")),
                param=where or None,
            )
        return JSONResponse(error.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (
            f"Invalid URL ({request.method} {request.url.path})"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        error = APIError(exc.status_code, message)
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.exception_handler(InterpError)
    async def engine_error(request: Request, exc: InterpError) -> JSONResponse:
        error = _engine_error(exc)
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(UpstreamError)
    async def upstream_error(request: Request, exc: UpstreamError) -> JSONResponse:
        error = APIError(502, exc.message, type="server_error", code=exc.code)
        return JSONResponse(error.body(), status_code=502)

    async def find(kind: Kind, owner: str, object_id: str, name: str) -> dict[str, Any]:
        found = await state().store.get(kind, owner, object_id)
        if found is None:
            raise not_found(name, object_id)
        return found

    async def thread_of(owner: str, thread_id: str) -> dict[str, Any]:
        return await find("thread", owner, thread_id, "thread")

    async def run_of(owner: str, thread_id: str, run_id: str) -> dict[str, Any]:
        found = await find("run", owner, run_id, "run")
        if found["thread_id"] != thread_id:
            raise not_found("run", run_id)
        return found

    async def put_metadata(
        kind: Kind, owner: str, found: dict[str, Any], body: wire.MetadataModify
    ) -> dict[str, Any]:
        if body.metadata is not None:
            found["metadata"] = body.metadata
        return await state().store.put(kind, owner, found)

    async def check_files(owner: str, file_ids: list[str], param: str) -> None:
        for file_id in file_ids:
            if await state().store.get("file", owner, file_id) is None:
                raise file_not_found(file_id, param=param)

    async def files_of(owner: str, resources: wire.ToolResources | None, param: str) -> None:
        if resources is not None and resources.code_interpreter is not None:
            await check_files(owner, resources.code_interpreter.file_ids, param)

    async def check_messages(owner: str, messages: list[wire.MessageCreate]) -> None:
        """Every file the messages attach is the owner's (checked before anything is made)."""
        attached = [a.file_id for m in messages for a in m.attachments or []]
        await check_files(owner, list(dict.fromkeys(attached)), "attachments")

    def add_message(
        tx: Writes, owner: str, thread_id: str, body: wire.MessageCreate
    ) -> dict[str, Any]:
        """A message (its files checked already), stored and in the transcript."""
        message = wire.message(
            thread_id=thread_id,
            role=body.role,
            content=body.parts(),
            attachments=[a.model_dump() for a in body.attachments or []],
            metadata=body.metadata,
        )
        tx.create("message", owner, message, parent=thread_id)
        tx.append(owner, thread_id, [message_unit(message)], ref=message["id"])
        return message

    async def listing(
        kind: Kind,
        owner: str,
        *,
        parent: str | None,
        limit: int,
        order: Literal["asc", "desc"],
        after: str | None,
        before: str | None,
        where: dict[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """A page of a list route; ``where``: fields the objects have (``None``: any)."""
        page = await state().store.page(
            kind, owner, parent=parent, limit=limit, order=order, after=after, before=before,
            where=where,
        )  # fmt: skip
        return wire.page(page.data, page.has_more)

    # Models.

    @app.get("/v1/models")
    async def models(owner: Owner) -> dict[str, Any]:
        configured = config.model
        if configured:
            data = [{"id": configured, "object": "model", "created": 0, "owned_by": "interp"}]
        else:
            data = await state().model.models()
        return {"object": "list", "data": data}

    # Assistants.

    @app.post("/v1/assistants")
    async def create_assistant(body: wire.AssistantCreate, owner: Owner) -> dict[str, Any]:
        await files_of(owner, body.tool_resources, "tool_resources")
        return await state().store.create("assistant", owner, wire.assistant(body))

    @app.get("/v1/assistants")
    async def list_assistants(
        owner: Owner,
        limit: Limit = 20,
        order: ListOrder = "desc",
        after: Cursor = None,
        before: Cursor = None,
    ) -> dict[str, Any]:
        return await listing(
            "assistant", owner, parent=None, limit=limit, order=order, after=after, before=before
        )

    @app.get("/v1/assistants/{assistant_id}")
    async def get_assistant(assistant_id: str, owner: Owner) -> dict[str, Any]:
        return await find("assistant", owner, assistant_id, "assistant")

    @app.post("/v1/assistants/{assistant_id}")
    async def modify_assistant(
        assistant_id: str, body: wire.AssistantModify, owner: Owner
    ) -> dict[str, Any]:
        found = await find("assistant", owner, assistant_id, "assistant")
        await files_of(owner, body.tool_resources, "tool_resources")
        changes = body.model_dump(exclude_unset=True)
        if body.tools is not None:
            changes["tools"] = [tool.wire() for tool in body.tools]
        if body.tool_resources is not None:
            changes["tool_resources"] = body.tool_resources.wire()
        found.update(changes)
        return await state().store.put("assistant", owner, found)

    @app.delete("/v1/assistants/{assistant_id}")
    async def delete_assistant(assistant_id: str, owner: Owner) -> dict[str, Any]:
        if not await state().store.delete("assistant", owner, assistant_id):
            raise not_found("assistant", assistant_id)
        return {"id": assistant_id, "object": "assistant.deleted", "deleted": True}

    # Threads.

    async def new_thread(owner: str, body: wire.ThreadCreate) -> dict[str, Any]:
        await files_of(owner, body.tool_resources, "tool_resources")
        await check_messages(owner, body.messages)
        async with state().store.transaction() as tx:
            created = tx.create("thread", owner, wire.thread(body))
            for message in body.messages:
                add_message(tx, owner, created["id"], message)
        return created

    @app.post("/v1/threads")
    async def create_thread(owner: Owner, body: wire.ThreadCreate | None = None) -> dict[str, Any]:
        return await new_thread(owner, body or wire.ThreadCreate())

    # Before /v1/threads/{thread_id}, which would take "runs" for a thread id.
    @app.post("/v1/threads/runs", response_model=None)
    async def create_thread_and_run(
        body: wire.ThreadAndRunCreate, owner: Owner
    ) -> Response | dict[str, Any]:
        assistant = await find("assistant", owner, body.assistant_id, "assistant")
        thread_body = body.thread or wire.ThreadCreate()
        if body.tool_resources is not None and thread_body.tool_resources is None:
            thread_body = thread_body.model_copy(update={"tool_resources": body.tool_resources})
        thread = await new_thread(owner, thread_body)
        return await begin_run(owner, thread, assistant, body, [], None)

    @app.get("/v1/threads/{thread_id}")
    async def get_thread(thread_id: str, owner: Owner) -> dict[str, Any]:
        return await thread_of(owner, thread_id)

    @app.post("/v1/threads/{thread_id}")
    async def modify_thread(
        thread_id: str, body: wire.ThreadModify, owner: Owner
    ) -> dict[str, Any]:
        found = await thread_of(owner, thread_id)
        await files_of(owner, body.tool_resources, "tool_resources")
        if body.metadata is not None:
            found["metadata"] = body.metadata
        if body.tool_resources is not None:
            found["tool_resources"] = body.tool_resources.wire()
        return await state().store.put("thread", owner, found)

    @app.delete("/v1/threads/{thread_id}")
    async def delete_thread(thread_id: str, owner: Owner) -> dict[str, Any]:
        store, runner = state().store, state().runner
        # Under the thread's lock, as what adds to a thread: a run or message racing the
        # delete is either made first (and deleted here) or finds the thread gone.
        async with runner.threads.hold(thread_id):
            await thread_of(owner, thread_id)
            await runner.stop(thread_id)
            runs = await store.all("run", owner, parent=thread_id)
            async with store.transaction() as tx:
                tx.delete_children(owner, [r["id"] for r in runs])
                tx.delete_children(owner, [thread_id])
                tx.forget(owner, [thread_id])
                tx.delete("thread", owner, thread_id)
            if state().engine.has_session(thread_id):
                await state().engine.close_session(thread_id)
        return {"id": thread_id, "object": "thread.deleted", "deleted": True}

    # Messages.

    @app.post("/v1/threads/{thread_id}/messages")
    async def create_message(
        thread_id: str, body: wire.MessageCreate, owner: Owner
    ) -> dict[str, Any]:
        async with state().runner.threads.hold(thread_id):
            await thread_of(owner, thread_id)
            state().runner.check_idle(thread_id, adding=True)
            await check_messages(owner, [body])
            async with state().store.transaction() as tx:
                return add_message(tx, owner, thread_id, body)

    @app.get("/v1/threads/{thread_id}/messages")
    async def list_messages(
        thread_id: str,
        owner: Owner,
        limit: Limit = 20,
        order: ListOrder = "desc",
        after: Cursor = None,
        before: Cursor = None,
        run_id: Cursor = None,
    ) -> dict[str, Any]:
        await thread_of(owner, thread_id)
        return await listing(
            "message",
            owner,
            parent=thread_id,
            limit=limit,
            order=order,
            after=after,
            before=before,
            where={"run_id": run_id},
        )

    @app.get("/v1/threads/{thread_id}/messages/{message_id}")
    async def get_message(thread_id: str, message_id: str, owner: Owner) -> dict[str, Any]:
        found = await find("message", owner, message_id, "message")
        if found["thread_id"] != thread_id:
            raise not_found("message", message_id)
        return found

    @app.post("/v1/threads/{thread_id}/messages/{message_id}")
    async def modify_message(
        thread_id: str, message_id: str, body: wire.MetadataModify, owner: Owner
    ) -> dict[str, Any]:
        async with state().runner.threads.hold(thread_id):
            found = await get_message(thread_id, message_id, owner)
            live = None
            if body.metadata is not None:
                live = state().runner.modify(message_id, body.metadata)
            return await put_metadata("message", owner, live or found, body)

    @app.delete("/v1/threads/{thread_id}/messages/{message_id}")
    async def delete_message(thread_id: str, message_id: str, owner: Owner) -> dict[str, Any]:
        await get_message(thread_id, message_id, owner)
        await state().store.delete("message", owner, message_id)
        await state().store.drop(owner, thread_id, message_id)
        return {"id": message_id, "object": "thread.message.deleted", "deleted": True}

    # Runs.

    async def begin_run(
        owner: str,
        thread: dict[str, Any],
        assistant: dict[str, Any],
        body: wire.RunCreate | wire.ThreadAndRunCreate,
        additional: list[wire.MessageCreate],
        extra_instructions: str | None,
        head: list[Unit] | None = None,
    ) -> Response | dict[str, Any]:
        state().runner.check_idle(thread["id"])
        await check_messages(owner, additional)
        instructions = (
            body.instructions if body.instructions is not None else assistant.get("instructions")
        )
        if extra_instructions:
            instructions = f"{instructions or ''}\n\n{extra_instructions}".strip()
        run = wire.run(
            thread_id=thread["id"], assistant_obj=assistant, body=body, instructions=instructions
        )
        if run["model"] is None:
            run["model"] = config.model
        # The run and its messages, in one unit: not waited for by a stream (until it is
        # committed, what reads the run or the thread's transcript finds it all the same).
        async with state().store.transaction(wait=not body.stream) as tx:
            for message in additional:
                add_message(tx, owner, thread["id"], message)
            tx.create("run", owner, dict(run), parent=thread["id"])
        events = state().runner.start(
            owner=owner, run=run, assistant=assistant, thread=thread, head=head
        )
        if not body.stream:
            return dict(run)
        return _sse(events.follow(DONE))

    @app.post("/v1/threads/{thread_id}/runs", response_model=None)
    async def create_run(
        thread_id: str, body: wire.RunCreate, owner: Owner
    ) -> Response | dict[str, Any]:
        store = state().store
        async with state().runner.threads.hold(thread_id):
            # The thread's newest units are read while the request is checked: the run's
            # first turn needs them (unless it adds messages first).
            reading = None if body.additional_messages else store.newest(owner, thread_id)
            head = asyncio.ensure_future(reading) if reading else None
            try:
                thread, assistant = await store.get_many(
                    owner, [("thread", thread_id), ("assistant", body.assistant_id)]
                )
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
                owner,
                thread,
                assistant,
                body,
                body.additional_messages or [],
                body.additional_instructions,
                await head if head is not None else None,
            )

    @app.get("/v1/threads/{thread_id}/runs")
    async def list_runs(
        thread_id: str,
        owner: Owner,
        limit: Limit = 20,
        order: ListOrder = "desc",
        after: Cursor = None,
        before: Cursor = None,
    ) -> dict[str, Any]:
        await thread_of(owner, thread_id)
        return await listing(
            "run", owner, parent=thread_id, limit=limit, order=order, after=after, before=before
        )

    @app.get("/v1/threads/{thread_id}/runs/{run_id}")
    async def get_run(thread_id: str, run_id: str, owner: Owner) -> dict[str, Any]:
        return await run_of(owner, thread_id, run_id)

    @app.post("/v1/threads/{thread_id}/runs/{run_id}")
    async def modify_run(
        thread_id: str, run_id: str, body: wire.MetadataModify, owner: Owner
    ) -> dict[str, Any]:
        # Under the thread's lock, and on the running task's copy too: the run's own next
        # write keeps the change rather than overwriting it.
        async with state().runner.threads.hold(thread_id):
            found = await run_of(owner, thread_id, run_id)
            live = None
            if body.metadata is not None:
                live = state().runner.modify(run_id, body.metadata)
            return await put_metadata("run", owner, live or found, body)

    @app.post("/v1/threads/{thread_id}/runs/{run_id}/cancel")
    async def cancel_run(thread_id: str, run_id: str, owner: Owner) -> dict[str, Any]:
        # Under the thread's lock, as tool outputs are submitted: a cancel racing them
        # either comes first (and the outputs are refused) or cancels the run they restart.
        async with state().runner.threads.hold(thread_id):
            found = await run_of(owner, thread_id, run_id)
            return await state().runner.cancel(owner, found)

    @app.post("/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", response_model=None)
    async def submit_tool_outputs(
        thread_id: str, run_id: str, body: wire.SubmitToolOutputs, owner: Owner
    ) -> Response | dict[str, Any]:
        async with state().runner.threads.hold(thread_id):
            run = await run_of(owner, thread_id, run_id)
            thread = await thread_of(owner, thread_id)
            assistant = await find("assistant", owner, run["assistant_id"], "assistant")
            events = await state().runner.submit_tool_outputs(
                owner=owner,
                run=run,
                assistant=assistant,
                thread=thread,
                outputs={o.tool_call_id: o.output for o in body.tool_outputs},
            )
        if not body.stream:
            return dict(run)
        return _sse(events.follow(DONE))

    @app.get("/v1/threads/{thread_id}/runs/{run_id}/steps")
    async def list_steps(
        thread_id: str,
        run_id: str,
        owner: Owner,
        limit: Limit = 20,
        order: ListOrder = "desc",
        after: Cursor = None,
        before: Cursor = None,
    ) -> dict[str, Any]:
        await run_of(owner, thread_id, run_id)
        return await listing(
            "step", owner, parent=run_id, limit=limit, order=order, after=after, before=before
        )

    @app.get("/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
    async def get_step(thread_id: str, run_id: str, step_id: str, owner: Owner) -> dict[str, Any]:
        found = await find("step", owner, step_id, "run step")
        if found["run_id"] != run_id or found["thread_id"] != thread_id:
            raise not_found("run step", step_id)
        return found

    # Files.

    async def spool(file: StarletteUploadFile, path: Path) -> str:
        """Check an uploaded file's name and size, write it to ``path``; its name."""
        name = file.filename or ""
        if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
            raise bad_request(f"Invalid file name {name[:100]!r}: use a plain name.", param="file")
        size = file.size if file.size is not None else 0
        if size > config.max_upload_bytes:
            raise _too_large(config.max_upload_bytes)
        await asyncio.to_thread(_spool, file, path)
        return name

    async def spool_form(request: Request, path: Path) -> str:
        async with request.form(max_files=1, max_fields=8) as form:
            file = form.get("file")
            if not isinstance(file, StarletteUploadFile):
                raise bad_request("Send the file as the multipart field 'file'.", param="file")
            return await spool(file, path)

    @app.post("/v1/files")
    async def upload_file(
        owner: Owner,
        file: Annotated[UploadFile, File()],
        purpose: Annotated[str, Form(max_length=64)],
    ) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="interp-upload-") as scratch:
            path = Path(scratch) / "upload"
            name = await spool(file, path)
            info = await state().engine.create_file(name, path)
        created = wire.file_object(info, purpose=purpose)
        return await state().store.create("file", owner, created)

    @app.get("/v1/files")
    async def list_files(
        owner: Owner,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
        order: ListOrder = "desc",
        after: Cursor = None,
        purpose: Cursor = None,
    ) -> dict[str, Any]:
        return await listing(
            "file",
            owner,
            parent=None,
            limit=limit,
            order=order,
            after=after,
            before=None,
            where={"purpose": purpose},
        )

    @app.get("/v1/files/{file_id}")
    async def get_file(file_id: str, owner: Owner) -> dict[str, Any]:
        return await find("file", owner, file_id, "file")

    @app.get("/v1/files/{file_id}/content")
    async def file_content(file_id: str, owner: Owner) -> Response:
        found = await find("file", owner, file_id, "file")
        path = state().engine.file_path(file_id)
        mime = state().engine.file(file_id).mime
        return StreamingResponse(
            await _open_stored(path, file_id),
            media_type=mime,
            headers={
                "content-disposition": f'attachment; filename="{wire.quoted(found["filename"])}"'
            },
        )

    @app.delete("/v1/files/{file_id}")
    async def delete_file(file_id: str, owner: Owner) -> dict[str, Any]:
        await find("file", owner, file_id, "file")
        await state().store.delete("file", owner, file_id)
        with contextlib.suppress(InvalidInputError):  # already gone from the file store
            await state().engine.delete_file(file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    add_routes(
        app,
        store=lambda: state().store,
        find=find,
        listing=listing,
        responder=lambda: state().responder,
        containers=lambda: state().containers,
        owner=owner_dep,
        upload=spool_form,
        open_stored=_open_stored,
        sse=_sse,
    )

    app.include_router(conversations.router)
    wrapped = _BodyLimit(_WithMcp(app, mcp_app, owner_of), upload_bytes=config.max_upload_bytes)
    app.state.asgi = wrapped
    return app


def _sse(stream: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _spool(upload: StarletteUploadFile, path: Path) -> None:
    upload.file.seek(0)
    with path.open("xb") as target:
        shutil.copyfileobj(upload.file, target, 1024**2)


async def _open_stored(path: Path, file_id: str) -> AsyncIterator[bytes]:
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


def asgi_app(config: Config) -> Any:
    """The app with its body limit in front, as uvicorn serves it."""
    return create_app(config).state.asgi
