"""A flush or ready of one node, carried out by its daemon (``MaintenanceRunner``).

The runner only writes intent, VM by VM, and follows each VM to its outcome with the real
:func:`pvc_common.vm_wait.judge`; the migrations themselves are the daemons' reconcile
work. Each pass re-plans the VMs not yet handled with the real
:func:`pvc_common.ha.flush_plan` / :func:`ready_plan` on fresh figures, with the moves
under way counted on their targets (:func:`project_moves`), and issues at most
``concurrency`` moves at once. Progress is kept in the node's ``maintenance`` record
(the real :func:`new_record` / :func:`record_vm`), so a restarted daemon resumes. One
:meth:`MaintenanceRun.step` is one pass of the runner's loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pvc_common.errors import Conflict, PvcError
from pvc_common.ha import Plan, PlanStep, VmSize, flush_plan, project_moves, ready_plan
from pvc_common.maintenance import new_record, record_vm
from pvc_common.models import VmRecord
from pvc_common.vm_rules import migration_change
from pvc_common.vm_wait import judge
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
    since_version: int
    deadline: float


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
        if self.sim.store.node(self.here).domainstate != KEEP_GOING[self.kind]:
            self.aborted = True  # no new moves; the ones under way finish first
        self._follow_moves()
        if not self.aborted:
            self._plan_and_issue()
        if self.moves or not (self.aborted or self._nothing_left()):
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
                        VmSize(0, 0),
                        -1,
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

    def _follow_moves(self) -> None:
        if not self.moves:
            return
        store = self.sim.store
        for uuid, move in list(self.moves.items()):
            vm = store.vm(uuid)
            if vm is None:
                self._end(move, "failed", "the VM was removed")
                continue
            outcome = judge(
                move.wait_for, vm, self.sim.running_on(uuid), move.target, move.since_version
            )
            if outcome is not None:
                if outcome.ok and outcome.message.startswith("running on"):
                    self.sim.invariants.reported_running(uuid, f"{self.label}: {move.name}")
                self._end(move, *self._name_outcome(move, vm, outcome.ok, outcome.message))
            elif self.sim.clock.now > move.deadline:
                self._end(move, "failed", f"timed out after {self.sim.settings.vm_timeout:g} s")

    @staticmethod
    def _name_outcome(move: Move, vm: VmRecord, ok: bool, message: str) -> tuple[str, str]:
        if not ok:
            return "failed", message
        if move.action == "migrate":
            if "moved by shutdown and start" in vm.failedreason:
                return "shutdown-migrated", vm.failedreason
            return "live-migrated", message
        names = {"stop-autostart": "stopped-autostart", "start": "started", "return": "returned"}
        return names.get(move.action, "done"), message

    def _end(self, move: Move, outcome: str, reason: str) -> None:
        del self.moves[move.uuid]
        self._set(move, outcome, reason)

    def _plan(self, pending: list[VmRecord], projected: bool) -> Plan:
        store = self.sim.store
        nodes = store.load_nodes()
        if projected:
            nodes = project_moves(nodes, [(m.target, m.size) for m in self.moves.values()])
        if self.kind == "flush":
            return flush_plan(
                self.here, pending, nodes, store.sizes, default_selector=store.default_selector
            )
        return ready_plan(self.here, pending, nodes, store.sizes)

    def _plan_and_issue(self) -> None:
        # A VM already migrating (e.g. an operator's migrate) is planned once it settles.
        pending = [
            vm
            for vm in self.sim.store.load_vms()
            if vm.uuid not in self.handled and vm.state != "migrate"
        ]
        plan = self._plan(pending, projected=True)
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
        else:  # stop-autostart
            change = {"state": "shutdown", "node_autostart": True}
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
            written.version,
            deadline,
        )
        self._set(step, "in-progress", step.reason)

    def _nothing_left(self) -> bool:
        vms = self.sim.store.load_vms()
        if any(vm.state == "migrate" and self.here in (vm.node, vm.lastnode) for vm in vms):
            return False  # a migration under way involves this node: wait for it to settle
        pending = [vm for vm in vms if vm.uuid not in self.handled]
        return not self._plan(pending, projected=False).steps

    def _finish(self) -> None:
        """Set the final domain state, unless an operator asked for something else."""
        row = self.sim.store.node(self.here)
        if row.domainstate == KEEP_GOING[self.kind]:
            self.daemon.update_row(
                {"domainstate": ENDS_IN[self.kind]}, event=f"{self.kind} done: {ENDS_IN[self.kind]}"
            )
