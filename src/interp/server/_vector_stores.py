"""Vector stores: File Search's collections of files, read, chunked and indexed in the
background, and searched.

A vector store is stored (kind ``vector_store``) with its files (``vs_file``, found by
``<store id>/<file id>``) and file batches (``vs_batch``). What a store or a batch counts
(its files by status, their bytes) and so its status are read from its files when it is
served, never kept in two places: no write can leave them wrong.

A file added is ``in_progress`` until a worker has read its text (``search.text``, or
``search.documents`` for PDF and Word, in a child process with limits), cut it into chunks
and indexed them (``search.index``); then ``completed``, or ``failed`` with the reason as
``last_error``. A few workers take the files in turn, so a large batch cannot take the
machine; files still ``in_progress`` when the server stopped are taken again at its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from openai.types import VectorStore
from openai.types.vector_store import ExpiresAfter as StoreExpiry
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch

from .. import Engine, InterpError
from . import _wire as wire
from ._errors import APIError, bad_request, not_found
from ._locks import KeyedLocks
from ._store import Served, Store, Writes, document
from .agent.model import UpstreamError
from .agent.search import Searching
from .protocol.common import Filter
from .protocol.vector_stores import BatchFile, ChunkingStrategy, ExpiresAfter
from .search import documents, text
from .search.chunks import Strategy, split
from .search.index import Hit, unit_vector

log = logging.getLogger("interp.server")

WORKERS = 2
"""Files read at once: parsing is CPU work, and the server's loop must keep its share."""
SWEEP_S = 60.0
"""How often expired vector stores are looked for."""
TOUCH_S = 60
"""A store used within this many seconds of its ``last_active_at`` is not written again."""
POLL_AFTER_MS = 250
READY_S = 60.0
"""How long a run's search waits for its stores' files still being read."""
EMBED_BATCH = 64
"""Chunks embedded in one request to the upstream."""
MAX_EMBEDDED_CHARS = 16_000
"""What of a chunk (or a query) is embedded: a 4096-token chunk, with room."""
RRF_K = 60
"""Reciprocal rank fusion's constant: a rank counts 1 / (60 + rank)."""
"""What ``openai-poll-after-ms`` tells the SDK's polling helpers while files are read."""


def _stored_file(data: dict[str, Any]) -> VectorStoreFile:
    return VectorStoreFile.model_validate({k: v for k, v in data.items() if k != "batch_id"})


VECTOR_STORE = Served("vector_store", VectorStore.model_validate)
VS_FILE = Served("vs_file", _stored_file)
VS_BATCH = Served("vs_batch", VectorStoreFileBatch.model_validate)


def file_key(store_id: str, file_id: str) -> str:
    return f"{store_id}/{file_id}"


def expired_error() -> APIError:
    return bad_request("Vector store is expired.")


@dataclass(frozen=True)
class Result:
    """A chunk found, with its file's name."""

    hit: Hit
    filename: str


@dataclass(frozen=True)
class _Job:
    owner: str
    store_id: str
    file_id: str


Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
"""Embeddings of texts (the upstream's ``/v1/embeddings``), in their order."""


