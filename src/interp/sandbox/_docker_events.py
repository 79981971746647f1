"""Following a backend's container events: each sandbox's exit, as Docker reports it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
from docker.types import CancellableStream

from .._models import ExitCause, ExitInfo
from ._docker_client import LABEL_ENGINE, UNREACHABLE

log = logging.getLogger("interp.docker")


class EventFollower:
    """A thread that resolves each sandbox's exit and survives a daemon restart.

    ``report(container_id, info)`` is called on ``loop`` for every container of the engine
    that dies, and for each of ``known()`` found stopped after the stream was lost.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        engine_id: str,
        loop: asyncio.AbstractEventLoop,
        known: Callable[[], list[str]],
        report: Callable[[str, ExitInfo], None],
    ) -> None:
        self.client = client
        self._engine_id = engine_id
        self._loop = loop
        self._known = known
        self._report = report
        self._closing = False
        self._events = self._subscribe()
        self._thread = threading.Thread(
            target=self._follow_events, name="interp-docker-events", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float = 5) -> None:
        """Stop following (blocking: joins the thread)."""
        self._closing = True
        self._events.close()
        self._thread.join(timeout)

    def _subscribe(self) -> CancellableStream[Any]:
        return self.client.events(
            decode=True,
            filters={"type": "container", "label": f"{LABEL_ENGINE}={self._engine_id}"},
        )

    def _follow_events(self) -> None:
        """Resolve each sandbox's exit as Docker reports it; survive a daemon restart.

        When the stream breaks (the daemon stopped), reconnect once the daemon answers
        again, then ask after every sandbox: deaths missed meanwhile are reported too.
        """
        while not self._closing:
            try:
                for event in self._events:
                    if event.get("Action") == "die":
                        self._report_exit(str(event.get("id")), event)
            except Exception as exc:  # noqa: BLE001 (a broken stream of any kind: reconnect)
                if self._closing:
                    return
                # str(): a record holding the exception would keep its frames alive.
                log.warning("lost Docker's event stream (%s); reconnecting", str(exc))
            if self._closing:
                return
            while not self._closing:
                try:
                    self._events = self._subscribe()
                    break
                except UNREACHABLE:
                    time.sleep(0.5)
            for container_id in self._known():
                try:
                    state = self.client.api.inspect_container(container_id)["State"]
                    running = bool(state.get("Running"))
                except docker.errors.NotFound:
                    running = False
                except UNREACHABLE:
                    continue
                if not running:
                    self._report_exit(container_id, {})

    def _report_exit(self, container_id: str, event: dict[str, Any]) -> None:
        if container_id in self._known():
            info = self._exit_info(container_id, event)
            self._loop.call_soon_threadsafe(self._report, container_id, info)

    def _exit_info(self, container_id: str, event: dict[str, Any]) -> ExitInfo:
        code = int(event.get("Actor", {}).get("Attributes", {}).get("exitCode", -1))
        oom = False
        with contextlib.suppress(*UNREACHABLE):
            state = self.client.api.inspect_container(container_id)["State"]
            oom = bool(state.get("OOMKilled"))
            code = int(state.get("ExitCode", code))
        if oom:
            return ExitInfo(cause=ExitCause.OOM_KILLED, code=code)
        if code > 128:
            return ExitInfo(cause=ExitCause.SIGNALED, code=code, signal=code - 128)
        return ExitInfo(cause=ExitCause.EXITED, code=code)
