"""Every object the API serves, in one table of JSON documents, through SQLAlchemy 2 (async).

An object is stored as the JSON the API returns, with the columns needed to find it:
its kind, its owner (the API key's id: another owner's id reads as not found), its parent
(a message's or run's thread, a step's run) and an insertion sequence that orders lists.
SQLite by default (``aiosqlite``); any async URL (``postgresql+asyncpg://…``) works.
The schema carries a version; a database of another version is refused.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    String,
    delete,
    event,
    literal,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .._exceptions import ConfigError
from .agent.context import Unit

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
]
"""``tool_result``: what the model was shown of a tool call (internal, never served)."""


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
    kind: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(64))
    parent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (Index("interp_objects_find", "owner", "kind", "parent", "seq"),)


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


class _Link(_Base):
    """A stored response and the one it continues: its chain is walked in SQL."""

    __tablename__ = "interp_links"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    previous: Mapped[str | None] = mapped_column(String(64), nullable=True)
    container: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The container the chain's code ran in last, as of this response."""


@dataclass(frozen=True)
class Page:
    data: list[dict[str, Any]]
    has_more: bool


def _sqlite_wal(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL cannot corrupt the database; a power cut may lose the last
    # commits. It spares an fsync per commit, and a run commits at every step.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        sqlite = url.startswith("sqlite")
        # SQLite: a writer waits for another rather than failing at once, and readers never
        # wait for writers (WAL).
        self._engine: AsyncEngine = create_async_engine(
            url, connect_args={"timeout": 30} if sqlite else {}
        )
        if sqlite:
            event.listen(self._engine.sync_engine, "connect", _sqlite_wal)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)

    async def open(self) -> None:
        """Create the schema if new; refuse a database of another schema version."""
        try:
            async with self._engine.begin() as conn:
                await conn.run_sync(_Base.metadata.create_all)
            async with self._sessions.begin() as session:
                found = await session.get(_Meta, "schema_version")
                if found is None:
                    session.add(_Meta(key="schema_version", value=str(SCHEMA_VERSION)))
                elif found.value == "1":
                    from ._migrate import transcripts

                    await transcripts(session)
                    found.value = str(SCHEMA_VERSION)
                elif found.value != str(SCHEMA_VERSION):
                    raise ConfigError(
                        f"the database {self.safe_url} has schema version {found.value};"
                        f" this interp needs {SCHEMA_VERSION}",
                        field="db",
                        hint="point --db at a new database",
                    )
        except SQLAlchemyError as exc:
            raise ConfigError(
                f"cannot open the database {self.safe_url}: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0][:200]}",
                field="db",
            ) from None

    @property
    def safe_url(self) -> str:
        """The URL without its password."""
        return self._engine.url.render_as_string(hide_password=True)

    async def close(self) -> None:
        await self._engine.dispose()

    async def create(
        self,
        kind: Kind,
        owner: str,
        obj: dict[str, Any],
        *,
        parent: str | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Store a new object; ``key``: the id it is found by, when not its own (an item
        kept both as a response's input and in a conversation)."""
        async with self._sessions.begin() as session:
            session.add(
                _Object(id=key or obj["id"], kind=kind, owner=owner, parent=parent, data=obj)
            )
        return obj

    async def get(self, kind: Kind, owner: str, object_id: str) -> dict[str, Any] | None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(_Object.data).where(
                    _Object.id == object_id, _Object.kind == kind, _Object.owner == owner
                )
            )
        return dict(row) if row is not None else None

    async def put(self, kind: Kind, owner: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace a stored object's JSON (its id, kind and owner stay)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(_Object)
                .where(_Object.id == obj["id"], _Object.kind == kind, _Object.owner == owner)
                .values(data=obj)
            )
        return obj

    async def delete(self, kind: Kind, owner: str, object_id: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(_Object).where(
                    _Object.id == object_id, _Object.kind == kind, _Object.owner == owner
                )
            )
        return bool(getattr(result, "rowcount", 0))

    async def delete_children(self, owner: str, parents: Sequence[str]) -> None:
        """Delete what belongs to ``parents`` (a thread's messages and runs, a run's steps)."""
        if not parents:
            return
        async with self._sessions.begin() as session:
            await session.execute(
                delete(_Object).where(_Object.owner == owner, _Object.parent.in_(list(parents)))
            )

    async def page(
        self,
        kind: Kind,
        owner: str,
        *,
        parent: str | None = None,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Page:
        """A page in creation order, OpenAI's way: ``after``/``before`` are object ids."""
        query = select(_Object.data).where(_Object.kind == kind, _Object.owner == owner)
        if parent is not None:
            query = query.where(_Object.parent == parent)
        async with self._sessions() as session:
            for cursor, later in ((after, order == "asc"), (before, order == "desc")):
                if cursor is None:
                    continue
                seq = await session.scalar(
                    select(_Object.seq).where(
                        _Object.id == cursor, _Object.kind == kind, _Object.owner == owner
                    )
                )
                if seq is None:
                    return Page([], False)
                query = query.where(_Object.seq > seq if later else _Object.seq < seq)
            ordering = _Object.seq.asc() if order == "asc" else _Object.seq.desc()
            if before is not None:
                # Nearest the cursor first, then back into the requested order.
                ordering = _Object.seq.desc() if order == "asc" else _Object.seq.asc()
            rows = list(await session.scalars(query.order_by(ordering).limit(limit + 1)))
        has_more = len(rows) > limit
        rows = rows[:limit]
        if before is not None:
            rows.reverse()
        return Page([dict(row) for row in rows], has_more)

    async def all(self, kind: Kind, owner: str, *, parent: str) -> list[dict[str, Any]]:
        """Every object of a parent, oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(_Object.data)
                .where(_Object.kind == kind, _Object.owner == owner, _Object.parent == parent)
                .order_by(_Object.seq.asc())
            )
            return [dict(row) for row in rows]

    async def every(self, kind: Kind) -> list[tuple[str, dict[str, Any]]]:
        """Every object of a kind, of every owner, oldest first: (owner, object)."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(_Object.owner, _Object.data)
                .where(_Object.kind == kind)
                .order_by(_Object.seq.asc())
            )
            return [(owner, dict(data)) for owner, data in rows]

    async def fail_unfinished_runs(self) -> int:
        """Mark runs and responses a crash left unfinished as failed; return how many."""
        unfinished = ("queued", "in_progress", "cancelling", "requires_action")
        now = int(time.time())
        count = 0
        async with self._sessions.begin() as session:
            rows = await session.scalars(
                select(_Object).where(_Object.kind.in_(["run", "response"]))
            )
            for row in rows:
                data = dict(row.data)
                if row.kind == "response" and data.get("status") in ("queued", "in_progress"):
                    data["status"] = "failed"
                    data["error"] = {
                        "code": "server_error",
                        "message": "the server stopped while this response was in progress",
                    }
                    row.data = data
                    count += 1
                elif data.get("status") in unfinished:
                    data["status"] = "failed"
                    data["failed_at"] = now
                    data["last_error"] = {
                        "code": "server_error",
                        "message": "the server stopped while this run was in progress",
                    }
                    row.data = data
                    count += 1
        return count

    # The transcript.

    async def append(
        self, owner: str, key: str, units: Sequence[Unit], *, ref: str | None = None
    ) -> None:
        """Add units to the end of a conversation's transcript, in one transaction."""
        if not units:
            return
        async with self._sessions.begin() as session:
            session.add_all([_entry(owner, key, unit, ref) for unit in units])

    async def link(
        self, owner: str, response_id: str, previous: str | None, container: str | None
    ) -> None:
        """Record a stored response, the one it continues, and its chain's container."""
        async with self._sessions.begin() as session:
            found = await session.get(_Link, response_id)
            if found is None:
                session.add(
                    _Link(id=response_id, owner=owner, previous=previous, container=container)
                )
            elif found.owner == owner:
                found.container = container

    async def pin_point(self, owner: str, key: str) -> int:
        """The position of the conversation's newest user message (0: none)."""
        async with self._sessions() as session:
            found = await session.scalar(
                select(_Entry.seq)
                .where(_Entry.owner == owner, _Entry.key == key, _Entry.role == "user")
                .order_by(_Entry.seq.desc())
                .limit(1)
            )
        return found or 0

    async def since(self, owner: str, key: str, seq: int) -> list[Unit]:
        """The units from position ``seq`` on, oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(_Entry)
                .where(_Entry.owner == owner, _Entry.key == key, _Entry.seq >= seq)
                .order_by(_Entry.seq.asc())
            )
            return [_unit(row) for row in rows]

    async def tail(
        self, owner: str, keys: str | Sequence[str], *, before: int | None = None
    ) -> AsyncIterator[Unit]:
        """Units of the conversation(s) before position ``before``, newest first, read a
        page at a time as they are consumed."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        while True:
            query = select(_Entry).where(_Entry.owner == owner, _Entry.key.in_(keys))
            if before is not None:
                query = query.where(_Entry.seq < before)
            async with self._sessions() as session:
                rows = list(
                    await session.scalars(query.order_by(_Entry.seq.desc()).limit(TAIL_PAGE))
                )
            for row in rows:
                yield _unit(row)
            if len(rows) < TAIL_PAGE:
                return
            before = rows[-1].seq

    async def chain(self, owner: str, response_id: str) -> list[tuple[str, str | None]]:
        """The stored responses a response continues, itself first, newest to oldest, each
        with its chain's container; ``[]`` if it is not the owner's."""
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
        async with self._sessions() as session:
            rows = await session.execute(select(walk.c.id, walk.c.container).order_by(walk.c.depth))
            return [(found, container) for found, container in rows]

    async def attached(self, owner: str, key: str) -> list[str]:
        """The files attached to the conversation's messages, in order."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(_Entry.files)
                .where(_Entry.owner == owner, _Entry.key == key, _Entry.files.is_not(None))
                .order_by(_Entry.seq.asc())
            )
            return [file_id for files in rows for file_id in files or ()]

    async def forget(self, owner: str, keys: Sequence[str]) -> None:
        """Delete the transcripts of ``keys`` (and their links)."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(_Entry).where(_Entry.owner == owner, _Entry.key.in_(list(keys)))
            )
            await session.execute(
                delete(_Link).where(_Link.owner == owner, _Link.id.in_(list(keys)))
            )

    async def drop(self, owner: str, key: str, ref: str) -> None:
        """Delete the units of one object (a deleted message or item) from a transcript."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(_Entry).where(_Entry.owner == owner, _Entry.key == key, _Entry.ref == ref)
            )


def _entry(owner: str, key: str, unit: Unit, ref: str | None) -> _Entry:
    first = unit.messages[0] if unit.messages else {}
    return _Entry(
        owner=owner,
        key=key,
        ref=unit.ref or ref,
        role="user" if first.get("role") == "user" else "assistant",
        message=unit.message,
        tokens=unit.tokens,
        files=unit.files or None,
        data=unit.messages,
    )


def _unit(row: _Entry) -> Unit:
    return Unit(
        list(row.data), bool(row.message), list(row.files or ()), seq=row.seq, tokens=row.tokens
    )
