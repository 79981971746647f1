"""The synchronous facade: the async engine, driven from a background event loop.

One implementation of every behaviour; this file only carries calls across threads.

    with SyncEngine() as engine:
        session = engine.create_session()
        print(engine.execute("x = 2; x * 21", session=session).logs)
"""

from __future__ import annotations

import asyncio
import signal
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ._config import Config
from ._engine import Engine
from ._models import EngineStats, Event, ExecutionResult, FileInfo, SessionInfo

_T = TypeVar("_T")


class SyncEngine:
    """``Engine`` for synchronous code. Starts on construction; close it when done."""

    def __init__(self, config: Config | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="interp-engine-loop", daemon=True
        )
        self._thread.start()
        exit_on_sigterm()
        self._engine = Engine(config)
        try:
            self._call(self._engine.start())
        except BaseException:
            self.close()
            raise
        # A script that forgets close() still leaves no container behind. This must run
        # before the interpreter stops its worker threads, which the engine still needs:
        # atexit is too late, threading's own exit hook is not.
        close = weakref.WeakMethod(self.close)
        _before_threads_stop(lambda: (method := close()) is not None and method())

    @property
    def config(self) -> Config:
        return self._engine.config

    @property
    def id(self) -> str:
        return self._engine.id

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C in the caller's thread: stop the work on the loop too.
            future.cancel()
            raise

    def create_session(
        self, session: str | None = None, *, file_ids: Sequence[str] = (), memory: int | None = None
    ) -> str:
        return self._call(self._engine.create_session(session, file_ids=file_ids, memory=memory))

    def close_session(self, session: str, *, keep_files: bool = False) -> None:
        self._call(self._engine.close_session(session, keep_files=keep_files))

    def has_session(self, session: str) -> bool:
        return self._engine.has_session(session)

    def sessions(self) -> list[SessionInfo]:
        return self._engine.sessions()

    def hibernate_session(self, session: str) -> SessionInfo:
        return self._call(self._engine.hibernate_session(session))

    def stats(self) -> EngineStats:
        return self._engine.stats()

    def warm(self, timeout: float | None = None) -> None:
        self._call(self._engine.warm(timeout))

    def session_dir(self, session: str) -> Path:
        return self._engine.session_dir(session)

    def create_file(self, name: str, content: bytes | Path) -> FileInfo:
        return self._call(self._engine.create_file(name, content))

    def upload(self, session: str, name: str, content: bytes | Path) -> FileInfo:
        return self._call(self._engine.upload(session, name, content))

    def execute(
        self, code: str | bytes, *, session: str | None = None, timeout: float | None = None
    ) -> ExecutionResult:
        return self._call(self._engine.execute(code, session=session, timeout=timeout))

    def stream(
        self, code: str | bytes, *, session: str | None = None, timeout: float | None = None
    ) -> Iterator[Event]:
        events = self._engine.stream(code, session=session, timeout=timeout)
        try:
            while True:
                try:
                    yield self._call(_next(events))
                except StopAsyncIteration:
                    return
        finally:
            self._call(events.aclose())

    def file(self, file_id: str) -> FileInfo:
        return self._engine.file(file_id)

    def keep_file(self, file_id: str) -> FileInfo:
        return self._call(self._engine.keep_file(file_id))

    def delete_file(self, file_id: str) -> None:
        self._call(self._engine.delete_file(file_id))

    def download(self, file_id: str, *, session: str | None = None) -> bytes:
        return self._call(self._engine.download(file_id, session=session))

    def file_path(self, file_id: str) -> Path:
        return self._engine.file_path(file_id)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._engine.close(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _next(events: AsyncGenerator[Event, None]) -> Event:
    return await anext(events)


def _before_threads_stop(callback: Callable[[], object]) -> None:
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(callback)


def exit_on_sigterm() -> None:
    """Make SIGTERM exit through Python, so that ``close`` and context managers run.

    For scripts: only where nobody has a SIGTERM handler already, and only from the main
    thread (the only one that may set handlers). Otherwise the default would end the
    process at once and leave containers for the next engine's reaper. The async
    ``Engine`` sets no handler: an application that runs a loop owns its signals.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
