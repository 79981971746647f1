"""Executing code in real sandboxed kernels: outputs, errors, timeouts, deaths."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from interp import (
    DisplayOutput,
    Engine,
    ExecutionStatus,
    ImageOutput,
    InvalidInputError,
    LogsOutput,
    SessionNotFoundError,
)

pytestmark = pytest.mark.docker


async def test_prints_and_expression_results_become_logs(engine: Engine) -> None:
    result = await engine.execute("print('hello')\n6 * 7")
    assert result.status is ExecutionStatus.COMPLETED
    assert result.outputs == [LogsOutput(logs="hello\n42\n")]
    assert result.error is None


async def test_stdout_and_stderr_keep_their_order(engine: Engine) -> None:
    code = (
        "import sys\n"
        "for i in range(5):\n"
        "    print('out', i, flush=True)\n"
        "    print('err', i, file=sys.stderr, flush=True)\n"
    )
    result = await engine.execute(code)
    expected = "".join(f"out {i}\nerr {i}\n" for i in range(5))
    assert result.logs == expected


async def test_a_matplotlib_figure_becomes_a_png_image_output(engine: Engine) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "print('drawing')\n"
        "plt.plot([1, 2, 3])\n"
        "plt.show()\n"
        "print('done')"
    )
    result = await engine.execute(code)
    assert result.status is ExecutionStatus.COMPLETED
    kinds = [o.type for o in result.outputs]
    assert kinds == ["logs", "image", "logs"]
    image = result.outputs[1]
    assert isinstance(image, ImageOutput)
    assert image.image.file_id.startswith("file-")
    info = engine.file(image.image.file_id)
    assert info.mime == "image/png"
    data = engine.file_path(image.image.file_id).read_bytes()
    assert len(data) == info.bytes
    with Image.open(io.BytesIO(data)) as png:
        assert png.format == "PNG"
        assert png.size[0] > 100


async def test_a_python_error_is_data_with_a_clean_traceback(engine: Engine) -> None:
    result = await engine.execute("def f():\n    return 1 / 0\nf()")
    assert result.status is ExecutionStatus.FAILED
    assert result.error is not None
    assert result.error.name == "ZeroDivisionError"
    assert result.error.value == "division by zero"
    assert "\x1b[" not in result.logs
    assert "----> 3 f()" in result.logs
    assert result.logs.rstrip().endswith("ZeroDivisionError: division by zero")


async def test_state_persists_within_a_session_and_not_across(engine: Engine) -> None:
    one = await engine.create_session()
    two = await engine.create_session()
    await engine.execute("x = 41", session=one)
    assert (await engine.execute("x + 1", session=one)).logs == "42\n"
    other = await engine.execute("x", session=two)
    assert other.status is ExecutionStatus.FAILED
    assert other.error is not None and other.error.name == "NameError"


async def test_usage_is_measured_from_the_cgroup(engine: Engine) -> None:
    result = await engine.execute(
        "sum(i * i for i in range(3_000_000))\nblob = bytearray(64 * 1024**2)"
    )
    assert result.cpu_s is not None and result.cpu_s > 0.05
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes > 64 * 1024**2


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("", "code is empty"),
        ("   \n\t", "code is empty"),
        (b"print('\xff')", "not valid UTF-8"),
        ("x = 1\n" * 300_000, "more than the limit"),
    ],
)
async def test_bad_code_is_refused_with_a_clear_error(
    engine: Engine, code: str | bytes, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        await engine.execute(code)


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
async def test_a_non_positive_timeout_is_refused(engine: Engine, timeout: float) -> None:
    with pytest.raises(InvalidInputError, match="timeout"):
        await engine.execute("1", timeout=timeout)


async def test_an_unknown_session_is_refused(engine: Engine) -> None:
    with pytest.raises(SessionNotFoundError):
        await engine.execute("1", session="never-created")


async def test_rich_displays_are_kept_as_typed_outputs(engine: Engine) -> None:
    code = (
        "import io\n"
        "from IPython.display import HTML, JSON, SVG, Image, Latex, display\n"
        "from PIL import Image as Pil\n"
        "buffer = io.BytesIO()\n"
        "Pil.new('RGB', (4, 4), 'red').save(buffer, format='JPEG')\n"
        "display(Image(data=buffer.getvalue(), format='jpeg'))\n"
        "display(HTML('<b>bold</b>'))\n"
        'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="2" height="2"/>\'))\n'
        "display(JSON({'a': [1, 2]}))\n"
        "display(Latex(r'$\\alpha^2$'))\n"
    )
    result = await engine.execute(code)
    assert result.status is ExecutionStatus.COMPLETED, result.logs
    image, *displays = [o for o in result.outputs if not isinstance(o, LogsOutput)]
    assert isinstance(image, ImageOutput) and image.image.mime == "image/jpeg"
    assert (await engine.download(image.image.file_id))[:2] == b"\xff\xd8"
    assert engine.file(image.image.file_id).name == "image.jpg"
    assert all(isinstance(d, DisplayOutput) for d in displays)
    kinds = [next(iter(d.data)) for d in displays]  # type: ignore[union-attr]
    assert kinds == ["text/html", "image/svg+xml", "application/json", "text/latex"]
    assert displays[0].html == "<b>bold</b>"  # type: ignore[union-attr]
    assert displays[2].data["application/json"] == {"a": [1, 2]}  # type: ignore[union-attr]
