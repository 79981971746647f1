"""Every object the API serves, in one table of JSON documents, through SQLAlchemy 2 (async).

An object is stored as the JSON the API returns, with the columns needed to find it:
its kind, its owner (the API key's id: another owner's id reads as not found), its parent
(a message's or run's thread, a step's run) and an insertion sequence that orders lists.
SQLite by default (``aiosqlite``); any async URL (``postgresql+asyncpg://…``) works.
The schema carries a version; a database of another version is refused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, Index, Integer, String, delete, event, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .._exceptions import ConfigError

SCHEMA_VERSION = 1

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
        self, kind: Kind, owner: str, obj: dict[str, Any], *, parent: str | None = None
    ) -> dict[str, Any]:
        async with self._sessions.begin() as session:
            session.add(_Object(id=obj["id"], kind=kind, owner=owner, parent=parent, data=obj))
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
