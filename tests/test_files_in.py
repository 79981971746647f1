"""Files into a session: uploads, and sessions opened with stored file ids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from interp import Config, Engine, ExecutionStatus, InvalidInputError, NoSuchFileError
from interp._storage import Storage

pytestmark = pytest.mark.docker

CSV = b"region,sales\nnorth,10\nsouth,32\n"


async def test_an_upload_is_stored_with_an_id_and_read_by_pandas(engine: Engine) -> None:
    session = await engine.create_session()
    info = await engine.upload(session, "sales.csv", CSV)
    assert info.id.startswith("file-")
    assert (info.name, info.bytes, info.mime, info.session) == (
        "sales.csv",
        len(CSV),
        "text/csv",
        session,
    )
    result = await engine.execute(
        "import pandas as pd\nprint(pd.read_csv('/mnt/data/sales.csv').sales.sum())",
        session=session,
    )
    assert (result.status, result.logs) == (ExecutionStatus.COMPLETED, "42\n")
    assert await engine.download(info.id, session=session) == CSV


async def test_a_session_opens_with_the_files_it_is_given(engine: Engine, tmp_path: Path) -> None:
    source = tmp_path / "sales.csv"
    source.write_bytes(CSV)
    stored = await engine.create_file("sales.csv", source)
    assert stored.session is None
    first = await engine.create_session()
    made = await engine.execute("open('notes.txt', 'w').write('from the first')", session=first)
    (notes,) = made.files

    made = await engine.execute(
        "import os\nos.makedirs('deep', exist_ok=True)\nopen('deep/extra.txt', 'w').write('!')",
        session=first,
    )
    (deep,) = made.files
    assert deep.file.name == "deep/extra.txt"

    second = await engine.create_session(file_ids=[stored.id, notes.file.id])
    # Files can join an open session; one from a subdirectory comes in under its base name.
    assert await engine.create_session(second, file_ids=[deep.file.id]) == second
    result = await engine.execute(
        "import pandas as pd\n"
        "print(pd.read_csv('sales.csv').sales.sum(), open('notes.txt').read(),"
        " open('extra.txt').read())",
        session=second,
    )
    assert result.logs == "42 from the first !\n"
    # Nothing was changed, so nothing is reported as produced.
    assert result.files == []


async def test_unknown_or_clashing_file_ids_open_no_session(engine: Engine) -> None:
    one = await engine.create_file("a.txt", b"1")
    two = await engine.create_file("a.txt", b"2")
    with pytest.raises(NoSuchFileError, match="no file 'file-0000'"):
        await engine.create_session(file_ids=[one.id, "file-0000"])
    with pytest.raises(InvalidInputError, match="same name"):
        await engine.create_session(file_ids=[one.id, two.id])
    with pytest.raises(InvalidInputError, match="not a file id"):
        await engine.create_session(file_ids=["../../etc/passwd"])
    assert engine.sessions() == []


@pytest.mark.parametrize("name", ["../escape.txt", "a/b.txt", "..", "", "/etc/passwd"])
async def test_names_that_could_leave_mnt_data_are_refused(engine: Engine, name: str) -> None:
    session = await engine.create_session()
    with pytest.raises(InvalidInputError, match="invalid file name"):
        await engine.upload(session, name, b"x")
    with pytest.raises(InvalidInputError, match="invalid file name"):
        await engine.create_file(name, b"x")
    assert list(engine.session_dir(session).iterdir()) == []


async def test_uploads_over_the_limit_are_refused_with_the_limit(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 101)
    async with Engine(make_config(max_upload_bytes=100, pool_size=0)) as engine:
        session = await engine.create_session()
        with pytest.raises(InvalidInputError, match="101 bytes, more than the upload limit of 100"):
            await engine.upload(session, "big.bin", big)
        with pytest.raises(InvalidInputError, match="more than the upload limit of 100"):
            await engine.create_file("big.bin", b"x" * 101)
        assert list(engine.session_dir(session).iterdir()) == []
        assert (await engine.upload(session, "ok.bin", b"x" * 100)).bytes == 100


@pytest.mark.skipif(
    Storage(1).cap_bytes is None, reason="capping /mnt/data needs root, loop devices, mkfs.ext4"
)
async def test_files_that_do_not_fit_in_mnt_data_open_no_session(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(data_size="4m", pool_size=0)) as engine:
        big = await engine.create_file("big.bin", b"x" * 8 * 1024**2)
        with pytest.raises(InvalidInputError, match=r"cannot put big\.bin in /mnt/data"):
            await engine.create_session(file_ids=[big.id])
        assert engine.sessions() == []
