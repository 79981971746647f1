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

import numpy
from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    bindparam,
    delete,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..protocol.common import CompoundFilter, Filter


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
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The chunk's embedding, unit length, as float32 bytes (with an embedding model)."""

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
    found = inspect(conn)
    if found.has_table(_Chunk.__tablename__):
        if "embedding" not in {c["name"] for c in found.get_columns(_Chunk.__tablename__)}:
            kind = "BLOB" if conn.dialect.name == "sqlite" else "BYTEA"
            conn.execute(text(f"ALTER TABLE interp_chunks ADD COLUMN embedding {kind}"))
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
    """In (0, 1]: higher is better."""
    attributes: dict[str, Any] | None


def add(
    conn: Connection,
    owner: str,
    store_id: str,
    file_id: str,
    chunks: list[str],
    attributes: dict[str, Any] | None = None,
    embeddings: list[bytes] | None = None,
) -> None:
    """The chunks of a file of a store (and their embeddings), in place of any it had."""
    remove(conn, owner, store_id, file_id)
    rows = [
        {
            "owner": owner,
            "store_id": store_id,
            "file_id": file_id,
            "position": position,
            "text": chunk,
            "attributes": attributes,
            "embedding": embeddings[position] if embeddings else None,
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


def relabel(
    conn: Connection, owner: str, store_id: str, file_id: str, attributes: dict[str, Any] | None
) -> None:
    """New attributes for the chunks of a file of a store."""
    conn.execute(
        update(_Chunk)
        .where(_Chunk.owner == owner, _Chunk.store_id == store_id, _Chunk.file_id == file_id)
        .values(attributes=attributes)
    )


_WORD = re.compile(r"\w+")
MAX_QUERY_WORDS = 64
STOP_WORDS = frozenset({
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are",
    "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but",
    "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for",
    "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "him",
    "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more",
    "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other",
    "our", "ours", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than",
    "that", "the", "their", "theirs", "them", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
    "yours"
})  # fmt: skip
"""English words too common to rank by: a question's "where is the" would otherwise weigh
as much as the one rare word it asks about, in a small store."""


def _words(query: str) -> list[str]:
    """The words a query is matched by: its words but the stop words (all of them when it
    has nothing else), each once."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))
    kept = [w for w in words if w not in STOP_WORDS] or words
    return kept[:MAX_QUERY_WORDS]


def search(
    conn: Connection,
    owner: str,
    store_ids: list[str],
    query: str,
    limit: int,
    where: Filter | None = None,
) -> list[Hit]:
    """The chunks of ``owner``'s stores that hold any word of ``query`` (and whose
    attributes pass ``where``), best first."""
    words = _words(query)
    if not words or not store_ids:
        return []
    params: dict[str, Any] = {"owner": owner, "stores": store_ids, "limit": limit}
    dialect = conn.dialect.name
    column = "c.attributes" if dialect == "sqlite" else "attributes"
    passes = "" if where is None else " AND " + _Filters(dialect, column, params).sql(where)
    if dialect == "sqlite":
        # bm25() is lower for better matches (and negative).
        matched = " OR ".join('"' + word.replace('"', '""') + '"' for word in words)
        # ``passes`` is fixed SQL around bound parameters (``_Filters``).
        sql = text(
            "SELECT c.file_id, c.position, c.text, -bm25(interp_chunks_fts) AS rank,"  # noqa: S608
            " c.attributes FROM interp_chunks_fts JOIN interp_chunks c"
            " ON c.seq = interp_chunks_fts.rowid"
            " WHERE interp_chunks_fts MATCH :matched AND c.owner = :owner"
            " AND c.store_id IN :stores" + passes + " ORDER BY rank DESC LIMIT :limit"
        )
    else:
        matched = " | ".join(words)  # \w+ words: nothing of tsquery's syntax
        sql = text(
            "SELECT file_id, position, text, ts_rank_cd(words, q) AS rank, attributes"  # noqa: S608
            " FROM interp_chunks, to_tsquery('simple', :matched) AS q"
            " WHERE words @@ q AND owner = :owner AND store_id IN :stores"
            + passes
            + " ORDER BY rank DESC, seq LIMIT :limit"
        )
    typed = sql.bindparams(bindparam("stores", expanding=True)).columns(attributes=JSON)
    rows = conn.execute(typed, {**params, "matched": matched}).all()
    top = max((max(row[3], 0.0) for row in rows), default=0.0) or 1.0
    asked = set(words)
    return [
        Hit(file_id, position, chunk, _score(asked, chunk, max(rank, 0.0) / top), attributes)
        for file_id, position, chunk, rank, attributes in rows
    ]


def _score(asked: set[str], chunk: str, relative: float) -> float:
    """A keyword hit's score in (0, 1]: the share of the query's words the chunk holds,
    weighed by its rank against the search's best (BM25 alone says little in a small
    store, where every word is rare)."""
    held = asked & {word.lower() for word in _WORD.findall(chunk)}
    return max(len(held) / len(asked), 1 / (2 * len(asked))) * (0.5 + 0.5 * relative)


class _Filters:
    """A filter on attributes as SQL over one dialect's JSON functions, its values (and
    keys) as bound parameters. A comparison holds only for an attribute of the value's
    type (a number is never equal to a string); ``ne`` and ``nin`` hold where ``eq`` and
    ``in`` do not, a missing attribute included."""

    def __init__(self, dialect: str, column: str, params: dict[str, Any]) -> None:
        self.sqlite = dialect == "sqlite"
        self.column = column
        self.params = params

    def sql(self, given: Filter) -> str:
        if isinstance(given, CompoundFilter):
            parts = [self.sql(inner) for inner in given.filters]
            joined = f" {given.type.upper()} ".join(parts)
            return f"({joined})" if parts else ("(1=1)" if given.type == "and" else "(1=0)")
        negated = given.type in ("ne", "nin")
        if isinstance(given.value, list):
            parts = [self._compare(given.key, "=", value) for value in given.value]
            found = "(" + (" OR ".join(parts) if parts else "1=0") + ")"
        else:
            found = self._compare(given.key, _OPERATORS[given.type], given.value)
        return f"(NOT COALESCE({found}, 1=0))" if negated else found

    def _bind(self, value: Any) -> str:
        name = f"f{len(self.params)}"
        self.params[name] = value
        return ":" + name

    def _compare(self, key: str, operator: str, value: str | float | bool) -> str:
        col = self.column
        if self.sqlite:
            path = self._bind(f'$."{key}"')
            kind = f"json_type({col}, {path})"
            if isinstance(value, bool):
                return f"({kind} = '{'true' if value else 'false'}')"
            found = f"json_extract({col}, {path})"
            types = "('text')" if isinstance(value, str) else "('integer', 'real')"
            return f"({kind} IN {types} AND {found} {operator} {self._bind(value)})"
        name = self._bind(key)
        kind = f"json_typeof({col} -> {name})"
        found = f"({col} ->> {name})"
        if isinstance(value, bool):
            return f"({kind} = 'boolean' AND {found} = '{'true' if value else 'false'}')"
        if isinstance(value, str):
            return f"({kind} = 'string' AND {found} COLLATE \"C\" {operator} {self._bind(value)})"
        number = f"(CASE WHEN {kind} = 'number' THEN {found}::float8 END)"
        return f"({number} {operator} {self._bind(float(value))})"


_OPERATORS = {"eq": "=", "ne": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def nearest(
    conn: Connection,
    owner: str,
    store_ids: list[str],
    vector: bytes,
    limit: int,
    where: Filter | None = None,
) -> list[Hit]:
    """The chunks of ``owner``'s stores (passing ``where``) nearest ``vector`` (unit length,
    float32 bytes) by cosine similarity, best first.

    Every embedding of the stores is compared, in one matrix product: neither sqlite-vec
    (an extension not every Python's sqlite3 can load) nor pgvector (not packaged for
    Debian 12) is assumed, and 10 000 chunks are compared in milliseconds."""
    if not store_ids:
        return []
    params: dict[str, Any] = {"owner": owner, "stores": store_ids}
    dialect = conn.dialect.name
    passes = "" if where is None else " AND " + _Filters(dialect, "attributes", params).sql(where)
    sql = text(
        "SELECT seq, embedding FROM interp_chunks WHERE owner = :owner"  # noqa: S608
        " AND store_id IN :stores AND embedding IS NOT NULL" + passes
    ).bindparams(bindparam("stores", expanding=True))
    rows = [row for row in conn.execute(sql, params) if len(row[1]) == len(vector)]
    if not rows:  # (an embedding of another length is another model's: not compared)
        return []
    matrix = numpy.frombuffer(b"".join(row[1] for row in rows), dtype=numpy.float32)
    scores = matrix.reshape(len(rows), -1) @ numpy.frombuffer(vector, dtype=numpy.float32)
    best = numpy.argsort(-scores, kind="stable")[:limit]
    chosen = {int(rows[i][0]): float(scores[i]) for i in best}
    found = conn.execute(
        select(_Chunk.seq, _Chunk.file_id, _Chunk.position, _Chunk.text, _Chunk.attributes)
        .where(_Chunk.seq.in_(list(chosen)))
    ).all()  # fmt: skip
    hits = {
        seq: Hit(file_id, position, chunk, min(max(chosen[seq], 0.0), 1.0), attributes)
        for seq, file_id, position, chunk, attributes in found
    }
    return [hits[seq] for seq in chosen if seq in hits]


def unit_vector(values: list[float]) -> bytes:
    """An embedding as stored: scaled to unit length, float32 bytes."""
    vector = numpy.asarray(values, dtype=numpy.float32)
    norm = float(numpy.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).tobytes()
