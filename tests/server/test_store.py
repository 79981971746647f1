"""The server's store against SQLite and a real PostgreSQL (which `scripts/test` starts):
"PostgreSQL is a --db away" is a tested claim. No Docker needed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from interp import ConfigError
from interp.server._store import SCHEMA_VERSION, TAIL_PAGE, Conflict, Store, Writes, document
from interp.server.agent.context import Unit
from interp.server.protocol.common import Filter
from interp.server.search.index import unit_vector

POSTGRES = os.environ.get("INTERP_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
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
    assert await store.get(document("assistant"), "alice", "asst_0001") == thing(1)
    assert await store.get(document("assistant"), "bob", "asst_0001") is None
    assert await store.get(document("thread"), "alice", "asst_0001") is None
    assert not await store.delete("assistant", "bob", "asst_0001")
    changed = {**thing(1), "n": 99}
    await store.put("assistant", "bob", changed)  # another owner's put changes nothing
    assert await store.get(document("assistant"), "alice", "asst_0001") == thing(1)
    await store.put("assistant", "alice", changed)
    assert await store.get(document("assistant"), "alice", "asst_0001") == changed
    assert await store.delete("assistant", "alice", "asst_0001")
    assert await store.get(document("assistant"), "alice", "asst_0001") is None


async def test_usage_counts_a_keys_files_their_bytes_and_live_containers(store: Store) -> None:
    def sized(kind_id: str, size: int) -> dict[str, object]:
        return {"id": kind_id, "bytes": size}

    await store.create("file", "alice", sized("file-1", 1000))
    await store.create("file", "alice", sized("file-2", 24))
    await store.create("file", "bob", sized("file-3", 5000))
    await store.create("container", "alice", {"id": "cntr_1", "status": "running"})
    await store.create("container", "alice", {"id": "cntr_2", "status": "expired"})
    await store.create("container_file", "alice", {**sized("cfile_1", 7), "container_id": "cntr_1"})
    usage = await store.usage("alice")
    assert (usage.files, usage.bytes, usage.containers) == (2, 1031, 1)
    assert (await store.usage("carol")).bytes == 0


async def test_chunks_are_ranked_by_their_words_per_owner_and_store(store: Store) -> None:
    await store.index_chunks("alice", "vs_1", "file-a", ["the quarterly revenue grew", "x"])
    await store.index_chunks("alice", "vs_1", "file-b", ["revenue and costs", "costs again"])
    await store.index_chunks("alice", "vs_2", "file-c", ["a zebra in another store"])
    await store.index_chunks("bob", "vs_3", "file-d", ["bob's quarterly zebra"], {"k": 1})
    hits = await store.search("alice", ["vs_1"], "Quarterly REVENUE?", limit=10)
    assert [(h.file_id, h.position) for h in hits][:1] == [("file-a", 0)]  # both words
    assert {h.file_id for h in hits} == {"file-a", "file-b"}
    assert hits[0].score == 1.0  # every word, the best rank
    assert all(0 < h.score <= 1 for h in hits) and hits[0].score > hits[-1].score
    assert await store.search("alice", ["vs_1"], "zebra", limit=10) == []  # another store
    assert [h.file_id for h in await store.search("alice", ["vs_2"], "zebra", limit=5)] == [
        "file-c"
    ]
    assert await store.search("alice", ["vs_3"], "zebra", limit=5) == []  # another owner's
    (bobs,) = await store.search("bob", ["vs_3"], "zebra", limit=5)
    assert bobs.attributes == {"k": 1}
    # What either engine would read as query syntax is only words here.
    for hostile in ['"', "revenue*", "NEAR(a b)", "a:b", "-x", "costs OR", "')--", "&|!", ""]:
        await store.search("alice", ["vs_1"], hostile, limit=5)
    await store.unindex("alice", "vs_1", "file-a")
    assert {h.file_id for h in await store.search("alice", ["vs_1"], "revenue", limit=9)} == {
        "file-b"
    }
    await store.unindex("alice", "vs_1")
    assert await store.search("alice", ["vs_1"], "costs", limit=9) == []


async def test_attribute_filters_hold_by_type_in_each_database(store: Store) -> None:
    labelled = {
        "file-a": {"team": "red", "year": 2023.0, "public": True, "day": "2024-01-05"},
        "file-b": {"team": "blue", "year": 2024.0, "public": False, "day": "2024-03-01"},
        "file-c": {"team": "red", "year": 2025.0},
        "file-d": None,
    }
    for file_id, attributes in labelled.items():
        await store.index_chunks("alice", "vs_1", file_id, ["the owl hoots"], attributes)
    await store.index_chunks("bob", "vs_1", "file-e", ["the owl hoots"], {"team": "red"})

    async def found(given: dict[str, Any]) -> set[str]:
        where = TypeAdapter(Filter).validate_python(given)
        hits = await store.search("alice", ["vs_1"], "owl", limit=10, where=where)
        return {hit.file_id for hit in hits}

    def eq(key: str, value: Any) -> dict[str, Any]:
        return {"type": "eq", "key": key, "value": value}

    assert await found(eq("team", "red")) == {"file-a", "file-c"}
    assert await found({"type": "ne", "key": "team", "value": "red"}) == {"file-b", "file-d"}
    assert await found(eq("year", 2024)) == {"file-b"}
    assert await found(eq("year", "2024")) == set()  # a string is not the number
    assert await found({"type": "gt", "key": "year", "value": 2023.5}) == {"file-b", "file-c"}
    assert await found({"type": "lte", "key": "year", "value": 2024}) == {"file-a", "file-b"}
    assert await found({"type": "gte", "key": "day", "value": "2024-02"}) == {"file-b"}
    assert await found(eq("public", False)) == {"file-b"}
    assert await found({"type": "in", "key": "year", "value": [2023, 2025]}) == {
        "file-a", "file-c"
    }  # fmt: skip
    assert await found({"type": "nin", "key": "team", "value": ["red", "blue"]}) == {"file-d"}
    both = {"type": "and", "filters": [eq("team", "red"), eq("public", True)]}
    either = {"type": "or", "filters": [eq("team", "blue"), both]}
    assert await found(either) == {"file-a", "file-b"}
    await store.relabel("alice", "vs_1", "file-d", {"team": "red"})
    assert await found(eq("team", "red")) == {"file-a", "file-c", "file-d"}


async def test_embeddings_are_kept_and_the_nearest_found_per_owner(store: Store) -> None:
    def vec(*values: float) -> bytes:
        return unit_vector(list(values))

    await store.index_chunks(
        "alice", "vs_1", "file-a", ["north", "east"], {"k": 1}, [vec(1, 0, 0), vec(0, 1, 0)]
    )
    await store.index_chunks("alice", "vs_1", "file-b", ["north-east"], None, [vec(1, 1, 0)])
    await store.index_chunks("alice", "vs_1", "file-c", ["no embedding"])
    await store.index_chunks("alice", "vs_1", "file-d", ["other model"], None, [vec(1, 0)])
    await store.index_chunks("bob", "vs_1", "file-e", ["bob's north"], None, [vec(1, 0, 0)])

    hits = await store.nearest("alice", ["vs_1"], vec(1, 0.1, 0), limit=5)
    assert [(h.file_id, h.text) for h in hits] == [
        ("file-a", "north"), ("file-b", "north-east"), ("file-a", "east")
    ]  # fmt: skip
    assert hits[0].score > hits[1].score > hits[2].score >= 0
    assert len(await store.nearest("alice", ["vs_1"], vec(0, 1, 0), limit=1)) == 1
    where = TypeAdapter(Filter).validate_python({"type": "eq", "key": "k", "value": 1})
    hits = await store.nearest("alice", ["vs_1"], vec(1, 1, 0), limit=5, where=where)
    assert {h.file_id for h in hits} == {"file-a"}
    assert await store.nearest("alice", ["vs_2"], vec(1, 0, 0), limit=5) == []


async def test_a_chunk_table_from_before_embeddings_gets_the_column(db_url: str) -> None:
    first = Store(db_url)
    await first.open()
    await first.index_chunks("alice", "vs_1", "file-a", ["kept text"])
    await first._run(
        lambda conn: conn.execute(text("ALTER TABLE interp_chunks DROP COLUMN embedding")),
        write=True,
    )
    await first.close()
    again = Store(db_url)
    await again.open()
    try:
        assert [h.text for h in await again.search("alice", ["vs_1"], "kept", limit=5)] == [
            "kept text"
        ]
        vector = unit_vector([1.0, 0.0])
        await again.index_chunks("alice", "vs_1", "file-b", ["new"], None, [vector])
        assert [h.text for h in await again.nearest("alice", ["vs_1"], vector, limit=5)] == ["new"]
    finally:
        await again.close()


async def test_pages_follow_openais_cursors(store: Store) -> None:
    for i in range(7):
        await store.create("assistant", "alice", thing(i))
    await store.create("assistant", "bob", thing(100))
    assistants = document("assistant")
    first = await store.page(assistants, "alice", limit=3, order="asc")
    assert [o["n"] for o in first.data] == [0, 1, 2] and first.has_more
    rest = await store.page(
        document("assistant"), "alice", limit=10, order="asc", after="asst_0002"
    )
    assert [o["n"] for o in rest.data] == [3, 4, 5, 6] and not rest.has_more
    newest = await store.page(document("assistant"), "alice", limit=2)
    assert [o["n"] for o in newest.data] == [6, 5]
    before = await store.page(
        document("assistant"), "alice", limit=2, order="desc", before="asst_0003"
    )
    assert [o["n"] for o in before.data] == [5, 4]
    unknown = await store.page(document("assistant"), "alice", after="asst_0100")  # bob's
    assert unknown.data == [] and not unknown.has_more


async def test_children_go_with_their_parent(store: Store) -> None:
    await store.create("message", "alice", {"id": "msg_1"}, parent="thread_1")
    await store.create("message", "alice", {"id": "msg_2"}, parent="thread_2")
    await store.delete_children("alice", ["thread_1"])
    assert await store.get(document("message"), "alice", "msg_1") is None
    assert await store.all(document("message"), "alice", parent="thread_2") == [{"id": "msg_2"}]


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
        failed = await again.get(document("run"), "alice", "run_1")
        assert failed is not None and failed["status"] == "failed"
        assert failed["last_error"]["code"] == "server_error"
        assert (await again.get(document("run"), "alice", "run_2") or {})["status"] == "completed"
    finally:
        await again.close()


async def execute(db_url: str, *statements: str) -> None:
    """SQL run on the database in one transaction, as another program would run it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.ext.asyncio import create_async_engine

    if db_url.startswith("sqlite"):
        engine = create_engine(db_url)
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
        engine.dispose()
        return
    aengine = create_async_engine(db_url)
    async with aengine.begin() as aconn:
        for statement in statements:
            await aconn.execute(text(statement))
    await aengine.dispose()


