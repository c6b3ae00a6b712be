"""Reading the tree into frozen records, in a few round trips whatever the cluster's size.

Every reader builds its list of paths from :mod:`pvc_common.schema`, reads them all with
:meth:`ZkStore.read_many` and decodes them with the schema's codecs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import schema
from .errors import NotFound, PreconditionFailed
from .models import NetworkRecord, NodeRecord, VmRecord
from .store import Read, ZkStore


@dataclass(frozen=True)
class ClusterSnapshot:
    """One consistent-enough view of the cluster for a decision: VMs, nodes, networks, config."""

    vms: tuple[VmRecord, ...]
    nodes: tuple[NodeRecord, ...]
    networks: tuple[NetworkRecord, ...]
    default_selector: str

    def node(self, name: str) -> NodeRecord | None:
        """The node called ``name``, or None."""
        return next((node for node in self.nodes if node.name == name), None)


def check_schema(store: ZkStore) -> int:
    """Return the tree's schema version; refuse an uninitialised or newer tree."""
    (read,) = store.read_many([schema.SCHEMA_VERSION_PATH])
    return _checked_version(read)


def _checked_version(read: Read | None) -> int:
    if read is None:
        raise PreconditionFailed("the cluster is not initialised: run 'pvc cluster init'")
    version = schema.decode_schema_version(read.data)
    if version > schema.SCHEMA_VERSION:
        raise PreconditionFailed(
            f"the cluster's schema is version {version}, newer than this program's "
            f"{schema.SCHEMA_VERSION}: upgrade pvc"
        )
    return version


def _decode_fields(
    fields: Sequence[schema.Field[Any]], reads: Sequence[Read | None]
) -> dict[str, Any]:
    return {
        field.key: field.decode(read.data if read else None)
        for field, read in zip(fields, reads, strict=True)
    }


def load_vms(store: ZkStore, uuids: Sequence[str] | None = None) -> list[VmRecord]:
    """Read VMs (all of them, or the given UUIDs that exist), sorted by name then UUID."""
    if uuids is None:
        uuids = store.children(schema.DOMAINS_PATH)
    fields = [schema.DOMAIN_FIELD[key] for key in schema.DOMAIN_LIST_KEYS]
    per_vm = 1 + len(fields)
    paths: list[str] = []
    for uuid in uuids:
        paths.append(schema.domain_path(uuid))
        paths.extend(schema.domain_key_path(uuid, field.key) for field in fields)
    reads = store.read_many(paths)
    records = []
    for index, uuid in enumerate(uuids):
        own, *keys = reads[index * per_vm : (index + 1) * per_vm]
        if own is None:  # removed between the listing and the read
            continue
        values = _decode_fields(fields, keys)
        records.append(
            VmRecord(
                uuid=uuid, name=own.data.decode("utf-8", "replace"), version=own.version, **values
            )
        )
    return sorted(records, key=lambda vm: (vm.name, vm.uuid))


def load_nodes(store: ZkStore) -> list[NodeRecord]:
    """Read every node, sorted by name."""
    names = store.children(schema.NODES_PATH)
    fields = schema.NODE_FIELDS
    per_node = 1 + len(fields)
    paths: list[str] = []
    for name in names:
        paths.append(schema.node_path(name))
        paths.extend(schema.node_key_path(name, field.key) for field in fields)
    reads = store.read_many(paths)
    records = []
    for index, name in enumerate(names):
        own, *keys = reads[index * per_node : (index + 1) * per_node]
        if own is None:
            continue
        node_type = own.data.decode("utf-8", "replace") or "hypervisor"
        records.append(
            NodeRecord(
                name=name, node_type=node_type, version=own.version, **_decode_fields(fields, keys)
            )
        )
    return records


def load_node(store: ZkStore, name: str) -> NodeRecord:
    """Read one node; :class:`NotFound` when there is no such node."""
    node = next((node for node in load_nodes(store) if node.name == name), None)
    if node is None:
        raise NotFound(f"no node named {name!r}")
    return node


def load_networks(store: ZkStore) -> list[NetworkRecord]:
    """Read every network, sorted by VNI."""
    vnis = sorted(int(name) for name in store.children(schema.NETWORKS_PATH) if name.isdigit())
    fields = schema.NETWORK_FIELDS
    per_network = 1 + len(fields)
    paths: list[str] = []
    for vni in vnis:
        paths.append(schema.network_path(vni))
        paths.extend(schema.network_key_path(vni, field.key) for field in fields)
    reads = store.read_many(paths)
    records = []
    for index, vni in enumerate(vnis):
        own, *keys = reads[index * per_network : (index + 1) * per_network]
        if own is None:
            continue
        description = own.data.decode("utf-8", "replace")
        records.append(
            NetworkRecord(vni=vni, description=description, **_decode_fields(fields, keys))
        )
    return records


def load_default_selector(store: ZkStore) -> str:
    """The cluster's default selector (used by VMs whose selector is ``none``)."""
    field = schema.CONFIG_FIELD["migration_target_selector"]
    (read,) = store.read_many([schema.config_key_path(field.key)])
    value: str = field.decode(read.data if read else None)
    return value if value in schema.DEFAULT_SELECTORS else schema.DEFAULT_SELECTOR


def load_snapshot(store: ZkStore, *, with_vms: bool = True) -> ClusterSnapshot:
    """Read the whole cluster (VMs optional) after checking the schema version."""
    check_schema(store)
    return ClusterSnapshot(
        vms=tuple(load_vms(store)) if with_vms else (),
        nodes=tuple(load_nodes(store)),
        networks=tuple(load_networks(store)),
        default_selector=load_default_selector(store),
    )


def load_vm_names(store: ZkStore) -> dict[str, str]:
    """UUID -> name of every VM, in one listing and one batched read."""
    uuids = store.children(schema.DOMAINS_PATH)
    reads = store.read_many([schema.domain_path(uuid) for uuid in uuids])
    return {
        uuid: read.data.decode("utf-8", "replace")
        for uuid, read in zip(uuids, reads, strict=True)
        if read is not None
    }


def find_vm(store: ZkStore, name_or_uuid: str) -> VmRecord:
    """Find one VM by its exact UUID or exact name (never a prefix).

    A UUID is tried first; a name shared by several VMs (possible only in trees written
    by other tools) is refused as ambiguous.
    """
    wanted = name_or_uuid.strip()
    if not wanted:
        raise NotFound("no VM named ''")
    check_schema(store)
    names = load_vm_names(store)
    if schema.is_uuid(wanted) and wanted.lower() in names:
        matches = [wanted.lower()]
    else:
        matches = [uuid for uuid, name in names.items() if name == wanted]
    if len(matches) > 1:
        raise PreconditionFailed(
            f"several VMs are named {wanted!r} ({', '.join(matches)}): give a UUID"
        )
    vms = load_vms(store, matches)
    if not vms:
        raise NotFound(f"no VM named {wanted!r}")
    return vms[0]
