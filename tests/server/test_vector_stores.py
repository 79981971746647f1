"""Vector stores' background reading under races, in this process: a real store (SQLite)
and ``VectorStores``' own workers, over a directory standing in for the engine's file
store. A store deleted, a file removed or a batch cancelled while a file is being read
keeps no chunk of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from openai.types import FileObject
from sqlalchemy import func, select

from interp import Engine
from interp.server._errors import APIError
from interp.server._store import Store
from interp.server._vector_stores import VECTOR_STORE, VectorStores
from interp.server.protocol.vector_stores import BatchFile, ExpiresAfter
from interp.server.search.index import _Chunk

OWNER = "alice"
WORDS = " ".join(f"word{i}" for i in range(1000)) + "\n"
BIG = (WORDS * (8 * 1024**2 // len(WORDS))).encode()  # 8 MB: a second or more to read


class _FileStore:
    """The engine's file store as ``VectorStores`` reads it; says when a read begins."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.reading = asyncio.Event()

    def file_path(self, file_id: str) -> Path:
        self.reading.set()
        return self.root / file_id


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Store, VectorStores, _FileStore]]:
    store = Store(f"sqlite:///{tmp_path / 'server.db'}")
    await store.open()
    files = _FileStore(tmp_path)
    stores = VectorStores(store=store, engine=cast(Engine, files))
    await stores.start()
    yield store, stores, files
    await stores.close()
    await store.close()


async def _file(store: Store, files: _FileStore, file_id: str, data: bytes) -> None:
    await asyncio.to_thread((files.root / file_id).write_bytes, data)
    made = FileObject(
        id=file_id, object="file", bytes=len(data), created_at=0, filename=f"{file_id}.txt",
        purpose="assistants", status="processed",
    )  # fmt: skip
    await store.create("file", OWNER, made)


async def _chunks(store: Store, store_id: str) -> int:
    query = select(func.count()).select_from(_Chunk).where(_Chunk.store_id == store_id)
    found: Any = await store._run(lambda conn: conn.scalar(query))
    return int(found)


async def _reading(stores: VectorStores, files: _FileStore) -> str:
    """A store with the big file in it, being read now."""
    made = await stores.create(
        OWNER, name="s", description=None, metadata=None, expires_after=None,
        file_ids=["file-big"], chunking=None,
    )  # fmt: skip
    await asyncio.wait_for(files.reading.wait(), 10)
    assert (await stores.file(OWNER, made.id, "file-big")).status == "in_progress"
    return made.id


async def test_a_store_deleted_while_its_file_is_read_keeps_no_chunks(world: Any) -> None:
    store, stores, files = world
    await _file(store, files, "file-big", BIG)
    store_id = await _reading(stores, files)
    await stores.delete(OWNER, store_id)
    await stores.idle()
    assert await _chunks(store, store_id) == 0


async def test_a_file_removed_while_it_is_read_keeps_no_chunks(world: Any) -> None:
    store, stores, files = world
    await _file(store, files, "file-big", BIG)
    store_id = await _reading(stores, files)
    await stores.remove_file(OWNER, store_id, "file-big")
    await stores.idle()
    assert await _chunks(store, store_id) == 0
    assert (await stores.get(OWNER, store_id)).file_counts.total == 0


async def test_a_batch_cancelled_while_its_files_are_read_keeps_none_of_them(world: Any) -> None:
    store, stores, files = world
    await _file(store, files, "file-big", BIG)
    await _file(store, files, "file-small", b"the ibis wades")
    made = await stores.create(
        OWNER, name="s", description=None, metadata=None, expires_after=None, file_ids=[],
        chunking=None,
    )  # fmt: skip
    batch = await stores.add_files(
        OWNER, made.id, [BatchFile(file_id="file-big"), BatchFile(file_id="file-small")],
        batch=True,
    )  # fmt: skip
    await asyncio.wait_for(files.reading.wait(), 10)
    cancelled = await stores.cancel_batch(OWNER, made.id, batch.id)
    assert cancelled.status == "cancelled"
    assert cancelled.file_counts.in_progress == 0
    await stores.idle()
    found = await stores.batch(OWNER, made.id, batch.id)
    assert found.file_counts.cancelled + found.file_counts.completed == 2
    assert (await stores.file(OWNER, made.id, "file-big")).status == "cancelled"
    assert await store.search(OWNER, [made.id], "word1", limit=5) == []


async def test_a_store_past_its_expiry_is_expired_and_searched_no_more(world: Any) -> None:
    store, stores, files = world
    await _file(store, files, "file-small", b"the ibis wades")
    made = await stores.create(
        OWNER, name="s", description=None, metadata=None, file_ids=["file-small"],
        expires_after=ExpiresAfter(anchor="last_active_at", days=1), chunking=None,
    )  # fmt: skip
    await stores.idle()
    assert made.expires_at == made.last_active_at + 86400
    assert [r.filename for r in await stores.search(OWNER, [made.id], ["ibis"], limit=5)] == [
        "file-small.txt"
    ]
    await stores.sweep()
    assert (await stores.get(OWNER, made.id)).status == "completed"  # not yet
    # A day later (its expiry moved into the past):
    kept = await store.get(VECTOR_STORE, OWNER, made.id)
    kept.expires_at = kept.last_active_at = 1
    await store.put("vector_store", OWNER, kept)
    await stores.sweep()
    assert (await stores.get(OWNER, made.id)).status == "expired"
    assert await stores.search(OWNER, [made.id], ["ibis"], limit=5) == []
    assert await _chunks(store, made.id) == 0
    with pytest.raises(APIError, match="expired"):
        await stores.add_files(OWNER, made.id, [BatchFile(file_id="file-small")], batch=False)
