"""The `interp` command: run files in a sandbox, check the set-up, build the image."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from ._config import Config
from ._engine import Engine
from ._exceptions import ConfigError, ImageError, InterpError, InvalidInputError
from ._models import (
    EngineStats,
    ExecutionFinished,
    ExecutionResult,
    ExecutionStatus,
    FileSaved,
    ImageSaved,
    LogChunk,
    SessionInfo,
)
from ._sandbox_files import open_regular_nofollow

if TYPE_CHECKING:
    from .sandbox._image import BuildProgress

_T = TypeVar("_T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ENGINE = 3
EXIT_KERNEL_DIED = 70
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130
EXIT_OOM = 137

_STATUS_EXIT = {
    ExecutionStatus.COMPLETED: EXIT_OK,
    ExecutionStatus.FAILED: EXIT_FAILED,
    ExecutionStatus.TIMEOUT: EXIT_TIMEOUT,
    ExecutionStatus.OOM: EXIT_OOM,
    ExecutionStatus.KERNEL_DIED: EXIT_KERNEL_DIED,
}

app = typer.Typer(
    name="interp",
    help="Run Python in a sandboxed Jupyter kernel, as a code interpreter does.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
image_app = typer.Typer(help="Manage the sandbox image.", no_args_is_help=True)
app.add_typer(image_app, name="image")
pool_app = typer.Typer(help="Inspect the warm kernel pool.", no_args_is_help=True)
app.add_typer(pool_app, name="pool")

err = Console(stderr=True, highlight=False)


class _Fail(Exception):
    """A one-line error for the user, with the exit code to leave with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _config(**overrides: Any) -> Config:
    try:
        return Config(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise _Fail(str(exc), EXIT_USAGE) from None


TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", help="Seconds before the code is stopped.")
]
MemoryOpt = Annotated[str | None, typer.Option("--memory", help="Memory limit, e.g. 512m or 2g.")]
RuntimeOpt = Annotated[
    str | None,
    typer.Option("--runtime", help="OCI runtime for the sandbox: runc, crun or runsc."),
]
CpusOpt = Annotated[float | None, typer.Option("--cpus", help="CPU limit, e.g. 0.5 or 2.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Where figures and produced files go.")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the Assistants tool-call JSON instead of live logs.")
]
FileOpt = Annotated[
    list[Path] | None,
    typer.Option("--file", help="Copy into /mnt/data before running (repeatable)."),
]
BackendOpt = Annotated[
    str | None,
    typer.Option("--backend", help="docker (isolated, default) or process (NOT isolated)."),
]


@app.command()
def run(
    path: Annotated[str, typer.Argument(help="A Python file, or - to read the code from stdin.")],
    out: OutOpt = Path("interp-out"),
    json_output: JsonOpt = False,
    timeout: TimeoutOpt = None,
    memory: MemoryOpt = None,
    cpus: CpusOpt = None,
    file: FileOpt = None,
    backend: BackendOpt = None,
    runtime: RuntimeOpt = None,
) -> None:
    """Run a Python file in a fresh sandbox, streaming its output live."""
    if path == "-":
        code, stem = sys.stdin.buffer.read(), "stdin"
    else:
        source = Path(path)
        if not source.is_file():
            _exit_error(f"no such file: {path}", EXIT_USAGE)
        code, stem = source.read_bytes(), source.stem
    _main(code, stem, out, json_output, timeout, memory, cpus, file or [], backend, runtime)


@app.command("exec")
def exec_(
    code: Annotated[str, typer.Option("-c", "--code", help="The code to run.")],
    out: OutOpt = Path("interp-out"),
    json_output: JsonOpt = False,
    timeout: TimeoutOpt = None,
    memory: MemoryOpt = None,
    cpus: CpusOpt = None,
    file: FileOpt = None,
    backend: BackendOpt = None,
    runtime: RuntimeOpt = None,
) -> None:
    """Run a snippet of Python in a fresh sandbox."""
    _main(
        code.encode(), "exec", out, json_output, timeout, memory, cpus, file or [], backend, runtime
    )


