"""The library on a 3-member ZooKeeper ensemble while members crash."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pvc_common import schema
from pvc_common.cluster_ops import init_cluster
from pvc_common.errors import NotFound, StoreUnavailable
from pvc_common.models import VmRecord
from pvc_common.mutations import create_vm
from pvc_common.node_ops import register_node
from pvc_common.snapshot import find_vm
from pvc_common.store import ZkStore
from pvc_common.vm_ops import define_vm, list_vms, set_vm_meta
from tests.harness.zookeeper import ZooKeeperEnsemble, four_letter_word, wait_until
from tests.integration.conftest import NODE_FIGURES, domain_xml, vm_uuid

pytestmark = pytest.mark.ensemble

NAMES = ("web1", "web2", "web3")


def populate(store: ZkStore) -> None:
    init_cluster(store)
    for name, figures in NODE_FIGURES.items():
        register_node(store, name, daemonstate="run", domainstate="ready", **figures)
    for number, name in enumerate(NAMES, start=1):
        define_vm(store, domain_xml(name, vm_uuid(number)))
    set_vm_meta(store, "web2", limit="hv1,hv2", selector="vcpus")


def connected_member(ensemble: ZooKeeperEnsemble) -> int | None:
    """Index of the member holding a client session; this test process has only one."""
    holders = []
    for index, member in enumerate(ensemble):
        try:
            connections = four_letter_word(member.client_port, "cons")
        except OSError:
            continue
        if "sid=0x" in connections:
            holders.append(index)
    return holders[0] if len(holders) == 1 else None


def names(store: ZkStore) -> list[str]:
    return [view.record.name for view in list_vms(store)]


def unless_unavailable(call: Callable[[], Any]) -> Callable[[], Any]:
    """A wait_until predicate: the call's result, or None while the store is unavailable."""

    def attempt() -> Any:
        try:
            return call()
        except StoreUnavailable:
            return None

    return attempt


def vm_paths(store: ZkStore, uuid: str) -> list[str]:
    """Every znode of one VM (its own and its keys) that exists."""
    own = schema.domain_path(uuid)
    if not store.exists(own):
        return []
    return [own, *store.descendants(own)]


def test_reads_and_writes_continue_after_the_connected_member_crashes(
    zookeeper_ensemble: ZooKeeperEnsemble,
) -> None:
    with ZkStore(zookeeper_ensemble.hosts, timeout=10) as store:
        populate(store)
        assert names(store) == list(NAMES)

        victim = wait_until(
            lambda: connected_member(zookeeper_ensemble), 5, "no member reports our session"
        )
        assert zookeeper_ensemble.member(victim).kill() == -9
        survivors = [i for i in range(len(zookeeper_ensemble)) if i != victim]

        # Reads: the same store object carries on through another member.
        listed = wait_until(
            unless_unavailable(lambda: names(store)), 30, "list_vms never worked again"
        )
        assert listed == list(NAMES)
        web2 = find_vm(store, "web2")
        assert (web2.node_limit, web2.node_selector) == (("hv1", "hv2"), "vcpus")
        assert connected_member(zookeeper_ensemble) in survivors

        # Writes: a version-checked update and a new VM, both read back.
        changed = set_vm_meta(store, "web1", selector="load", autostart=True)
        assert changed.version == 1  # defined at 0, changed once
        defined = define_vm(store, domain_xml("web4", vm_uuid(4)), target="hv3")
        assert defined.node == "hv3"

        web1 = find_vm(store, "web1")
        assert (web1.node_selector, web1.node_autostart, web1.version) == ("load", True, 1)
        assert names(store) == ["web1", "web2", "web3", "web4"]
        assert find_vm(store, "web4").node == "hv3"

    # The survivors hold the new data: read it through each of them alone.
    for index in survivors:
        member = zookeeper_ensemble.member(index)
        with ZkStore(member.hosts, timeout=10) as alone:
            assert wait_until(
                lambda alone=alone: names(alone) == ["web1", "web2", "web3", "web4"] or None,
                10,
                f"member {index} does not have the writes",
            )
            assert find_vm(alone, "web1").node_selector == "load"


def test_without_quorum_writes_fail_and_leave_nothing_behind(
    zookeeper_ensemble: ZooKeeperEnsemble,
) -> None:
    timeout = 1.0
    with ZkStore(zookeeper_ensemble.hosts, timeout=timeout) as store:
        populate(store)
        before = {name: find_vm(store, name) for name in NAMES}
        web1_paths = vm_paths(store, vm_uuid(1))

        killed = [i for i in range(len(zookeeper_ensemble)) if i != 0][:2]
        for index in killed:
            zookeeper_ensemble.member(index).kill()
        wait_until(
            lambda: zookeeper_ensemble.member(0).mode(timeout=0.5) is None,
            10,
            "the last member still serves without a quorum",
        )

        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            define_vm(store, domain_xml("web9", vm_uuid(9)))
        elapsed = time.monotonic() - started
        assert elapsed < timeout + 8, f"define_vm gave up only after {elapsed:.1f} s"
        with pytest.raises(StoreUnavailable):
            list_vms(store)

        # Quorum returns: one killed member comes back.
        revived = zookeeper_ensemble.member(killed[0])
        revived.start()
        revived.wait_serving(timeout=30)
        zookeeper_ensemble.member(0).wait_serving(timeout=30)

        listed = wait_until(
            unless_unavailable(lambda: names(store)), 30, "store did not recover with quorum"
        )
        assert listed == list(NAMES)
        assert vm_paths(store, vm_uuid(9)) == []
        with pytest.raises(NotFound):
            find_vm(store, "web9")
        assert {name: find_vm(store, name) for name in NAMES} == before
        assert vm_paths(store, vm_uuid(1)) == web1_paths
        assert len(store.children(schema.DOMAINS_PATH)) == len(NAMES)


def test_without_quorum_a_commit_gives_up_after_the_timeout(
    zookeeper_ensemble: ZooKeeperEnsemble,
) -> None:
    timeout = 1.0
    bound = timeout + 3.0
    with ZkStore(zookeeper_ensemble.hosts, timeout=timeout) as store:
        populate(store)
        listing_version = store.get(schema.DOMAINS_PATH).version
        for index in (1, 2):
            zookeeper_ensemble.member(index).kill()
        wait_until(
            lambda: zookeeper_ensemble.member(0).mode(timeout=0.5) is None,
            10,
            "the last member still serves without a quorum",
        )

        outcome: dict[str, Any] = {}

        def write() -> None:
            record = VmRecord(uuid=vm_uuid(9), name="web9", xml="<domain/>", node="hv1")
            try:
                create_vm(
                    store,
                    record,
                    listing_version=listing_version,
                    event="define while without quorum",
                )
                outcome["result"] = "written"
            except BaseException as error:
                outcome["result"] = error
            outcome["elapsed"] = time.monotonic() - started

        started = time.monotonic()
        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        thread.join(bound)
        blocked = thread.is_alive()

        # Bring quorum back whatever happened, so a blocked call ends before teardown.
        zookeeper_ensemble.member(1).start()
        zookeeper_ensemble.member(1).wait_serving(timeout=30)
        thread.join(30)
        assert not thread.is_alive()
        wait_until(unless_unavailable(lambda: names(store)), 30, "no recovery with quorum")
        written = vm_paths(store, vm_uuid(9))

    assert not blocked, f"commit still blocked {bound:.0f} s after quorum was lost"
    assert isinstance(outcome["result"], StoreUnavailable), outcome
    # Whatever the outcome, a VM is never half-written.
    assert written == [] or len(written) == 1 + len(schema.DOMAIN_FIELDS)
