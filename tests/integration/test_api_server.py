"""``pvcapid`` as a real server process (gunicorn) over real HTTP, on a real ZooKeeper.

Requests go through urllib from this process to the daemon on loopback; every answer,
errors included, must be JSON.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvc_common.console import ConsoleBuffer
from pvc_common.console_store import read_console, write_console
from pvc_common.store import ZkStore
from tests.harness.zookeeper import find_free_port
from tests.integration.api_process import (
    KEY,
    PVCAPID,
    Api,
    running_api,
    start_api,
    stop_api,
    write_config,
)
from tests.integration.conftest import PvcRunner, domain_xml, vm_uuid


@pytest.fixture
def api(cluster: ZkStore, zk_hosts: str, tmp_path: Path) -> Iterator[Api]:
    with running_api(zk_hosts, tmp_path) as started:
        yield started


# --------------------------------------------------------------------------- authentication


def test_the_version_endpoint_needs_no_key(api: Api) -> None:
    status, data = api.call("/api/v1", key=None)
    assert status == 200 and data["name"] == "pvcapid" and data["schema_version"] >= 3


@pytest.mark.parametrize(
    "key",
    [None, "", "wrong-key-wrong-key-wrong", KEY[:-1], KEY + "x"],
    ids=["missing", "empty", "wrong", "prefix", "longer"],
)
def test_every_other_endpoint_refuses_a_bad_key(api: Api, key: str | None) -> None:
    status, data = api.call("/api/v1/node", key=key)
    assert status == 401 and "X-Api-Key" in data["message"]


# --------------------------------------------------------------------------- reading


def test_nodes_and_status(api: Api) -> None:
    status, nodes = api.call("/api/v1/node")
    assert status == 200 and [node["name"] for node in nodes] == ["hv1", "hv2", "hv3"]
    assert all("ipmipassword" not in node for node in nodes)
    status, node = api.call("/api/v1/node/hv2")
    assert status == 200 and node["name"] == "hv2"
    status, cluster_status = api.call("/api/v1/status")
    assert status == 200 and cluster_status["nodes"]["total"] == 3


def test_vms_as_the_cli_shows_them(api: Api, pvc: PvcRunner) -> None:
    pvc.define(domain_xml("web1", vm_uuid(1)), "--target", "hv1")
    pvc.define(domain_xml("db1", vm_uuid(2)), "--target", "hv2")
    status, vms = api.call("/api/v1/vm")
    assert status == 200 and sorted(vm["name"] for vm in vms) == ["db1", "web1"]
    assert [vm["name"] for vm in api.call("/api/v1/vm?node=hv2")[1]] == ["db1"]
    status, vm = api.call("/api/v1/vm/web1")
    assert status == 200
    assert {key: vm[key] for key in ("uuid", "state", "node")} == {
        key: pvc.info("web1")[key] for key in ("uuid", "state", "node")
    }


def test_console_with_a_position(api: Api, pvc: PvcRunner, cluster: ZkStore) -> None:
    pvc.define(domain_xml("web1", vm_uuid(1)), "--target", "hv1")
    _, version = read_console(cluster, vm_uuid(1))
    write_console(cluster, vm_uuid(1), ConsoleBuffer(first=5, lines=("a", "a", "b")), version)
    status, data = api.call("/api/v1/vm/web1/console?lines=2")
    assert status == 200 and data["lines"] == ["a", "b"] and data["next"] == 8
    status, data = api.call("/api/v1/vm/web1/console?since=7")
    assert (status, data["lines"], data["skipped"]) == (200, ["b"], 0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("path", "status", "phrase"),
    [
        ("/api/v1/vm/nosuch", 404, "nosuch"),
        ("/api/v1/node/nosuch", 404, "nosuch"),
        ("/api/v1/vm?state=sleeping", 400, "invalid state"),
        ("/api/v1/vm?colour=red", 400, "unknown parameter"),
        ("/api/v1/vm/web1/console?lines=many", 400, "must be an integer"),
        ("/api/v1/nothing/here", 404, "not found"),
    ],
)
def test_errors_are_one_line_json_with_the_right_status(
    api: Api, pvc: PvcRunner, path: str, status: int, phrase: str
) -> None:
    pvc.define(domain_xml("web1", vm_uuid(1)), "--target", "hv1")
    got, data = api.call(path)
    assert got == status and phrase in data["message"].lower() and "\n" not in data["message"]


def test_a_json_body_that_is_not_an_object_is_refused(api: Api) -> None:
    status, data = api.call("/api/v1/vm", method="GET", body=b"[1, 2]")
    assert status == 400 and "JSON object" in data["message"]


# --------------------------------------------------------------------------- TLS, config


def test_tls_when_configured(cluster: ZkStore, zk_hosts: str, tmp_path: Path) -> None:
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(certificate),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    port = find_free_port()
    config = write_config(
        tmp_path / "tls.yaml", zk_hosts, port, tls_certificate=certificate, tls_key=key
    )
    context = ssl.create_default_context(cafile=str(certificate))
    process = start_api(config, f"https://127.0.0.1:{port}", context)
    try:
        api = Api(f"https://127.0.0.1:{port}", context)
        assert api.call("/api/v1/node")[0] == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            # Plain HTTP to the TLS port gets no HTTP answer.
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1", timeout=5)
    finally:
        stop_api(process)


def run_pvcapid(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PVCAPID, *args], capture_output=True, text=True, timeout=30)


def test_validate_config_masks_the_keys(zk_hosts: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", zk_hosts, 7370)
    result = run_pvcapid("--config", str(config), "--validate-config")
    assert result.returncode == 0 and "********" in result.stdout and KEY not in result.stdout


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        ({"port": 0}, "api.port: must be a port number"),
        ({"tls_key": "/k.pem"}, "give both or neither"),
        ({"authentication": "'yes'"}, "api.authentication: must be true or false"),
        ({"listen_adress": "0.0.0.0"}, "did you mean 'listen_address'"),
    ],
)
def test_a_bad_config_is_one_clear_line(
    zk_hosts: str, tmp_path: Path, extra: dict[str, Any], phrase: str
) -> None:
    path = tmp_path / "bad.yaml"
    write_config(path, zk_hosts, 7370)
    text = path.read_text()
    for key, value in extra.items():
        text = text.replace("  port: 7370", f"  port: 7370\n  {key}: {value}", 1)
        if key == "port":
            text = text.replace("  port: 7370\n", "", 1)
    path.write_text(text)
    result = run_pvcapid("--config", str(path), "--validate-config")
    assert result.returncode == 2 and phrase in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and KEY not in result.stderr


def test_short_keys_are_refused_without_showing_them(zk_hosts: str, tmp_path: Path) -> None:
    path = tmp_path / "short.yaml"
    path.write_text(f"zookeeper:\n  hosts: {zk_hosts}\napi:\n  keys: [tooshort]\n")
    result = run_pvcapid("--config", str(path), "--validate-config")
    assert result.returncode == 2 and "key #1 is shorter than 16" in result.stderr
    assert "tooshort" not in result.stderr


# --------------------------------------------------------------------------- writing


def post(api: Api, path: str, method: str = "POST", **values: Any) -> tuple[int, Any]:
    return api.call(path, method=method, body=json.dumps(values).encode())


def test_changes_through_the_api_are_recorded_as_the_api_clients(api: Api, pvc: PvcRunner) -> None:
    post(api, "/api/v1/vm", xml=domain_xml("web1", vm_uuid(1)), node="hv1")
    post(api, "/api/v1/vm/web1", autostart=True)
    status, data = api.call("/api/v1/vm/web1/history?last=1")
    assert status == 200 and data["dropped"] == 1
    (entry,) = data["entries"]
    assert entry["by"] == "pvcapid for 127.0.0.1 (key #1)"
    assert entry["what"] == "meta node_autostart=True"


def test_define_and_meta_behave_as_through_the_cli(api: Api, pvc: PvcRunner) -> None:
    status, vm = post(
        api, "/api/v1/vm", xml=domain_xml("web1", vm_uuid(1)), limit="hv2,hv3", selector="vms"
    )
    # The limit given with the definition places it (no node named): never hv1.
    assert status == 201 and vm["node"] in ("hv2", "hv3") and vm["node_limit"] == ["hv2", "hv3"]
    assert pvc.info("web1")["node_limit"] == ["hv2", "hv3"]
    status, vm = post(api, "/api/v1/vm/web1", autostart=True, migration_method="live")
    assert status == 200 and vm["node_autostart"] is True and vm["migration_method"] == "live"
    # Query/form values work as well as a JSON body.
    status, vm = api.call("/api/v1/vm/web1?selector=mem&autostart=false", method="POST")
    assert status == 200 and (vm["node_selector"], vm["node_autostart"]) == ("mem", False)
    status, data = post(api, "/api/v1/vm", xml=domain_xml("web1", vm_uuid(1)))
    assert status == 409 and "already" in data["message"]


@pytest.mark.parametrize(
    ("values", "status", "phrase"),
    [
        ({"xml": "<domain><name>x"}, 400, "invalid domain XML"),
        ({"xml": domain_xml("web9", vm_uuid(9)), "node": "hv9"}, 404, "hv9"),
        ({"xml": domain_xml("web9", vm_uuid(9)), "autostart": "perhaps"}, 400, "true or false"),
        ({"node": "hv1"}, 400, "'xml' is required"),
    ],
)
def test_a_bad_definition_writes_nothing(
    api: Api, pvc: PvcRunner, values: dict[str, Any], status: int, phrase: str
) -> None:
    got, data = post(api, "/api/v1/vm", **values)
    assert got == status and phrase in data["message"]
    assert api.call("/api/v1/vm")[1] == []


def test_state_and_node_requests_write_intent(api: Api, pvc: PvcRunner) -> None:
    post(api, "/api/v1/vm", xml=domain_xml("web1", vm_uuid(1)), node="hv1")
    status, answer = post(api, "/api/v1/vm/web1/state", state="start")
    assert status == 200 and answer["vm"]["state"] == "start" and "outcome" not in answer
    assert api.call("/api/v1/vm/web1/state")[1]["state"] == "start"
    status, data = post(api, "/api/v1/vm/web1/state", state="explode")
    assert status == 400 and "must be one of start, restart" in data["message"]
    status, answer = post(api, "/api/v1/vm/web1/node", action="migrate", node="hv2")
    assert status == 200 and (answer["vm"]["node"], answer["vm"]["lastnode"]) == ("hv2", "hv1")
    status, data = post(api, "/api/v1/vm/web1/node", action="migrate", node="hv3")
    assert status == 412 and "already migrat" in data["message"]
    # No daemon runs here: a wait ends with its timeout, and says so.
    post(api, "/api/v1/vm", xml=domain_xml("web2", vm_uuid(2)), node="hv3")
    status, answer = post(api, "/api/v1/vm/web2/state", state="start", wait=True, wait_timeout=1)
    assert status == 200 and answer["outcome"]["ok"] is False
    assert "timed out" in answer["outcome"]["message"]
    status, data = post(api, "/api/v1/vm/web2/state", state="stop", wait=True, wait_timeout=-1)
    assert status == 400 and "at least 0" in data["message"]
    status, data = api.call("/api/v1/vm/web1", method="DELETE")
    assert status == 412 and "stop it first" in data["message"]


def test_waits_are_bounded_by_max_wait(cluster: ZkStore, zk_hosts: str, tmp_path: Path) -> None:
    with running_api(zk_hosts, tmp_path, max_wait=2) as api:
        post(api, "/api/v1/vm", xml=domain_xml("web1", vm_uuid(1)), node="hv1")
        status, data = post(api, "/api/v1/vm/web1/state", state="start", wait_timeout=3)
        assert status == 400 and "max_wait (2 s)" in data["message"]
        assert api.call("/api/v1/vm/web1/state")[1]["state"] == "stop"  # nothing written
        # No wait_timeout: the default (120 s) is cut to max_wait; no daemon runs here.
        started = time.monotonic()
        status, answer = post(api, "/api/v1/vm/web1/state", state="start", wait=True)
        assert status == 200 and "timed out" in answer["outcome"]["message"]
        assert time.monotonic() - started < 10
        status, document = api.call("/api/v1/openapi.json")
        parameters = document["paths"]["/api/v1/vm/{vm}/state"]["post"]["parameters"]
        (timeout,) = [param for param in parameters if param["name"] == "wait_timeout"]
        assert timeout["schema"] == {"type": "integer", "minimum": 0, "maximum": 2, "default": 2}


def test_undefine_networks_and_node_domain_state(api: Api, pvc: PvcRunner) -> None:
    post(api, "/api/v1/vm", xml=domain_xml("web1", vm_uuid(1)), node="hv1")
    status, data = api.call("/api/v1/vm/web1", method="DELETE")
    assert status == 200 and api.call("/api/v1/vm/web1")[0] == 404
    assert post(api, "/api/v1/network", vni=100, description="lan")[0] == 201
    assert [network["vni"] for network in api.call("/api/v1/network")[1]] == [100]
    assert post(api, "/api/v1/network", vni=100)[0] == 409
    assert api.call("/api/v1/network/100", method="DELETE")[0] == 200
    status, data = post(api, "/api/v1/node/hv3/domain-state", state="flush")
    assert status == 200 and data["domainstate"] == "flush"
    assert api.call("/api/v1/node/hv3/domain-state")[1]["domainstate"] == "flush"
    assert post(api, "/api/v1/node/hv3/domain-state", state="sideways")[0] == 400


def test_the_sample_config_is_valid_and_documents_every_key() -> None:
    sample = Path(__file__).parents[2] / "api-daemon" / "pvcapid.sample.yaml"
    result = run_pvcapid("--config", str(sample), "--validate-config")
    assert result.returncode == 0, result.stderr
    text = sample.read_text()
    from pvc_apid.config import SECTIONS

    for section, cls in SECTIONS.items():
        assert f"\n{section}:\n" in f"\n{text}"
        for name in cls.__dataclass_fields__:
            assert f"\n  {name}:" in text, f"{section}.{name} is not in the sample"
