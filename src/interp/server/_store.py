"""Every object the API serves, in one table of JSON documents, through SQLAlchemy 2 (async).

An object is stored as the JSON the API returns, with the columns needed to find it:
its kind, its owner (the API key's id: another owner's id reads as not found), its parent
(a message's or run's thread, a step's run) and an insertion sequence that orders lists.
SQLite by default; PostgreSQL through ``postgresql+asyncpg://…``.
The schema carries a version; a database of another version is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Index,
    Integer,
    String,
    bindparam,
    case,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .._exceptions import ConfigError
from .agent.context import Unit
from .protocol.common import Filter
from .search import index as search_index

log = logging.getLogger("interp.server")

_T = TypeVar("_T")
M = TypeVar("M")
B = TypeVar("B", bound=BaseModel)
_O = TypeVar("_O", bound=BaseModel | dict[str, Any])

SCHEMA_VERSION = 2
TAIL_PAGE = 200
"""Transcript entries read at a time, newest first, while a context is filled."""

Kind = Literal[
    "assistant",
    "thread",
    "message",
    "run",
    "step",
    "file",
    "tool_result",
    "response",
    "input_item",
    "container",
    "container_file",
    "conversation",
    "conversation_item",
    "vector_store",
    "vs_file",
    "vs_batch",
]
"""``tool_result``: what the model was shown of a tool call (internal, never served);
``vs_file``, ``vs_batch``: a vector store's files and file batches."""


@dataclass(frozen=True)
class Served(Generic[M]):
    """A kind of stored object and what a read of it gives: the model the API serves it
    as, or (``document``) its JSON."""

    kind: Kind
    load: Callable[[dict[str, Any]], M]


def served(kind: Kind, model: type[B]) -> Served[B]:
    return Served(kind, model.model_validate)


def document(kind: Kind) -> Served[dict[str, Any]]:
    return Served(kind, dict)


def _document(obj: BaseModel | dict[str, Any]) -> dict[str, Any]:
    return obj.model_dump(mode="json") if isinstance(obj, BaseModel) else dict(obj)


@dataclass(frozen=True)
class Usage:
    files: int
    bytes: int
    containers: int


class _Base(DeclarativeBase):
    pass


class _Meta(_Base):
    __tablename__ = "interp_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class _Object(_Base):
    __tablename__ = "interp_objects"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(64))
    parent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The object's ``status``, when it has one: what the sweeps and the start look for."""
    replica: Mapped[str | None] = mapped_column(String(40), nullable=True)
    """The server that made it and drives it (runs and responses): its work is failed
    only once that server's lease has run out (``Replicas``)."""
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("interp_objects_find", "owner", "kind", "parent", "seq"),
        Index("interp_objects_status", "kind", "status"),
    )


class _Entry(_Base):
    """A unit of a conversation's transcript (``agent.context.Unit``): the chat messages a
    model turn sends for it, kept as the conversation grows, so that a turn reads the tail
    it needs rather than rebuilding the conversation from its objects."""

    __tablename__ = "interp_transcript"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    owner: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(64))
    """The thread, response or conversation it belongs to."""
    ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The object it stands for (a message, a step, an item), to delete it with that."""
    role: Mapped[str] = mapped_column(String(16))
    """``user`` for a user's message; ``assistant`` for a reply or calls."""
    message: Mapped[bool] = mapped_column(Boolean)
    tokens: Mapped[int] = mapped_column(Integer)
    files: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    data: Mapped[list[dict[str, Any]]] = mapped_column(JSON)

    __table_args__ = (
        Index("interp_transcript_tail", "owner", "key", "seq"),
        Index("interp_transcript_ref", "owner", "key", "ref"),
    )


class _Replica(_Base):
    """A server process sharing the database, and when it last said it was alive."""

    __tablename__ = "interp_replicas"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    heartbeat: Mapped[int] = mapped_column(BigInteger)
    url: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """Where the other replicas reach it (``replica_url``), if it said."""


class _Kernel(_Base):
    """Which replica holds the kernel of a thread or a container (by its id), or held it
    last: a kernel is a process on one replica's machine."""

    __tablename__ = "interp_kernels"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    replica: Mapped[str] = mapped_column(String(40))


@dataclass(frozen=True)
class Holder:
    """The replica holding a kernel: its id, its URL, its last heartbeat (Unix time)."""

    replica: str
    url: str | None
    heartbeat: int | None


class _Link(_Base):
    """A stored response and the one it continues: its chain is walked in SQL."""

    __tablename__ = "interp_links"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    previous: Mapped[str | None] = mapped_column(String(64), nullable=True)
    container: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The container the chain's code ran in last, as of this response."""


@dataclass(frozen=True)
class Page(Generic[M]):
    data: list[M]
    has_more: bool


