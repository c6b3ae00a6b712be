"""A flush or ready of one node, carried out by its daemon (``MaintenanceRunner``).

The runner only writes intent, VM by VM, and follows each VM to its outcome with the real
:func:`pvc_common.vm_wait.judge`; the migrations themselves are the daemons' reconcile
work. Each pass re-plans the VMs not yet handled with the real
:func:`pvc_common.ha.flush_plan` / :func:`ready_plan` on fresh figures, with the moves
under way counted on their targets (:func:`project_moves`; a resumed move counts too),
all from one snapshot read at the start of the pass, and issues at most
``concurrency`` moves at once. Progress is kept in the node's ``maintenance`` record
(the real :func:`new_record` / :func:`record_vm`), so a restarted daemon resumes. One
:meth:`MaintenanceRun.step` is one pass of the runner's loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pvc_common.errors import Conflict, PvcError
from pvc_common.ha import Plan, PlanStep, VmSize, flush_plan, project_moves, ready_plan
from pvc_common.maintenance import name_outcome, new_record, record_vm
from pvc_common.models import NodeRecord, VmRecord
from pvc_common.vm_rules import as_request, migration_change
from pvc_common.vm_wait import judge, running_on
from pvc_noded.maintenance_runner import ENDS_IN, KEEP_GOING

if TYPE_CHECKING:
    from .daemon import DaemonProcess


@dataclass
class Move:
    """A VM whose move this run asked for and is following."""

    uuid: str
    name: str
    action: str
    wait_for: str
    target: str
    size: VmSize
    #: The VM's request number as written (when resumed: its latest).
    request: int
    deadline: float


@dataclass(frozen=True)
class Snapshot:
    """What one pass reads, once (``maintenance.load_inputs`` in the real runner)."""

    vms: list[VmRecord]
    nodes: list[NodeRecord]

    def node(self, name: str) -> NodeRecord:
        """The row of node ``name``."""
        return next(node for node in self.nodes if node.name == name)


class MaintenanceRun:
    """One flush or ready of the daemon's node, from start to outcome."""

    def __init__(self, daemon: DaemonProcess, kind: str) -> None:
        self.daemon = daemon
        self.sim = daemon.sim
        self.here = daemon.name
        self.kind = kind
        self.record: dict[str, Any] = {}
        self.moves: dict[str, Move] = {}
        self.handled: set[str] = set()
        self.aborted = False
        self._resume_or_start()

    @property
    def label(self) -> str:
        """E.g. ``flush of hv1``."""
        return f"{self.kind} of {self.here}"

    # ----------------------------------------------------------------- the loop

    def step(self) -> bool:
        """One pass; True once the run has ended (its final record written)."""
        snapshot = Snapshot(self.sim.store.load_vms(), self.sim.store.load_nodes())
        if snapshot.node(self.here).domainstate != KEEP_GOING[self.kind]:
            self.aborted = True  # no new moves; the ones under way finish first
        self._follow_moves(snapshot)
        if not self.aborted:
            self._plan_and_issue(snapshot)
        if self.moves or not (self.aborted or self._nothing_left(snapshot)):
            return False
        status = "aborted" if self.aborted else "done"
        self._write(dict(self.record, status=status, finished=round(self.sim.clock.now, 3)))
        self.sim.log.emit(f"{self.label}: {status}")
        if not self.aborted:
            self._finish()
        self.sim.invariants.maintenance_ended(self.here, self.kind, self.record)
        return True

    # ----------------------------------------------------------------- record

    def _resume_or_start(self) -> None:
        current = self.sim.store.node(self.here).maintenance
        if current.get("kind") == self.kind and current.get("status") == "running":
            # A restarted daemon: follow again what was under way; the rest is re-planned.
            self.record = dict(current)
            deadline = self.sim.clock.now + self.sim.settings.vm_timeout
            for uuid, entry in current.get("vms", {}).items():
                self.handled.add(uuid)
                if entry.get("outcome") == "in-progress":
                    wait_for = {"stop-autostart": "shutdown", "start": "start"}.get(
                        entry.get("action", ""), "migrate"
                    )
                    self.moves[uuid] = Move(
                        uuid,
                        entry.get("name", uuid),
                        entry.get("action", ""),
                        wait_for,
                        entry.get("target", ""),
                        # Its size still counts on its target until the move ends.
                        self.sim.store.sizes.get(uuid, VmSize(0, 0)),
                        # As the runner: the VM's latest request is the best guess.
                        vm.request if (vm := self.sim.store.vm(uuid)) else 0,
                        deadline,
                    )
            self.sim.log.emit(f"{self.label}: resumed ({len(self.moves)} move(s) under way)")
            return
        self.sim.log.emit(f"{self.label}: started")
        self._write(new_record(self.kind, self.sim.clock.now))

    def _write(self, record: dict[str, Any]) -> None:
        self.record = record
        self.daemon.update_row({"maintenance": record})

    def _set(self, step: PlanStep | Move, outcome: str, reason: str = "") -> None:
        self._write(
            record_vm(
                self.record,
                step.uuid,
                name=step.name,
                action=step.action,
                target=step.target,
                outcome=outcome,
                reason=reason,
            )
        )
        if outcome != "in-progress":
            where = f" -> {step.target}" if step.target else ""
            self.sim.log.emit(
                f"{self.label}: vm {step.name!r} {outcome} ({step.action}{where}): {reason}"
            )

    # ----------------------------------------------------------------- moves

    def _follow_moves(self, snapshot: Snapshot) -> None:
        if not self.moves:
            return
        by_uuid = {vm.uuid: vm for vm in snapshot.vms}
        for uuid, move in list(self.moves.items()):
            vm = by_uuid.get(uuid)
            if vm is None:
                self._end(move, "failed", "the VM was removed")
                continue
            outcome = judge(
                move.wait_for, vm, running_on(snapshot.nodes, uuid), move.target, move.request
            )
            if outcome is not None:
                if outcome.ok and outcome.message.startswith("running on"):
                    self.sim.invariants.reported_running(uuid, f"{self.label}: {move.name}")
                self._end(move, *name_outcome(move.action, vm, outcome.ok, outcome.message))
            elif self.sim.clock.now > move.deadline:
                self._end(move, "failed", f"timed out after {self.sim.settings.vm_timeout:g} s")

    def _end(self, move: Move, outcome: str, reason: str) -> None:
        del self.moves[move.uuid]
        self._set(move, outcome, reason)

    def _plan(self, pending: list[VmRecord], snapshot: Snapshot, projected: bool) -> Plan:
        store = self.sim.store
        nodes = snapshot.nodes
        if projected:
            nodes = project_moves(nodes, [(m.target, m.size) for m in self.moves.values()])
        if self.kind == "flush":
            return flush_plan(
                self.here, pending, nodes, store.sizes, default_selector=store.default_selector
            )
        return ready_plan(self.here, pending, nodes, store.sizes)

    def _plan_and_issue(self, snapshot: Snapshot) -> None:
        # A VM already migrating (e.g. an operator's migrate) is planned once it settles.
        pending = [
            vm for vm in snapshot.vms if vm.uuid not in self.handled and vm.state != "migrate"
        ]
        plan = self._plan(pending, snapshot, projected=True)
        by_uuid = {vm.uuid: vm for vm in pending}
        for step in plan.steps:
            if step.action == "stay":
                self.handled.add(step.uuid)
                self._set(step, "stayed", step.reason)
                continue
            if len(self.moves) >= self.sim.settings.concurrency:
                return  # the next pass re-plans the rest on fresher figures
            size = self.sim.store.sizes.get(step.uuid, VmSize(0, 0))
            self._issue(step, by_uuid[step.uuid], size)

    def _issue(self, step: PlanStep, vm: VmRecord, size: VmSize) -> None:
        """Write the intent of one step (version-checked) and start following it."""
        wait_for = {"migrate": "migrate", "return": "migrate", "start": "start"}.get(
            step.action, "shutdown"
        )
        change: dict[str, Any]
        if step.action == "migrate":
            change = migration_change(vm, step.target, force=True).values
        elif step.action == "return":
            change = {"node": step.target, "lastnode": ""}
            if vm.state in ("start", "restart"):
                change |= {"state": "migrate", "failedreason": ""}
        elif step.action == "start":
            change = {"state": "start", "node_autostart": False, "failedreason": ""}
            if vm.node != step.target:  # a stopped VM back home with autostart (ready_plan)
                change |= {"node": step.target, "lastnode": ""}
        else:  # stop-autostart
            change = {"state": "shutdown", "node_autostart": True}
        if step.action != "return" or "state" in change:
            change = as_request(vm, change)  # a waiter on an earlier request is superseded
        try:
            written = self.sim.store.update_vm(
                vm, change, event=f"{step.action} {step.target} ({step.reason})"
            )
        except Conflict:
            return  # changed meanwhile: the next pass plans it again
        except PvcError as error:
            self.handled.add(step.uuid)
            self._set(step, "failed", str(error))
            return
        self.handled.add(step.uuid)
        if step.action == "return" and "state" not in change:
            self._set(step, "returned", f"{step.reason}; stays {vm.state}")
            return
        deadline = self.sim.clock.now + self.sim.settings.vm_timeout
        self.moves[step.uuid] = Move(
            step.uuid,
            step.name,
            step.action,
            wait_for,
            step.target,
            size,
            written.request,
            deadline,
        )
        self._set(step, "in-progress", step.reason)

    def _nothing_left(self, snapshot: Snapshot) -> bool:
        vms = snapshot.vms
        if any(vm.state == "migrate" and self.here in (vm.node, vm.lastnode) for vm in vms):
            return False  # a migration under way involves this node: wait for it to settle
        pending = [vm for vm in vms if vm.uuid not in self.handled]
        return not self._plan(pending, snapshot, projected=False).steps

    def _finish(self) -> None:
        """Set the final domain state, unless an operator asked for something else."""
        row = self.sim.store.node(self.here)
        if row.domainstate == KEEP_GOING[self.kind]:
            self.daemon.update_row(
                {"domainstate": ENDS_IN[self.kind]}, event=f"{self.kind} done: {ENDS_IN[self.kind]}"
            )
