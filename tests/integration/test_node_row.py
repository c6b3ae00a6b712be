"""The daemon's writes of its node row on a real ZooKeeper: retries, guards, hand-over."""

from __future__ import annotations

import pytest

from pvc_common import node_ops, vm_ops
from pvc_common.errors import Conflict
from pvc_common.mutations import update_vm
from pvc_common.snapshot import find_vm, load_node
from pvc_common.store import ZkStore
from pvc_noded.node_row import NodeRow
from tests.integration.conftest import domain_xml, vm_uuid


def test_a_concurrent_writer_is_met_by_rereading(cluster: ZkStore) -> None:
    row = NodeRow(cluster, "hv1")
    row.update({"cpuload": 1.5})
    # Someone else (pvc node flush) changes the row meanwhile.
    node_ops.set_node_domain_state(cluster, "hv1", "flush")
    row.update({"cpuload": 2.5})  # stale cached version: conflict, re-read, write
    node = load_node(cluster, "hv1")
    assert (node.cpuload, node.domainstate) == (2.5, "flush")


def test_a_client_request_is_retried_over_keepalives(cluster: ZkStore) -> None:
    row = NodeRow(cluster, "hv2")
    stale = load_node(cluster, "hv2")
    row.update({"keepalive": 12345})
    # The client read before the keepalive; its first write conflicts and it tries again.
    assert stale.version != load_node(cluster, "hv2").version
    assert node_ops.set_node_domain_state(cluster, "hv2", "flush").domainstate == "flush"


def test_a_guarded_claim_fails_when_the_vm_changed(cluster: ZkStore) -> None:
    vm_ops.define_vm(cluster, domain_xml("g1", vm_uuid(1)), target="hv1")
    seen = find_vm(cluster, "g1")
    vm_ops.change_vm_state(cluster, "g1", "start")  # changes the VM after it was read
    row = NodeRow(cluster, "hv1")
    with pytest.raises(Conflict):
        row.update({"runningdomains": (seen.uuid,)}, guard=seen)
    assert load_node(cluster, "hv1").runningdomains == ()
    fresh = find_vm(cluster, "g1")
    row.update({"runningdomains": (fresh.uuid,)}, guard=fresh)
    assert load_node(cluster, "hv1").runningdomains == (fresh.uuid,)


def test_hand_over_writes_vm_and_row_together(cluster: ZkStore) -> None:
    vm_ops.define_vm(cluster, domain_xml("h1", vm_uuid(2)), target="hv1")
    vm = find_vm(cluster, "h1")
    row = NodeRow(cluster, "hv1")
    row.update({"runningdomains": (vm.uuid,)})
    written = row.hand_over(vm, {"state": "start"}, lambda r: {"runningdomains": ()}, event="x")
    assert written.state == "start"
    assert load_node(cluster, "hv1").runningdomains == ()
    # A VM changed since it was read: neither the VM nor the row is written.
    update_vm(cluster, written, {"node_autostart": True}, event="meta")
    row.update({"runningdomains": (vm.uuid,)})
    with pytest.raises(Conflict):
        row.hand_over(written, {"state": "stop"}, lambda r: {"runningdomains": ()}, event="y")
    assert find_vm(cluster, "h1").state == "start"
    assert load_node(cluster, "hv1").runningdomains == (vm.uuid,)
