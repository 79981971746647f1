"""The HTTP app: the routers of each part of the API (``routes/``) over the services the
lifespan builds (the store, the engine, the model client, each door's service), MCP at
``/mcp``, the body limit in front.

Every request is authorised (a bearer key names its owner; without configured keys one
implicit owner) and every query is by owner: another owner's id reads as not found.
Bodies are validated (unknown fields refused); every error is OpenAI's JSON with the
status the ``openai`` SDK maps to its exception classes; nothing a client sends is a 500.
"""

import asyncio
import gc
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
from .._object_store import S3Objects
from ..adapters.chat import describe
from ..sandbox._packages import package_names
from ._containers import Containers
from ._errors import APIError, bad_request, not_found, send_error
from ._forward import Forward
from ._mcp import McpSessions
from ._mcp import build as build_mcp
from ._places import Places
from ._quotas import Limits, Quotas
from ._replicas import Replicas
from ._responses import Responder
from ._runs import Runner
from ._store import Store
from ._vector_stores import Embed, VectorStores
from .agent.context import Windows
from .agent.images import engine_files
from .agent.model import Model, UpstreamError
from .agent.turn import Agent
from .deps import Services
from .routes import (
    assistants,
    conversations,
    files,
    playground,
    responses,
    threads,
    vector_stores,
)
from .routes.common import JSON_BODY_BYTES, too_large
from .search import embedder

log = logging.getLogger("interp.server")

_LOCAL_OWNER = "local"


async def preflight(config: Config) -> None:
    """Check what serving needs before serving: the database opens and has the schema,
    the file store's bucket (if any) answers.

    Raises ``ConfigError`` or ``FileStoreError`` saying what is wrong, so the command can
    say it in one line.
    """
    await asyncio.to_thread(config.data_dir.mkdir, parents=True, exist_ok=True)
    package_names(config)  # a list that is no list: one line
    store = Store(db_url(config))
    try:
        await store.open()
    finally:
        await store.close()
    if config.file_store:
        bucket = S3Objects(config.file_store)
        try:
            await asyncio.to_thread(bucket.open)
        finally:
            bucket.close()


def db_url(config: Config) -> str:
    """The server's database: ``config.db``, else SQLite in the data directory."""
    if config.db:
        return config.db
    return f"sqlite:///{config.data_dir / 'server.db'}"


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
    """Refuse bodies over the limit (413) while they arrive, without buffering them, and
    bodies that come too slowly (408): past ``grace`` seconds a body must have come at
    ``min_rate`` bytes a second (else a client trickling a byte a second holds a
    connection, a task and a buffer for as long as it likes, and stalls shutdown)."""

    def __init__(self, app: Any, *, upload_bytes: int, grace: float, min_rate: int) -> None:
        self.app = app
        self.upload_bytes = upload_bytes
        self.grace = grace
        self.min_rate = min_rate

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
        limit = self.upload_bytes + 1024**2 if upload else JSON_BODY_BYTES
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(send, too_large(limit))
            return
        seen, whole = 0, False
        started = asyncio.get_running_loop().time()

        async def counted() -> Message:
            nonlocal seen, whole
            if whole:  # waiting for a disconnect, while the answer streams: no limit
                return await receive()
            try:
                async with asyncio.timeout_at(started + self.grace + seen / self.min_rate):
                    message = await receive()
            except TimeoutError:
                # Raised where the route reads its body: answered by the app's handler.
                raise StarletteHTTPException(408, _SLOW_BODY) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if seen > limit:
                    raise StarletteHTTPException(413, too_large(limit).message)
            return message

        await self.app(scope, counted, send)


_SLOW_BODY = "The request body did not arrive in time: send it at a steadier rate."


def _engine_error(exc: InterpError) -> APIError:
    if isinstance(exc, NoSuchFileError):
        return not_found("file", exc.file_id)
    if isinstance(exc, InvalidInputError):
        return bad_request(exc.message)
    if isinstance(exc, SessionNotFoundError):
        return APIError(404, exc.message, code="not_found")
    if isinstance(exc, StoreFullError | CapacityError):
        return APIError(429, str(exc), type="server_error", code="capacity_exceeded", retry_after=1)
    return APIError(500, f"The sandbox failed: {exc}", type="server_error")


class _WithMcp:
    """``/mcp`` (and below) to the MCP app, for a key's owner; the rest to the API. An MCP
    session (``Mcp-Session-Id``) is its maker's: another key naming it is answered as if
    it did not exist (404), whatever it asks, ending it included; ending it ends its
    sandbox session."""

    def __init__(
        self, api: Any, mcp: Any, owner: Callable[[Request], str], sessions: McpSessions
    ) -> None:
        self.api = api
        self.mcp = mcp
        self.owner = owner
        self.sessions = sessions
        self._makers: dict[str, str] = {}
        """MCP session id -> the owner whose request made it."""

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
        request = Request(scope)
        try:
            owner = self.owner(request)
        except APIError as exc:
            await send_error(send, exc)
            return
        named = request.headers.get("mcp-session-id")
        if named is not None and self._makers.get(named, owner) != owner:
            await send_error(send, APIError(404, "Session not found.", code="session_not_found"))
            return

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                made = dict(message.get("headers") or []).get(b"mcp-session-id")
                if made is not None:
                    self._makers.setdefault(made.decode("latin-1"), owner)
                if named is not None and scope["method"] == "DELETE" and message["status"] < 300:
                    self._makers.pop(named, None)
                    await self.sessions.end(owner, named)
            await send(message)

        inner = dict(scope, path="/" + path[len("/mcp") :].lstrip("/"), interp_owner=owner)
        await self.mcp(inner, receive, noting)


