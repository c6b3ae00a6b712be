"""What an administrator does with ``pvc``, and the ``--wait`` that follows each request.

Each command is the thin glue of ``pvc_common.vm_ops`` / ``node_ops`` (find the record,
ask the real rule, write with a version check) over the simulated store: targets are
checked by the real :func:`check_explicit_target` or chosen by the real
:func:`select_target_node`, changes come from the real ``vm_rules`` functions. A refused
command logs its one-line reason, as the CLI prints it.

Every accepted request is then waited for as ``--wait`` would: VM requests with the real
:func:`pvc_common.vm_wait.judge`, flush/ready with the rules of
``pvc_common.maintenance.wait_for_maintenance``. A request that never settles is an
invariant violation at the end of a run.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pvc_common.errors import NotFound, PreconditionFailed, PvcError
from pvc_common.ha import VmSize
from pvc_common.maintenance import judge_maintenance
from pvc_common.models import VmRecord
from pvc_common.node_ops import DOMAIN_STATE_ACTIONS
from pvc_common.placement import check_explicit_target, resolve_selector, select_target_node
from pvc_common.vm_rules import (
    Change,
    check_migratable,
    migration_change,
    move_change,
    state_change,
    unmigrate_change,
)
from pvc_common.vm_wait import judge

if TYPE_CHECKING:
    from .simulation import Simulation

#: UUIDs are derived from VM names, so a scenario's log never depends on randomness.
_NAMESPACE = uuid_module.UUID("6f1c3a52-9a8e-4d0b-a7c4-2d9b5f0e8c11")
#: The domain state each kind of node request ends in.
_ENDS_IN = {"flush": "flushed", "ready": "ready"}


def vm_uuid(name: str) -> str:
    """The UUID the simulator gives the VM called ``name``."""
    return str(uuid_module.uuid5(_NAMESPACE, name))


@dataclass
class Request:
    """One accepted operator request, followed as ``--wait`` follows it."""

    label: str  #: e.g. ``vm migrate web1 --target hv2``
    action: str  #: the vm_wait action, or ``flush``/``ready``
    subject: str  #: the VM's UUID, or the node's name
    target: str = ""
    request: int = 0  #: the VM's request number as written
    issued: float = 0.0
    outcome: str | None = None


class Operator:
    """The administrator: commands and the requests waiting on their outcome."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.requests: list[Request] = []

    # ----------------------------------------------------------------- VMs

    def define(
        self,
        name: str,
        *,
        node: str | None = None,
        limit: tuple[str, ...] = (),
        selector: str = "none",
        autostart: bool = False,
        memory: int = 1024,
        vcpus: int = 1,
        migration_method: str = "none",
    ) -> None:
        """``pvc vm define``: stopped, on ``node`` or an automatic choice."""
        options = f" --target {node}" if node else ""
        options += f" --limit {','.join(limit)}" if limit else ""
        options += f" --selector {selector}" if selector != "none" else ""
        options += " --autostart" if autostart else ""
        label = f"vm define {name}{options} ({memory} MiB)"
        self.sim.log.emit(f"operator: {label}")
        store = self.sim.store
        try:
            resolve_selector(selector, store.default_selector)
            nodes = store.load_nodes()
            unknown = sorted(set(limit) - {n.name for n in nodes})
            if unknown:
                raise NotFound(f"node limit names unknown node(s) {', '.join(unknown)}")
            if node:
                if node not in store.nodes:
                    raise NotFound(f"no node named {node!r}")
                why = check_explicit_target(
                    nodes, node, vm_name=name, memory_mib=memory, node_limit=limit
                )
                if why:
                    raise PreconditionFailed(why)
                chosen = node
            else:
                placement = select_target_node(
                    nodes,
                    vm_name=name,
                    memory_mib=memory,
                    node_limit=limit,
                    selector=selector,
                    default_selector=store.default_selector,
                )
                if placement.node is None:
                    raise PreconditionFailed(placement.reason)
                chosen = placement.node
            record = VmRecord(
                uuid=vm_uuid(name),
                name=name,
                state="stop",
                node=chosen,
                node_limit=tuple(limit),
                node_selector=selector,
                node_autostart=autostart,
                migration_method=migration_method,
            )
            store.create_vm(record, VmSize(memory, vcpus), event=f"define on {chosen}")
        except PvcError as error:
            self._refused(label, error)

    def set_meta(
        self,
        name: str,
        *,
        selector: str | None = None,
        autostart: bool | None = None,
        migration_method: str | None = None,
    ) -> None:
        """``pvc vm meta`` (``vm_ops.set_vm_meta``) for the selector, autostart and method."""
        changes: dict[str, Any] = {}
        if selector is not None:
            changes["node_selector"] = selector
        if autostart is not None:
            changes["node_autostart"] = autostart
        if migration_method is not None:
            changes["migration_method"] = migration_method
        described = ", ".join(f"{key}={value}" for key, value in changes.items())
        label = f"vm meta {name} {described}"
        self.sim.log.emit(f"operator: {label}")
        store = self.sim.store
        try:
            if selector is not None:
                resolve_selector(selector, store.default_selector)
            vm = store.vm_by_name(name)
            store.update_vm(vm, changes, event=f"meta {described}")
        except PvcError as error:
            self._refused(label, error)

    def set_state(self, name: str, action: str) -> None:
        """``pvc vm start|restart|shutdown|stop|disable NAME --wait``."""
        self._vm_request(f"vm {action} {name}", name, action, lambda vm: state_change(vm, action))

    def migrate(self, name: str, target: str | None = None, *, force: bool = False) -> None:
        """``pvc vm migrate NAME [--target NODE] [--force] --wait``."""
        label = f"vm migrate {name}" + (f" --target {target}" if target else "")
        label += " --force" if force else ""

        def change(vm: VmRecord) -> Change:
            check_migratable(vm, force=force)
            return migration_change(vm, self._target(vm, target), force=force)

        self._vm_request(label, name, "migrate", change)

    def move(self, name: str, target: str | None = None) -> None:
        """``pvc vm move NAME [--target NODE] --wait``."""
        label = f"vm move {name}" + (f" --target {target}" if target else "")
        self._vm_request(label, name, "move", lambda vm: move_change(vm, self._target(vm, target)))

    def unmigrate(self, name: str) -> None:
        """``pvc vm unmigrate NAME --wait``."""

        def change(vm: VmRecord) -> Change:
            result = unmigrate_change(vm)
            self._check(vm, vm.lastnode)
            return result

        self._vm_request(f"vm unmigrate {name}", name, "unmigrate", change)

    def _target(self, vm: VmRecord, target: str | None) -> str:
        """The node a migration or move goes to (``vm_ops._migration_target``)."""
        store = self.sim.store
        if target:
            self._check(vm, target)
            return target
        placement = select_target_node(
            store.load_nodes(),
            vm_name=vm.name,
            memory_mib=store.sizes[vm.uuid].memory_mib,
            node_limit=vm.node_limit,
            selector=vm.node_selector,
            default_selector=store.default_selector,
            current_node=vm.node,
        )
        if placement.node is None:
            raise PreconditionFailed(placement.reason)
        return placement.node

    def _check(self, vm: VmRecord, target: str) -> None:
        store = self.sim.store
        if target not in store.nodes:
            raise NotFound(f"no node named {target!r}")
        why = check_explicit_target(
            store.load_nodes(),
            target,
            vm_name=vm.name,
            memory_mib=store.sizes[vm.uuid].memory_mib,
            node_limit=vm.node_limit,
            current_node=vm.node,
        )
        if why:
            raise PreconditionFailed(why)

    def _vm_request(self, label: str, name: str, action: str, rule: Any) -> None:
        self.sim.log.emit(f"operator: {label}")
        store = self.sim.store
        try:
            vm = store.vm_by_name(name)
            change: Change = rule(vm)
            written = store.update_vm(vm, change.values, event=change.event)
        except PvcError as error:
            self._refused(label, error)
            return
        self.requests.append(
            Request(
                label,
                action,
                written.uuid,
                target=written.node if action in ("migrate", "move", "unmigrate") else "",
                request=written.request,
                issued=self.sim.clock.now,
            )
        )

    # ----------------------------------------------------------------- nodes

    def set_domain_state(self, node: str, action: str) -> None:
        """``pvc node flush|ready NODE --wait`` (``node_ops.set_node_domain_state``)."""
        label = f"node {action} {node}"
        self.sim.log.emit(f"operator: {label}")
        store = self.sim.store
        try:
            record = store.node(node)
            already = {"flush": ("flush", "flushed"), "ready": ("ready", "unflush")}[action]
            if record.domainstate in already:
                raise PreconditionFailed(f"node {node!r} is already {record.domainstate}")
            if record.domainstate == "fence-flush":
                raise PreconditionFailed(
                    f"node {node!r} is being recovered after a fence; wait for it"
                )
            store.update_node(
                record,
                {"domainstate": DOMAIN_STATE_ACTIONS[action]},
                event=f"{action} (was {record.domainstate})",
            )
        except PvcError as error:
            self._refused(label, error)
            return
        self.requests.append(Request(label, action, node, issued=self.sim.clock.now))

    def _refused(self, label: str, error: PvcError) -> None:
        self.sim.log.emit(f"operator: {label}: refused: {error}")

    # ----------------------------------------------------------------- waiting

    def settle(self) -> None:
        """Give each pending request its outcome if the cluster now shows one."""
        for request in self.requests:
            if request.outcome is not None:
                continue
            if request.action in _ENDS_IN:
                outcome = self._node_outcome(request)
            else:
                outcome = self._vm_outcome(request)
                if outcome is not None and outcome.startswith("ok: running on"):
                    self.sim.invariants.reported_running(request.subject, f"wait: {request.label}")
            if outcome is not None:
                request.outcome = outcome
                self.sim.log.emit(f"wait: {request.label}: {outcome}")

    def _vm_outcome(self, request: Request) -> str | None:
        vm = self.sim.store.vm(request.subject)
        if vm is None:
            return "not ok: the VM was removed"
        where = self.sim.running_on(vm.uuid)
        result = judge(request.action, vm, where, request.target, request.request)
        if result is None:
            return None
        return ("ok: " if result.ok else "not ok: ") + result.message

    def _node_outcome(self, request: Request) -> str | None:
        """As ``wait_for_maintenance`` judges it (``maintenance.judge_maintenance``)."""
        node = self.sim.store.node(request.subject)
        result = judge_maintenance(node, request.action, started_after=request.issued)
        if result is None:
            return None
        return ("ok: " if result.ok else "not ok: ") + result.message

    def pending(self) -> list[Request]:
        """Requests still without an outcome."""
        return [request for request in self.requests if request.outcome is None]
