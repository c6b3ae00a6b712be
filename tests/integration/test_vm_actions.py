"""One VM action on a real ZooKeeper, with the hypervisor side stood in."""

from __future__ import annotations

from pathlib import Path

from pvc_common import vm_ops
from pvc_common.models import VmRecord
from pvc_common.mutations import update_vm
from pvc_common.reconcile import Action, Kind
from pvc_common.snapshot import find_vm, load_node
from pvc_common.storage import RbdLocks
from pvc_common.store import ZkStore
from pvc_noded.config import parse_config
from pvc_noded.node_row import NodeRow
from pvc_noded.vm_actions import ActionContext, carry_out
from tests.integration.conftest import domain_xml, vm_uuid


def context(store: ZkStore, here: str, listed: tuple[str, ...]) -> ActionContext:
    config = parse_config({"node": {"name": here}, "zookeeper": {"hosts": "127.0.0.1:1"}})
    return ActionContext(
        config=config,
        store=store,
        hypervisor=object(),  # type: ignore[arg-type]  # a RECORD never touches libvirt
        row=NodeRow(store, here),
        set_starting=lambda uuid, starting: None,
        listed_now=lambda: listed,
        note_crash_restart=lambda uuid: None,
        rbd=RbdLocks("rbd"),
    )


def test_an_arrived_live_migration_is_listed_at_once(cluster: ZkStore, tmp_path: Path) -> None:
    # Regression: the target recorded state=start but listed the VM only at its next
    # keepalive, so waiters (pvc --wait, a flush) saw it running nowhere meanwhile.
    vm_ops.define_vm(cluster, domain_xml("arr1", vm_uuid(1)), target="hv1")
    vm: VmRecord = find_vm(cluster, "arr1")
    vm = update_vm(cluster, vm, {"state": "migrate", "node": "hv2", "lastnode": "hv1"}, event="t")
    ctx = context(cluster, "hv2", (vm.uuid,))
    carry_out(ctx, vm, Action(Kind.RECORD, "live migration arrived", then_state="start"))
    assert find_vm(cluster, "arr1").state == "start"
    assert load_node(cluster, "hv2").runningdomains == (vm.uuid,)