def _embedder(config: Config, model: Model) -> Embed | None:
    """What embeds File Search's chunks and queries, as ``embedding_model`` says."""
    name = config.embedding_model
    if name == embedder.NONE:
        return None
    if name == embedder.BUILTIN:
        return embedder.Builtin()

    async def upstream(texts: list[str]) -> list[list[float]]:
        return await model.embed(name, texts)

    return upstream


def create_app(config: Config, *, engine: Engine | None = None) -> FastAPI:
    """The ASGI app; the engine (``engine``, else one made from ``config``), store and
    model client live for the app's lifespan."""
    holder: dict[str, Services] = {}
    replicas_of: dict[str, Replicas] = {}
    packages = package_names(config)
    mcp, mcp_sessions = build_mcp(
        lambda: holder["state"].engine, lambda: holder["state"].places, packages
    )
    mcp_app = mcp.streamable_http_app(streamable_http_path="/", host=config.host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(config.data_dir.mkdir, parents=True, exist_ok=True)
        store = Store(db_url(config))
        await store.open()
        replicas = Replicas(store, config.data_dir, config.replica_lease, config.replica_url)
        failed = await replicas.start()
        if failed:
            log.warning("%d runs left in progress by a stop were marked failed", failed)
        sandbox = engine or Engine(config, replica=replicas.id)
        try:
            await sandbox.start()
            if engine is None:  # an engine given is its giver's to manage
                replicas.reap = sandbox.reap_replicas
                await replicas.reap_gone()
        except BaseException:
            await replicas.close()
            await sandbox.close()
            await store.close()
            raise
        model = Model(
            base_url=config.model_base_url or "http://127.0.0.1:11434/v1",
            api_key=config.model_api_key or "none",
            timeout=config.model_timeout,
            idle_timeout=config.model_idle_timeout,
        )
        stores = VectorStores(store=store, engine=sandbox, embed=_embedder(config, model))
        windows = Windows(
            model, default=config.model_context_tokens, table=dict(config.model_contexts)
        )

        def key_share(total: int) -> int:
            """What one key may hold of ``total`` unless set: a quarter with API keys (so
            that no key takes all from the others), all of it with none."""
            return max(1, total // 4) if config.api_keys else total

        places = Places(
            sandbox,
            per_key=config.max_sessions_per_key or key_share(config.max_sessions),
            total=config.max_sessions,
            replicas=replicas,
        )
        agent = Agent(
            model,
            windows,
            files=engine_files(sandbox),
            search=stores.for_run,
            restart_note=places.restart_note,
            code_description=describe(packages),
        )
        runner = Runner(
            store=store,
            engine=sandbox,
            places=places,
            agent=agent,
            default_model=config.model,
            tool_outputs_timeout=config.tool_outputs_timeout,
            run_timeout=config.run_timeout,
        )
        quotas = Quotas(
            store,
            Limits(
                files=config.max_files_per_key,
                bytes=config.max_bytes_per_key or key_share(config.store_size),
                containers=config.max_containers_per_key,
            ),
        )
        containers = Containers(store=store, engine=sandbox, places=places, quotas=quotas)
        responder = Responder(
            store=store,
            engine=sandbox,
            agent=agent,
            containers=containers,
            default_model=config.model,
            run_timeout=config.run_timeout,
        )
        containers.start()
        await stores.start()
        replicas_of["replicas"] = replicas
        holder["state"] = app.state.services = Services(
            config, store, sandbox, places, model, runner, containers, responder, quotas, stores
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
            replicas_of.clear()
            await mcp_sessions.close_all()
            # The sweep first: it removes sandboxes through the engine closed below.
            await replicas.close()
            await forward.close()
            await responder.close()
            await stores.close()
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

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

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
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(UpstreamError)
    async def upstream_error(request: Request, exc: UpstreamError) -> JSONResponse:
        error = APIError(502, exc.message, type="server_error", code=exc.code)
        return JSONResponse(error.body(), status_code=502)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug: answered as OpenAI answers its own (the traceback goes to the log).
        error = APIError(
            500, "The server had an error while processing your request.", type="server_error"
        )
        return JSONResponse(error.body(), status_code=500)

    parts = (assistants, threads, files, responses, conversations, vector_stores, playground)
    for part in parts:
        app.include_router(part.router)
    forward = Forward(app, lambda: replicas_of.get("replicas"), owner_of)
    wrapped = _BodyLimit(
        _WithMcp(forward, mcp_app, owner_of, mcp_sessions),
        upload_bytes=config.max_upload_bytes,
        grace=config.body_timeout,
        min_rate=config.body_min_rate,
    )
    app.state.asgi = wrapped
    return app


def asgi_app(config: Config) -> Any:
    """The app with its body limit in front, as uvicorn serves it."""
    return create_app(config).state.asgi
