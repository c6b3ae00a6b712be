"""``/metrics`` of the real pvcapid: the cluster's figures in Prometheus' format."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pvc_common.console import ConsoleBuffer
from pvc_common.console_store import read_console, write_console
from pvc_common.mutations import update_node
from pvc_common.node_stats import counted
from pvc_common.snapshot import load_node
from pvc_common.store import ZkStore
from pvc_common.vm_ops import change_vm_state, define_vm
from tests.integration.api_process import KEY, Api, running_api
from tests.integration.conftest import NODE_FIGURES, domain_xml, vm_uuid

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def api(cluster: ZkStore, zk_hosts: str, tmp_path: Path) -> Iterator[Api]:
    with running_api(zk_hosts, tmp_path) as started:
        yield started


def scrape(api: Api, headers: dict[str, str]) -> tuple[int, str, str]:
    request = urllib.request.Request(api.base + "/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_give_nodes_vms_counters_and_console_sizes(api: Api, cluster: ZkStore) -> None:
    define_vm(cluster, domain_xml("web1", vm_uuid(1)), target="hv1")
    define_vm(cluster, domain_xml("web2", vm_uuid(2)), target="hv2")
    change_vm_state(cluster, "web2", "start")
    _, version = read_console(cluster, vm_uuid(1))
    write_console(cluster, vm_uuid(1), ConsoleBuffer(first=0, lines=("boot", "login:")), version)
    hv1 = load_node(cluster, "hv1")
    stats = counted(counted(hv1.stats, "migration_live", 1.5), "migration_live", 2.5)
    update_node(cluster, hv1, {"stats": counted(stats, "fence", 0.25)}, event="")

    status, content_type, text = scrape(api, {"X-Api-Key": KEY})
    assert status == 200 and content_type.startswith("text/plain")
    got = samples(text)
    assert got[("pvc_node_daemon_state", (("node", "hv1"), ("state", "run")))] == 1
    assert got[("pvc_node_daemon_state", (("node", "hv1"), ("state", "dead")))] == 0
    assert got[("pvc_node_domain_state", (("node", "hv3"), ("state", "ready")))] == 1
    total = NODE_FIGURES["hv2"]["memtotal"]
    assert got[("pvc_node_memory_mib", (("kind", "total"), ("node", "hv2")))] == total
    assert got[("pvc_vms", (("state", "stop"),))] == 1
    assert got[("pvc_vms", (("state", "start"),))] == 1
    assert got[("pvc_migrations_total", (("method", "live"), ("node", "hv1")))] == 2
    assert got[("pvc_migration_seconds_total", (("method", "live"), ("node", "hv1")))] == 4.0
    assert got[("pvc_migrations_total", (("method", "live"), ("node", "hv2")))] == 0
    assert got[("pvc_fences_total", (("node", "hv1"),))] == 1
    assert got[("pvc_fence_seconds_total", (("node", "hv1"),))] == 0.25
    web1 = got[("pvc_vm_console_buffer_bytes", (("uuid", vm_uuid(1)), ("vm", "web1")))]
    web2 = got[("pvc_vm_console_buffer_bytes", (("uuid", vm_uuid(2)), ("vm", "web2")))]
    assert web1 > web2 > 0  # web2 has an empty buffer, stored as a small JSON object

    # Prometheus' own way to send credentials works too; no key is a JSON 401.
    assert scrape(api, {"Authorization": f"Bearer {KEY}"})[0] == 200
    status, content_type, text = scrape(api, {})
    assert status == 401 and content_type.startswith("application/json") and "X-Api-Key" in text
    assert scrape(api, {"Authorization": f"Bearer {KEY[:-1]}"})[0] == 401
