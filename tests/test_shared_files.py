"""Stored files in an S3 bucket (``file_store = "s3://…"``): engines with their own data
directories, as servers on two machines have, share every file through it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from interp import (
    Config,
    ConfigError,
    Engine,
    ExecutionStatus,
    FileStoreError,
    NoSuchFileError,
    StoreFullError,
)
from interp._files import FileStore
from interp._object_store import S3Objects

from .conftest import S3Server

DATA = "région,ventes\nnord,10\nsud,32\n".encode()
NAME = "données d'été.csv"


@pytest.fixture
def bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server.bucket_url()


def stores(tmp_path: Path, bucket: str, *sizes: int) -> list[FileStore]:
    return [
        FileStore(tmp_path / f"store-{n}", max_bytes=size, owner="t", remote=S3Objects(bucket))
        for n, size in enumerate(sizes)
    ]


def test_a_file_stored_by_one_store_is_read_by_another(tmp_path: Path, bucket: str) -> None:
    a, b = stores(tmp_path, bucket, 10**6, 10**6)
    try:
        info = a._save(DATA, NAME, "text/csv", "session-1")
        assert b.get(info.id) == info  # name (not ASCII), type, time and session kept
        assert b.read(info.id) == DATA
        # Deleted through b: gone from the bucket, so a third store finds nothing.
        assert b.delete(info.id)
        assert not b.delete(info.id)
        (c,) = stores(tmp_path / "c", bucket, 10**6)
        try:
            assert c.get(info.id) is None
        finally:
            c.close()
    finally:
        a.close()
        b.close()


def test_copies_make_room_first_and_come_back(tmp_path: Path, bucket: str) -> None:
    """A copy of another's file is a cache: evicted before anything else, fetched again
    when asked for; the bucket keeps every file."""
    a, b = stores(tmp_path, bucket, 10**6, 250)
    try:
        first = a._save(b"1" * 100, "first.txt", "text/plain", None)
        second = a._save(b"2" * 100, "second.txt", "text/plain", None)
        assert b.read(first.id) == b"1" * 100
        assert b.read(second.id) == b"2" * 100
        own = b._save(b"3" * 100, "own.txt", "text/plain", None)  # evicts first's copy
        assert not b.path(first.id).exists()
        assert b.path(second.id).exists() and b.path(own.id).exists()
        assert b.read(first.id) == b"1" * 100  # fetched again, evicting the oldest left
        assert b.used_bytes <= 250
        assert a.read(own.id) == b"3" * 100
    finally:
        a.close()
        b.close()


def test_a_bucket_that_cannot_be_reached_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"s3://BUCKET\[/PREFIX\]"):
        Config(data_dir=tmp_path, file_store="http://example.com/bucket")
    environ = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "us-east-1"}
    environ |= {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    with pytest.raises(FileStoreError, match="cannot reach bucket b: Could not connect"):
        FileStore(tmp_path, max_bytes=10, owner="t", remote=S3Objects("s3://b", environ))


def test_a_file_over_the_store_size_is_refused_and_left_nowhere(
    tmp_path: Path, bucket: str
) -> None:
    (a,) = stores(tmp_path, bucket, 10)
    try:
        with pytest.raises(StoreFullError):
            a._save(b"x" * 11, "big.bin", "application/octet-stream", None)
        assert a._remote is not None
        assert not list(
            a._remote._client.list_objects_v2(Bucket=a._remote.bucket).get("Contents", [])
        )
    finally:
        a.close()


@pytest.mark.docker
async def test_engines_share_uploads_and_what_the_code_wrote(
    make_config: Callable[..., Config], tmp_path: Path, bucket: str
) -> None:
    a_config = make_config(data_dir=tmp_path / "a", file_store=bucket)
    b_config = make_config(data_dir=tmp_path / "b", file_store=bucket)
    async with Engine(a_config) as a, Engine(b_config) as b:
        uploaded = await a.create_file(NAME, DATA)
        session = await a.create_session()
        made = await a.execute(
            "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n"
            "open('made.txt', 'w').write('written in a')",
            session=session,
        )
        assert made.status is ExecutionStatus.COMPLETED, made
        (written,) = made.files
        (image,) = made.image_ids
        assert await b.download(image) == await a.download(image)

        # B places A's files in its own sandbox, byte for byte.
        other = await b.create_session(file_ids=[uploaded.id, written.file.id])
        result = await b.execute(
            "import hashlib\n"
            f"print(hashlib.sha256(open({NAME!r}, 'rb').read()).hexdigest())\n"
            "print(open('made.txt').read())",
            session=other,
        )
        assert result.logs == f"{hashlib.sha256(DATA).hexdigest()}\nwritten in a\n"

        await b.delete_file(uploaded.id)
        with pytest.raises(NoSuchFileError):
            await b.delete_file(uploaded.id)