async def test_only_the_work_of_replicas_gone_is_failed(db_url: str) -> None:
    store = Store(db_url)
    await store.open()
    try:
        for replica, run_id in (("rep_a", "run_a"), ("rep_b", "run_b"), (None, "run_old")):
            store.replica = replica
            await store.create("run", "alice", {"id": run_id, "status": "in_progress"})
        await store.heartbeat("rep_a")
        assert await store.alive(30) == ["rep_a"]
        assert await store.fail_unfinished_runs(alive=await store.alive(30)) == 2
        statuses = {
            run_id: (await store.get(document("run"), "alice", run_id) or {})["status"]
            for run_id in ("run_a", "run_b", "run_old")
        }
        assert statuses == {"run_a": "in_progress", "run_b": "failed", "run_old": "failed"}
        # A database from before replicas gets the column it needs.
        await store._run(
            lambda conn: conn.execute(text("ALTER TABLE interp_objects DROP COLUMN replica")),
            write=True,
        )
    finally:
        await store.close()
    again = Store(db_url)
    await again.open()
    try:
        again.replica = "rep_c"
        await again.create("run", "alice", {"id": "run_c", "status": "in_progress"})
        assert await again.fail_unfinished_runs(alive=["rep_c"]) == 1  # run_a's mark is gone
    finally:
        await again.close()


