"""The server's store against SQLite and a real PostgreSQL (which `scripts/test` starts):
"PostgreSQL is a --db away" is a tested claim. No Docker needed."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from interp import ConfigError
from interp.server._store import SCHEMA_VERSION, Store

POSTGRES = os.environ.get("INTERP_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    if POSTGRES is None:
        pytest.skip("no PostgreSQL: scripts/test starts one (INTERP_TEST_POSTGRES_URL)")
    name = "interp_" + secrets.token_hex(6)
    admin = POSTGRES.replace("+asyncpg", "")
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
        yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    finally:
        await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await connection.close()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = Store(db_url)
    await opened.open()
    yield opened
    await opened.close()


def thing(i: int) -> dict[str, object]:
    return {"id": f"asst_{i:04d}", "object": "assistant", "n": i, "meta": {"k": "v"}}


async def test_objects_are_found_only_by_their_owner(store: Store) -> None:
    await store.create("assistant", "alice", thing(1))
    assert await store.get("assistant", "alice", "asst_0001") == thing(1)
    assert await store.get("assistant", "bob", "asst_0001") is None
    assert await store.get("thread", "alice", "asst_0001") is None
    assert not await store.delete("assistant", "bob", "asst_0001")
    changed = {**thing(1), "n": 99}
    await store.put("assistant", "bob", changed)  # another owner's put changes nothing
    assert await store.get("assistant", "alice", "asst_0001") == thing(1)
    await store.put("assistant", "alice", changed)
    assert await store.get("assistant", "alice", "asst_0001") == changed
    assert await store.delete("assistant", "alice", "asst_0001")
    assert await store.get("assistant", "alice", "asst_0001") is None


async def test_pages_follow_openais_cursors(store: Store) -> None:
    for i in range(7):
        await store.create("assistant", "alice", thing(i))
    await store.create("assistant", "bob", thing(100))
    first = await store.page("assistant", "alice", limit=3, order="asc")
    assert [o["n"] for o in first.data] == [0, 1, 2] and first.has_more
    rest = await store.page("assistant", "alice", limit=10, order="asc", after="asst_0002")
    assert [o["n"] for o in rest.data] == [3, 4, 5, 6] and not rest.has_more
    newest = await store.page("assistant", "alice", limit=2)
    assert [o["n"] for o in newest.data] == [6, 5]
    before = await store.page("assistant", "alice", limit=2, order="desc", before="asst_0003")
    assert [o["n"] for o in before.data] == [5, 4]
    unknown = await store.page("assistant", "alice", after="asst_0100")  # bob's
    assert unknown.data == [] and not unknown.has_more


async def test_children_go_with_their_parent(store: Store) -> None:
    await store.create("message", "alice", {"id": "msg_1"}, parent="thread_1")
    await store.create("message", "alice", {"id": "msg_2"}, parent="thread_2")
    await store.delete_children("alice", ["thread_1"])
    assert await store.get("message", "alice", "msg_1") is None
    assert await store.all("message", "alice", parent="thread_2") == [{"id": "msg_2"}]


async def test_a_restart_keeps_everything_and_fails_unfinished_runs(db_url: str) -> None:
    first = Store(db_url)
    await first.open()
    await first.create("run", "alice", {"id": "run_1", "status": "in_progress"}, parent="t")
    await first.create("run", "alice", {"id": "run_2", "status": "completed"}, parent="t")
    await first.close()
    again = Store(db_url)
    await again.open()
    try:
        assert await again.fail_unfinished_runs() == 1
        failed = await again.get("run", "alice", "run_1")
        assert failed is not None and failed["status"] == "failed"
        assert failed["last_error"]["code"] == "server_error"
        assert (await again.get("run", "alice", "run_2") or {})["status"] == "completed"
    finally:
        await again.close()


async def test_a_database_of_another_schema_version_is_refused(db_url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    first = Store(db_url)
    await first.open()
    await first.close()
    engine = create_async_engine(db_url)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE interp_meta SET value = :v WHERE key = 'schema_version'"),
            {"v": str(SCHEMA_VERSION + 1)},
        )
    await engine.dispose()
    refused = Store(db_url)
    with pytest.raises(ConfigError, match="schema version"):
        await refused.open()
    await refused.close()
