"""pvc vm list: columns, filters, formats, and the red Networks cell."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.integration.conftest import PvcRunner, domain_xml, vm_uuid

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RED = "\x1b[31m"


@pytest.fixture
def three_vms(pvc: PvcRunner) -> None:
    pvc("network", "add", "100", "-d", "prod")
    pvc("network", "add", "200", "-d", "backup")
    pvc.define(domain_xml("alpha", vm_uuid(1), bridges=("vmbr100", "vmbr200")), "-t", "hv1")
    pvc.define(
        domain_xml("beta-long-name", vm_uuid(2), bridges=("vmbr100", "vmbr300")), "-t", "hv2"
    )
    pvc.define(domain_xml("gamma", vm_uuid(3), memory_mib=2048, vcpus=4, bridges=()), "-t", "hv1")
    pvc("vm", "start", "beta-long-name")


def test_list_columns_and_values(pvc: PvcRunner, three_vms: None) -> None:
    lines = pvc("vm", "list").output.splitlines()
    assert lines[0].split() == [
        "Name",
        "UUID",
        "State",
        "Networks",
        "RAM",
        "vCPUs",
        "Node",
        "Migrated",
    ]
    rows = [line.split() for line in lines[1:]]
    assert rows == [
        ["alpha", vm_uuid(1), "stop", "100,200", "1024", "2", "hv1", "no"],
        ["beta-long-name", vm_uuid(2), "start", "100,300", "1024", "2", "hv2", "no"],
        ["gamma", vm_uuid(3), "stop", "-", "2048", "4", "hv1", "no"],
    ]
    assert RED not in pvc("vm", "list").output  # not a terminal: no colour


def test_list_filters(pvc: PvcRunner, three_vms: None) -> None:
    assert pvc("vm", "list", "-r").output.split() == ["alpha", "beta-long-name", "gamma"]
    assert pvc("vm", "list", "-r", "-t", "hv1").output.split() == ["alpha", "gamma"]
    assert pvc("vm", "list", "-r", "-s", "start").output.split() == ["beta-long-name"]
    assert pvc("vm", "list", "-r", "long").output.split() == ["beta-long-name"]
    assert pvc("vm", "list", "-r", "-t", "hv3").output.split() == []


def test_list_json_and_yaml(pvc: PvcRunner, three_vms: None) -> None:
    from_json = json.loads(pvc("vm", "list", "-o", "json").output)
    from_yaml = yaml.safe_load(pvc("vm", "list", "-o", "yaml").output)
    assert from_json == from_yaml
    assert [vm["name"] for vm in from_json] == ["alpha", "beta-long-name", "gamma"]
    assert from_json[1]["unknown_networks"] == ["300"]
    assert from_json[0]["unknown_networks"] == []


def test_unregistered_network_makes_the_whole_cell_red_and_keeps_alignment(
    pvc: PvcRunner, three_vms: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLICOLOR_FORCE", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    output = pvc("vm", "list").output
    beta = next(line for line in output.splitlines() if "beta-long-name" in line)
    alpha = next(line for line in output.splitlines() if "alpha" in line)
    # The whole padded cell is one red span: the colour starts before the first network.
    assert re.search(r"\x1b\[31m100,300\s*\x1b\[0m", beta), repr(beta)
    assert "\x1b[31m" not in alpha
    # With colour codes stripped, every column starts at the same offset on every line.
    plain = [ANSI.sub("", line) for line in output.splitlines()]
    header = plain[0]
    for column in ("Networks", "RAM", "Node", "Migrated"):
        offset = header.index(column)
        for line in plain[1:]:
            assert line[offset - 2 : offset] == "  " and line[offset] != " ", (column, line)
    monkeypatch.setenv("NO_COLOR", "1")
    assert RED not in pvc("vm", "list").output


def test_list_help_explains_the_red_cell(pvc: PvcRunner) -> None:
    assert "red" in pvc("vm", "list", "--help").output


def test_info_long_and_console_hint(pvc: PvcRunner, three_vms: None) -> None:
    short = pvc("vm", "info", "alpha").output
    assert "Console log:" in short and "Disk" not in short
    long = pvc("vm", "info", "alpha", "--long").output
    assert "Console log file: /var/log/pvc/console/alpha.log" in long
    assert "Interface" in long
    no_log = domain_xml("quiet", vm_uuid(5)).replace(
        "<log file='/var/log/pvc/console/quiet.log' append='on'/>", ""
    )
    pvc.define(no_log)
    assert "add <log file=" in pvc("vm", "info", "quiet").output
    data = json.loads(pvc("vm", "info", "alpha", "--long", "-o", "json").output)
    assert data["console_log_path"] == "/var/log/pvc/console/alpha.log"
    assert [d["kind"] for d in data["disks"]] == []