async def test_a_thread_has_one_active_run_by_the_databases_own_rule(store: Store) -> None:
    await store.create("run", "alice", {"id": "run_1", "status": "in_progress"}, parent="t")
    with pytest.raises(Conflict):
        await store.create("run", "alice", {"id": "run_2", "status": "queued"}, parent="t")
    await store.create("run", "alice", {"id": "run_3", "status": "queued"}, parent="u")
    assert await store.active_run("alice", "t") == "run_1"
    await store.put("run", "alice", {"id": "run_1", "status": "completed"})
    await store.create("run", "alice", {"id": "run_2", "status": "queued"}, parent="t")
    assert await store.active_run("alice", "t") == "run_2"


async def test_metadata_set_on_its_own_outlives_a_runs_whole_writes(store: Store) -> None:
    """A run's driver writes the whole run as it goes; metadata a client set meanwhile
    (through this server or another) stays."""
    run = {"id": "run_1", "status": "in_progress", "metadata": {}, "n": 1}
    await store.create("run", "alice", run, parent="t")
    async with store.transaction() as tx:
        tx.set_fields("run", "alice", {**run, "metadata": {"k": "v"}}, ["metadata"])
    await store.put("run", "alice", {**run, "status": "completed", "n": 2})  # its stale copy
    found = await store.get(document("run"), "alice", "run_1")
    assert found is not None
    assert (found["status"], found["n"], found["metadata"]) == ("completed", 2, {"k": "v"})
    # Other kinds are written whole, as before.
    await store.create("thread", "alice", {"id": "thread_1", "metadata": {"a": "b"}})
    await store.put("thread", "alice", {"id": "thread_1", "metadata": {}})
    assert (await store.get(document("thread"), "alice", "thread_1") or {})["metadata"] == {}


