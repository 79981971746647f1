"""Replicas on one PostgreSQL and one S3 bucket (`interp bench --replicas`, run by
`scripts/bench-replicas`, which starts both): trivial runs a second through one replica
and through two, and what fetching a 1 MB file from the bucket adds to placing it in a
sandbox. Reported, not budgeted: on 2 cores two replicas share the same CPUs."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

import openai

from ._scenarios import Measurement, Plan, engine_for
from ._server import _model, _runs_per_second, _serve

MB = 1024**2


def _settings() -> tuple[str, str]:
    database = os.environ.get("INTERP_BENCH_POSTGRES_URL")
    bucket = os.environ.get("INTERP_BENCH_FILE_STORE")
    if not database or not bucket:
        raise SystemExit(
            "interp bench --replicas needs INTERP_BENCH_POSTGRES_URL and"
            " INTERP_BENCH_FILE_STORE (s3://…, with the AWS_* variables):"
            " scripts/bench-replicas sets them"
        )
    return database, bucket


async def replicas(data_dir: Path, plan: Plan) -> list[Measurement]:
    database, bucket = _settings()
    results: list[Measurement] = []
    settings = {"INTERP_DB": database, "INTERP_FILE_STORE": bucket}
    with _model() as model_url:
        # The baseline: one server on SQLite in its data directory, as by default.
        for count, db in ((1, "sqlite"), (1, "postgresql"), (2, "postgresql")):
            with contextlib.ExitStack() as servers:
                clients = [
                    openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
                    for url, _ in (
                        servers.enter_context(
                            _serve(
                                data_dir / f"replica-{db}-{count}-{n}",
                                model_url,
                                **(settings if db == "postgresql" else {}),
                            )
                        )
                        for n in range(count)
                    )
                ]
                assistant = await clients[0].beta.assistants.create(model="m", tools=[])
                wide = await _runs_per_second(
                    clients[0], assistant.id, plan, width=16, content="hi", others=clients[1:]
                )
                wide.key = f"replica_runs[{count},{db}]"
                wide.title = f"serve: trivial runs, 16 clients, {count} replica(s), {db}"
                wide.group = "replicas"
                wide.baseline = db == "sqlite"
                results.append(wide)
                for client in clients:
                    await client.close()
    results += await _placed_from_bucket(data_dir, bucket, plan)
    return results


async def _placed_from_bucket(data_dir: Path, bucket: str, plan: Plan) -> list[Measurement]:
    """A 1 MB file placed in a new session: stored here (local) beside stored by another
    engine, fetched from the bucket first (paired samples)."""
    local = Measurement(
        "place_1mb_local", "engine: place a stored 1 MB file in a new session",
        baseline=True, group="replicas",
    )  # fmt: skip
    fetched = Measurement(
        "place_1mb_s3", "engine: place a 1 MB file another engine stored in S3",
        group="replicas",
    )  # fmt: skip
    added = Measurement(
        "place_1mb_s3_added", "S3: added to placing a 1 MB file (paired samples)",
        group="replicas",
    )  # fmt: skip
    n = max(20, plan.execute // 20)
    async with (
        engine_for(data_dir / "s3-a", pool_size=2, preload=[], file_store=bucket) as a,
        engine_for(data_dir / "s3-b", pool_size=2, preload=[], file_store=bucket) as b,
    ):
        await b.warm(timeout=120)
        for _ in range(n + 2):
            data = secrets.token_bytes(MB)
            mine = await b.create_file("mine.bin", data)
            theirs = await a.create_file("theirs.bin", data)
            await b.warm(timeout=120)
            t0 = time.perf_counter()
            first = await b.create_session(file_ids=[mine.id])
            local_s = time.perf_counter() - t0
            await b.warm(timeout=120)
            t0 = time.perf_counter()
            second = await b.create_session(file_ids=[theirs.id])
            fetched_s = time.perf_counter() - t0
            for session in (first, second):
                await b.close_session(session)
            local.samples.append(local_s)
            fetched.samples.append(fetched_s)
            added.samples.append(fetched_s - local_s)
    for m in (local, fetched, added):
        del m.samples[:2]  # the first ones warm the connections up
    return [local, fetched, added]
