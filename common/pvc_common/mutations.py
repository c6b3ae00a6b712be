"""The one mutation point of each entity: version-checked writes and the event line.

Every change of a VM or a node goes through :func:`update_vm` / :func:`update_node`
(or the create/delete functions here). Each one rewrites the entity's own znode with the
version it was read at, so a concurrent writer gets a :class:`Conflict` instead of a
lost update, and logs one fixed-format event line on the ``pvc.events`` logger, e.g.
``vm 'web1': migrate hv1 -> hv2``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from . import schema
from .history import HistoryEntry, appended, current_actor
from .models import NodeRecord, VmRecord
from .store import Check, Create, Delete, Op, SetData, ZkStore

EVENTS = logging.getLogger("pvc.events")


def _vm_key_ops(uuid: str, values: Mapping[str, Any]) -> list[Op]:
    return [
        SetData(schema.domain_key_path(uuid, key), schema.DOMAIN_FIELD[key].encode(value))
        for key, value in values.items()
    ]


def _history_op(store: ZkStore, uuid: str, what: str, why: str, *, new: bool = False) -> SetData:
    """The write of the VM's history with this change added (read first unless ``new``).

    Safe to read outside the transaction: the history is only written together with the
    VM's own znode at the version it was read, so a writer in between makes this commit
    a conflict rather than a lost entry.
    """
    path = schema.domain_key_path(uuid, "history")
    field = schema.DOMAIN_FIELD["history"]
    stored = {} if new else field.decode(_data(store.read_many([path])[0]))
    entry = HistoryEntry(at=time.time(), by=current_actor(), what=what, why=why)
    return SetData(path, field.encode(appended(stored, entry)))


def _data(read: Any) -> bytes | None:
    return read.data if read is not None else None


def _line(event: str, why: str) -> str:
    return f"{event} ({why})" if why else event


def create_vm(store: ZkStore, vm: VmRecord, *, listing_version: int, event: str) -> VmRecord:
    """Create every key of a new VM in one transaction; :class:`Conflict` if it exists.

    ``listing_version`` is the version of ``/domains`` at which the caller checked that the
    name is free; the transaction rewrites ``/domains`` at that version, so a concurrent
    define of the same name gets a conflict instead of a duplicate.
    """
    values = _vm_values(vm)
    ops: list[Op] = [
        SetData(schema.DOMAINS_PATH, b"", listing_version),
        Create(schema.domain_path(vm.uuid), vm.name.encode()),
    ]
    history = _history_op(store, vm.uuid, event, "", new=True)
    ops.extend(
        Create(
            schema.domain_key_path(vm.uuid, field.key),
            history.data if field.key == "history" else field.encode(values[field.key]),
        )
        for field in schema.DOMAIN_FIELDS
    )
    store.commit(ops)
    EVENTS.info("vm %r: %s", vm.name, event)
    return replace(vm, version=0)


def update_vm(
    store: ZkStore,
    vm: VmRecord,
    changes: Mapping[str, Any],
    *,
    event: str,
    why: str = "",
    name: str | None = None,
) -> VmRecord:
    """Write ``changes`` (field key -> value) to ``vm`` if nobody changed it since it was read.

    ``event`` says what changed and ``why`` the reason, if any: both go to the event log and
    to the VM's history. ``name`` renames the VM (its own znode holds the name). Returns
    the record as written.
    """
    new_name = vm.name if name is None else name
    ops: list[Op] = [SetData(schema.domain_path(vm.uuid), new_name.encode(), vm.version)]
    ops.extend(_vm_key_ops(vm.uuid, changes))
    ops.append(_history_op(store, vm.uuid, event, why))
    store.commit(ops)
    EVENTS.info("vm %r: %s", new_name, _line(event, why))
    return replace(vm, name=new_name, version=vm.version + 1, **changes)


def delete_vm(store: ZkStore, vm: VmRecord, *, event: str) -> None:
    """Remove a VM and every key below it in one transaction, if unchanged since read."""
    own = schema.domain_path(vm.uuid)
    below = store.descendants(own)
    # Children must go before their parents inside the transaction.
    ops: list[Op] = [Delete(path) for path in reversed(below)]
    ops.append(Delete(own, vm.version))
    store.commit(ops)
    EVENTS.info("vm %r: %s", vm.name, event)


def update_node(
    store: ZkStore,
    node: NodeRecord,
    changes: Mapping[str, Any],
    *,
    event: str,
    guard: VmRecord | None = None,
) -> NodeRecord:
    """Write ``changes`` to ``node`` if nobody changed the node's row since it was read.

    With ``guard``, the write also requires that VM to be unchanged since it was read: a
    daemon lists a VM in its ``runningdomains`` before starting it only if the VM is still
    assigned to it as it read it. ``event=''`` writes without an event line (keepalives).
    """
    ops = _node_ops(node, changes)
    if guard is not None:
        ops.append(Check(schema.domain_path(guard.uuid), guard.version))
    store.commit(ops)
    if event:
        EVENTS.info("node %r: %s", node.name, event)
    return replace(node, version=node.version + 1, **changes)


def update_vm_and_node(
    store: ZkStore,
    vm: VmRecord,
    vm_changes: Mapping[str, Any],
    node: NodeRecord,
    node_changes: Mapping[str, Any],
    *,
    event: str,
    why: str = "",
) -> tuple[VmRecord, NodeRecord]:
    """Change a VM and a node in one transaction, both version-checked.

    A daemon hands a VM over this way: its new state and the node's ``runningdomains``
    without it become visible together, so no other node can see one without the other.
    """
    ops: list[Op] = [SetData(schema.domain_path(vm.uuid), vm.name.encode(), vm.version)]
    ops.extend(_vm_key_ops(vm.uuid, vm_changes))
    ops.append(_history_op(store, vm.uuid, event, why))
    ops.extend(_node_ops(node, node_changes))
    store.commit(ops)
    EVENTS.info("vm %r: %s", vm.name, _line(event, why))
    return (
        replace(vm, version=vm.version + 1, **vm_changes),
        replace(node, version=node.version + 1, **node_changes),
    )


def _node_ops(node: NodeRecord, changes: Mapping[str, Any]) -> list[Op]:
    ops: list[Op] = [SetData(schema.node_path(node.name), node.node_type.encode(), node.version)]
    ops.extend(
        SetData(schema.node_key_path(node.name, key), schema.NODE_FIELD[key].encode(value))
        for key, value in changes.items()
    )
    return ops


def _vm_values(vm: VmRecord) -> dict[str, Any]:
    values = {field.key: getattr(vm, field.key, field.default) for field in schema.DOMAIN_FIELDS}
    return values
