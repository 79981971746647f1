"""File Search as clients use it: vector stores through the real `openai` SDK against a live
`interp serve` (two API keys), files of every supported kind read in the background,
keyword search with attribute filters, and the failures a user meets (empty, binary and
unsupported files), each key seeing only its own."""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import docker
import openai
import pytest

from .conftest import KEY_A, KEY_B, Server, server_sql, start_server
from .fake_model import FakeModel
from .test_search_text import _docx, _pdf

pytestmark = [
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The Assistants API is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def keyed(
    fake_model: FakeModel,
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
) -> Iterator[Server]:
    started = start_server(
        tmp_path_factory.mktemp("search"), fake_model.url, "--api-key", KEY_A, "--api-key", KEY_B
    )
    yield started
    started.stop()
    assert "Traceback" not in started.logs(), started.logs()[-3000:]


CORPUS = {
    "notes.txt": b"The aardvark sleeps in its burrow during the day.\n",
    "guide.md": b"# Guide\n\nConfigure the **zeppelin** mooring before launch.\n",
    "report.pdf": _pdf(b"BT /F1 12 Tf 72 720 Td (Quarterly marmalade revenue grew) Tj ET"),
    "minutes.docx": _docx("The committee approved the xylophone budget."),
    "tool.py": b"def quokka_count(items):\n    return len(items)  # counts quokkas\n",
}
KEYWORDS = {
    "aardvark": "notes.txt",
    "zeppelin": "guide.md",
    "marmalade": "report.pdf",
    "xylophone": "minutes.docx",
    "quokka_count": "tool.py",
}


def test_files_of_each_kind_are_read_and_the_right_one_is_found_first(keyed: Server) -> None:
    client = keyed.client(KEY_A)
    store = client.vector_stores.create(name="docs")
    assert store.status == "completed" and store.file_counts.total == 0

    batch = client.vector_stores.file_batches.upload_and_poll(store.id, files=list(CORPUS.items()))
    assert batch.status == "completed", batch
    assert (batch.file_counts.completed, batch.file_counts.total) == (5, 5), batch.file_counts
    # One more, through the single-file helper, with a chunking strategy of its own.
    single = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id,
        file=("extra.json", b'{"note": "the walrus tusk is long"}'),
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
        },
    )
    assert single.status == "completed" and single.usage_bytes > 0, single
    assert single.chunking_strategy is not None and single.chunking_strategy.type == "static"

    store = client.vector_stores.retrieve(store.id)
    assert store.status == "completed"
    assert (store.file_counts.completed, store.file_counts.total) == (6, 6)
    files = {f.id: f for f in client.vector_stores.files.list(store.id)}
    assert store.usage_bytes == sum(f.usage_bytes for f in files.values()) > 0

    names = {f.id: client.files.retrieve(f.id).filename for f in files.values()}
    for keyword, name in {**KEYWORDS, "walrus": "extra.json"}.items():
        results = list(client.vector_stores.search(store.id, query=f"where is the {keyword}"))
        assert results, keyword
        assert results[0].filename == name, (keyword, [r.filename for r in results])
        assert names[results[0].file_id] == name
        assert keyword.split("_")[0] in results[0].content[0].text
        assert 0 < results[0].score <= 1

    # The text as it was read; a list filtered by status; pages by the SDK's cursor.
    pdf_id = next(file_id for file_id, name in names.items() if name == "report.pdf")
    content = list(client.vector_stores.files.content(pdf_id, vector_store_id=store.id))
    assert "Quarterly marmalade revenue grew" in content[0].text  # type: ignore[operator]
    assert len(list(client.vector_stores.files.list(store.id, filter="completed"))) == 6
    assert list(client.vector_stores.files.list(store.id, filter="failed")) == []
    paged = client.vector_stores.files.list(store.id, limit=2)
    assert len([f.id for f in paged]) == 6  # the auto-pager follows `after`


