"""Upgrading an existing tree to this program's schema version, one step at a time.

Each step takes the tree from version N to N + 1 and must be idempotent: it creates only
what is missing, and the new version is written after everything else, so an interrupted
upgrade is simply run again. Writers of older programs keep working on the keys they know.
"""

from __future__ import annotations

from collections.abc import Callable

from . import schema
from .errors import PreconditionFailed
from .mutations import EVENTS
from .snapshot import check_schema
from .store import Create, Op, SetData, ZkStore

#: Creates per transaction: keeps every request far below ZooKeeper's 1 MiB.
_BATCH = 1000


def _commit_in_batches(store: ZkStore, ops: list[Op]) -> None:
    for start in range(0, len(ops), _BATCH):
        store.commit(ops[start : start + _BATCH])


def _missing_key_creates(
    store: ZkStore,
    parent: str,
    key_path: Callable[[str, str], str],
    fields: tuple[schema.Field[object], ...],
) -> list[Op]:
    """A create, with its default, of every field missing under each child of ``parent``."""
    names = store.children(parent)
    existing = store.children_many([f"{parent}/{name}" for name in names])
    ops: list[Op] = []
    for name, keys in zip(names, existing, strict=True):
        if keys is None:
            continue  # removed meanwhile
        ops.extend(
            Create(key_path(name, field.key), field.encode(field.default))
            for field in fields
            if field.key not in keys
        )
    return ops


def _to_version_2(store: ZkStore) -> None:
    """Version 2: ``migration_method`` on VMs, peer URIs and ``maintenance`` on nodes,
    the ``/liveness`` and ``/locks`` roots."""
    ops: list[Op] = []
    for root in (schema.LIVENESS_PATH, schema.LOCKS_PATH):
        if not store.exists(root):
            ops.append(Create(root))
    ops += _missing_key_creates(
        store, schema.DOMAINS_PATH, schema.domain_key_path, schema.DOMAIN_FIELDS
    )
    ops += _missing_key_creates(store, schema.NODES_PATH, schema.node_key_path, schema.NODE_FIELDS)
    _commit_in_batches(store, ops)


def _to_version_3(store: ZkStore) -> None:
    """Version 3: ``request``, ``confirmed`` and ``console`` on VMs."""
    _commit_in_batches(
        store,
        _missing_key_creates(
            store, schema.DOMAINS_PATH, schema.domain_key_path, schema.DOMAIN_FIELDS
        ),
    )


def _to_version_4(store: ZkStore) -> None:
    """Version 4: ``history`` on VMs, ``stats`` on nodes."""
    ops = _missing_key_creates(
        store, schema.DOMAINS_PATH, schema.domain_key_path, schema.DOMAIN_FIELDS
    )
    ops += _missing_key_creates(store, schema.NODES_PATH, schema.node_key_path, schema.NODE_FIELDS)
    _commit_in_batches(store, ops)


#: The step that upgrades a tree *from* each version.
STEPS: dict[int, Callable[[ZkStore], None]] = {
    1: _to_version_2,
    2: _to_version_3,
    3: _to_version_4,
}


def upgrade_schema(store: ZkStore) -> tuple[int, int]:
    """Run every step from the tree's version to :data:`schema.SCHEMA_VERSION`.

    Returns ``(version before, version after)``. A newer tree is refused (upgrade pvc).
    """
    before = version = check_schema(store, allow_older=True)
    while version < schema.SCHEMA_VERSION:
        step = STEPS.get(version)
        if step is None:
            raise PreconditionFailed(f"no upgrade from schema version {version} is known")
        step(store)
        version += 1
        store.commit([SetData(schema.SCHEMA_VERSION_PATH, schema.encode_schema_version(version))])
        EVENTS.info("cluster: schema upgraded to version %d", version)
    return before, version
