"""deploy/, checked offline: the Kubernetes manifests against the API's schemas, the
Compose file by docker-compose, and one load balancer configuration in both."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

DEPLOY = Path(__file__).parent.parent / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_kubernetes_manifests_are_valid_objects() -> None:
    found = documents()
    assert {doc["kind"] for doc in found} >= {"StatefulSet", "Service", "Deployment", "Secret"}
    for doc in found:
        kubernetes_validate.validate(doc, latest_version(), strict=True)
    # The check itself catches a misspelt field.
    (statefulset,) = [doc for doc in found if doc["kind"] == "StatefulSet"]
    broken = copy.deepcopy(statefulset)
    broken["spec"]["template"]["spec"]["containers"][0]["envFrm"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, latest_version(), strict=True)


def test_each_replica_has_its_own_url_and_data_dir_at_the_nodes_path() -> None:
    (statefulset,) = [doc for doc in documents() if doc["kind"] == "StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["INTERP_DATA_DIR"].startswith("/var/lib/interp/$(POD_NAME)")
    assert env["INTERP_REPLICA_URL"] == "http://$(POD_NAME).interp-replicas:8000"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {
        v["name"]: v["hostPath"]["path"] for v in statefulset["spec"]["template"]["spec"]["volumes"]
    }
    # Sandboxes bind-mount from the data dir by its path on the node.
    assert mounts["data"] == volumes["data"] == "/var/lib/interp"


def test_the_balancer_is_configured_alike_in_compose_and_kubernetes() -> None:
    def shape(text: str) -> list[str]:
        lines = [line.split("#")[0].strip() for line in text.splitlines()]
        return [re.sub(r"server \S+:8000", "server REPLICA:8000", ln) for ln in lines if ln]

    (config,) = [doc for doc in documents() if doc["kind"] == "ConfigMap"]
    assert shape(config["data"]["nginx.conf"]) == shape((DEPLOY / "nginx.conf").read_text())


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="scripts/setup installs it")
def test_the_compose_file_is_valid() -> None:
    env = {**os.environ, "INTERP_API_KEY": "k", "INTERP_MODEL_BASE_URL": "http://model/v1"}
    done = subprocess.run(
        ["docker-compose", "-f", str(DEPLOY / "compose.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    replicas = {name: s for name, s in services.items() if name.startswith("interp-")}
    assert len(replicas) == 2
    for name, service in replicas.items():
        assert service["environment"]["INTERP_REPLICA_URL"] == f"http://{name}:8000"
        data_dir = service["environment"]["INTERP_DATA_DIR"]
        assert f"{data_dir}:{data_dir}:rw" in service["volumes"]
    upstream = re.findall(r"server (\S+):8000", (DEPLOY / "nginx.conf").read_text())
    assert sorted(upstream) == sorted(replicas)