def test_attribute_filters_narrow_a_search(keyed: Server) -> None:
    client = keyed.client(KEY_A)
    store = client.vector_stores.create(name="filtered")
    made = {}
    labels: dict[str, dict[str, str | float | bool]] = {
        "a.txt": {"team": "red", "year": 2023, "public": True},
        "b.txt": {"team": "blue", "year": 2024, "public": False},
        "c.txt": {"team": "red", "year": 2025},
    }
    for name, attributes in labels.items():
        uploaded = client.files.create(
            file=(name, b"the lighthouse keeper's log"), purpose="assistants"
        )
        client.vector_stores.files.create_and_poll(
            file_id=uploaded.id, vector_store_id=store.id, attributes=attributes
        )
        made[uploaded.id] = name

    def found(filters: object) -> set[str]:
        results = client.vector_stores.search(store.id, query="lighthouse", filters=filters)  # type: ignore[arg-type]
        return {made[r.file_id] for r in results}

    assert found({"type": "eq", "key": "team", "value": "red"}) == {"a.txt", "c.txt"}
    assert found({"type": "ne", "key": "team", "value": "red"}) == {"b.txt"}
    assert found({"type": "gte", "key": "year", "value": 2024}) == {"b.txt", "c.txt"}
    assert found({"type": "lt", "key": "year", "value": 2024}) == {"a.txt"}
    assert found({"type": "in", "key": "year", "value": [2023, 2025]}) == {"a.txt", "c.txt"}
    assert found({"type": "nin", "key": "team", "value": ["blue"]}) == {"a.txt", "c.txt"}
    # A missing attribute is not equal to anything, and is "not equal" to everything.
    assert found({"type": "eq", "key": "public", "value": True}) == {"a.txt"}
    assert found({"type": "ne", "key": "public", "value": True}) == {"b.txt", "c.txt"}
    # A number is never equal to a string.
    assert found({"type": "eq", "key": "year", "value": "2023"}) == set()
    compound = {
        "type": "or",
        "filters": [
            {"type": "eq", "key": "team", "value": "blue"},
            {"type": "and", "filters": [
                {"type": "eq", "key": "team", "value": "red"},
                {"type": "gt", "key": "year", "value": 2024},
            ]},
        ],
    }  # fmt: skip
    assert found(compound) == {"b.txt", "c.txt"}

    # New attributes take effect at once.
    b_id = next(file_id for file_id, name in made.items() if name == "b.txt")
    updated = client.vector_stores.files.update(
        b_id, vector_store_id=store.id, attributes={"team": "red", "year": 2024}
    )
    assert updated.attributes == {"team": "red", "year": 2024}
    assert found({"type": "eq", "key": "team", "value": "red"}) == set(made.values())

    # A filter that cannot hold, or a key that could break out of a JSON path: 400s.
    for bad in (
        {"type": "gt", "key": "public", "value": True},
        {"type": "in", "key": "team", "value": "red"},
        {"type": "eq", "key": 'x"]', "value": 1},
    ):
        with pytest.raises(openai.BadRequestError):
            found(bad)
    deep: dict[str, object] = {"type": "eq", "key": "team", "value": "red"}
    for _ in range(20):
        deep = {"type": "and", "filters": [deep]}
    with pytest.raises(openai.BadRequestError):
        found(deep)