def _main(
    code: bytes,
    stem: str,
    out: Path,
    json_output: bool,
    timeout: float | None,
    memory: str | None,
    cpus: float | None,
    files: list[Path],
    backend: str | None,
    runtime: str | None,
) -> None:
    try:
        try:
            text = code.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Fail(f"{stem}: not UTF-8 text (byte {exc.start})", EXIT_USAGE) from None
        for extra in files:
            if not extra.is_file():
                raise _Fail(f"no such file: {extra}", EXIT_USAGE)
        # `interp run` uses one fresh kernel: a warm pool would only cost a second start.
        # One kernel for one run: no pool, and nothing imported ahead (the code pays for
        # its imports either way; hello.py should not pay for pandas).
        config = _config(
            memory=memory, cpus=cpus, backend=backend, runtime=runtime, pool_size=0, preload=[]
        )
        code_exit = _run_until_signalled(_run(config, text, stem, out, json_output, timeout, files))
    except _Fail as fail:
        _exit_error(str(fail), fail.code)
    except InvalidInputError as exc:
        _exit_error(str(exc), EXIT_USAGE)
    except InterpError as exc:
        _exit_error(str(exc), EXIT_ENGINE)
    except KeyboardInterrupt:
        _exit_error("interrupted", EXIT_INTERRUPTED)
    raise typer.Exit(code_exit)


async def _run(
    config: Config,
    code: str,
    stem: str,
    out: Path,
    json_output: bool,
    timeout: float | None,
    files: list[Path],
) -> int:
    engine = await _started_engine(config)
    async with engine:
        if not engine.isolated:
            err.print(
                "[bold red]warning:[/] the process backend does NOT isolate: trusted code only"
            )
        session = await engine.create_session()
        for extra in files:
            await engine.upload(session, extra.name, extra)
        result: ExecutionResult | None = None
        figures = 0
        async for event in engine.stream(code, session=session, timeout=timeout):
            if isinstance(event, LogChunk) and not json_output:
                stream = sys.stderr if event.stream == "stderr" else sys.stdout
                stream.write(event.text)
                stream.flush()
            elif isinstance(event, ImageSaved):
                figures += 1
                suffix = Path(event.file.name).suffix
                saved = _copy_out(engine.file_path(event.file.id), out, f"{stem}-{figures}{suffix}")
                err.print(f"[dim]figure saved: {saved}[/]")
            elif isinstance(event, FileSaved):
                saved = _copy_out(engine.file_path(event.file.id), out, event.file.name)
                err.print(f"[dim]file saved: {saved}[/]")
            elif isinstance(event, ExecutionFinished):
                result = event.result
    assert result is not None
    if json_output:
        from .adapters import assistants

        print(json.dumps(assistants.tool_call(result), indent=2))
    if result.message:
        err.print(f"[bold red]interp:[/] {result.status.value}: {result.message}", soft_wrap=True)
    return _STATUS_EXIT[result.status]


