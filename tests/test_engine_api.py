"""The engine's API around executions: backends, image checks, the sync facade."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from interp import (
    Config,
    Engine,
    ExecutionFinished,
    ExecutionStarted,
    ExecutionStatus,
    ImageError,
    ImageSaved,
    LogChunk,
    SyncEngine,
)

from .conftest import assert_no_containers

pytestmark = pytest.mark.docker


@pytest.fixture
def wrong_version_image(docker_client: docker.DockerClient) -> Iterator[str]:
    tag = "interp-test-wrong-version:0"
    dockerfile = f"FROM {Config().image}\nLABEL io.interp.image-version=0\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


async def test_an_image_of_another_version_is_refused(
    make_config: Callable[..., Config], wrong_version_image: str
) -> None:
    with pytest.raises(ImageError, match="version label '0'") as caught:
        async with Engine(make_config(image=wrong_version_image)):
            pass
    assert caught.value.hint is not None and "interp image build" in caught.value.hint


async def test_a_missing_image_says_how_to_build_it(make_config: Callable[..., Config]) -> None:
    with pytest.raises(ImageError, match="not built"):
        async with Engine(make_config(image="interp-no-such-image:1")):
            pass


async def test_stream_yields_events_in_order_ending_with_the_result(engine: Engine) -> None:
    code = "print('a')\nimport matplotlib.pyplot as plt\nplt.plot([1])\nplt.show()\nprint('b')"
    events = [event async for event in engine.stream(code)]
    assert isinstance(events[0], ExecutionStarted)
    assert isinstance(events[-1], ExecutionFinished)
    middle = events[1:-1]
    assert [type(e) for e in middle] == [LogChunk, ImageSaved, LogChunk]
    result = events[-1].result
    assert result.id == events[0].id
    assert isinstance(middle[1], ImageSaved)
    assert result.image_ids == [middle[1].file.id]


async def test_output_is_streamed_while_the_code_still_runs(engine: Engine) -> None:
    code = "import time\nfor i in range(4):\n    print(i, flush=True)\n    time.sleep(0.4)"
    began = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    async for event in engine.stream(code):
        if isinstance(event, LogChunk):
            arrivals.append((time.monotonic() - began, event.text))
        elif isinstance(event, ExecutionFinished):
            ended = time.monotonic() - began
    assert [text for _, text in arrivals] == ["0\n", "1\n", "2\n", "3\n"]
    # The first print comes out about 1.2 s before the code ends, not with the result.
    assert arrivals[0][0] < ended - 1.0


async def test_a_burst_of_prints_arrives_coalesced_and_in_order(engine: Engine) -> None:
    code = "import sys\nfor i in range(3000):\n    print(i)\n    print(i, file=sys.stderr)"
    chunks = [e async for e in engine.stream(code) if isinstance(e, LogChunk)]
    assert len(chunks) < 3000
    out = "".join(c.text for c in chunks if c.stream == "stdout")
    assert out == "".join(f"{i}\n" for i in range(3000))


async def test_a_slow_reader_stalls_neither_the_code_nor_loses_its_output(
    engine: Engine,
) -> None:
    # 8 MB in 8000 messages: far past ZMQ's 1000-message queue if nobody drained it.
    code = "for i in range(8000):\n    print(f'{i:07d}' + 'x' * 1016)"
    chunks: list[str] = []
    async for event in engine.stream(code):
        if isinstance(event, LogChunk):
            chunks.append(event.text)
            await asyncio.sleep(0.2)
        elif isinstance(event, ExecutionFinished):
            result = event.result
    # What waited for the reader stayed within the log cap (1 MiB), and it was told…
    assert max(len(chunk) for chunk in chunks) < engine.config.max_log_bytes + 200
    assert any("bytes not streamed: the reader fell behind" in chunk for chunk in chunks)
    # …while the execution read every line: the whole output is stored, exactly.
    assert result.full_output_file_id is not None
    full = await engine.download(result.full_output_file_id)
    assert full == "".join(f"{i:07d}" + "x" * 1016 + "\n" for i in range(8000)).encode()


async def test_the_process_backend_runs_code_and_says_it_is_not_isolated(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="interp.process"):
        async with Engine(make_config(backend="process")) as engine:
            assert engine.isolated is False
            session = await engine.create_session()
            await engine.execute("x = 20", session=session)
            result = await engine.execute("print(x + 22)\nimport os; os.getcwd()", session=session)
            assert result.status is ExecutionStatus.COMPLETED
            assert result.logs == f"42\n'{engine.session_dir(session)}'\n"
            stopped = await engine.execute("while True: pass", session=session, timeout=1)
            assert stopped.status is ExecutionStatus.TIMEOUT
    assert "WITHOUT isolation" in caplog.text


def test_the_sync_facade_keeps_state_across_calls(
    make_config: Callable[..., Config], docker_client: docker.DockerClient
) -> None:
    with SyncEngine(make_config()) as engine:
        session = engine.create_session()
        assert engine.execute("total = 40", session=session).ok
        assert engine.execute("total + 2", session=session).logs == "42\n"
        kinds: list[Any] = [type(e) for e in engine.stream("print(1)", session=session)]
        assert kinds == [ExecutionStarted, LogChunk, ExecutionFinished]
        engine_id = engine.id
    assert_no_containers(docker_client, engine_id)