async def test_two_modifications_of_different_fields_both_stay(store: Store) -> None:
    """Two requests (through one server or two) modify one assistant from the same copy,
    each its own fields: neither loses the other's change, whatever the values hold."""
    stale = {"id": "asst_1", "name": "a", "instructions": "i", "metadata": {"k": "v"}, "n": 0}
    await store.create("assistant", "alice", stale)
    async with store.transaction() as tx:
        tx.set_fields("assistant", "alice", {**stale, "name": "renamed"}, ["name"])
    changed: dict[str, Any] = {"instructions": 'it\'s "new"\n', "metadata": {}, "n": None}
    async with store.transaction() as tx:
        tx.set_fields("assistant", "alice", {**stale, **changed}, list(changed))
    found = await store.get(document("assistant"), "alice", "asst_1")
    assert found == {**stale, "name": "renamed", **changed}
    # A status written alone is also the column queries select by.
    await store.create("container", "alice", {"id": "cntr_1", "status": "running", "n": 1})
    async with store.transaction() as tx:
        tx.set_fields("container", "alice", {"id": "cntr_1", "status": "expired"}, ["status"])
    assert await store.every(document("container"), "running") == []
    assert await store.every(document("container"), "expired") == [
        ("alice", {"id": "cntr_1", "status": "expired", "n": 1})
    ]


async def test_a_database_of_another_schema_version_is_refused(db_url: str) -> None:
    first = Store(db_url)
    await first.open()
    await first.close()
    await execute(
        db_url,
        f"UPDATE interp_meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'",
    )
    refused = Store(db_url)
    with pytest.raises(ConfigError, match="schema version"):
        await refused.open()
    await refused.close()


async def append(
    store: Store, owner: str, key: str, units: list[Unit], *, ref: str | None = None
) -> None:
    async with store.transaction() as tx:
        tx.append(owner, key, units, ref=ref)


async def link(
    store: Store, owner: str, response_id: str, previous: str | None, container: str | None
) -> None:
    async with store.transaction() as tx:
        tx.link(owner, response_id, previous, container)


async def collect(found: AsyncIterator[Unit]) -> list[Unit]:
    return [unit async for unit in found]


def said(text: str, role: str = "user") -> Unit:
    return Unit([{"role": role, "content": text}], message=True)


