"""The chunks of the files in vector stores, and their keyword ranking, in the server's own
database: SQLite's FTS5 (BM25) or PostgreSQL's full-text search, so that keyword search
needs nothing to be run beside the server.

Functions of a ``Connection``, for ``Store`` to run where it runs its queries. A query is
cut into its words and matched as any of them: what a model or a user types is never
read as either engine's query syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    insert,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class _IndexBase(DeclarativeBase):
    pass


class _Chunk(_IndexBase):
    __tablename__ = "interp_chunks"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    owner: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[str] = mapped_column(String(64))
    """The vector store."""
    file_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    """The chunk's place in its file, from 0."""
    text: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (Index("interp_chunks_file", "owner", "store_id", "file_id"),)


# SQLite: an FTS5 table over the chunks' text (its content stays in interp_chunks), kept
# in step by triggers. PostgreSQL: a generated tsvector with a GIN index. The 'simple'
# configuration: no stemming for one language, as FTS5's default tokenizer.
_TEXT_INDEX = {
    "sqlite": (
        "CREATE VIRTUAL TABLE interp_chunks_fts USING fts5("
        "text, content='interp_chunks', content_rowid='seq', tokenize='unicode61')",
        "CREATE TRIGGER interp_chunks_added AFTER INSERT ON interp_chunks BEGIN"
        " INSERT INTO interp_chunks_fts(rowid, text) VALUES (new.seq, new.text); END",
        "CREATE TRIGGER interp_chunks_removed AFTER DELETE ON interp_chunks BEGIN"
        " INSERT INTO interp_chunks_fts(interp_chunks_fts, rowid, text)"
        " VALUES ('delete', old.seq, old.text); END",
    ),
    "postgresql": (
        "ALTER TABLE interp_chunks ADD COLUMN words tsvector"
        " GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED",
        "CREATE INDEX interp_chunks_words ON interp_chunks USING GIN (words)",
    ),
}


def create(conn: Connection) -> None:
    """Make the index if the database has none (a new one, or one from before it)."""
    if inspect(conn).has_table(_Chunk.__tablename__):
        return
    _IndexBase.metadata.create_all(conn)
    for statement in _TEXT_INDEX[conn.dialect.name]:
        conn.execute(text(statement))


@dataclass(frozen=True)
class Hit:
    file_id: str
    position: int
    text: str
    score: float
    """In (0, 1): higher is better; comparable within one search."""
    attributes: dict[str, Any] | None


def add(
    conn: Connection,
    owner: str,
    store_id: str,
    file_id: str,
    chunks: list[str],
    attributes: dict[str, Any] | None = None,
) -> None:
    rows = [
        {
            "owner": owner,
            "store_id": store_id,
            "file_id": file_id,
            "position": position,
            "text": chunk,
            "attributes": attributes,
        }
        for position, chunk in enumerate(chunks)
    ]
    if rows:
        conn.execute(insert(_Chunk), rows)


def remove(conn: Connection, owner: str, store_id: str, file_id: str | None = None) -> None:
    """The chunks of one file of a store, or of the whole store."""
    query = delete(_Chunk).where(_Chunk.owner == owner, _Chunk.store_id == store_id)
    if file_id is not None:
        query = query.where(_Chunk.file_id == file_id)
    conn.execute(query)


_WORD = re.compile(r"\w+")
MAX_QUERY_WORDS = 64


def search(conn: Connection, owner: str, store_ids: list[str], query: str, limit: int) -> list[Hit]:
    """The chunks of ``owner``'s stores that hold any word of ``query``, best first."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:MAX_QUERY_WORDS]
    if not words or not store_ids:
        return []
    params = {"owner": owner, "stores": store_ids, "limit": limit}
    if conn.dialect.name == "sqlite":
        # bm25() is lower for better matches (and negative).
        matched = " OR ".join('"' + word.replace('"', '""') + '"' for word in words)
        sql = text(
            "SELECT c.file_id, c.position, c.text, -bm25(interp_chunks_fts) AS rank,"
            " c.attributes FROM interp_chunks_fts JOIN interp_chunks c"
            " ON c.seq = interp_chunks_fts.rowid"
            " WHERE interp_chunks_fts MATCH :matched AND c.owner = :owner"
            " AND c.store_id IN :stores ORDER BY rank DESC LIMIT :limit"
        )
    else:
        matched = " | ".join(words)  # \w+ words: nothing of tsquery's syntax
        sql = text(
            "SELECT file_id, position, text, ts_rank_cd(words, q) AS rank, attributes"
            " FROM interp_chunks, to_tsquery('simple', :matched) AS q"
            " WHERE words @@ q AND owner = :owner AND store_id IN :stores"
            " ORDER BY rank DESC, seq LIMIT :limit"
        )
    typed = sql.bindparams(bindparam("stores", expanding=True)).columns(attributes=JSON)
    rows = conn.execute(typed, {**params, "matched": matched})
    return [
        Hit(file_id, position, chunk, max(rank, 0.0) / (1.0 + max(rank, 0.0)), attributes)
        for file_id, position, chunk, rank, attributes in rows
    ]