class VectorStores:
    def __init__(self, *, store: Store, engine: Engine, embed: Embed | None = None) -> None:
        self._store = store
        self._engine = engine
        self._embed = embed
        self._locks = KeyedLocks()
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._read_one = asyncio.Condition()
        """Notified each time a file's reading ends."""
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the workers, with the files a stop left ``in_progress`` queued again."""
        for owner, found in await self._store.every(VS_FILE, "in_progress"):
            self._queue.put_nowait(_Job(owner, found.vector_store_id, found.id))
        self._tasks = [
            asyncio.create_task(self._work(), name=f"interp-vector-stores-{number}")
            for number in range(WORKERS)
        ]
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="interp-vs-sweep"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # The stores.

    async def create(
        self,
        owner: str,
        *,
        name: str | None,
        description: str | None,
        metadata: dict[str, str] | None,
        expires_after: ExpiresAfter | None,
        file_ids: list[str],
        chunking: ChunkingStrategy | None,
    ) -> VectorStore:
        await wire.check_files(self._store, owner, file_ids, "file_ids")
        now = wire.now()
        made = VectorStore.model_validate(
            {
                "id": wire.new_id("vs_"),
                "object": "vector_store",
                "created_at": now,
                "last_active_at": now,
                "name": name or "",
                "description": description,
                "metadata": metadata or {},
                "status": "completed",
                "usage_bytes": 0,
                "file_counts": _counts({}),
            }
        )
        _expiry(made, expires_after)
        writes = Writes()
        writes.create("vector_store", owner, made)
        for file_id in dict.fromkeys(file_ids):
            self._add(
                writes, owner, made.id, BatchFile(file_id=file_id, chunking_strategy=chunking)
            )
        await self._commit(owner, made.id, writes)
        return (await self.served(owner, [made]))[0]

    async def get(self, owner: str, store_id: str) -> VectorStore:
        found = await self._store.get(VECTOR_STORE, owner, store_id)
        if found is None:
            raise not_found("vector store", store_id)
        return (await self.served(owner, [found]))[0]

    async def served(self, owner: str, stores: list[VectorStore]) -> list[VectorStore]:
        """Stores as served: their files counted by status, their bytes, their status."""
        tally = await self._store.tally("vs_file", owner, "parent", [s.id for s in stores])
        for found in stores:
            counts = tally.get(found.id, {})
            found.file_counts = found.file_counts.model_validate(_counts(counts))
            found.usage_bytes = sum(size for _, size in counts.values())
            if found.status != "expired":
                found.status = "in_progress" if counts.get("in_progress") else "completed"
        return stores

    async def modify(
        self, owner: str, store_id: str, changes: dict[str, Any], expires: ExpiresAfter | None
    ) -> VectorStore:
        async with self._locks.hold(store_id):
            found = await self._live(owner, store_id)
            if "name" in changes:
                found.name = changes["name"] or ""
            if changes.get("metadata") is not None:
                found.metadata = changes["metadata"]
            if "expires_after" in changes:
                _expiry(found, expires)
            fields = ["name", "metadata", "expires_after", "expires_at", "last_active_at"]
            await self._store.set_fields("vector_store", owner, found, fields)
        return (await self.served(owner, [found]))[0]

    async def delete(self, owner: str, store_id: str) -> None:
        async with self._locks.hold(store_id):
            if await self._store.get(VECTOR_STORE, owner, store_id) is None:
                raise not_found("vector store", store_id)
            async with self._store.transaction() as tx:
                tx.delete("vector_store", owner, store_id)
                tx.delete_children(owner, [store_id])
            await self._store.unindex(owner, store_id)

    # Its files.

    async def add_files(
        self, owner: str, store_id: str, files: list[BatchFile], *, batch: bool
    ) -> VectorStoreFile | VectorStoreFileBatch:
        """Add files to a store (one, or a batch of them), to be read in the background;
        a file the store has already keeps its place (and its reading)."""
        await wire.check_files(self._store, owner, [f.file_id for f in files], "file_id")
        async with self._locks.hold(store_id):
            await self._live(owner, store_id)
            made = None
            if batch:
                made = VectorStoreFileBatch.model_validate(
                    {
                        "id": wire.new_id("vsfb_"),
                        "object": "vector_store.files_batch",
                        "created_at": wire.now(),
                        "vector_store_id": store_id,
                        "status": "in_progress",
                        "file_counts": _counts({}),
                    }
                )
            writes = Writes()
            if made is not None:
                writes.create("vs_batch", owner, made, parent=store_id)
            for given in {f.file_id: f for f in files}.values():
                key = file_key(store_id, given.file_id)
                if await self._store.get(VS_FILE, owner, key) is None:
                    batch_id = made.id if made is not None else None
                    self._add(writes, owner, store_id, given, batch_id=batch_id)
            await self._commit(owner, store_id, writes)
        if made is not None:
            return await self.batch(owner, store_id, made.id)
        return await self.file(owner, store_id, files[0].file_id)

    async def file(self, owner: str, store_id: str, file_id: str) -> VectorStoreFile:
        found = await self._store.get(VS_FILE, owner, file_key(store_id, file_id))
        if found is None:
            raise not_found("vector store file", file_id)
        return found

    async def relabel(
        self, owner: str, store_id: str, file_id: str, attributes: dict[str, Any] | None
    ) -> VectorStoreFile:
        key = file_key(store_id, file_id)
        async with self._locks.hold(key):
            await self.file(owner, store_id, file_id)
            document = await self._document(owner, key)
            document["attributes"] = attributes
            await self._store.set_fields("vs_file", owner, document, ["attributes"], key=key)
            await self._store.relabel(owner, store_id, file_id, attributes)
        return _stored_file(document)

    async def remove_file(self, owner: str, store_id: str, file_id: str) -> None:
        key = file_key(store_id, file_id)
        async with self._locks.hold(key):
            await self.file(owner, store_id, file_id)
            await self._store.delete("vs_file", owner, key)
            await self._store.unindex(owner, store_id, file_id)

    async def forget_file(self, owner: str, file_id: str) -> None:
        """Take a deleted file out of every store that has it."""
        while True:
            page = await self._store.page(VS_FILE, owner, where={"id": file_id}, limit=100)
            for found in page.data:
                with contextlib.suppress(APIError):
                    await self.remove_file(owner, found.vector_store_id, file_id)
            if not page.has_more:
                return

    async def content(self, owner: str, store_id: str, file_id: str) -> str:
        """A file's text, as it was read for search."""
        await self.file(owner, store_id, file_id)
        found = await self._store.get(wire.FILE, owner, file_id)
        if found is None:
            raise not_found("file", file_id)
        try:
            return await self._text(found.filename, file_id)
        except text.Unreadable as exc:
            raise bad_request(f"The file's text cannot be read: {exc}") from None

    # Batches.

    async def batch(self, owner: str, store_id: str, batch_id: str) -> VectorStoreFileBatch:
        found = await self._store.get(VS_BATCH, owner, batch_id)
        if found is None or found.vector_store_id != store_id:
            raise not_found("vector store file batch", batch_id)
        counts = (await self._store.tally("vs_file", owner, "batch_id", [batch_id]))[batch_id]
        found.file_counts = found.file_counts.model_validate(_counts(counts))
        if found.status != "cancelled":
            found.status = "in_progress" if counts.get("in_progress") else "completed"
        return found

    async def cancel_batch(self, owner: str, store_id: str, batch_id: str) -> VectorStoreFileBatch:
        """Stop reading the batch's files not read yet (``cancelled``)."""
        found = await self.batch(owner, store_id, batch_id)
        if found.status != "in_progress":
            return found
        while True:
            page = await self._store.page(
                VS_FILE, owner, parent=store_id, limit=100,
                where={"batch_id": batch_id, "status": "in_progress"},
            )  # fmt: skip
            for pending in page.data:
                await self._finish(owner, pending.vector_store_id, pending.id, "cancelled")
            if not page.has_more:
                break
        found.status = "cancelled"
        await self._store.set_fields("vs_batch", owner, found, ["status"])
        return await self.batch(owner, store_id, batch_id)

    # Search.

    async def search(
        self,
        owner: str,
        store_ids: list[str],
        queries: list[str],
        *,
        limit: int,
        where: Filter | None = None,
        threshold: float | None = None,
    ) -> list[Result]:
        """The chunks of the owner's live stores that best answer ``queries``."""
        live = []
        for store_id in dict.fromkeys(store_ids):
            found = await self._store.get(VECTOR_STORE, owner, store_id)
            if found is not None and found.status != "expired":
                await self._touch(owner, found)
                live.append(store_id)
        hits = await ranked(self._store, self._embed, owner, live, " ".join(queries), limit, where)
        names: dict[str, str] = {}
        results = []
        for hit in hits:
            if threshold is not None and hit.score < threshold:
                continue
            if hit.file_id not in names:
                info = await self._store.get(wire.FILE, owner, hit.file_id)
                names[hit.file_id] = info.filename if info is not None else hit.file_id
            results.append(Result(hit, names[hit.file_id]))
        return results

    async def for_run(self, searching: Searching, queries: list[str]) -> list[Result]:
        """A run's search (the ``file_search`` tool's): ``agent.search.Searcher``. Files
        still being read are waited for (at most ``READY_S``): a file attached to the
        message a run answers is read by the time it is searched, as OpenAI does."""
        await self.ready(searching.owner, searching.store_ids, READY_S)
        return await self.search(
            searching.owner, searching.store_ids, queries, limit=searching.max_num_results,
            where=searching.filters, threshold=searching.score_threshold,
        )  # fmt: skip

    # The work behind them.

    async def _embeddings(self, chunks: list[str]) -> list[bytes] | None:
        if self._embed is None:
            return None
        found: list[bytes] = []
        for start in range(0, len(chunks), EMBED_BATCH):
            batch = [chunk[:MAX_EMBEDDED_CHARS] for chunk in chunks[start : start + EMBED_BATCH]]
            found += [unit_vector(vector) for vector in await self._embed(batch)]
        return found

    async def _live(self, owner: str, store_id: str) -> VectorStore:
        found = await self._store.get(VECTOR_STORE, owner, store_id)
        if found is None:
            raise not_found("vector store", store_id)
        if found.status == "expired":
            raise expired_error()
        return found

    def _add(
        self,
        writes: Writes,
        owner: str,
        store_id: str,
        given: BatchFile,
        *,
        batch_id: str | None = None,
    ) -> VectorStoreFile:
        strategy = (given.chunking_strategy or ChunkingStrategy(type="auto")).strategy()
        added = VectorStoreFile.model_validate(
            {
                "id": given.file_id,
                "object": "vector_store.file",
                "created_at": wire.now(),
                "vector_store_id": store_id,
                "status": "in_progress",
                "usage_bytes": 0,
                "last_error": None,
                "attributes": given.attributes,
                "chunking_strategy": {
                    "type": "static",
                    "static": {
                        "max_chunk_size_tokens": strategy.max_tokens,
                        "chunk_overlap_tokens": strategy.overlap_tokens,
                    },
                },
            }
        )
        document = added.model_dump(mode="json") | {"batch_id": batch_id}
        writes.create("vs_file", owner, document, parent=store_id, key=file_key(store_id, added.id))
        return added

    async def _commit(self, owner: str, store_id: str, writes: Writes) -> None:
        async with self._store.transaction() as tx:
            tx.merge(writes)
        for row in writes.objects:
            if row["kind"] == "vs_file":
                self._queue.put_nowait(_Job(owner, store_id, row["data"]["id"]))

    async def _document(self, owner: str, key: str) -> dict[str, Any]:
        """A store file's JSON as kept (with its batch)."""
        return (await self._store.get(document("vs_file"), owner, key)) or {}

    async def ready(self, owner: str, store_ids: list[str], seconds: float) -> None:
        """Return once the stores have no file being read, or after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        async with self._read_one:
            while True:
                tally = await self._store.tally("vs_file", owner, "parent", store_ids)
                if not any(counts.get("in_progress") for counts in tally.values()):
                    return
                left = deadline - loop.time()
                if left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._read_one.wait(), left)

    async def idle(self) -> None:
        """Return once every file queued so far has been read (or has failed)."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._read(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a worker outlives any one file
                log.exception("reading a file for search failed")
                failure = ("server_error", "the server failed to read it")
                with contextlib.suppress(Exception):
                    await self._finish(
                        job.owner, job.store_id, job.file_id, "failed", error=failure
                    )
            finally:
                self._queue.task_done()

    async def _read(self, job: _Job) -> None:
        key = file_key(job.store_id, job.file_id)
        found = await self._store.get(VS_FILE, job.owner, key)
        if found is None or found.status != "in_progress":
            return
        info = await self._store.get(wire.FILE, job.owner, job.file_id)
        if info is None:
            await self._finish(job.owner, job.store_id, job.file_id, "failed",
                               error=("invalid_file", "the file was deleted"))  # fmt: skip
            return
        static = found.chunking_strategy
        strategy = (
            Strategy(static.static.max_chunk_size_tokens, static.static.chunk_overlap_tokens)
            if static is not None and static.type == "static"
            else Strategy()
        )
        try:
            read = await self._text(info.filename, job.file_id)
            chunks = await asyncio.to_thread(split, read, strategy)
            embeddings = await self._embeddings(chunks)
        except text.Unreadable as exc:
            code = "unsupported_file" if "not supported" in str(exc) else "invalid_file"
            failure = (code, str(exc))
            await self._finish(job.owner, job.store_id, job.file_id, "failed", error=failure)
            return
        except UpstreamError as exc:
            failure = ("server_error", f"embedding the file failed: {exc.message}")
            await self._finish(job.owner, job.store_id, job.file_id, "failed", error=failure)
            return
        await self._finish(
            job.owner, job.store_id, job.file_id, "completed", chunks=chunks,
            embeddings=embeddings, size=len(read.encode()),
        )  # fmt: skip

    async def _text(self, name: str, file_id: str) -> str:
        try:
            path = self._engine.file_path(file_id)
            data = await asyncio.to_thread(path.read_bytes)
        except (InterpError, OSError):
            raise text.Unreadable("the file's bytes are gone from the file store") from None
        suffix = PurePosixPath(name).suffix.lower()
        if suffix in documents.SUFFIXES:
            return await documents.extract(suffix, data)
        return await asyncio.to_thread(text.extract, name, data)

    async def _finish(
        self,
        owner: str,
        store_id: str,
        file_id: str,
        status: str,
        *,
        chunks: list[str] | None = None,
        embeddings: list[bytes] | None = None,
        size: int = 0,
        error: tuple[str, str] | None = None,
    ) -> None:
        """End a file's reading, if it is still being read (not removed nor cancelled)."""
        key = file_key(store_id, file_id)
        # The store's lock too: a store deleted meanwhile keeps no chunks of it.
        async with self._locks.hold(store_id), self._locks.hold(key):
            document = await self._document(owner, key)
            if document.get("status") != "in_progress":
                return
            if chunks is not None:
                attributes = document.get("attributes")
                await self._store.index_chunks(
                    owner, store_id, file_id, chunks, attributes, embeddings
                )
            document |= {"status": status, "usage_bytes": size}
            if error is not None:
                document["last_error"] = {"code": error[0], "message": error[1][:1000]}
            fields = ["status", "usage_bytes", "last_error"]
            await self._store.set_fields("vs_file", owner, document, fields, key=key)
        async with self._read_one:
            self._read_one.notify_all()

    async def _touch(self, owner: str, found: VectorStore) -> None:
        """Mark a store used (its expiry counts from its last use)."""
        now = int(time.time())
        if found.last_active_at is not None and now - found.last_active_at < TOUCH_S:
            return
        async with self._locks.hold(found.id):
            fresh = await self._store.get(VECTOR_STORE, owner, found.id)
            if fresh is None or fresh.status == "expired":
                return
            fresh.last_active_at = now
            if fresh.expires_after is not None:
                fresh.expires_at = now + fresh.expires_after.days * 86400
            await self._store.set_fields(
                "vector_store", owner, fresh, ["last_active_at", "expires_at"]
            )

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the sweep goes on
                log.exception("the vector store sweep failed")
            await asyncio.sleep(SWEEP_S)

    async def sweep(self) -> None:
        """Expire the stores past their ``expires_at``: their chunks go, the store stays,
        ``expired``."""
        now = time.time()
        for owner, found in await self._store.every(VECTOR_STORE, "completed"):
            if found.expires_at is None or found.expires_at > now:
                continue
            async with self._locks.hold(found.id):
                fresh = await self._store.get(VECTOR_STORE, owner, found.id)
                if fresh is None or fresh.expires_at is None or fresh.expires_at > now:
                    continue
                fresh.status = "expired"
                await self._store.set_fields("vector_store", owner, fresh, ["status"])
                await self._store.unindex(owner, found.id)


