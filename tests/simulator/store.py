"""The ZooKeeper stand-in: versioned VM and node records, sessions and ephemeral znodes.

It holds the project's own frozen records (:class:`VmRecord`, :class:`NodeRecord`) and
writes them the way ``pvc_common.mutations`` does: every write names the version it read,
a stale version raises :class:`Conflict` (never a lost update), and every write with an
event emits the same fixed-format line (``vm 'web1': migrate hv1 -> hv2``) on the run's
event log. Sessions model what fencing depends on: an ephemeral znode (a node's liveness,
a fence lock) lives as long as its owner's session, and a session expires once its owner
has been silent for longer than the session timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pvc_common.errors import Conflict, NotFound, StoreUnavailable
from pvc_common.ha import VmSize
from pvc_common.models import NodeRecord, VmRecord

from .clock import EventLog, VirtualClock

#: Called after every VM write with the record before and after it.
VmWriteHook = Callable[[VmRecord, VmRecord, str], None]


@dataclass
class Session:
    """One ZooKeeper session of one process."""

    ident: int
    owner: str  #: the node whose process opened it
    last_heard: float
    expired: bool = False
    closed: bool = False

    @property
    def alive(self) -> bool:
        """Whether the session still exists on the server."""
        return not (self.expired or self.closed)


class SimStore:
    """Every record of the cluster, as ZooKeeper would hold it."""

    def __init__(self, clock: VirtualClock, log: EventLog, *, session_timeout: float) -> None:
        self.clock = clock
        self.log = log
        self.session_timeout = session_timeout
        self.vms: dict[str, VmRecord] = {}
        self.nodes: dict[str, NodeRecord] = {}
        #: What each VM takes (``pvc_common.maintenance.vm_sizes`` reads it from the XML).
        self.sizes: dict[str, VmSize] = {}
        self.default_selector = "mem"
        self.sessions: dict[int, Session] = {}
        #: Ephemeral znodes (``liveness/<node>``, ``locks/fence/<node>``) -> owning session.
        self.ephemerals: dict[str, int] = {}
        self.vm_hooks: list[VmWriteHook] = []
        self._next_session = 1

    # ----------------------------------------------------------------- reads

    def load_vms(self) -> list[VmRecord]:
        """Every VM, sorted by name then UUID (as ``snapshot.load_vms``)."""
        return sorted(self.vms.values(), key=lambda vm: (vm.name, vm.uuid))

    def load_nodes(self) -> list[NodeRecord]:
        """Every node, sorted by name (as ``snapshot.load_nodes``)."""
        return [self.nodes[name] for name in sorted(self.nodes)]

    def vm(self, uuid: str) -> VmRecord | None:
        """One VM, or None once it is gone."""
        return self.vms.get(uuid)

    def node(self, name: str) -> NodeRecord:
        """One node; :class:`NotFound` for an unknown name."""
        try:
            return self.nodes[name]
        except KeyError:
            raise NotFound(f"no node named {name!r}") from None

    def vm_by_name(self, name: str) -> VmRecord:
        """One VM by name; :class:`NotFound` when there is none."""
        for vm in self.vms.values():
            if vm.name == name:
                return vm
        raise NotFound(f"no VM named {name!r}")

    def live_nodes(self) -> frozenset[str]:
        """Nodes whose daemon holds its liveness znode (``node_ops.live_nodes``)."""
        return frozenset(
            path.removeprefix("liveness/")
            for path in self.ephemerals
            if path.startswith("liveness/")
        )

    # ----------------------------------------------------------------- writes

    def create_vm(self, vm: VmRecord, size: VmSize, *, event: str) -> VmRecord:
        """Add a new VM at version 0 (``mutations.create_vm``)."""
        if vm.uuid in self.vms or any(other.name == vm.name for other in self.vms.values()):
            raise Conflict(f"a VM {vm.name!r} already exists")
        created = replace(vm, version=0)
        self.vms[vm.uuid] = created
        self.sizes[vm.uuid] = size
        self.log.emit(f"vm {vm.name!r}: {event}")
        return created

    def update_vm(self, vm: VmRecord, changes: Mapping[str, Any], *, event: str) -> VmRecord:
        """Write ``changes`` if ``vm`` is still at the version it was read at."""
        current = self._current_vm(vm)
        written = replace(current, version=current.version + 1, **changes)
        self.vms[vm.uuid] = written
        self.log.emit(f"vm {vm.name!r}: {event}")
        for hook in self.vm_hooks:
            hook(current, written, event)
        return written

    def update_node(
        self,
        node: NodeRecord,
        changes: Mapping[str, Any],
        *,
        event: str = "",
        guard: VmRecord | None = None,
    ) -> NodeRecord:
        """Write ``changes`` to a node read at ``node.version`` (and ``guard`` unchanged).

        ``event=''`` writes without an event line, like a keepalive.
        """
        current = self._current_node(node)
        if guard is not None:
            self._current_vm(guard)
        written = replace(current, version=current.version + 1, **changes)
        self.nodes[node.name] = written
        if event:
            self.log.emit(f"node {node.name!r}: {event}")
        return written

    def update_vm_and_node(
        self,
        vm: VmRecord,
        vm_changes: Mapping[str, Any],
        node: NodeRecord,
        node_changes: Mapping[str, Any],
        *,
        event: str,
    ) -> tuple[VmRecord, NodeRecord]:
        """Change a VM and a node in one transaction, both version-checked."""
        current_vm = self._current_vm(vm)
        current_node = self._current_node(node)
        written_vm = replace(current_vm, version=current_vm.version + 1, **vm_changes)
        written_node = replace(current_node, version=current_node.version + 1, **node_changes)
        self.vms[vm.uuid] = written_vm
        self.nodes[node.name] = written_node
        self.log.emit(f"vm {vm.name!r}: {event}")
        for hook in self.vm_hooks:
            hook(current_vm, written_vm, event)
        return written_vm, written_node

    def register_node(self, name: str, *, node_type: str, **figures: Any) -> NodeRecord:
        """Create a node or reset its type and the figures given (``register_node``)."""
        existing = self.nodes.get(name)
        if existing is None:
            record = NodeRecord(name=name, node_type=node_type, version=0, **figures)
        else:
            record = replace(existing, node_type=node_type, version=existing.version + 1, **figures)
        self.nodes[name] = record
        self.log.emit(f"node {name!r}: registered as {node_type}")
        return record

    def _current_vm(self, vm: VmRecord) -> VmRecord:
        current = self.vms.get(vm.uuid)
        if current is None:
            raise NotFound(f"the VM {vm.name!r} no longer exists")
        if current.version != vm.version:
            raise Conflict(f"VM {vm.name!r} changed since it was read")
        return current

    def _current_node(self, node: NodeRecord) -> NodeRecord:
        current = self.node(node.name)
        if current.version != node.version:
            raise Conflict(f"node {node.name!r} changed since it was read")
        return current

    # ----------------------------------------------------------------- sessions

    def open_session(self, owner: str) -> Session:
        """A new session for a process of node ``owner``."""
        session = Session(self._next_session, owner, self.clock.now)
        self._next_session += 1
        self.sessions[session.ident] = session
        return session

    def heartbeat(self, session: Session) -> None:
        """The client library's ping: the owner is alive and connected."""
        if not session.alive:
            raise StoreUnavailable("the ZooKeeper session has expired")
        session.last_heard = self.clock.now

    def close_session(self, session: Session) -> None:
        """A clean close: the session's ephemeral znodes go at once."""
        session.closed = True
        self._drop_ephemerals(session)

    def expire_sessions(self) -> list[Session]:
        """Expire every session silent for longer than the timeout; return them."""
        expired = []
        for session in self.sessions.values():
            if session.alive and self.clock.now - session.last_heard > self.session_timeout:
                session.expired = True
                self._drop_ephemerals(session)
                expired.append(session)
        return expired

    def claim_ephemeral(self, path: str, session: Session) -> None:
        """Create ``path`` for ``session``, replacing one left by an older session of the
        same owner (a daemon restarted before its old session expired)."""
        holder = self.ephemerals.get(path)
        if holder is not None and holder != session.ident:
            if self.sessions[holder].owner != session.owner:
                raise Conflict(f"{path} is held by another process")
        self.ephemerals[path] = session.ident

    def try_lock(self, path: str, session: Session) -> bool:
        """Create ``path`` for ``session`` unless anyone holds it (``store.try_lock``)."""
        if not session.alive:
            raise StoreUnavailable("the ZooKeeper session has expired")
        if path in self.ephemerals:
            return False
        self.ephemerals[path] = session.ident
        return True

    def release_ephemeral(self, path: str, session: Session) -> None:
        """Delete ``path`` if ``session`` holds it."""
        if self.ephemerals.get(path) == session.ident:
            del self.ephemerals[path]

    def _drop_ephemerals(self, session: Session) -> None:
        for path in [p for p, holder in self.ephemerals.items() if holder == session.ident]:
            del self.ephemerals[path]
