"""Cluster-wide operations: creating the tree and summarising the cluster."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import schema
from .errors import InvalidInput, PreconditionFailed
from .mutations import EVENTS
from .snapshot import load_snapshot
from .store import Create, Delete, Op, SetData, ZkStore

#: Deletes per transaction when wiping: keeps each request far below ZooKeeper's 1 MiB.
_WIPE_BATCH = 2000


def cluster_exists(store: ZkStore) -> bool:
    """Whether the tree holds a cluster (a schema version, or any node or VM)."""
    if store.exists(schema.SCHEMA_VERSION_PATH):
        return True
    for root in (schema.DOMAINS_PATH, schema.NODES_PATH, schema.NETWORKS_PATH):
        if store.exists(root) and store.children(root):
            return True
    return False


def init_cluster(store: ZkStore, *, wipe: bool = False) -> None:
    """Create the tree at the current schema version.

    An existing cluster is refused unless ``wipe`` is given; then it is deleted first.
    The schema version is deleted first and written last, so an interrupted wipe never
    leaves a tree that looks initialised. The connect string's chroot is created if needed.
    """
    store.ensure_chroot()
    if cluster_exists(store):
        if not wipe:
            raise PreconditionFailed(
                "a cluster already exists here: give --yes to wipe it and start again"
            )
        _wipe(store)
    ops: list[Op] = []
    for root in schema.ROOT_PATHS:
        if not store.exists(root):
            ops.append(Create(root))
    if not store.exists(schema.PRIMARY_NODE_PATH):
        ops.append(Create(schema.PRIMARY_NODE_PATH, b""))
    for config in schema.CONFIG_FIELDS:
        ops.append(Create(schema.config_key_path(config.key), config.encode(config.default)))
    ops.append(Create(schema.SCHEMA_VERSION_PATH, schema.encode_schema_version()))
    store.commit(ops)
    EVENTS.info("cluster: initialised at schema version %d", schema.SCHEMA_VERSION)


def set_default_selector(store: ZkStore, selector: str) -> None:
    """Set the cluster's default selector (used by VMs whose selector is ``none``)."""
    if selector not in schema.DEFAULT_SELECTORS:
        raise InvalidInput(
            f"invalid default selector {selector!r}: use one of "
            f"{', '.join(schema.DEFAULT_SELECTORS)}"
        )
    path = schema.config_key_path("migration_target_selector")
    field = schema.CONFIG_FIELD["migration_target_selector"]
    if store.exists(path) and field.decode(store.get(path).data) == selector:
        return
    store.commit(
        [
            SetData(path, field.encode(selector))
            if store.exists(path)
            else Create(path, field.encode(selector))
        ]
    )
    EVENTS.info("cluster: default selector set to %s", selector)


def _wipe(store: ZkStore) -> None:
    if store.exists(schema.SCHEMA_VERSION_PATH):
        store.commit([Delete(schema.SCHEMA_VERSION_PATH)])
    doomed: list[str] = []
    for root in schema.ROOT_PATHS:
        if store.exists(root):
            doomed.extend(store.descendants(root))
    doomed.reverse()  # children before parents
    for start in range(0, len(doomed), _WIPE_BATCH):
        store.commit([Delete(path) for path in doomed[start : start + _WIPE_BATCH]])
    if store.exists(schema.PRIMARY_NODE_PATH):
        store.commit([SetData(schema.PRIMARY_NODE_PATH, b"")])
    EVENTS.info("cluster: wiped %d keys", len(doomed))


@dataclass(frozen=True)
class ClusterStatus:
    """A summary of the cluster for ``pvc cluster status``."""

    schema_version: int
    primary_node: str
    default_selector: str
    nodes_by_daemon_state: dict[str, int] = field(default_factory=dict)
    nodes_by_domain_state: dict[str, int] = field(default_factory=dict)
    vms_by_state: dict[str, int] = field(default_factory=dict)
    node_count: int = 0
    vm_count: int = 0
    network_count: int = 0
    failed_vms: tuple[str, ...] = ()

    @property
    def schema_current(self) -> bool:
        """Whether the tree is at this program's layout version (else: pvc cluster upgrade)."""
        return self.schema_version == schema.SCHEMA_VERSION

    @property
    def healthy(self) -> bool:
        """No failed VM, every node running and ready, and the schema current."""
        return (
            self.schema_current
            and not self.failed_vms
            and self.nodes_by_daemon_state.get("run", 0) == self.node_count
            and self.nodes_by_domain_state.get("ready", 0) == self.node_count
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON/YAML output."""
        return {
            "healthy": self.healthy,
            "schema_version": self.schema_version,
            "primary_node": self.primary_node,
            "default_selector": self.default_selector,
            "nodes": {
                "total": self.node_count,
                "daemon_state": self.nodes_by_daemon_state,
                "domain_state": self.nodes_by_domain_state,
            },
            "vms": {
                "total": self.vm_count,
                "state": self.vms_by_state,
                "failed": list(self.failed_vms),
            },
            "networks": self.network_count,
        }


def cluster_status(store: ZkStore) -> ClusterStatus:
    """Summarise nodes, VMs and networks (also of a tree that still needs an upgrade)."""
    snapshot = load_snapshot(store, allow_older=True)
    (primary,) = store.read_many([schema.PRIMARY_NODE_PATH])
    return ClusterStatus(
        schema_version=snapshot.schema_version,
        primary_node=primary.data.decode() if primary else "",
        default_selector=snapshot.default_selector,
        nodes_by_daemon_state=dict(sorted(Counter(n.daemonstate for n in snapshot.nodes).items())),
        nodes_by_domain_state=dict(sorted(Counter(n.domainstate for n in snapshot.nodes).items())),
        vms_by_state=dict(sorted(Counter(vm.state for vm in snapshot.vms).items())),
        node_count=len(snapshot.nodes),
        vm_count=len(snapshot.vms),
        network_count=len(snapshot.networks),
        failed_vms=tuple(vm.name for vm in snapshot.vms if vm.state == "fail"),
    )