async def ranked(
    store: Store,
    embed: Embed | None,
    owner: str,
    store_ids: list[str],
    query: str,
    limit: int,
    where: Filter | None = None,
) -> list[Hit]:
    """The best chunks for ``query``: by keywords; with an embedding model, the keyword
    ranking and the nearest embeddings fused by their ranks (reciprocal rank fusion, a
    chunk's score its fused score over the best one possible)."""
    if embed is None or not store_ids:
        return await store.search(owner, store_ids, query, limit=limit, where=where)
    wide = limit * 2 + 10
    keyword = await store.search(owner, store_ids, query, limit=wide, where=where)
    try:
        (vector,) = await embed([query[:MAX_EMBEDDED_CHARS]])
    except UpstreamError as exc:
        log.warning("File Search ranks by keywords alone: %s", exc.message)
        return keyword[:limit]
    semantic = await store.nearest(owner, store_ids, unit_vector(vector), limit=wide, where=where)
    fused: dict[tuple[str, int], tuple[float, Hit]] = {}
    for ranking in (keyword, semantic):
        for rank, hit in enumerate(ranking):
            key = (hit.file_id, hit.position)
            score, _ = fused.get(key, (0.0, hit))
            fused[key] = (score + 1 / (RRF_K + rank + 1), hit)
    best = 2 / (RRF_K + 1)
    ordered = sorted(fused.values(), key=lambda pair: -pair[0])[:limit]
    return [dataclasses.replace(hit, score=score / best) for score, hit in ordered]


def _counts(counts: dict[str, tuple[int, int]]) -> dict[str, int]:
    statuses = ("in_progress", "completed", "failed", "cancelled")
    found = {status: counts.get(status, (0, 0))[0] for status in statuses}
    return found | {"total": sum(found.values())}


def _expiry(found: VectorStore, expires: ExpiresAfter | None) -> None:
    if expires is None:
        found.expires_after = found.expires_at = None
        return
    found.expires_after = StoreExpiry.model_validate(expires.model_dump())
    found.expires_at = (found.last_active_at or wire.now()) + expires.days * 86400
