"""Two writers racing on the same VM: one clean conflict, never a lost update."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pvc_common import schema
from pvc_common.errors import Conflict
from pvc_common.models import VmRecord
from pvc_common.mutations import create_vm, update_vm
from pvc_common.snapshot import find_vm
from pvc_common.store import ZkStore
from pvc_common.vm_ops import define_vm, migrate_vm, set_vm_meta
from pvc_common.vm_rules import migration_change
from tests.integration.conftest import domain_xml, vm_uuid


@pytest.fixture
def web1(cluster: ZkStore) -> str:
    define_vm(cluster, domain_xml("web1", vm_uuid(1)), target="hv1")
    return "web1"


def test_a_stale_writer_gets_a_conflict_and_the_first_write_stands(
    cluster: ZkStore, zk_hosts: str, web1: str
) -> None:
    with ZkStore(zk_hosts) as other:
        mine = find_vm(cluster, web1)
        theirs = find_vm(other, web1)
        # They change different keys: the row version still makes the second one conflict,
        # because its decision was taken on a state that no longer exists.
        update_vm(other, theirs, migration_change(theirs, "hv2").values, event="migrate")
        with pytest.raises(Conflict, match="changed by another writer"):
            update_vm(cluster, mine, {"node_selector": "load"}, event="meta")
    after = find_vm(cluster, web1)
    assert (after.node, after.lastnode, after.node_selector) == ("hv2", "hv1", "none")
    assert after.version == mine.version + 1


def test_racing_migrations_never_both_apply(cluster: ZkStore, zk_hosts: str, web1: str) -> None:
    before = find_vm(cluster, web1)
    stores = [ZkStore(zk_hosts).connect() for _ in range(2)]
    stale = [find_vm(store, web1) for store in stores]
    update_vm(stores[0], stale[0], migration_change(stale[0], "hv2").values, event="migrate")
    with pytest.raises(Conflict):
        update_vm(stores[1], stale[1], migration_change(stale[1], "hv3").values, event="migrate")
    for store in stores:
        store.close()
    after = find_vm(cluster, web1)
    # Had both applied, lastnode would have been overwritten by a second decision.
    assert (after.node, after.lastnode, after.version) == ("hv2", "hv1", before.version + 1)


def test_many_concurrent_writers_every_success_is_counted(
    cluster: ZkStore, zk_hosts: str, web1: str
) -> None:
    start = find_vm(cluster, web1).version
    writers = 8
    barrier = threading.Barrier(writers)
    successes: list[str] = []
    conflicts: list[str] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        with ZkStore(zk_hosts) as store:
            selector = schema.DEFAULT_SELECTORS[index % len(schema.DEFAULT_SELECTORS)]
            barrier.wait()
            for _ in range(5):
                try:
                    set_vm_meta(store, web1, selector=selector)
                except Conflict:
                    with lock:
                        conflicts.append(selector)
                else:
                    with lock:
                        successes.append(selector)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(successes) + len(conflicts) == writers * 5
    final = find_vm(cluster, web1)
    # Each success moved the row version by exactly one: no two writers committed on the
    # same read, so no update was silently lost.
    assert final.version == start + len(successes)
    assert final.node_selector in successes


def test_conflict_is_one_line_from_the_cli_operation(cluster: ZkStore, web1: str) -> None:
    stale = find_vm(cluster, web1)
    migrate_vm(cluster, web1, target="hv2")
    with pytest.raises(Conflict) as caught:
        update_vm(cluster, stale, {"node_autostart": True}, event="meta")
    assert "\n" not in str(caught.value)
    assert find_vm(cluster, web1).node_autostart is False


def test_racing_defines_of_one_name_give_one_conflict_not_a_duplicate(cluster: ZkStore) -> None:
    # Both writers checked that 'db1' was free at the same listing version...
    listing_version = cluster.get(schema.DOMAINS_PATH).version
    first = VmRecord(uuid=vm_uuid(7), name="db1", xml=domain_xml("db1", vm_uuid(7)), node="hv1")
    second = VmRecord(uuid=vm_uuid(8), name="db1", xml=domain_xml("db1", vm_uuid(8)), node="hv2")
    create_vm(cluster, first, listing_version=listing_version, event="define")
    # ...so the second, under another UUID (another path), must still be refused.
    with pytest.raises(Conflict, match="changed by another writer"):
        create_vm(cluster, second, listing_version=listing_version, event="define")
    assert find_vm(cluster, "db1").uuid == vm_uuid(7)
    assert cluster.children(schema.DOMAINS_PATH) == [vm_uuid(7)]


def test_a_metadata_change_is_applied_afresh_after_a_conflict(
    cluster: ZkStore, zk_hosts: str, web1: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon's write between the read and the write does not fail `vm meta`: it is
    read again, checked again, and both changes stand."""
    from pvc_common import vm_ops

    attempts: list[int] = []
    real_update = vm_ops.update_vm

    def update_after_another_writer(store: ZkStore, vm: VmRecord, *args: Any, **kw: Any) -> Any:
        attempts.append(vm.version)
        if len(attempts) == 1:
            with ZkStore(zk_hosts) as other:
                theirs = find_vm(other, web1)
                update_vm(other, theirs, {"failedreason": "from a daemon"}, event="daemon")
        return real_update(store, vm, *args, **kw)

    monkeypatch.setattr(vm_ops, "update_vm", update_after_another_writer)
    set_vm_meta(cluster, web1, autostart=True)
    after = find_vm(cluster, web1)
    assert (after.node_autostart, after.failedreason) == (True, "from a daemon")
    assert attempts == [attempts[0], attempts[0] + 1]  # the retry read the daemon's write


def test_a_metadata_change_that_keeps_conflicting_is_refused(
    cluster: ZkStore, web1: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pvc_common import vm_ops

    calls: list[str] = []

    def always_conflicting(store: ZkStore, vm: VmRecord, *args: Any, **kw: Any) -> Any:
        calls.append(vm.uuid)
        raise Conflict("changed by another writer")

    monkeypatch.setattr(vm_ops, "update_vm", always_conflicting)
    with pytest.raises(Conflict):
        set_vm_meta(cluster, web1, autostart=True)
    assert len(calls) == vm_ops.META_CONFLICT_RETRIES
