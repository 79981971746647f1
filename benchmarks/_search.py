"""File Search's index measured on its own: a 10 MB text corpus read, cut into chunks and
indexed in the server's default database (SQLite), then keyword searches over 10 000
chunks, and hybrid ones (keywords and the nearest of 10 000 embeddings of 768 dimensions,
fused). No model and no sandbox take part: the embeddings come from a function in this
process, so the figure is the server's share of a search (the upstream's embedding of the
query comes on top)."""

from __future__ import annotations

import asyncio
import random
import time
import zlib
from pathlib import Path

import numpy

from interp.server._store import Store
from interp.server._vector_stores import ranked
from interp.server.search.chunks import split
from interp.server.search.embedder import Builtin
from interp.server.search.index import unit_vector
from interp.server.search.text import extract

from ._scenarios import Measurement, Plan

CORPUS_BYTES = 10 * 1024**2
VOCABULARY = 20_000
FILES = 20
SEARCHED_CHUNKS = 10_000
DIMENSIONS = 768


async def _embed(texts: list[str]) -> list[list[float]]:
    """Embeddings that are the same for the same text (random, seeded by it)."""
    return [
        numpy.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIMENSIONS).tolist()
        for text in texts
    ]


async def file_search(data_dir: Path, plan: Plan) -> list[Measurement]:
    ingest = Measurement(
        "search_ingest", "file search: read, chunk and index 10 MB of text", group="search"
    )
    query = Measurement(
        "search_keyword", "file search: keyword search, 3 words, over 10 000 chunks", group="search"
    )
    embedded = Measurement(
        "search_ingest_embedded",
        "file search: read, chunk, embed (the built-in model) and index 2 MB of text",
        group="search",
    )
    hybrid = Measurement(
        "search_hybrid",
        "file search: hybrid search (keywords + 768-d embeddings), over 10 000 chunks",
        group="search",
    )
    rnd = random.Random(7)
    words = [f"w{rnd.randrange(10**9):09d}" for _ in range(VOCABULARY)]
    per_file = CORPUS_BYTES // FILES
    files = []
    for _ in range(FILES):
        text = " ".join(rnd.choices(words, k=per_file // 11))  # 10 bytes a word and a space
        files.append(text.encode())
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    store = Store(f"sqlite:///{data_dir / 'search.sqlite3'}")
    await store.open()
    try:
        started = time.perf_counter()
        chunks = 0
        for number, data in enumerate(files):
            pieces = split(extract(f"part{number}.txt", data))
            chunks += len(pieces)
            await store.index_chunks("bench", "vs_bench", f"file-{number}", pieces)
        elapsed = time.perf_counter() - started
        ingest.samples.append(elapsed)
        ingest.values["mb_per_s"] = sum(map(len, files)) / 1e6 / elapsed
        ingest.values["chunks"] = chunks
        extra = 0
        while chunks < SEARCHED_CHUNKS:  # more of the same text, not timed
            more = split(" ".join(rnd.choices(words, k=per_file // 11)))
            await store.index_chunks("bench", "vs_bench", f"extra-{extra}", more)
            chunks, extra = chunks + len(more), extra + 1
        for _ in range(max(50, plan.execute)):
            asked = " ".join(rnd.choices(words, k=3))
            began = time.perf_counter()
            await store.search("bench", ["vs_bench"], asked, limit=20)
            query.samples.append(time.perf_counter() - began)
        query.values["chunks"] = chunks
        await _hybrid(store, hybrid, words, rnd, plan)
        await _embedded(store, embedded, files)
    finally:
        await store.close()
    return [ingest, embedded, query, hybrid]


async def _embedded(store: Store, embedded: Measurement, files: list[bytes]) -> None:
    """Reading with the built-in embedding model: a fifth of the corpus (it is slower)."""
    embed = Builtin()
    await embed(["warm up: the model loads once"])
    part = files[: FILES // 5]
    started = time.perf_counter()
    for number, data in enumerate(part):
        pieces = split(extract(f"part{number}.txt", data))
        vectors = [unit_vector(v) for v in await embed(pieces)]
        await store.index_chunks("bench", "vs_embedded", f"e-{number}", pieces, None, vectors)
    elapsed = time.perf_counter() - started
    embedded.samples.append(elapsed)
    embedded.values["mb_per_s"] = sum(map(len, part)) / 1e6 / elapsed


async def _hybrid(
    store: Store, hybrid: Measurement, words: list[str], rnd: random.Random, plan: Plan
) -> None:
    """The same kind of text again, in a store whose chunks have embeddings."""
    chunks = 0
    while chunks < SEARCHED_CHUNKS:
        pieces = split(" ".join(rnd.choices(words, k=CORPUS_BYTES // FILES // 11)))
        vectors = [unit_vector(v) for v in await _embed(pieces)]
        await store.index_chunks("bench", "vs_hybrid", f"h-{chunks}", pieces, None, vectors)
        chunks += len(pieces)
    for _ in range(max(50, plan.execute)):
        asked = " ".join(rnd.choices(words, k=3))
        began = time.perf_counter()
        await ranked(store, _embed, "bench", ["vs_hybrid"], asked, 20)
        hybrid.samples.append(time.perf_counter() - began)
    hybrid.values["chunks"] = chunks
