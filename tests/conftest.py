"""Fixtures: engines on real Docker, each checked to leave no container behind."""

from __future__ import annotations

import functools
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests

from interp import Config, Engine

ENGINE_LABEL = "io.interp.engine"

GVISOR = os.environ.get("INTERP_RUNTIME") == "runsc"
"""The hostile suite's second run, under gVisor (scripts/test). Where gVisor's kernel
answers differently from Linux's, a test says what it accepts and why."""


@functools.cache
def docker_missing() -> str | None:
    """Why Docker tests cannot run here, or ``None`` when an engine answers."""
    try:
        client = docker.from_env()
        try:
            client.ping()
        finally:
            client.close()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return "no Docker engine answers: run scripts/setup, or start dockerd"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is not None and (reason := docker_missing()):
        pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        settings: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "memory": "512m",
            "timeout": 30,
            "pool_size": 1,
        }
        settings.update(overrides)
        return Config(**settings)

    return make


@pytest.fixture
async def engine(
    make_config: Callable[..., Config], docker_client: docker.DockerClient
) -> AsyncIterator[Engine]:
    async with Engine(make_config()) as started:
        yield started
    assert_no_containers(docker_client, started.id)


@dataclass(frozen=True)
class Container:
    id: str
    status: str
    labels: dict[str, str]


def containers_labelled(client: docker.DockerClient, label: str) -> list[Container]:
    """Containers with ``label`` (``key`` or ``key=value``), running or not.

    One list call and no inspect per container, so a container removed meanwhile cannot
    make it fail (docker-py's ``containers.list`` inspects each one it found).
    """
    rows = client.api.containers(all=True, filters={"label": label})
    return [Container(row["Id"], row["State"], row.get("Labels") or {}) for row in rows]


def containers_of(client: docker.DockerClient, engine_id: str) -> list[Container]:
    return containers_labelled(client, f"{ENGINE_LABEL}={engine_id}")


def assert_no_containers(client: docker.DockerClient, engine_id: str) -> None:
    left = containers_of(client, engine_id)
    assert not left, f"engine {engine_id} left containers behind: {[c.id for c in left]}"


@dataclass(frozen=True)
class S3Server:
    """An S3 server on loopback: the ``AWS_*`` variables that reach it."""

    env: dict[str, str]

    def bucket_url(self) -> str:
        """A fresh bucket (made by the file store on open) and prefix."""
        return f"s3://interp-{secrets.token_hex(4)}/files"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server in its own process, over HTTP with signed requests, as any S3
    server is reached (Debian 12 packages no S3 server; MinIO, SeaweedFS or AWS in
    production). ``INTERP_TEST_S3_ENDPOINT`` names another to test against instead (its
    credentials and region in the ``AWS_*`` variables)."""
    endpoint = os.environ.get("INTERP_TEST_S3_ENDPOINT")
    if endpoint:
        names = ("AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        yield S3Server({"AWS_ENDPOINT_URL": endpoint} | {n: os.environ[n] for n in names})
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path_factory.mktemp("s3") / "server.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"PATH": os.environ.get("PATH", ""), "MOTO_ALLOW_NONEXISTENT_REGION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url, timeout=1)
            break
        except requests.exceptions.ConnectionError:
            assert process.poll() is None, "moto_server exited"
            assert time.monotonic() < deadline, "moto_server did not answer in 30 s"
            time.sleep(0.1)
    try:
        yield S3Server(
            {
                "AWS_ENDPOINT_URL": url,
                "AWS_REGION": "eu-west-1",
                "AWS_ACCESS_KEY_ID": "interp-test",
                "AWS_SECRET_ACCESS_KEY": "interp-test-secret",
            }
        )
    finally:
        process.terminate()
        process.wait(10)
        log.close()
