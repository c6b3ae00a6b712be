"""The installed ``pvc`` console script as a real process against the real ZooKeeper."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pvc_common.store import ZkStore
from tests.harness.zookeeper import find_free_port
from tests.integration.conftest import PVC_EXECUTABLE, domain_xml, vm_uuid

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_define_list_info_migrate_as_processes(
    cluster: ZkStore, pvc_process: Run, tmp_path: Path
) -> None:
    xml_file = tmp_path / "web1.xml"
    xml_file.write_text(domain_xml("web1", vm_uuid(1)))
    defined = pvc_process("vm", "define", "-l", "hv1,hv3", "-s", "load", "-a", str(xml_file))
    assert defined.returncode == 0, defined.stderr
    assert "defined on hv3" in defined.stdout
    listed = pvc_process("vm", "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[1].split()[:3] == ["web1", vm_uuid(1), "stop"]
    assert "\x1b[" not in listed.stdout  # piped: no colour
    migrated = pvc_process("vm", "migrate", "web1")
    assert migrated.returncode == 0, migrated.stderr
    info = json.loads(pvc_process("vm", "info", "web1", "--format", "json").stdout)
    assert (info["node"], info["lastnode"], info["node_autostart"]) == ("hv1", "hv3", True)


def test_errors_are_one_line_with_distinct_exit_codes(cluster: ZkStore, pvc_process: Run) -> None:
    cases = [
        (("vm", "info", "ghost"), 3, "Error: no VM named 'ghost'"),
        (("vm", "define", "-"), 2, "Error: invalid domain XML"),
        (("node", "flush", "hv9"), 3, "Error: no node named 'hv9'"),
        (("cluster", "init"), 5, "Error: a cluster already exists"),
    ]
    for args, code, message in cases:
        result = pvc_process(*args, input="<domain")
        assert result.returncode == code, (args, result.stderr)
        assert result.stderr.startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_unreachable_zookeeper_is_a_clear_error(pvc_process: Run) -> None:
    port = find_free_port()  # nothing listens there
    started = time.monotonic()
    result = pvc_process(
        "-z", f"127.0.0.1:{port}", "--timeout", "1", "vm", "list", env={"PVC_ZOOKEEPER": ""}
    )
    assert result.returncode == 6
    assert result.stderr.startswith(f"Error: ZooKeeper at 127.0.0.1:{port} is unreachable")
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 30  # bounded by --timeout, not hanging


def test_environment_variable_names_the_cluster(cluster: ZkStore, zk_hosts: str) -> None:
    result = subprocess.run(
        [PVC_EXECUTABLE, "node", "list", "-o", "json"],
        env={"PVC_ZOOKEEPER": zk_hosts, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [node["name"] for node in json.loads(result.stdout)] == ["hv1", "hv2", "hv3"]


def test_help_and_version(pvc_process: Run) -> None:
    assert pvc_process("--version").stdout.startswith("pvc, version ")
    helped = pvc_process("vm", "define", "--help")
    assert helped.returncode == 0
    for option in ("--target", "--limit", "--selector", "--autostart", "--no-autostart"):
        assert option in helped.stdout