def test_removed_and_deleted_files_leave_the_results(keyed: Server) -> None:
    client = keyed.client(KEY_A)
    store = client.vector_stores.create(name="removals")
    kept = client.files.create(file=("kept.txt", b"the pelican flies"), purpose="assistants")
    removed = client.files.create(file=("removed.txt", b"the pelican dives"), purpose="assistants")
    deleted = client.files.create(file=("deleted.txt", b"the pelican sleeps"), purpose="assistants")
    client.vector_stores.file_batches.create_and_poll(
        store.id, file_ids=[kept.id, removed.id, deleted.id]
    )
    other = client.vector_stores.create(name="also has it", file_ids=[deleted.id])

    def ids(store_id: str) -> set[str]:
        return {r.file_id for r in client.vector_stores.search(store_id, query="pelican")}

    assert ids(store.id) == {kept.id, removed.id, deleted.id}
    client.vector_stores.files.delete(removed.id, vector_store_id=store.id)
    assert ids(store.id) == {kept.id, deleted.id}
    assert client.files.retrieve(removed.id).id == removed.id  # the file itself stays
    # Deleting the file takes it out of every store that has it.
    client.files.delete(deleted.id)
    assert ids(store.id) == {kept.id}
    assert ids(other.id) == set()
    assert client.vector_stores.retrieve(store.id).file_counts.total == 1
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(deleted.id, vector_store_id=other.id)
    # Deleting the store: gone, and its chunks with it.
    assert client.vector_stores.delete(store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.search(store.id, query="pelican")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(kept.id, vector_store_id=store.id)


def test_a_key_sees_only_its_own_stores(keyed: Server) -> None:
    alice, bob = keyed.client(KEY_A), keyed.client(KEY_B)
    secret = alice.files.create(
        file=("secret.txt", b"the launch code is ocelot"), purpose="assistants"
    )
    store = alice.vector_stores.create(name="alice's", file_ids=[secret.id])
    alice.vector_stores.files.poll(secret.id, vector_store_id=store.id)

    for attempt in (
        lambda: bob.vector_stores.retrieve(store.id),
        lambda: bob.vector_stores.search(store.id, query="ocelot"),
        lambda: bob.vector_stores.files.list(store.id),
        lambda: bob.vector_stores.files.retrieve(secret.id, vector_store_id=store.id),
        lambda: bob.vector_stores.files.content(secret.id, vector_store_id=store.id),
        lambda: bob.vector_stores.files.delete(secret.id, vector_store_id=store.id),
        lambda: bob.vector_stores.update(store.id, name="mine"),
        lambda: bob.vector_stores.delete(store.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert all(s.id != store.id for s in bob.vector_stores.list())
    # Bob cannot put Alice's file into a store of his.
    own = bob.vector_stores.create(name="bob's")
    with pytest.raises(openai.NotFoundError):
        bob.vector_stores.files.create(vector_store_id=own.id, file_id=secret.id)
    with pytest.raises(openai.NotFoundError):
        bob.vector_stores.create(name="sneaky", file_ids=[secret.id])
    # And nothing of it changed.
    assert [r.filename for r in alice.vector_stores.search(store.id, query="ocelot")] == [
        "secret.txt"
    ]


def test_files_that_cannot_be_read_fail_with_a_reason(keyed: Server) -> None:
    client = keyed.client(KEY_A)
    store = client.vector_stores.create(name="bad files")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    bad = {
        "empty.txt": (b"", "invalid_file", "no text"),
        "blob.txt": (bytes(range(256)) * 8, "invalid_file", "binary"),
        "image.png": (png, "unsupported_file", "not supported"),
        "broken.pdf": (b"%PDF-1.4\n not really", "invalid_file", "PDF"),
    }
    ids = {}
    for name, (data, _, _) in bad.items():
        uploaded = client.files.create(file=(name, io.BytesIO(data)), purpose="assistants")
        ids[uploaded.id] = name
    batch = client.vector_stores.file_batches.create_and_poll(store.id, file_ids=list(ids))
    assert batch.status == "completed"
    assert (batch.file_counts.failed, batch.file_counts.total) == (4, 4)
    for found in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id):
        _, code, words = bad[ids[found.id]]
        assert found.status == "failed" and found.last_error is not None, found
        assert found.last_error.code == code, found.last_error
        assert words in found.last_error.message, found.last_error
    assert client.vector_stores.retrieve(store.id).file_counts.failed == 4


def test_bad_requests_are_refused_whole(keyed: Server, tmp_path: Path) -> None:
    client = keyed.client(KEY_A)
    store = client.vector_stores.create(name="refusals")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id=store.id, file_id="file-nope")
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.create(
            name="x",
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 150},
            },
        )
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.search(store.id, query="x", max_num_results=51)
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.file_batches.create(store.id)  # neither file_ids nor files
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.file_batches.retrieve("vsfb_nope", vector_store_id=store.id)
    assert client.vector_stores.retrieve(store.id).file_counts.total == 0


SEARCH_CONTENT: Final = "step_details.tool_calls[*].file_search.results[*].content"
REPORT = b"# Q3 report\n\nRevenue from marmalade grew 12 percent in the third quarter.\n"


def _report_store(client: openai.OpenAI) -> tuple[str, str]:
    """A vector store holding ``report.md``; its id and the file's."""
    report = client.files.create(file=("report.md", REPORT), purpose="assistants")
    store = client.vector_stores.create(name="reports", file_ids=[report.id])
    assert client.vector_stores.files.poll(report.id, vector_store_id=store.id).status == (
        "completed"
    )
    return store.id, report.id