def _run_until_signalled(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work``; on SIGTERM, as on Ctrl-C, cancel it so the engine removes its kernels."""

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        return asyncio.run(work)
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _started_engine(config: Config) -> Engine:
    """A started engine; builds the image first if it is missing or outdated."""
    engine = Engine(config)
    try:
        await engine.start()
    except ImageError as exc:
        await engine.close()
        # The base image is built at first use; an image of the user's packages is built
        # only when asked (`interp image build`), as the error says.
        derived = config.packages or config.requirements or config.profile != "standard"
        if config.image != Config.model_fields["image"].default or derived:
            raise
        err.print(f"[yellow]{exc.message}[/]: building it now (once per machine)")
        from .sandbox._image_build import build_image

        steps = build_image(config.image, config.data_dir / "wheels")
        await asyncio.to_thread(_with_progress, steps)
        engine = Engine(config)
        try:
            await engine.start()
        except BaseException:
            await engine.close()
            raise
    except BaseException:
        await engine.close()
        raise
    return engine


def _copy_out(source: Path, out: Path, name: str) -> Path:
    """Copy a stored file to ``out/name``, never following a link at either end.

    ``name`` is the file's path under /mnt/data, which the code chose: it stays under
    ``out``, and an existing link there is not written through.
    """
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidInputError(f"not a plain relative name: {name!r}")
    target = out.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with (
        os.fdopen(open_regular_nofollow(source), "rb") as src,
        os.fdopen(os.open(target, flags, 0o644), "wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    return target


@app.command()
def doctor(
    backend: BackendOpt = None,
    runtime: RuntimeOpt = None,
) -> None:
    """Check the Docker engine, the runtimes and the image, and say how to fix what fails.

    Every runtime Docker has registered is tried with a real container; the one in use
    (--runtime, INTERP_RUNTIME, else crun when registered, else Docker's default) must work.
    """
    config = _safe_config(backend=backend, runtime=runtime)
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    table.add_column("check")
    table.add_column("")
    table.add_column("detail")
    table.add_column("what to do")
    healthy = True
    if config.backend == "docker":
        from .sandbox._doctor import diagnose
        from .sandbox._packages import configured

        try:
            wanted = configured(config)
        except InterpError as exc:
            _exit_error(str(exc), EXIT_USAGE)
            raise
        for check in diagnose(config.image, config.runtime, wanted):
            healthy &= check.ok or check.optional
            table.add_row(check.name, _mark(check.ok), check.detail, check.fix)
    else:
        table.add_row("backend", _mark(True), "process: NOT isolated, trusted code only", "")
    if healthy:
        ok, detail = asyncio.run(_probe(config))
        healthy &= ok
        table.add_row(
            "kernel", _mark(ok), detail, "" if ok else "see `docker logs` of the container"
        )
    Console().print(table)
    raise typer.Exit(EXIT_OK if healthy else EXIT_FAILED)


async def _probe(config: Config) -> tuple[bool, str]:
    started = time.perf_counter()
    try:
        async with Engine(config) as engine:
            result = await engine.execute("print(6 * 7)", timeout=30)
    except InterpError as exc:
        return False, str(exc)
    took = time.perf_counter() - started
    if result.logs.strip() != "42":
        return False, f"unexpected output {result.logs!r}"
    return True, f"started and ran code in {took:.2f} s"


def _mark(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[red]FAIL[/]"


@pool_app.command("status")
def pool_status(
    size: Annotated[int | None, typer.Option("--size", help="Ready kernels to keep.")] = None,
    backend: BackendOpt = None,
) -> None:
    """Warm a pool as configured, lease a kernel from it, and show the engine's figures."""
    config = _safe_config(pool_size=size, backend=backend)
    try:
        stats, sessions = _run_until_signalled(_pool_probe(config))
    except InterpError as exc:
        _exit_error(str(exc), EXIT_ENGINE)
    except KeyboardInterrupt:
        _exit_error("interrupted", EXIT_INTERRUPTED)
    from rich.table import Table

    table = Table(title=f"pool of {config.pool_size} (max {config.max_kernels} kernels)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in stats.model_dump().items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in value.items())  # fmt: skip
        elif name.endswith("_bytes") and value is not None:
            value = f"{value / 1024**2:.0f} MiB"
        table.add_row(name.replace("_", " "), str(value))
    console = Console()
    console.print(table)
    if sessions:
        console.print(_sessions_table(sessions))


_SESSIONS_SHOWN = 50


def _sessions_table(sessions: list[SessionInfo]) -> Any:
    """The sessions in ``data_dir`` (hibernated ones, kept by engines that closed), most
    recently used first."""
    from rich.table import Table

    recent = sorted(sessions, key=lambda s: s.last_used_at, reverse=True)
    more = len(recent) - _SESSIONS_SHOWN
    table = Table(
        title=f"{len(recent)} sessions" + (f" ({more} older not shown)" if more > 0 else ""),
    )
    for column in ("session", "state", "last used", "snapshot"):
        table.add_column(column, justify="right" if column == "snapshot" else "left")
    for info in recent[:_SESSIONS_SHOWN]:
        size = info.snapshot_bytes
        table.add_row(
            info.id,
            info.state,
            info.last_used_at.strftime("%Y-%m-%d %H:%M:%S"),
            "" if size is None else f"{size / 1024:.1f} KiB",
        )
    return table


async def _pool_probe(config: Config) -> tuple[EngineStats, list[SessionInfo]]:
    engine = await _started_engine(config)
    async with engine:
        await engine.warm(timeout=config.start_timeout)
        idle = engine.stats()
        probe = await engine.create_session()
        await engine.execute("1 + 1", session=probe)
        stats = idle.model_copy(update={"acquire": engine.stats().acquire})
        await engine.close_session(probe)
        return stats, engine.sessions()


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Few samples: about a minute.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if a budget in budgets.toml is broken.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Where the JSON and chart go.")] = Path(
        "benchmarks/results"
    ),
    peers: Annotated[
        bool,
        typer.Option(
            "--peers",
            help="Also measure raw jupyter_client and llm-sandbox (the peers extra), interleaved.",
        ),
    ] = False,
    replicas: Annotated[
        bool,
        typer.Option(
            "--replicas",
            help="Measure replicas on one PostgreSQL and S3 bucket instead (see"
            " scripts/bench-replicas).",
        ),
    ] = False,
    sessions: Annotated[
        int,
        typer.Option(
            "--sessions",
            min=0,
            help="Measure holding this many sessions instead (64 live kernels, the rest"
            " hibernated): a kernel start each, so about a minute per 200 on 2 CPUs.",
        ),
    ] = 0,
) -> None:
    """Measure cold start and execution latency beside same-run baselines."""
    # Shipped from the repository's benchmarks/ as interp.benchmarks (see pyproject.toml).
    suite = importlib.import_module("interp.benchmarks")
    try:
        code: int = suite.run(
            quick=quick,
            check=check,
            out_dir=out,
            with_peers=peers,
            replicas=replicas,
            sessions=sessions,
        )
    except InterpError as exc:
        _exit_error(str(exc), EXIT_ENGINE)
    raise typer.Exit(code)


@image_app.command("build")
def image_build(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if an up-to-date image exists.")
    ] = False,
) -> None:
    """Build the sandbox image (makes a Debian base locally when none can be pulled), and
    the image derived from it with the configured packages, if any."""
    from .sandbox._docker_client import image_status
    from .sandbox._image_build import build_derived, build_image
    from .sandbox._packages import configured

    config = _safe_config()
    try:
        wanted = configured(config)
    except InterpError as exc:
        _exit_error(str(exc), EXIT_USAGE)
        raise
    try:
        current = image_status(config.image)
        if current is not None and not force:
            err.print(f"{config.image} is up to date ({current}); --force rebuilds it")
        else:
            _with_progress(build_image(config.image, config.data_dir / "wheels"))
        if wanted:
            wheels = config.data_dir / "wheels"
            _with_progress(build_derived(config.image, wanted, wheels, force=force))
    except InterpError as exc:
        # The user's list (a package that does not exist, has no wheel, or conflicts) is
        # a usage error; the base image is untouched either way.
        _exit_error(str(exc), EXIT_USAGE if wanted else EXIT_ENGINE)