def _sqlite_wal(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL cannot corrupt the database; a power cut may lose the last
    # commits. It spares an fsync per commit, and a run commits at every step.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _open(conn: Connection) -> str:
    """Create the schema if new, migrate one of schema 1; the version found."""
    _Base.metadata.create_all(conn)
    # Additive (a server of this schema version without them works on): made if missing;
    # the column first (a migration reads the table's rows whole).
    columns = {c["name"] for c in inspect(conn).get_columns(_Object.__tablename__)}
    if "replica" not in columns:
        conn.execute(text("ALTER TABLE interp_objects ADD COLUMN replica VARCHAR(40)"))
    # Kinds grew past 16 characters ("conversation_item", "vector_store_file_batch"):
    # PostgreSQL holds a column to its length (SQLite does not).
    kind = next(c for c in inspect(conn).get_columns(_Object.__tablename__) if c["name"] == "kind")
    if conn.dialect.name == "postgresql" and getattr(kind["type"], "length", 32) < 32:
        conn.execute(text("ALTER TABLE interp_objects ALTER COLUMN kind TYPE VARCHAR(32)"))
    columns = {c["name"] for c in inspect(conn).get_columns(_Replica.__tablename__)}
    if "url" not in columns:
        conn.execute(text("ALTER TABLE interp_replicas ADD COLUMN url VARCHAR(300)"))
    with Session(conn) as session:
        found = session.get(_Meta, "schema_version")
        if found is None:
            session.add(_Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        elif found.value == "1":
            from ._migrate import transcripts

            transcripts(session)
            found.value = str(SCHEMA_VERSION)
        version = found.value if found is not None else str(SCHEMA_VERSION)
        session.flush()
    if version == str(SCHEMA_VERSION):
        search_index.create(conn)
        _one_active_run(conn)
    return version


ACTIVE_RUN = ("queued", "in_progress", "requires_action", "cancelling")


class Conflict(Exception):
    """A write the database refused as breaking one of its rules (a second active run on
    a thread, made by another server meanwhile)."""


def _conflict(failure: BaseException | None) -> BaseException | None:
    """A failed write as ``Conflict`` when it broke the one-active-run rule (PostgreSQL
    names the index; SQLite, its column)."""
    said = str(failure)
    if isinstance(failure, IntegrityError) and (
        "interp_one_active_run" in said or "interp_objects.parent" in said
    ):
        return Conflict(said.splitlines()[0])
    return failure


def _one_active_run(conn: Connection) -> None:
    """One active run per thread, as a rule of the database itself (a partial unique
    index), so that servers sharing it cannot both start one. A database that already
    breaks it (threads with two active runs) is left without it, and says so."""
    listed = ", ".join(f"'{status}'" for status in ACTIVE_RUN)
    try:
        with conn.begin_nested():
            conn.execute(
                text(
                    "CREATE UNIQUE INDEX IF NOT EXISTS interp_one_active_run ON interp_objects"
                    f" (parent) WHERE kind = 'run' AND status IN ({listed})"
                )
            )
    except IntegrityError:
        log.warning("threads with two active runs: one active run per thread is not enforced")


class Writes:
    """A unit of work: what one request (or one step of a run) changes, committed all
    together or not at all (``Store.transaction``)."""

    def __init__(self) -> None:
        self.objects: list[dict[str, Any]] = []
        self.entries: list[dict[str, Any]] = []
        self.links: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.kept: list[dict[str, Any]] = []
        """Updates that keep the stored metadata (of objects a run writes as it goes)."""
        self.fields: list[dict[str, Any]] = []
        """Field-level writes (``set_fields``)."""
        """Metadata set on its own, on objects whose other fields a run writes."""
        self.relinks: list[dict[str, Any]] = []
        self.deletes: list[Any] = []
        self.shown: list[tuple[tuple[str, str], str, dict[str, Any] | None]] = []
        """What reads see before the commit: (kind, id), owner, the object or ``None``."""
        self.keys: set[tuple[str, str]] = set()
        """The transcripts it changes: (owner, key)."""
        self.bulk = False
        """It deletes objects it cannot name (a parent's children)."""

    def create(
        self,
        kind: Kind,
        owner: str,
        obj: _O,
        *,
        parent: str | None = None,
        key: str | None = None,
    ) -> _O:
        """A new object, as it is now; ``key``: the id it is found by, when not its own (an
        item kept both as a response's input and in a conversation)."""
        data = _document(obj)
        found_by = key or data["id"]
        row = {
            "id": found_by,
            "kind": kind,
            "owner": owner,
            "parent": parent,
            "status": data.get("status"),
            "replica": None,
            "data": data,
        }
        self.objects.append(row)
        self.shown.append(((kind, found_by), owner, data))
        return obj

    def put(self, kind: Kind, owner: str, obj: _O, *, key: str | None = None) -> _O:
        """Replace a stored object's JSON with the object as it is now (its id, kind and
        owner stay); ``key``: the id it is found by, when not its own."""
        data = _document(obj)
        found_by = key or data["id"]
        (self.kept if kind in _KEEPS_METADATA else self.updates).append(
            {
                "b_id": found_by,
                "b_kind": kind,
                "b_owner": owner,
                "status": data.get("status"),
                "data": data,
            }
        )
        self.shown.append(((kind, found_by), owner, data))
        return obj

    def set_fields(
        self, kind: Kind, owner: str, obj: _O, fields: Sequence[str], *, key: str | None = None
    ) -> _O:
        """Write an object's ``fields`` alone, as they are in ``obj`` (a field-level write:
        what another request or a run writes at the same time, on this server or another,
        to its other fields is kept); ``key``: the id it is found by, when not its own."""
        data = _document(obj)
        found_by = key or data["id"]
        changes = {name: data.get(name) for name in fields}
        if changes:
            row = {"b_id": found_by, "b_kind": kind, "b_owner": owner, "changes": changes}
            self.fields.append(row | {"status": data.get("status")})
        self.shown.append(((kind, found_by), owner, data))
        return obj

    def delete(self, kind: Kind, owner: str, object_id: str) -> None:
        self.deletes.append(
            delete(_Object).where(
                _Object.id == object_id, _Object.kind == kind, _Object.owner == owner
            )
        )
        self.shown.append(((kind, object_id), owner, None))

    def delete_children(self, owner: str, parents: Sequence[str]) -> None:
        """Delete what belongs to ``parents`` (a thread's messages and runs, a run's steps)."""
        if parents:
            self.deletes.append(
                delete(_Object).where(_Object.owner == owner, _Object.parent.in_(list(parents)))
            )
            self.bulk = True

    def append(
        self, owner: str, key: str, units: Sequence[Unit], *, ref: str | None = None
    ) -> None:
        """Add units to the end of a conversation's transcript."""
        self.entries += [_entry(owner, key, unit, ref) for unit in units]
        self.keys.add((owner, key))

    def link(
        self, owner: str, response_id: str, previous: str | None, container: str | None
    ) -> None:
        """Record a stored response, the one it continues, and its chain's container."""
        row = {"id": response_id, "owner": owner, "previous": previous, "container": container}
        self.links.append(row)
        self.keys.add((owner, response_id))

    def relink(self, owner: str, response_id: str, container: str | None) -> None:
        """The chain's container as of a response, once it has run."""
        self.relinks.append({"b_id": response_id, "b_owner": owner, "container": container})
        self.keys.add((owner, response_id))

    def forget(self, owner: str, keys: Sequence[str]) -> None:
        """Delete the transcripts of ``keys`` (and their links)."""
        keys = list(keys)
        self.deletes.append(delete(_Entry).where(_Entry.owner == owner, _Entry.key.in_(keys)))
        self.deletes.append(delete(_Link).where(_Link.owner == owner, _Link.id.in_(keys)))
        self.keys |= {(owner, key) for key in keys}

    def drop(self, owner: str, key: str, ref: str) -> None:
        """Delete the units of one object (a deleted message or item) from a transcript."""
        self.deletes.append(
            delete(_Entry).where(_Entry.owner == owner, _Entry.key == key, _Entry.ref == ref)
        )
        self.keys.add((owner, key))

    def execute(self, conn: Connection) -> None:
        """Write it (with others, in one transaction: see ``Store``)."""
        for table, rows in ((_Object, self.objects), (_Entry, self.entries), (_Link, self.links)):
            if rows:
                conn.execute(insert(table), rows)
        if self.updates:
            conn.execute(_UPDATE_OBJECT, self.updates)
        if self.kept:
            conn.execute(_KEEPING_METADATA[conn.dialect.name], self.kept)
        for row in self.fields:
            dialect = conn.dialect.name
            conn.execute(_setting(dialect, tuple(row["changes"])), _field_params(dialect, row))
        if self.relinks:
            conn.execute(_UPDATE_LINK, self.relinks)
        for statement in self.deletes:
            conn.execute(statement)

    def merge(self, other: Writes) -> None:
        names = ("objects", "entries", "links", "updates", "kept", "fields", "relinks", "deletes")
        for name in names:
            getattr(self, name).extend(getattr(other, name))


_DRIVEN = ("run", "response")
"""The kinds a replica drives (and whose unfinished work is failed when it is gone)."""

_UPDATE_OBJECT = (
    update(_Object)
    .where(
        _Object.id == bindparam("b_id"),
        _Object.kind == bindparam("b_kind"),
        _Object.owner == bindparam("b_owner"),
    )
    .values(status=bindparam("status"), data=bindparam("data"))
)
_KEEPS_METADATA = ("run", "message")
"""Kinds a run writes as it goes, whose metadata a client may set meanwhile."""
_DATA = bindparam("data", type_=JSON)
_KEEPING_METADATA = {
    "sqlite": text(
        "UPDATE interp_objects SET status = :status, data = json_set(:data, '$.metadata',"
        " json(coalesce(json_extract(data, '$.metadata'), 'null')))"
        " WHERE id = :b_id AND kind = :b_kind AND owner = :b_owner"
    ).bindparams(_DATA),
    "postgresql": text(
        "UPDATE interp_objects SET status = :status, data = jsonb_set(CAST(:data AS jsonb),"
        " '{metadata}', coalesce(CAST(data AS jsonb) -> 'metadata', 'null'::jsonb))::json"
        " WHERE id = :b_id AND kind = :b_kind AND owner = :b_owner"
    ).bindparams(_DATA),
}


@functools.cache
def _setting(dialect: str, names: tuple[str, ...]) -> Any:
    """An UPDATE writing the top-level fields ``names`` of a stored document alone."""
    if dialect == "postgresql":
        changes = cast(bindparam("changes", type_=JSON), JSONB)
        data: Any = cast(cast(_Object.data, JSONB).op("||")(changes), JSON)
    else:
        pairs = [
            part
            for n, name in enumerate(names)
            for part in (literal(f"$.{name}"), func.json(bindparam(f"v{n}", type_=JSON)))
        ]
        data = func.json_set(_Object.data, *pairs)
    values: dict[str, Any] = {"data": data}
    if "status" in names:  # also a column, that queries select by
        values["status"] = bindparam("status")
    return (
        update(_Object)
        .where(
            _Object.id == bindparam("b_id"),
            _Object.kind == bindparam("b_kind"),
            _Object.owner == bindparam("b_owner"),
        )
        .values(**values)
    )


def _field_params(dialect: str, row: dict[str, Any]) -> dict[str, Any]:
    keys = {name: row[name] for name in ("b_id", "b_kind", "b_owner", "status")}
    if dialect == "postgresql":
        return keys | {"changes": row["changes"]}
    return keys | {f"v{n}": value for n, value in enumerate(row["changes"].values())}


_UPDATE_LINK = (
    update(_Link)
    .where(_Link.id == bindparam("b_id"), _Link.owner == bindparam("b_owner"))
    .values(container=bindparam("container"))
)


# The reads a run makes at its start, built once: building a statement costs three times
# what running it costs.
_GET = select(_Object.kind, _Object.id, _Object.data).where(
    _Object.owner == bindparam("owner"), _Object.id.in_(bindparam("ids", expanding=True))
)
_TAIL = (
    select(_Entry)
    .where(
        _Entry.owner == bindparam("owner"),
        _Entry.key.in_(bindparam("keys", expanding=True)),
        _Entry.seq < bindparam("before"),
    )
    .order_by(_Entry.seq.desc())
    .limit(TAIL_PAGE)
)
_END = 2**62


@dataclass
class _Pending:
    writes: Writes
    done: asyncio.Future[None]


class Store:
    """The database, read directly and written by one writer task.

    Every change is a unit of work (``transaction()``) handed to the writer, which commits
    whatever has queued up in one transaction: many requests' writes cost one commit and a
    few statements (the inserts of a batch in one ``executemany``, then its updates, then
    its deletes). That order is the units' own as long as no id is updated before it is
    created or created again after a delete, which the server never does; a batch that
    fails for any reason is written again one unit per transaction, in order, so one bad
    unit fails alone. Until its commit, an object written is what ``get`` returns, and the
    reads of lists and transcripts wait for the writes that concern them: a request sees
    what the requests before it wrote.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self._sqlite: Engine | None = None
        self._engine: AsyncEngine | None = None
        if parsed.get_backend_name() == "sqlite":
            # pysqlite on a few threads of its own: a query is one hop to a thread and
            # back (aiosqlite makes one per DBAPI call, four or more a query). A writer
            # waits for another (another process) rather than failing at once; readers
            # never wait for writers (WAL). Reads begin no transaction, so a connection
            # needs no rollback when it goes back to the pool.
            self._sqlite = create_engine(
                parsed.set(drivername="sqlite"),
                connect_args={"timeout": 30},
                pool_reset_on_return=None,
            )
            event.listen(self._sqlite, "connect", _sqlite_wal)
            self._threads = ThreadPoolExecutor(4, thread_name_prefix="interp-store")
        else:
            self._engine = create_async_engine(url, pool_reset_on_return="rollback")
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._last: asyncio.Future[None] | None = None
        self._shown: dict[tuple[str, str], tuple[str, dict[str, Any] | None, Writes]] = {}
        self._keys: Counter[tuple[str, str]] = Counter()
        self._bulk = 0
        self._objects = 0
        self.replica: str | None = None
        """This server's replica id, marked on the runs and responses it makes."""

    async def _run(
        self, work: Callable[[Connection], _T], *, write: bool = False, point: bool = False
    ) -> _T:
        """``work`` on a connection (in a transaction committed at its end, to ``write``):
        on SQLite in one of the store's threads, on PostgreSQL on the event loop. A
        ``point`` read (a few rows by primary key) is made on the loop on SQLite too: it
        takes tens of microseconds, a tenth of the hop to a thread and back, and in WAL
        mode a reader never waits for a writer."""
        if self._sqlite is not None:
            engine = self._sqlite
            if point:
                with engine.connect() as conn:
                    return work(conn)

            def call() -> _T:
                with engine.begin() if write else engine.connect() as conn:
                    return work(conn)

            return await asyncio.get_running_loop().run_in_executor(self._threads, call)
        assert self._engine is not None
        async with self._engine.begin() if write else self._engine.connect() as aconn:
            return await aconn.run_sync(work)

    async def open(self) -> None:
        """Create the schema if new, migrate one of schema 1; refuse another version."""
        try:
            found = await self._run(_open, write=True)
        except SQLAlchemyError as exc:
            raise ConfigError(
                f"cannot open the database {self.safe_url}: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0][:200]}",
                field="db",
            ) from None
        if found != str(SCHEMA_VERSION):
            raise ConfigError(
                f"the database {self.safe_url} has schema version {found};"
                f" this interp needs {SCHEMA_VERSION}",
                field="db",
                hint="point --db at a new database",
            )
        self._writer = asyncio.create_task(self._write_loop(), name="interp-store-writer")

    @property
    def shared(self) -> bool:
        """Other processes may write to it (PostgreSQL): its rules are checked at commit."""
        return self._sqlite is None

    async def active_run(self, owner: str, thread_id: str) -> str | None:
        """The id of the thread's active run, if it has one (whoever drives it)."""
        await self._objects_written()
        rows = await self._rows(
            select(_Object.id)
            .where(_Object.kind == "run", _Object.owner == owner, _Object.parent == thread_id)
            .where(_Object.status.in_(ACTIVE_RUN))
            .limit(1)
        )
        return rows[0][0] if rows else None

    @property
    def safe_url(self) -> str:
        """The URL without its password."""
        return make_url(self.url).render_as_string(hide_password=True)

    async def close(self) -> None:
        """Write what is queued, then close."""
        if self._writer is not None:
            await self.flushed()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._sqlite is not None:
            self._threads.shutdown()
            self._sqlite.dispose()
        if self._engine is not None:
            await self._engine.dispose()

    # Writes.

    @contextlib.asynccontextmanager
    async def transaction(self, *, wait: bool = True) -> AsyncIterator[Writes]:
        """A unit of work, queued when the block ends without an exception; with ``wait``,
        the block's end waits for its commit (and raises what failed it)."""
        writes = Writes()
        yield writes
        done = self.submit(writes)
        if wait:
            # Shielded: a caller cancelled while it waits leaves the write to the writer.
            await asyncio.shield(done)

    def submit(self, writes: Writes) -> asyncio.Future[None]:
        """Queue a unit of work; the future is done once it is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for row in writes.objects:
            if row["kind"] in _DRIVEN:
                row["replica"] = self.replica
        for found_by, owner, obj in writes.shown:
            self._shown[found_by] = (owner, obj, writes)
        for key in writes.keys:
            self._keys[key] += 1
        self._bulk += writes.bulk
        self._objects += bool(
            writes.objects or writes.updates or writes.kept or writes.fields or writes.deletes
        )
        self._queue.append(_Pending(writes, done))
        self._last = done
        self._wake.set()
        return done

    async def flushed(self) -> None:
        """Return once everything queued so far is committed (or failed)."""
        if self._last is not None and not self._last.done():
            await asyncio.wait([self._last])

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._commit([p.writes for p in batch])
                    failures: list[BaseException | None] = [None] * len(batch)
                except Exception as exc:  # noqa: BLE001 (the writer must outlive any bad unit)
                    failures = [exc] if len(batch) == 1 else await self._one_by_one(batch)
                failures = [_conflict(failure) for failure in failures]
                for pending, failure in zip(batch, failures, strict=True):
                    self._settled(pending.writes)
                    if pending.done.done():  # nobody can be told any more
                        continue
                    if failure is None:
                        pending.done.set_result(None)
                    else:
                        pending.done.set_exception(failure)
                        # Nobody may wait for it: read it so that it is not logged as lost.
                        pending.done.add_done_callback(_logged)

    async def _one_by_one(self, batch: list[_Pending]) -> list[BaseException | None]:
        failures: list[BaseException | None] = []
        for pending in batch:
            try:
                await self._commit([pending.writes])
                failures.append(None)
            except Exception as exc:  # noqa: BLE001 (one bad unit fails alone)
                failures.append(exc)
        return failures

    async def _commit(self, batch: list[Writes]) -> None:
        merged = Writes()
        for writes in batch:
            merged.merge(writes)
        await self._run(merged.execute, write=True)

    def _settled(self, writes: Writes) -> None:
        for found_by, _, _ in writes.shown:
            if found_by in self._shown and self._shown[found_by][2] is writes:
                del self._shown[found_by]
        for key in writes.keys:
            self._keys[key] -= 1
            if not self._keys[key]:
                del self._keys[key]
        self._bulk -= writes.bulk
        self._objects -= bool(
            writes.objects or writes.updates or writes.kept or writes.fields or writes.deletes
        )

    async def create(
        self,
        kind: Kind,
        owner: str,
        obj: _O,
        *,
        parent: str | None = None,
        key: str | None = None,
    ) -> _O:
        async with self.transaction() as tx:
            tx.create(kind, owner, obj, parent=parent, key=key)
        return obj

    async def set_fields(
        self, kind: Kind, owner: str, obj: _O, fields: Sequence[str], *, key: str | None = None
    ) -> _O:
        """``Writes.set_fields`` in a transaction of its own."""
        async with self.transaction() as tx:
            return tx.set_fields(kind, owner, obj, fields, key=key)

    async def put(self, kind: Kind, owner: str, obj: _O, *, key: str | None = None) -> _O:
        async with self.transaction() as tx:
            tx.put(kind, owner, obj, key=key)
        return obj

    async def delete(self, kind: Kind, owner: str, object_id: str) -> bool:
        """Delete an object; whether there was one."""
        if await self.get(document(kind), owner, object_id) is None:
            return False
        async with self.transaction() as tx:
            tx.delete(kind, owner, object_id)
        return True

    async def delete_children(self, owner: str, parents: Sequence[str]) -> None:
        async with self.transaction() as tx:
            tx.delete_children(owner, parents)

    async def drop(self, owner: str, key: str, ref: str) -> None:
        async with self.transaction() as tx:
            tx.drop(owner, key, ref)

    # Reads.

    async def _rows(self, query: Any, **params: Any) -> list[Any]:
        return await self._run(lambda conn: list(conn.execute(query, params)))

    async def _objects_written(self) -> None:
        if self._objects:
            await self.flushed()

    async def _transcript_written(self, owner: str, keys: Sequence[str]) -> None:
        if any((owner, key) in self._keys for key in keys):
            await self.flushed()

    async def get(self, what: Served[M], owner: str, object_id: str) -> M | None:
        (found,) = await self._documents(owner, [(what.kind, object_id)])
        return None if found is None else what.load(found)

    async def get_pair(
        self, owner: str, first: tuple[Served[M], str], second: tuple[Served[_T], str]
    ) -> tuple[M | None, _T | None]:
        """Two objects of an owner, in one query; ``None`` for one not found."""
        (one, one_id), (two, two_id) = first, second
        a, b = await self._documents(owner, [(one.kind, one_id), (two.kind, two_id)])
        return (None if a is None else one.load(a)), (None if b is None else two.load(b))

    async def _documents(
        self, owner: str, wanted: Sequence[tuple[Kind, str]]
    ) -> list[dict[str, Any] | None]:
        """Objects of an owner by kind and id, in one query; ``None`` for each not found."""
        found: dict[tuple[str, str], dict[str, Any] | None] = {}
        missing: set[tuple[str, str]] = set()
        for kind, object_id in wanted:
            shown = self._shown.get((kind, object_id))
            if shown is None:
                missing.add((kind, object_id))
            elif shown[0] == owner and shown[1] is not None:
                found[kind, object_id] = dict(shown[1])
        if missing:
            if self._bulk:
                await self.flushed()
            ids = [object_id for _, object_id in missing]
            rows = await self._run(
                lambda conn: list(conn.execute(_GET, {"owner": owner, "ids": ids})), point=True
            )
            for kind, object_id, data in rows:
                if (kind, object_id) in missing:
                    found[kind, object_id] = dict(data)
        return [found.get(key) for key in wanted]

    async def page(
        self,
        what: Served[M],
        owner: str,
        *,
        parent: str | None = None,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
        after: str | None = None,
        before: str | None = None,
        where: dict[str, str | None] | None = None,
    ) -> Page[M]:
        """A page in creation order, OpenAI's way: ``after``/``before`` are object ids;
        ``where``: values of the objects' fields they must have (``None``: any)."""
        await self._objects_written()
        kind = what.kind
        query = select(_Object.data).where(_Object.kind == kind, _Object.owner == owner)
        if parent is not None:
            query = query.where(_Object.parent == parent)
        for name, value in (where or {}).items():
            if value is not None:
                query = query.where(_Object.data[name].as_string() == value)
        ordering = _Object.seq.asc() if order == "asc" else _Object.seq.desc()
        if before is not None:
            # Nearest the cursor first, then back into the requested order.
            ordering = _Object.seq.desc() if order == "asc" else _Object.seq.asc()

        def read(conn: Connection) -> list[Any] | None:
            nonlocal query
            for cursor, later in ((after, order == "asc"), (before, order == "desc")):
                if cursor is None:
                    continue
                # An object kept under its parent's key (``<parent>/<id>``) is named by its id.
                named = [cursor] if parent is None else [cursor, f"{parent}/{cursor}"]
                seq = conn.scalar(
                    select(_Object.seq).where(
                        _Object.id.in_(named), _Object.kind == kind, _Object.owner == owner
                    )
                )
                if seq is None:
                    return None
                query = query.where(_Object.seq > seq if later else _Object.seq < seq)
            return list(conn.scalars(query.order_by(ordering).limit(limit + 1)))

        rows = await self._run(read)
        if rows is None:
            return Page([], False)
        has_more = len(rows) > limit
        rows = rows[:limit]
        if before is not None:
            rows.reverse()
        return Page([what.load(row) for row in rows], has_more)

    async def all(self, what: Served[M], owner: str, *, parent: str) -> list[M]:
        """Every object of a parent, oldest first."""
        await self._objects_written()
        rows = await self._rows(
            select(_Object.data)
            .where(_Object.kind == what.kind, _Object.owner == owner, _Object.parent == parent)
            .order_by(_Object.seq.asc())
        )
        return [what.load(data) for (data,) in rows]

    async def every(self, what: Served[M], status: str) -> list[tuple[str, M]]:
        """Every object of a kind in a status, of every owner, oldest first."""
        await self._objects_written()
        rows = await self._rows(
            select(_Object.owner, _Object.data)
            .where(_Object.kind == what.kind, _Object.status == status)
            .order_by(_Object.seq.asc())
        )
        return [(owner, what.load(data)) for owner, data in rows]

    async def usage(self, owner: str) -> Usage:
        """What ``owner`` keeps: its files, their bytes (container files' too), and its
        containers that have not expired."""
        await self._objects_written()
        kinds = ["file", "container_file", "container"]
        sized = case((_Object.kind == "container", 0), else_=_Object.data["bytes"].as_integer())
        rows = await self._rows(
            select(_Object.kind, func.count(), func.coalesce(func.sum(sized), 0))
            .where(_Object.owner == owner, _Object.kind.in_(kinds))
            .where((_Object.kind != "container") | (_Object.status != "expired"))
            .group_by(_Object.kind)
        )
        counts = {kind: (int(count), int(size)) for kind, count, size in rows}
        return Usage(
            files=counts.get("file", (0, 0))[0],
            bytes=sum(size for _, size in counts.values()),
            containers=counts.get("container", (0, 0))[0],
        )

    async def tally(
        self, kind: Kind, owner: str, by: str, keys: Sequence[str]
    ) -> dict[str, dict[str, tuple[int, int]]]:
        """Objects of a kind grouped by ``by`` (``parent``, or a field of theirs) for
        each of ``keys``: per status, how many and the sum of their ``usage_bytes``."""
        await self._objects_written()
        if not keys:
            return {}
        group = _Object.parent if by == "parent" else _Object.data[by].as_string()
        size = func.coalesce(func.sum(_Object.data["usage_bytes"].as_integer()), 0)
        rows = await self._rows(
            select(group, _Object.status, func.count(), size)
            .where(_Object.kind == kind, _Object.owner == owner, group.in_(list(keys)))
            .group_by(group, _Object.status)
        )
        found: dict[str, dict[str, tuple[int, int]]] = {key: {} for key in keys}
        for key, status, count, total in rows:
            found[key][status] = (int(count), int(total))
        return found

    async def fail_unfinished_runs(self, *, alive: Sequence[str] = ()) -> int:
        """Mark runs and responses a crash left unfinished as failed, but those of the
        ``alive`` replicas; return how many."""
        unfinished = ("queued", "in_progress", "cancelling", "requires_action")
        now = int(time.time())
        query = select(_Object.owner, _Object.kind, _Object.data).where(
            _Object.kind.in_(list(_DRIVEN)), _Object.status.in_(unfinished)
        )
        query = query.where(_Object.replica.is_(None) | _Object.replica.not_in(list(alive)))
        rows = await self._rows(query)
        found = [(owner, kind, dict(data)) for owner, kind, data in rows]
        writes = Writes()
        for owner, kind, data in found:
            if kind == "response" and data.get("status") in ("queued", "in_progress"):
                data["status"] = "failed"
                data["error"] = {
                    "code": "server_error",
                    "message": "the server stopped while this response was in progress",
                }
                writes.put("response", owner, data)
            elif kind == "run" and data.get("status") in unfinished:
                data["status"] = "failed"
                data["failed_at"] = now
                data["last_error"] = {
                    "code": "server_error",
                    "message": "the server stopped while this run was in progress",
                }
                writes.put("run", owner, data)
        await self.submit(writes)
        return len(writes.updates) + len(writes.kept)

    # Replicas.

    async def heartbeat(self, replica: str, url: str | None = None) -> None:
        """Say ``replica`` (reached at ``url``) is alive now."""
        now = int(time.time())

        def beat(conn: Connection) -> None:
            upsert = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(_Replica)
            conn.execute(
                upsert.values(id=replica, heartbeat=now, url=url).on_conflict_do_update(
                    index_elements=[_Replica.id], set_={"heartbeat": now, "url": url}
                )
            )
            # Long gone: forgotten.
            conn.execute(delete(_Replica).where(_Replica.heartbeat < now - 86400))

        await self._run(beat, write=True)

    async def gone(self, lease: float) -> list[str]:
        """The replicas this database knows whose lease ran out (forgotten a day later)."""
        since = int(time.time() - lease)
        rows = await self._rows(select(_Replica.id).where(_Replica.heartbeat < since))
        return [found for (found,) in rows]

    async def holder(self, key: str) -> Holder | None:
        """The replica that holds (or held last) the kernel of ``key``."""
        rows = await self._rows(
            select(_Kernel.replica, _Replica.url, _Replica.heartbeat)
            .outerjoin(_Replica, _Replica.id == _Kernel.replica)
            .where(_Kernel.key == key)
        )
        return Holder(*rows[0]) if rows else None

    async def claim_kernel(self, key: str, replica: str) -> str | None:
        """Record ``replica`` as the holder of ``key``'s kernel; the holder it had."""

        def claim(conn: Connection) -> str | None:
            query = select(_Kernel.replica).where(_Kernel.key == key)
            if conn.dialect.name != "sqlite":
                query = query.with_for_update()
            previous = conn.execute(query).scalar()
            upsert = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(_Kernel)
            conn.execute(
                upsert.values(key=key, replica=replica).on_conflict_do_update(
                    index_elements=[_Kernel.key], set_={"replica": replica}
                )
            )
            return previous

        return await self._run(claim, write=True)

    async def inherit_kernels(self, previous: str, replica: str) -> None:
        """``replica`` holds what its previous life ``previous`` held: the sessions it
        hibernated at its stop are on its disk. (One that was not hibernated is opened
        again as a new kernel, and said to be, as after a takeover.)"""
        await self._run(
            lambda conn: conn.execute(
                update(_Kernel).where(_Kernel.replica == previous).values(replica=replica)
            ),
            write=True,
        )

    async def forget_kernel(self, key: str) -> None:
        await self._run(
            lambda conn: conn.execute(delete(_Kernel).where(_Kernel.key == key)), write=True
        )

    async def alive(self, lease: float) -> list[str]:
        """The replicas that said they were alive within ``lease`` seconds."""
        since = int(time.time() - lease)
        rows = await self._rows(select(_Replica.id).where(_Replica.heartbeat >= since))
        return [found for (found,) in rows]

    # File Search's index.

    async def index_chunks(
        self,
        owner: str,
        store_id: str,
        file_id: str,
        chunks: list[str],
        attributes: dict[str, Any] | None = None,
        embeddings: list[bytes] | None = None,
    ) -> None:
        await self._run(
            lambda conn: search_index.add(
                conn, owner, store_id, file_id, chunks, attributes, embeddings
            ),
            write=True,
        )

    async def unindex(self, owner: str, store_id: str, file_id: str | None = None) -> None:
        """Drop the chunks of a file of a vector store, or of the whole store."""
        await self._run(
            lambda conn: search_index.remove(conn, owner, store_id, file_id), write=True
        )

    async def relabel(
        self, owner: str, store_id: str, file_id: str, attributes: dict[str, Any] | None
    ) -> None:
        await self._run(
            lambda conn: search_index.relabel(conn, owner, store_id, file_id, attributes),
            write=True,
        )

    async def search(
        self,
        owner: str,
        store_ids: list[str],
        query: str,
        *,
        limit: int,
        where: Filter | None = None,
    ) -> list[search_index.Hit]:
        """Chunks of ``owner``'s vector stores holding words of ``query`` and passing
        ``where``, best first."""
        return await self._run(
            lambda conn: search_index.search(conn, owner, store_ids, query, limit, where)
        )

    async def nearest(
        self,
        owner: str,
        store_ids: list[str],
        vector: bytes,
        *,
        limit: int,
        where: Filter | None = None,
    ) -> list[search_index.Hit]:
        """Chunks of ``owner``'s vector stores nearest an embedding, best first."""
        return await self._run(
            lambda conn: search_index.nearest(conn, owner, store_ids, vector, limit, where)
        )

    # The transcript.

    async def newest(self, owner: str, key: str) -> list[Unit]:
        """The first page of ``tail(owner, key)``: read ahead, while a request is checked."""
        return [unit async for unit in self.tail(owner, key, pages=1)]

    async def tail(
        self,
        owner: str,
        keys: str | Sequence[str],
        *,
        before: int | None = None,
        head: list[Unit] | None = None,
        pages: int | None = None,
    ) -> AsyncIterator[Unit]:
        """Units of the conversation(s) before position ``before``, newest first, read a
        page at a time as they are consumed; ``head``: the first page, read already."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        if head is not None:
            for unit in head:
                yield unit
            if len(head) < TAIL_PAGE:
                return
            before = head[-1].seq
        await self._transcript_written(owner, keys)
        while pages is None or pages > 0:
            pages = None if pages is None else pages - 1
            rows = await self._rows(
                _TAIL, owner=owner, keys=keys, before=_END if before is None else before
            )
            for row in rows:
                yield _unit(row)
            if len(rows) < TAIL_PAGE:
                return
            before = rows[-1].seq

    async def chain(self, owner: str, response_id: str) -> list[tuple[str, str | None]]:
        """The stored responses a response continues, itself first, newest to oldest, each
        with its chain's container; ``[]`` if it is not the owner's."""
        if any(found == owner for found, _ in self._keys):
            await self.flushed()
        cols = (_Link.id, _Link.previous, _Link.container)
        walk = (
            select(*cols, literal(0).label("depth"))
            .where(_Link.id == response_id, _Link.owner == owner)
            .cte("walk", recursive=True)
        )
        walk = walk.union_all(
            select(*cols, (walk.c.depth + 1).label("depth")).where(
                _Link.id == walk.c.previous, _Link.owner == owner
            )
        )
        rows = await self._rows(select(walk.c.id, walk.c.container).order_by(walk.c.depth))
        return [(found, container) for found, container in rows]

    async def attached(self, owner: str, key: str) -> list[str]:
        """The files attached to the conversation's messages, in order."""
        await self._transcript_written(owner, [key])
        rows = await self._rows(
            select(_Entry.files)
            .where(_Entry.owner == owner, _Entry.key == key, _Entry.files.is_not(None))
            .order_by(_Entry.seq.asc())
        )
        return [file_id for (files,) in rows for file_id in files or ()]


def _logged(done: asyncio.Future[None]) -> None:
    exc = done.exception()
    if exc is not None:
        log.error("a write to the store failed: %s", str(exc).splitlines()[0][:300])


def _entry(owner: str, key: str, unit: Unit, ref: str | None) -> dict[str, Any]:
    first = unit.messages[0] if unit.messages else {}
    return dict(
        owner=owner,
        key=key,
        ref=unit.ref or ref,
        role="user" if first.get("role") == "user" else "assistant",
        message=unit.message,
        tokens=unit.tokens,
        files=unit.files or None,
        data=unit.messages,
    )


def _unit(row: Any) -> Unit:
    return Unit(
        list(row.data), bool(row.message), list(row.files or ()), seq=row.seq, tokens=row.tokens
    )