async def test_a_transcript_is_read_newest_first_a_page_at_a_time(store: Store) -> None:
    units = [said(f"m{i}") for i in range(TAIL_PAGE * 2 + 5)]
    await append(store, "alice", "thread_1", units[:10])
    await append(store, "alice", "thread_1", units[10:])
    await append(store, "bob", "thread_1", [said("not alice's")])
    tail = await collect(store.tail("alice", "thread_1"))
    assert [u.messages[0]["content"] for u in tail] == [f"m{i}" for i in reversed(range(405))]
    pin = tail[0].seq
    await append(store, "alice", "thread_1", [said("reply", "assistant")], ref="msg_r")
    newest = await collect(store.tail("alice", "thread_1"))
    assert [u.messages[0]["content"] for u in newest[:2]] == ["reply", "m404"]
    before = await collect(store.tail("alice", "thread_1", before=pin))
    assert before[0].messages[0]["content"] == "m403"
    await store.drop("alice", "thread_1", "msg_r")
    assert (await collect(store.tail("alice", "thread_1")))[0].seq == pin
    async with store.transaction() as tx:
        tx.forget("alice", ["thread_1"])
    assert await collect(store.tail("alice", "thread_1")) == []
    assert len(await collect(store.tail("bob", "thread_1"))) == 1


async def test_a_chain_of_responses_is_walked_in_one_query(store: Store) -> None:
    previous = None
    for i in range(50):
        container = "cntr_a" if i == 10 else None
        await link(store, "alice", f"resp_{i}", previous, container)
        previous = f"resp_{i}"
    await link(store, "alice", "resp_branch", "resp_20", None)
    chain = await store.chain("alice", "resp_49")
    assert [found for found, _ in chain] == [f"resp_{i}" for i in reversed(range(50))]
    assert [found for found, _ in await store.chain("alice", "resp_branch")][:2] == [
        "resp_branch",
        "resp_20",
    ]
    assert dict(chain)["resp_10"] == "cntr_a"
    assert await store.chain("bob", "resp_49") == []


async def test_a_schema_1_database_gets_its_transcripts(db_url: str) -> None:
    """A thread and a chain stored by a schema-1 server run on with their history."""
    first = Store(db_url)
    await first.open()
    thread = "thread_old"
    await first.create("thread", "alice", {"id": thread})
    messages = [
        {"id": "msg_1", "role": "user", "content": [text_part("RUN: print(2)")]},
        {
            "id": "msg_2",
            "role": "assistant",
            "run_id": "run_1",
            "status": "completed",
            "content": [text_part("Result: 2")],
        },
    ]
    for message in messages:
        await first.create("message", "alice", message, parent=thread)
    await first.create("run", "alice", {"id": "run_1"}, parent=thread)
    steps = [
        {
            "id": "step_1",
            "step_details": {
                "type": "tool_calls",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "code_interpreter",
                        "code_interpreter": {"input": "print(2)", "outputs": []},
                    }
                ],
            },
        },
        {
            "id": "step_2",
            "step_details": {
                "type": "message_creation",
                "message_creation": {"message_id": "msg_2"},
            },
        },
    ]
    for step in steps:
        await first.create("step", "alice", step, parent="run_1")
    await first.create(
        "tool_result", "alice", {"id": "tr_1", "call_id": "call_1", "text": "2\n"}, parent="run_1"
    )
    await first.create(
        "response",
        "alice",
        {
            "id": "resp_1",
            "status": "completed",
            "previous_response_id": None,
            "output": [
                {
                    "id": "msg_o",
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "hi"}],
                }
            ],
        },
    )
    await first.create(
        "input_item",
        "alice",
        {
            "id": "msg_i",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hello"}],
        },
        parent="resp_1",
    )
    await first.close()
    await execute(  # back to what schema 1 had
        db_url,
        "DROP TABLE interp_transcript",
        "DROP TABLE interp_links",
        "DROP INDEX interp_one_active_run",
        "DROP INDEX interp_objects_status",
        "ALTER TABLE interp_objects DROP COLUMN replica",
        "ALTER TABLE interp_objects DROP COLUMN status",
        "UPDATE interp_meta SET value = '1' WHERE key = 'schema_version'",
    )
    again = Store(db_url)
    await again.open()
    try:
        sent = [m for u in reversed(await collect(again.tail("alice", thread))) for m in u.messages]
        assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant"]
        assert sent[2]["content"] == "2\n" and sent[3]["content"] == "Result: 2"
        assert [found for found, _ in await again.chain("alice", "resp_1")] == ["resp_1"]
        chain = [m for u in await collect(again.tail("alice", "resp_1")) for m in u.messages]
        assert {m["content"] for m in chain} == {"hello", "hi"}
        found = await again.get(document("response"), "alice", "resp_1")
        assert found is not None and found["status"] == "completed"
        assert await again.fail_unfinished_runs() == 0
    finally:
        await again.close()
    reopened = Store(db_url)
    await reopened.open()  # schema 2 now: opened as it is
    await reopened.close()


