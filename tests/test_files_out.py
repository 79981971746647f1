"""Files the code writes in /mnt/data come back in the result, stored with ids."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from interp import Config, Engine, ExecutionStatus, FileSaved

pytestmark = pytest.mark.docker


async def test_created_and_changed_files_are_reported_and_stored(engine: Engine) -> None:
    session = await engine.create_session()
    await engine.upload(session, "input.csv", b"a\n1\n")
    await engine.execute("open('kept.txt', 'w').write('old')", session=session)
    code = (
        "import os, pandas as pd\n"
        "pd.DataFrame({'n': [1, 2]}).to_excel('report.xlsx', index=False)\n"
        "os.makedirs('charts', exist_ok=True)\n"
        "open('charts/data.json', 'w').write('{}')\n"
        "open('kept.txt', 'w').write('changed')\n"
    )
    events = [e async for e in engine.stream(code, session=session)]
    result = events[-1].result  # type: ignore[union-attr]
    assert result.status is ExecutionStatus.COMPLETED
    names = [f.file.name for f in result.files]
    assert names == ["charts/data.json", "kept.txt", "report.xlsx"]
    assert [e for e in events if isinstance(e, FileSaved)] == result.files
    by_name = {f.file.name: f for f in result.files}
    report = by_name["report.xlsx"]
    assert report.path == "sandbox:/mnt/data/report.xlsx"
    assert report.file.mime == ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    on_disk = (engine.session_dir(session) / "report.xlsx").read_bytes()
    assert await engine.download(report.file.id, session=session) == on_disk
    assert on_disk[:2] == b"PK"
    assert await engine.download(by_name["kept.txt"].file.id) == b"changed"
    other = await engine.create_session()
    with pytest.raises(Exception, match="does not belong"):
        await engine.download(report.file.id, session=other)


async def test_unchanged_files_and_planted_links_are_not_reported(engine: Engine) -> None:
    session = await engine.create_session()
    await engine.upload(session, "input.csv", b"a\n1\n")
    result = await engine.execute(
        "import os\nos.symlink('/etc/passwd', 'link')\nprint(open('input.csv').read())",
        session=session,
    )
    assert result.logs == "a\n1\n\n"
    assert result.files == []
    assert (engine.session_dir(session) / "link").is_symlink()


async def test_files_beyond_the_per_execution_cap_are_counted_in_a_note(
    make_config: Callable[..., Config],
) -> None:
    async with Engine(make_config(max_files=3, pool_size=0)) as engine:
        session = await engine.create_session()
        code = "for i in range(5):\n    open(f'f{i}.txt', 'w').write(str(i))"
        result = await engine.execute(code, session=session)
        assert [f.file.name for f in result.files] == ["f0.txt", "f1.txt", "f2.txt"]
        assert result.logs == (
            "[2 more files changed in /mnt/data were not stored: at most 3 per execution;"
            " they stay in /mnt/data]\n"
        )
        assert sorted(p.name for p in engine.session_dir(session).iterdir()) == [
            f"f{i}.txt" for i in range(5)
        ]
