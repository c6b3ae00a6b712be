"""Reading the tree into frozen records, in a few round trips whatever the cluster's size.

Every reader builds its list of paths from :mod:`pvc_common.schema`, reads them all with
:meth:`ZkStore.read_many` and decodes them with the schema's codecs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

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
    schema_version: int


def check_schema(store: ZkStore, *, allow_older: bool = False) -> int:
    """Return the tree's schema version; refuse an uninitialised, newer or older tree.

    An older tree lacks keys this program writes, so it is refused until upgraded
    (``allow_older`` is for the status summary and the upgrade itself).
    """
    (read,) = store.read_many([schema.SCHEMA_VERSION_PATH])
    return _checked_version(read, allow_older=allow_older)


def _checked_version(read: Read | None, *, allow_older: bool = False) -> int:
    if read is None:
        raise PreconditionFailed("the cluster is not initialised: run 'pvc cluster init'")
    version = schema.decode_schema_version(read.data)
    if version > schema.SCHEMA_VERSION:
        raise PreconditionFailed(
            f"the cluster's schema is version {version}, newer than this program's "
            f"{schema.SCHEMA_VERSION}: upgrade pvc"
        )
    if version < schema.SCHEMA_VERSION and not allow_older:
        raise PreconditionFailed(
            f"the cluster's schema is version {version}, older than this program's "
            f"{schema.SCHEMA_VERSION}: run 'pvc cluster upgrade'"
        )
    return version


def _decode_fields(
    fields: Sequence[schema.Field[Any]], reads: Sequence[Read | None]
) -> dict[str, Any]:
    return {
        field.key: field.decode(read.data if read else None)
        for field, read in zip(fields, reads, strict=True)
    }


K = TypeVar("K")


def _read_entities(
    store: ZkStore,
    keys: Sequence[K],
    own_path: Callable[[K], str],
    key_path: Callable[[K, str], str],
    fields: Sequence[schema.Field[Any]],
) -> list[tuple[K, Read, dict[str, Any]]]:
    """Read the own znode and ``fields`` of every entity in one batch.

    Returns (key, own znode, decoded fields) for each entity that still exists: one may
    be removed between the listing and the read.
    """
    per_entity = 1 + len(fields)
    paths: list[str] = []
    for key in keys:
        paths.append(own_path(key))
        paths.extend(key_path(key, field.key) for field in fields)
    reads = store.read_many(paths)
    found = []
    for index, key in enumerate(keys):
        own, *values = reads[index * per_entity : (index + 1) * per_entity]
        if own is not None:
            found.append((key, own, _decode_fields(fields, values)))
    return found


def _text(read: Read) -> str:
    return read.data.decode("utf-8", "replace")


def load_vms(store: ZkStore, uuids: Sequence[str] | None = None) -> list[VmRecord]:
    """Read VMs (all of them, or the given UUIDs that exist), sorted by name then UUID."""
    if uuids is None:
        uuids = store.children(schema.DOMAINS_PATH)
    fields = [schema.DOMAIN_FIELD[key] for key in schema.DOMAIN_LIST_KEYS]
    records = [
        VmRecord(uuid=uuid, name=_text(own), version=own.version, **values)
        for uuid, own, values in _read_entities(
            store, uuids, schema.domain_path, schema.domain_key_path, fields
        )
    ]
    return sorted(records, key=lambda vm: (vm.name, vm.uuid))


def load_nodes(store: ZkStore) -> list[NodeRecord]:
    """Read every node, sorted by name."""
    names = store.children(schema.NODES_PATH)
    return [
        NodeRecord(name=name, node_type=_text(own) or "hypervisor", version=own.version, **values)
        for name, own, values in _read_entities(
            store, names, schema.node_path, schema.node_key_path, schema.NODE_FIELDS
        )
    ]


def load_node(store: ZkStore, name: str) -> NodeRecord:
    """Read one node; :class:`NotFound` when there is no such node."""
    node = next((node for node in load_nodes(store) if node.name == name), None)
    if node is None:
        raise NotFound(f"no node named {name!r}")
    return node


def load_networks(store: ZkStore) -> list[NetworkRecord]:
    """Read every network, sorted by VNI."""
    vnis = sorted(int(name) for name in store.children(schema.NETWORKS_PATH) if name.isdigit())
    return [
        NetworkRecord(vni=vni, description=_text(own), **values)
        for vni, own, values in _read_entities(
            store, vnis, schema.network_path, schema.network_key_path, schema.NETWORK_FIELDS
        )
    ]


def load_default_selector(store: ZkStore) -> str:
    """The cluster's default selector (used by VMs whose selector is ``none``)."""
    field = schema.CONFIG_FIELD["migration_target_selector"]
    (read,) = store.read_many([schema.config_key_path(field.key)])
    value: str = field.decode(read.data if read else None)
    return value if value in schema.DEFAULT_SELECTORS else schema.DEFAULT_SELECTOR


def load_snapshot(store: ZkStore, *, allow_older: bool = False) -> ClusterSnapshot:
    """Read the whole cluster after checking the schema version (see :func:`check_schema`)."""
    version = check_schema(store, allow_older=allow_older)
    return ClusterSnapshot(
        vms=tuple(load_vms(store)),
        nodes=tuple(load_nodes(store)),
        networks=tuple(load_networks(store)),
        default_selector=load_default_selector(store),
        schema_version=version,
    )


def load_vm_names(store: ZkStore) -> dict[str, str]:
    """UUID -> name of every VM, in one listing and one batched read."""
    uuids = store.children(schema.DOMAINS_PATH)
    reads = store.read_many([schema.domain_path(uuid) for uuid in uuids])
    return {uuid: _text(read) for uuid, read in zip(uuids, reads, strict=True) if read is not None}


def find_vm(store: ZkStore, name_or_uuid: str) -> VmRecord:
    """Find one VM by its exact UUID or exact name (never a prefix).

    A UUID is tried first; a name shared by several VMs (possible only in trees written
    by other tools) is refused as ambiguous.
    """
    wanted = name_or_uuid.strip()
    if not wanted:
        raise NotFound("no VM named ''")
    check_schema(store)
    if schema.is_uuid(wanted):
        # Read that one VM directly: no need to list every name (the API looks VMs up by
        # UUID after each change, and scripts often do).
        found = load_vms(store, [wanted.lower()])
        if found:
            return found[0]
    names = load_vm_names(store)
    matches = [uuid for uuid, name in names.items() if name == wanted]
    if len(matches) > 1:
        raise PreconditionFailed(
            f"several VMs are named {wanted!r} ({', '.join(matches)}): give a UUID"
        )
    vms = load_vms(store, matches)
    if not vms:
        raise NotFound(f"no VM named {wanted!r}")
    return vms[0]