@image_app.command("list")
def image_list() -> None:
    """The sandbox images here: bases, and images derived with packages."""
    from .sandbox._docker_client import connect
    from .sandbox._packages import sandbox_images

    try:
        with contextlib.closing(connect()) as client:
            rows = sandbox_images(client)
    except InterpError as exc:
        _exit_error(str(exc), EXIT_ENGINE)
    for row in rows:
        print(f"{row.tag}\t{row.id}\t{row.size_mb} MB\t{row.packages or '(base)'}")


@image_app.command("prune")
def image_prune() -> None:
    """Remove the images derived with packages but the one the configuration uses."""
    from .sandbox._docker_client import connect
    from .sandbox._packages import configured, image_for, prune_derived

    config = _safe_config()
    try:
        wanted = configured(config)
        keep = None
        with contextlib.closing(connect()) as client:
            with contextlib.suppress(ImageError):
                keep = image_for(client, config.image, wanted) if wanted else None
            removed = prune_derived(client, keep)
    except InterpError as exc:
        _exit_error(str(exc), EXIT_ENGINE)
    for tag in removed:
        print(f"removed {tag}")
    err.print(f"{len(removed)} derived image(s) removed" + (f"; kept {keep}" if keep else ""))


def _with_progress(steps: Iterator[BuildProgress]) -> None:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[stage]:>6}[/]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("starting", total=None, stage="image")
        for step in steps:
            progress.update(
                task,
                description=step.detail,
                stage=step.stage,
                completed=step.step or 0,
                total=step.total,
            )
        progress.update(task, completed=1, total=1)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8000).")] = None,
    model_base_url: Annotated[
        str | None,
        typer.Option(
            "--model-base-url",
            help="OpenAI-compatible chat-completions endpoint, e.g. http://localhost:11434/v1.",
        ),
    ] = None,
    model_api_key: Annotated[
        str | None, typer.Option("--model-api-key", help="Key for the model endpoint.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model for runs whose assistant names none; /v1/models."),
    ] = None,
    embedding_model: Annotated[
        str | None,
        typer.Option(
            "--embedding-model",
            help="File Search's semantic ranking: builtin (default), a model the upstream"
            " serves at /v1/embeddings, or none.",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="postgresql+asyncpg://… (default: SQLite in the data directory)."
        ),
    ] = None,
    file_store: Annotated[
        str | None,
        typer.Option(
            "--file-store",
            help="s3://BUCKET[/PREFIX]: stored files' bytes in a bucket that replicas share"
            " (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).",
        ),
    ] = None,
    runtime: RuntimeOpt = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key", help="A key clients must send (repeat for several; each sees its own)."
        ),
    ] = None,
) -> None:
    """Serve OpenAI's Assistants API over the engine, driven by a chat-completions model.

    Programs written for OpenAI's Assistants API run unchanged with
    OPENAI_BASE_URL=http://HOST:PORT/v1. Settings also come from INTERP_* variables
    (INTERP_MODEL_BASE_URL, INTERP_API_KEYS='["key"]', ...).
    """
    config = _safe_config(
        host=host,
        port=port,
        model_base_url=model_base_url,
        model_api_key=model_api_key,
        model=model,
        embedding_model=embedding_model,
        db=db,
        file_store=file_store,
        runtime=runtime,
        api_keys=api_key or None,
    )
    if not config.model_base_url:
        _exit_error(
            "no model endpoint: give --model-base-url (or INTERP_MODEL_BASE_URL)", EXIT_USAGE
        )
    if not config.api_keys and not _is_loopback(config.host):
        _exit_error(
            f"refusing to listen on {config.host} without keys: give --api-key, or listen on"
            " 127.0.0.1",
            EXIT_USAGE,
        )
    try:
        import uvicorn

        from .server import asgi_app, db_url, preflight
    except ImportError as exc:
        _exit_error(
            f"interp serve needs the server extra ({exc.name} is missing):"
            " pip install 'interp[server]'",
            EXIT_ENGINE,
        )
        raise
    try:
        asyncio.run(preflight(config))
        if config.backend == "docker":
            from .sandbox._docker_client import image_status

            if image_status(config.image) is None:
                _exit_error(
                    f"the sandbox image {config.image} is not built: run `interp image build`",
                    EXIT_ENGINE,
                )
    except InterpError as exc:
        _exit_error(str(exc), EXIT_ENGINE)
    base = f"http://{config.host}:{config.port}"
    err.print(f"interp serving the Assistants and Responses APIs at {base}/v1, MCP at {base}/mcp")
    err.print(
        f"  model endpoint: {config.model_base_url}"
        + (f" (model {config.model})" if config.model else "")
        + f"; File Search embeddings: {config.embedding_model}"
    )
    err.print(f"  database: {_hide_password(db_url(config))}")
    if config.file_store:
        err.print(f"  file store: {config.file_store}")
    err.print(
        "  keys: "
        + (f"{len(config.api_keys)} required" if config.api_keys else "none (loopback only)")
    )
    # A stop waits this long for open requests (a run's stream, an upload), then ends them:
    # runs end failed, saying the server stopped, and no sandbox is left.
    uvicorn.run(
        asgi_app(config),
        host=config.host,
        port=config.port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


@app.command("mcp")
def mcp_stdio(
    backend: BackendOpt = None,
    runtime: RuntimeOpt = None,
) -> None:
    """Serve sandboxed Python to an MCP client over stdio (the client starts this command).

    One kernel for the client, kept between calls: variables and /mnt/data persist.
    """
    config = _safe_config(backend=backend, runtime=runtime)
    try:
        from .sandbox._packages import package_names
        from .server._mcp import build
    except ImportError as exc:
        _exit_error(
            f"interp mcp needs the server extra ({exc.name} is missing):"
            " pip install 'interp[server]'",
            EXIT_ENGINE,
        )
        raise

    async def serve_stdio() -> None:
        # stdout is the protocol's: everything else goes to stderr.
        async with Engine(config) as engine:
            names = package_names(config)
            server, sessions = build(lambda: engine, packages=names)
            try:
                await server.run_stdio_async()
            finally:
                await sessions.close_all()

    try:
        asyncio.run(serve_stdio())
    except InterpError as exc:
        _exit_error(str(exc), EXIT_ENGINE)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _safe_config(**overrides: Any) -> Config:
    try:
        return _config(**overrides)
    except _Fail as fail:
        _exit_error(str(fail), fail.code)
        raise


def _exit_error(message: str, code: int) -> None:
    err.print(f"[bold red]interp:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    finally:
        # The process ends next. Frozen, the objects of the imported stack (pydantic, docker,
        # jupyter_client) are left out of the interpreter's final collections, which took
        # 55 of its 66 ms of shutdown, in every command.
        gc.freeze()
