"""Node operations: registration, listing, and the flush/ready intent the daemons carry out."""

from __future__ import annotations

import dataclasses
from typing import Any

from . import schema
from .errors import Conflict, InvalidInput, PreconditionFailed
from .models import NodeRecord
from .mutations import EVENTS, update_node
from .snapshot import check_schema, load_node, load_nodes
from .store import Create, Op, SetData, ZkStore

#: What an operator may ask of a node's VM hosting, and what it writes.
DOMAIN_STATE_ACTIONS = {"flush": "flush", "ready": "unflush"}
#: Attempts of a node change that keeps meeting concurrent writers.
CONFLICT_RETRIES = 5


def register_node(
    store: ZkStore, name: str, *, node_type: str = "hypervisor", **figures: Any
) -> NodeRecord:
    """Create a node's keys (or reset its type and figures) in one transaction.

    The node daemon calls this at start; ``figures`` are :data:`schema.NODE_FIELDS` values
    (e.g. ``memtotal=8192``). Keys not given keep their value, or get their default on a
    new node.
    """
    schema.validate_node_name(name)
    if node_type not in schema.NODE_TYPES:
        raise InvalidInput(f"invalid node type {node_type!r}: use {' or '.join(schema.NODE_TYPES)}")
    unknown = sorted(set(figures) - set(schema.NODE_FIELD))
    if unknown:
        raise InvalidInput(f"unknown node key(s): {', '.join(unknown)}")
    check_schema(store)
    own = schema.node_path(name)
    ops: list[Op] = []
    if store.exists(own):
        ops.append(SetData(own, node_type.encode()))
        existing = set(store.children(own))
    else:
        ops.append(Create(own, node_type.encode()))
        existing = set()
    for field in schema.NODE_FIELDS:
        path = schema.node_key_path(name, field.key)
        if field.key in figures:
            data = field.encode(figures[field.key])
            ops.append(SetData(path, data) if field.key in existing else Create(path, data))
        elif field.key not in existing:
            ops.append(Create(path, field.encode(field.default)))
    store.commit(ops)
    EVENTS.info("node %r: registered as %s", name, node_type)
    return load_node(store, name)


def list_nodes(store: ZkStore) -> list[NodeRecord]:
    """Every node, sorted by name."""
    check_schema(store)
    return load_nodes(store)


def live_nodes(store: ZkStore) -> frozenset[str]:
    """Names of the nodes whose daemon holds a ZooKeeper session right now."""
    if not store.exists(schema.LIVENESS_PATH):
        return frozenset()
    return frozenset(store.children(schema.LIVENESS_PATH))


def node_as_dict(record: NodeRecord, live: frozenset[str]) -> dict[str, Any]:
    """A node as plain data (CLI JSON, API), without its BMC password; ``live`` names the
    nodes whose daemon holds a ZooKeeper session."""
    data = dataclasses.asdict(record)
    data["session_alive"] = record.name in live
    data.pop("ipmipassword", None)
    data.pop("version", None)
    data["staticdata"] = list(record.staticdata)
    data["runningdomains"] = list(record.runningdomains)
    return data


def node_info(store: ZkStore, name: str) -> NodeRecord:
    """One node; :class:`NotFound` when unknown."""
    check_schema(store)
    return load_node(store, name)


def set_node_domain_state(store: ZkStore, name: str, action: str) -> NodeRecord:
    """Ask the node's daemon to ``flush`` (drain) or ``ready`` (refill) the node.

    Only the intent is written: ``flush`` sets ``domainstate=flush``; ``ready`` sets
    ``unflush``. The daemon moves the VMs and ends in ``flushed`` or ``ready``.
    """
    if action not in DOMAIN_STATE_ACTIONS:
        raise InvalidInput(f"invalid action {action!r}: use flush or ready")
    # The node's daemon rewrites the node's row at every keepalive, so a conflict here is
    # usually that: re-read and decide again on the fresh record.
    for attempt in range(CONFLICT_RETRIES):
        node = node_info(store, name)
        wanted = DOMAIN_STATE_ACTIONS[action]
        already = {"flush": ("flush", "flushed"), "ready": ("ready", "unflush")}[action]
        if node.domainstate in already:
            raise PreconditionFailed(f"node {name!r} is already {node.domainstate}")
        if node.domainstate == "fence-flush":
            raise PreconditionFailed(f"node {name!r} is being recovered after a fence; wait for it")
        try:
            return update_node(
                store, node, {"domainstate": wanted}, event=f"{action} (was {node.domainstate})"
            )
        except Conflict:
            if attempt == CONFLICT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")