def text_part(value: str) -> dict[str, object]:
    return {"type": "text", "text": {"value": value, "annotations": []}}


async def test_writes_are_seen_at_once_and_a_bad_unit_fails_alone(store: Store) -> None:
    """Units queued together are committed together; one that cannot be written (an id
    taken) fails by itself and the others are kept; reads see what was queued."""
    first = store.submit(_writes(lambda tx: tx.create("assistant", "alice", {"id": "a_1"})))
    assert await store.get(document("assistant"), "alice", "a_1") == {"id": "a_1"}
    assert await store.get(document("assistant"), "bob", "a_1") is None
    taken = store.submit(_writes(lambda tx: tx.create("assistant", "alice", {"id": "a_1"})))
    other = store.submit(_writes(lambda tx: tx.create("assistant", "alice", {"id": "a_2"})))
    await first
    await other
    with pytest.raises(SQLAlchemyError):
        await taken
    page = await store.page(document("assistant"), "alice", order="asc")
    assert [found["id"] for found in page.data] == ["a_1", "a_2"]
    store.submit(_writes(lambda tx: tx.delete("assistant", "alice", "a_2")))
    assert await store.get(document("assistant"), "alice", "a_2") is None
    await store.flushed()
    assert [found["id"] for found in (await store.page(document("assistant"), "alice")).data] == [
        "a_1"
    ]


def _writes(build: Callable[[Writes], object]) -> Writes:
    writes = Writes()
    build(writes)
    return writes


async def test_a_page_filters_on_fields_in_the_database(store: Store) -> None:
    """Messages of one run, files of one purpose: a filter in the query, paged by the
    cursors as any list (it had loaded every object and ignored ``after``)."""
    for i in range(30):
        run = "run_a" if i % 3 == 0 else "run_b"
        await store.create(
            "message", "alice", {"id": f"msg_{i:02d}", "run_id": run}, parent="thread_1"
        )
    first = await store.page(
        document("message"),
        "alice",
        parent="thread_1",
        order="asc",
        limit=4,
        where={"run_id": "run_a"},
    )
    assert [m["id"] for m in first.data] == ["msg_00", "msg_03", "msg_06", "msg_09"]
    assert first.has_more
    rest = await store.page(
        document("message"),
        "alice",
        parent="thread_1",
        order="asc",
        limit=10,
        after="msg_09",
        where={"run_id": "run_a"},
    )
    assert [m["id"] for m in rest.data] == [
        "msg_12",
        "msg_15",
        "msg_18",
        "msg_21",
        "msg_24",
        "msg_27",
    ]
    assert not rest.has_more
    every = await store.page(
        document("message"), "alice", parent="thread_1", limit=100, where={"run_id": None}
    )
    assert len(every.data) == 30


async def test_a_writer_outlives_a_caller_cancelled_while_it_waits(store: Store) -> None:
    """A run cancelled while it waits for its write (the server stopping) had cancelled the
    write's future; the writer then failed to settle it and stopped for good, and closing
    the store waited for ever."""

    async def write() -> None:
        async with store.transaction() as tx:
            tx.create("assistant", "alice", {"id": "a_cancelled"})

    waiting = asyncio.create_task(write())
    await asyncio.sleep(0)  # it waits for the commit now
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    async with asyncio.timeout(10):
        await store.create("assistant", "alice", {"id": "a_after"})
        await store.flushed()
    assert await store.get(document("assistant"), "alice", "a_after") is not None
    assert await store.get(document("assistant"), "alice", "a_cancelled") is not None