def test_an_assistant_searches_cites_the_file_and_its_code_reads_it(keyed: Server) -> None:
    client = keyed.client(KEY_A)
    store_id, report_id = _report_store(client)
    assistant = client.beta.assistants.create(
        model="fake-model",
        tools=[{"type": "code_interpreter"}, {"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}},
    )
    assert assistant.tool_resources is not None and assistant.tool_resources.file_search
    assert assistant.tool_resources.file_search.vector_store_ids == [store_id]
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": 'CALL file_search {"query": "marmalade revenue"} THEN RUN: '
                "print(open('/mnt/data/report.md').read().splitlines()[2])",
                "attachments": [{"file_id": report_id, "tools": [{"type": "code_interpreter"}]}],
            }
        ]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, include=[SEARCH_CONTENT]
    )
    assert run.status == "completed", run.last_error
    steps = list(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc"))
    calls = [
        call
        for step in steps
        if step.step_details.type == "tool_calls"
        for call in step.step_details.tool_calls
    ]
    assert [call.type for call in calls] == ["file_search", "code_interpreter"]
    search, code = calls
    assert search.type == "file_search" and search.file_search.results
    first = search.file_search.results[0]
    assert (first.file_id, first.file_name) == (report_id, "report.md")
    assert first.content and "marmalade grew 12 percent" in (first.content[0].text or "")
    assert search.file_search.ranking_options is not None
    assert code.type == "code_interpreter"
    logs = [o for o in code.code_interpreter.outputs if o.type == "logs"]
    assert logs and "Revenue from marmalade grew 12 percent" in logs[0].logs

    # The reply cites the file it found, with OpenAI's marker and a file_citation.
    search_thread = client.beta.threads.create(
        messages=[{"role": "user", "content": 'CALL file_search {"query": "marmalade"}'}]
    )
    with client.beta.threads.runs.stream(
        thread_id=search_thread.id, assistant_id=assistant.id
    ) as stream:
        stream.until_done()
        (message,) = stream.get_final_messages()
    text = message.content[0]
    assert text.type == "text"
    citations = [a for a in text.text.annotations if a.type == "file_citation"]
    assert citations, text.text
    cited = citations[0]
    assert cited.type == "file_citation" and cited.file_citation.file_id == report_id
    assert text.text.value[cited.start_index : cited.end_index] == cited.text
    assert cited.text.startswith("【") and "report.md" in cited.text
    # Without `include`, the step names the results but not their text.
    (step,) = [s for s in stream.get_final_run_steps() if s.step_details.type == "tool_calls"]
    assert step.step_details.type == "tool_calls"
    (call,) = step.step_details.tool_calls
    assert call.type == "file_search" and call.file_search.results
    assert call.file_search.results[0].content is None


def test_a_response_searches_and_cites_with_its_results_included(
    keyed: Server, fake_model: FakeModel
) -> None:
    client = keyed.client(KEY_A)
    store_id, report_id = _report_store(client)
    tool = {"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 3}
    response = client.responses.create(
        model="fake-model",
        input='CALL file_search {"query": "marmalade"}',
        tools=[tool],  # type: ignore[list-item]
        include=["file_search_call.results"],
    )
    assert response.status == "completed", response.error
    kinds = [item.type for item in response.output]
    assert kinds == ["file_search_call", "message"], kinds
    call, message = response.output
    assert call.type == "file_search_call" and call.queries == ["marmalade"]
    assert call.results and call.results[0].file_id == report_id
    assert call.results[0].filename == "report.md" and "marmalade" in (call.results[0].text or "")
    assert message.type == "message"
    part = message.content[0]
    assert part.type == "output_text"
    (citation,) = [a for a in part.annotations if a.type == "file_citation"]
    assert citation.type == "file_citation"
    assert (citation.file_id, citation.filename) == (report_id, "report.md")
    assert part.text[citation.index :].startswith("【")

    # Streamed, without `include`: the same items, the results left out; and the chain
    # goes on with what the model was shown.
    with client.responses.stream(
        model="fake-model",
        input='CALL file_search {"query": "quarter"}',
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.file_search_call.completed" in events
    assert final.output[0].type == "file_search_call" and final.output[0].results is None
    again = client.responses.create(
        model="fake-model", input="hello", previous_response_id=final.id
    )
    assert again.status == "completed"

    # A client that chains by itself sends the items back (store=false): the search and
    # what it found go to the model again.
    echoed = client.responses.create(
        model="fake-model",
        store=False,
        input=[
            {"role": "user", "content": 'CALL file_search {"query": "marmalade"}'},
            *[item.model_dump(exclude_none=True) for item in response.output],  # type: ignore[list-item]
            {"role": "user", "content": "thanks"},
        ],
    )
    assert echoed.status == "completed", echoed.error
    sent = fake_model.requests[-1]["messages"]
    shown = [m["content"] for m in sent if m["role"] == "tool"]
    assert shown and "【0†report.md】" in shown[0] and "marmalade" in shown[0]

    # Another key's store is not found; a filter narrows it to nothing.
    with pytest.raises(openai.NotFoundError):
        keyed.client(KEY_B).responses.create(
            model="fake-model",
            input="hi",
            tools=[tool],  # type: ignore[list-item]
        )
    filtered = {**tool, "filters": {"type": "eq", "key": "team", "value": "none"}}
    response = client.responses.create(
        model="fake-model", input='CALL file_search {"query": "marmalade"}',
        tools=[filtered], include=["file_search_call.results"],  # type: ignore[list-item]
    )  # fmt: skip
    assert response.output[0].type == "file_search_call" and response.output[0].results == []


NODE = Path(__file__).with_name("node")


def test_the_quickstart_apps_file_viewer_runs_on_the_node_sdk(keyed: Server) -> None:
    """The Assistants Quickstart app's assistant and file viewer, as its routes call the
    Node SDK 4.x (``openai.beta.vectorStores``): the flow runs unchanged against interp."""
    assert (NODE / "node_modules" / "openai").is_dir(), "scripts/setup installs the Node SDK"
    env = {
        "PATH": os.environ["PATH"],
        "OPENAI_BASE_URL": keyed.url,
        "OPENAI_API_KEY": KEY_A,
        "MODEL": "fake-model",
    }
    done = subprocess.run(
        ["node", "flow.mjs"], cwd=NODE, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    listed = {f["filename"]: f["status"] for f in found["listed"]}
    assert listed == {"notes.md": "completed", "data.csv": "completed"}, found
    assert [f["filename"] for f in found["after"]] == ["notes.md"]
    # What the viewer made is what a Python client (and a run) sees.
    client = keyed.client(KEY_A)
    assistant = client.beta.assistants.retrieve(found["assistantId"])
    assert assistant.tool_resources is not None and assistant.tool_resources.file_search
    assert assistant.tool_resources.file_search.vector_store_ids == [found["vectorStoreId"]]
    results = list(client.vector_stores.search(found["vectorStoreId"], query="heron"))
    assert [r.file_id for r in results] == [found["first"]]


def test_a_restart_keeps_the_stores_and_reads_what_it_left_unread(
    fake_model: FakeModel, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """Files still being read when the server stops are read at its next start; the
    stores, their files and their chunks are all kept."""
    # Keywords alone: the embedded model would take a minute over these 24 MB.
    server = start_server(tmp_path, fake_model.url, "--embedding-model", "none")
    client = server.client()
    words = " ".join(f"word{i}" for i in range(1000)) + "\n"
    big = (words * (12 * 1024**2 // len(words))).encode()  # 12 MB: seconds of reading
    small = client.files.create(file=("kept.txt", b"the ibis wades"), purpose="assistants")
    store = client.vector_stores.create(name="restart", file_ids=[small.id])
    client.vector_stores.files.poll(small.id, vector_store_id=store.id)
    uploads = [
        client.files.create(
            file=(f"big{i}.txt", big + f"\nsentinel{i}".encode()), purpose="assistants"
        )
        for i in (1, 2)
    ]
    batch = client.vector_stores.file_batches.create(store.id, file_ids=[u.id for u in uploads])
    assert batch.status == "in_progress"
    assert server.stop() in (0, -15), server.logs()[-3000:]

    ((left,),) = server_sql(
        server,
        "SELECT count(*) FROM interp_objects WHERE kind = 'vs_file' AND status = 'in_progress'",
    )
    assert left >= 1, "the stop came after the files were read: the test proves nothing"

    again = start_server(tmp_path, fake_model.url, "--embedding-model", "none")
    try:
        client = again.client()
        done = client.vector_stores.file_batches.poll(batch.id, vector_store_id=store.id)
        assert (done.status, done.file_counts.completed) == ("completed", 2), done
        found = client.vector_stores.retrieve(store.id)
        assert (found.file_counts.completed, found.file_counts.total) == (3, 3)
        hits = list(client.vector_stores.search(store.id, query="ibis"))
        assert [h.file_id for h in hits] == [small.id]
        for number, upload in enumerate(uploads, 1):
            hits = list(client.vector_stores.search(store.id, query=f"sentinel{number}"))
            assert [h.file_id for h in hits] == [upload.id]
    finally:
        assert again.stop() in (0, -15)
    assert "Traceback" not in again.logs(), again.logs()[-3000:]


def test_with_an_embedding_model_a_search_finds_what_it_means(
    fake_model: FakeModel, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """With ``--embedding-model``, chunks are embedded by the upstream's /v1/embeddings and
    a search fuses the keyword ranking with the nearest embeddings: a query finds a file
    by a word it does not hold (the scripted model's embeddings know a few synonyms)."""
    server = start_server(tmp_path, fake_model.url, "--embedding-model", "fake-embed")
    try:
        client = server.client()
        files = {
            "garage.txt": b"The car in the garage is crimson and fast.",
            "kennel.txt": b"The puppy in the kennel sleeps all day.",
            "ledger.txt": b"Quarterly earnings rose, the ledger says.",
        }
        store = client.vector_stores.create(name="meanings")
        batch = client.vector_stores.file_batches.upload_and_poll(
            store.id, files=list(files.items())
        )
        assert batch.file_counts.completed == 3, batch

        def best(query: str) -> str:
            results = list(client.vector_stores.search(store.id, query=query))
            assert results, query
            assert 0 < results[0].score <= 1
            return results[0].filename

        assert best("automobile") == "garage.txt"  # no file holds the word
        assert best("a canine") == "kennel.txt"
        assert best("revenue") == "ledger.txt"
        assert best("kennel") == "kennel.txt"  # keywords still count
        # Filters hold for the semantic ranking too.
        ids = {
            f.id: client.files.retrieve(f.id).filename
            for f in client.vector_stores.files.list(store.id)
        }
        kennel = next(i for i, name in ids.items() if name == "kennel.txt")
        client.vector_stores.files.update(
            kennel, vector_store_id=store.id, attributes={"hidden": True}
        )
        hidden = {"type": "ne", "key": "hidden", "value": True}
        results = client.vector_stores.search(store.id, query="canine", filters=hidden)  # type: ignore[arg-type]
        assert "kennel.txt" not in {r.filename for r in results}
    finally:
        assert server.stop() in (0, -15)
    assert "Traceback" not in server.logs(), server.logs()[-3000:]


def test_an_embedding_model_that_fails_fails_the_file_with_its_reason(
    fake_model: FakeModel, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    server = start_server(tmp_path, fake_model.url, "--embedding-model", "broken-embedder")
    try:
        client = server.client()
        store = client.vector_stores.create(name="down")
        found = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=("a.txt", b"the heron")
        )
        assert found.status == "failed" and found.last_error is not None
        assert found.last_error.code == "server_error"
        assert "embedding the file failed" in found.last_error.message
        assert "500" in found.last_error.message
    finally:
        assert server.stop() in (0, -15)


def test_files_attached_for_file_search_are_searched_in_the_threads_store(keyed: Server) -> None:
    client = keyed.client(KEY_A)
    memo = client.files.create(
        file=("memo.txt", b"The otter project starts in May."), purpose="assistants"
    )
    assistant = client.beta.assistants.create(model="fake-model", tools=[{"type": "file_search"}])
    ask = 'CALL file_search {"query": "otter project"}'
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": ask,
                "attachments": [{"file_id": memo.id, "tools": [{"type": "file_search"}]}],
            }
        ]
    )
    assert thread.tool_resources is not None and thread.tool_resources.file_search
    (store_id,) = thread.tool_resources.file_search.vector_store_ids or []
    made_for_thread = client.vector_stores.retrieve(store_id)
    assert made_for_thread.expires_after is not None and made_for_thread.expires_after.days == 7
    # The run is made at once: its search waits for the attached file to be read.
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0].content[0]
    assert reply.type == "text"
    cited = [a for a in reply.text.annotations if a.type == "file_citation"]
    assert cited and cited[0].type == "file_citation"
    assert cited[0].file_citation.file_id == memo.id

    # Another attachment goes into the same store.
    notes = client.files.create(file=("notes.txt", b"Badgers dig at night."), purpose="assistants")
    client.beta.threads.messages.create(
        thread.id, role="user", content="more",
        attachments=[{"file_id": notes.id, "tools": [{"type": "file_search"}]}],
    )  # fmt: skip
    again = client.beta.threads.retrieve(thread.id)
    assert again.tool_resources and again.tool_resources.file_search
    assert again.tool_resources.file_search.vector_store_ids == [store_id]
    assert {f.id for f in client.vector_stores.files.list(store_id)} == {memo.id, notes.id}

    # A store given inline with a thread is made, and named by its id.
    inline = client.beta.threads.create(
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [memo.id]}]}}
    )
    assert inline.tool_resources and inline.tool_resources.file_search
    (made,) = inline.tool_resources.file_search.vector_store_ids or []
    assert [f.id for f in client.vector_stores.files.list(made)] == [memo.id]
