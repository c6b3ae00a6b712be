"""``pvc vm history``: every change of a VM, recorded with it, bounded."""

from __future__ import annotations

import json
from typing import Any

from pvc_common import schema
from pvc_common.history import HISTORY_LIMIT
from pvc_common.store import ZkStore
from tests.integration.conftest import PvcRunner, domain_xml, vm_uuid


def history(pvc: PvcRunner, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(pvc("vm", "history", *args, "-o", "json").stdout)
    return data


def test_each_change_is_recorded_with_who_made_it(pvc: PvcRunner, cluster: ZkStore) -> None:
    pvc.define(domain_xml("web1", vm_uuid(1)), "--target", "hv1")
    pvc("vm", "meta", "web1", "--autostart", "--limit", "hv1,hv2")
    pvc("vm", "start", "web1")
    pvc("vm", "migrate", "web1", "--target", "hv2")

    data = history(pvc, "web1")
    assert (data["name"], data["uuid"], data["dropped"]) == ("web1", vm_uuid(1), 0)
    whats = [entry["what"] for entry in data["entries"]]
    assert whats[0] == "define on hv1"
    assert whats[1].startswith("meta ") and "node_autostart=True" in whats[1]
    assert len(whats) == 4 and "hv2" in whats[3]
    times = [entry["at"] for entry in data["entries"]]
    assert times == sorted(times)
    # Written by this test process through the CLI's code: the program, user and host.
    assert all("@" in entry["by"] for entry in data["entries"])

    pretty = pvc("vm", "history", "web1", "-n", "2").stdout.splitlines()
    assert pretty[0] == "(2 older change(s) not shown)"
    assert pretty[1].split() == ["When", "By", "What", "Why"]
    assert len(pretty) == 4 and "hv2" in pretty[3]


def test_the_history_is_bounded_and_an_unknown_vm_is_one_line(
    pvc: PvcRunner, cluster: ZkStore
) -> None:
    pvc.define(domain_xml("web1", vm_uuid(1)), "--target", "hv1")
    for number in range(HISTORY_LIMIT + 5):
        pvc("vm", "meta", "web1", "--selector", schema.DEFAULT_SELECTORS[number % 5])
    data = history(pvc, "web1")
    assert len(data["entries"]) == HISTORY_LIMIT and data["dropped"] == 6
    assert history(pvc, "web1", "-n", "0")["entries"] == []
    missing = pvc("vm", "history", "nosuch", expect=3).output
    assert missing == "Error: no VM named 'nosuch'\n"
