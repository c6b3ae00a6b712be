"""Carrying out a flush or a ready of this node (runs on its own thread in the daemon).

The runner only writes intent, VM by VM, and follows each VM to its outcome: the
migrations and shutdowns themselves are done by the daemons' reconcile loops, exactly as
for an operator's ``pvc vm migrate``. At most ``maintenance.concurrency`` VMs move at
once; each pass re-plans the VMs not yet handled on fresh figures, counting the moves
under way on their targets, so targets are not overfilled. Every VM ends with an outcome
(``maintenance.vm_timeout`` bounds each one), recorded in the node's ``maintenance``
key. A ``pvc node ready`` during a flush (or a flush during a ready) stops it from
starting new moves; the moves under way finish, then the record says ``aborted``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pvc_common.errors import Conflict, NotFound, PvcError
from pvc_common.ha import Plan, PlanStep, VmSize, flush_plan, project_moves, ready_plan
from pvc_common.maintenance import (
    MaintenanceInputs,
    load_inputs,
    name_outcome,
    new_record,
    record_vm,
)
from pvc_common.models import NodeRecord, VmRecord
from pvc_common.mutations import update_vm
from pvc_common.store import ZkStore
from pvc_common.vm_rules import as_request, migration_change
from pvc_common.vm_wait import judge, running_on

from .node_row import NodeRow

log = logging.getLogger(__name__)

#: The domain state that keeps each kind going, and the one it ends in.
KEEP_GOING = {"flush": "flush", "ready": "unflush"}
ENDS_IN = {"flush": "flushed", "ready": "ready"}
#: How often the runner looks at the VMs it moves.
POLL = 0.25


@dataclass
class _Move:
    """A VM whose move this runner asked for and is following."""

    uuid: str
    name: str
    action: str  # the plan's action
    wait_for: str  # the vm_wait action whose outcome ends it
    target: str
    size: VmSize
    #: The VM's request number as written (when resumed: its latest).
    request: int
    deadline: float


class MaintenanceRunner:
    """One flush or ready of ``here``, from start to outcome."""

    def __init__(
        self,
        store: ZkStore,
        row: NodeRow,
        here: str,
        *,
        concurrency: int,
        vm_timeout: float,
        stopping: threading.Event,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.row, self.here = store, row, here
        self.concurrency, self.vm_timeout = concurrency, vm_timeout
        self.stopping, self.clock = stopping, clock
        self.record: dict[str, Any] = {}
        self.moves: dict[str, _Move] = {}
        self.handled: set[str] = set()

    # ----------------------------------------------------------------- entry

    def run(self, kind: str) -> None:
        """Carry out ``kind`` (flush or ready) until every VM has an outcome."""
        inputs = load_inputs(self.store)
        if self._node(inputs).domainstate != KEEP_GOING[kind]:
            # Started from a pass's older snapshot after the same request already ended:
            # nothing to do (it would otherwise record an 'aborted' run over the real one).
            return
        self._resume_or_start(kind, inputs)
        log.info("%s of %s: started", kind, self.here)
        aborted = False
        while not self.stopping.is_set():
            # One snapshot per pass, read once: what it decides from is consistent, and a
            # pass costs one read of the tree.
            inputs = load_inputs(self.store)
            if self._node(inputs).domainstate != KEEP_GOING[kind]:
                aborted = True  # no new moves; the ones under way finish below
            self._follow_moves(inputs)
            if not aborted:
                self._plan_and_issue(kind, inputs)
            if not self.moves and (aborted or self._nothing_left(kind, inputs)):
                break
            self.stopping.wait(POLL)
        if self.stopping.is_set():
            return  # the daemon stops: a restarted daemon resumes from the record
        status = "aborted" if aborted else "done"
        self._write(dict(self.record, status=status, finished=round(self.clock(), 3)))
        if not aborted:
            self._finish(kind)
        log.info("%s of %s: %s", kind, self.here, status)

    def _node(self, inputs: MaintenanceInputs) -> NodeRecord:
        """This node's row in ``inputs``."""
        node = next((node for node in inputs.nodes if node.name == self.here), None)
        if node is None:
            raise NotFound(f"no node named {self.here!r}")
        return node

    # ----------------------------------------------------------------- record

    def _resume_or_start(self, kind: str, inputs: MaintenanceInputs) -> None:
        current = self._node(inputs).maintenance
        if current.get("kind") == kind and current.get("status") == "running":
            # A restarted daemon: follow again what was under way; the rest is re-planned.
            self.record = dict(current)
            deadline = time.monotonic() + self.vm_timeout
            # The request each move wrote is not kept: its VM's latest is the best guess.
            requests = {vm.uuid: vm.request for vm in inputs.vms}
            for uuid, entry in current.get("vms", {}).items():
                self.handled.add(uuid)
                if entry.get("outcome") == "in-progress":
                    wait_for = {"stop-autostart": "shutdown", "start": "start"}.get(
                        entry.get("action", ""), "migrate"
                    )
                    self.moves[uuid] = _Move(
                        uuid,
                        entry.get("name", uuid),
                        entry.get("action", ""),
                        wait_for,
                        entry.get("target", ""),
                        # Its size still counts on its target until the move ends.
                        inputs.sizes.get(uuid, VmSize(0, 0)),
                        requests.get(uuid, 0),
                        deadline,
                    )
            return
        self.record = new_record(kind, self.clock())
        self._write(self.record)

    def _write(self, record: dict[str, Any]) -> None:
        self.record = record
        self.row.update({"maintenance": record})

    def _set(self, step: PlanStep | _Move, outcome: str, reason: str = "") -> None:
        uuid = step.uuid
        self._write(
            record_vm(
                self.record,
                uuid,
                name=step.name,
                action=step.action,
                target=step.target,
                outcome=outcome,
                reason=reason,
            )
        )
        if outcome != "in-progress":
            log.info("vm %r: %s (%s) %s", step.name, outcome, step.action, reason)

    # ----------------------------------------------------------------- moves

    def _follow_moves(self, inputs: MaintenanceInputs) -> None:
        if not self.moves:
            return
        by_uuid = {vm.uuid: vm for vm in inputs.vms}
        for uuid, move in list(self.moves.items()):
            vm = by_uuid.get(uuid)
            if vm is None:
                self._end(move, "failed", "the VM was removed")
                continue
            where = running_on(inputs.nodes, uuid)
            outcome = judge(move.wait_for, vm, where, move.target, move.request)
            if outcome is not None:
                self._end(move, *name_outcome(move.action, vm, outcome.ok, outcome.message))
            elif time.monotonic() > move.deadline:
                self._end(move, "failed", f"timed out after {self.vm_timeout:g} s")

    def _end(self, move: _Move, outcome: str, reason: str) -> None:
        del self.moves[move.uuid]
        self._set(move, outcome, reason)

    def _plan(
        self, kind: str, pending: list[VmRecord], nodes: list[NodeRecord], inputs: MaintenanceInputs
    ) -> Plan:
        if kind == "flush":
            return flush_plan(
                self.here, pending, nodes, inputs.sizes, default_selector=inputs.default_selector
            )
        return ready_plan(self.here, pending, nodes, inputs.sizes)

    def _plan_and_issue(self, kind: str, inputs: MaintenanceInputs) -> None:
        # A VM already migrating (e.g. an operator's migrate) is planned once it settles.
        pending = [vm for vm in inputs.vms if vm.uuid not in self.handled and vm.state != "migrate"]
        nodes = project_moves(inputs.nodes, [(m.target, m.size) for m in self.moves.values()])
        plan = self._plan(kind, pending, nodes, inputs)
        by_uuid = {vm.uuid: vm for vm in pending}
        for step in plan.steps:
            if step.action == "stay":
                self.handled.add(step.uuid)
                self._set(step, "stayed", step.reason)
                continue
            if len(self.moves) >= self.concurrency:
                return  # the next pass re-plans the rest on fresher figures
            self._issue(step, by_uuid[step.uuid], inputs.sizes.get(step.uuid, VmSize(0, 0)))

    def _issue(self, step: PlanStep, vm: VmRecord, size: VmSize) -> None:
        """Write the intent of one step (version-checked) and start following it."""
        wait_for = {"migrate": "migrate", "return": "migrate", "start": "start"}.get(
            step.action, "shutdown"
        )
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
            written = update_vm(
                self.store,
                vm,
                change,
                event=f"{step.action} -> {step.target}" if step.target else step.action,
                why=step.reason,
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
        self.moves[step.uuid] = _Move(
            step.uuid,
            step.name,
            step.action,
            wait_for,
            step.target,
            size,
            written.request,
            time.monotonic() + self.vm_timeout,
        )
        self._set(step, "in-progress", step.reason)

    def _nothing_left(self, kind: str, inputs: MaintenanceInputs) -> bool:
        if any(vm.state == "migrate" and self.here in (vm.node, vm.lastnode) for vm in inputs.vms):
            return False  # a migration under way involves this node: wait for it to settle
        pending = [vm for vm in inputs.vms if vm.uuid not in self.handled]
        return not self._plan(kind, pending, inputs.nodes, inputs).steps

    def _finish(self, kind: str) -> None:
        """Set the final domain state, unless an operator asked for something else."""

        def change(row: Any) -> dict[str, Any]:
            if row.domainstate != KEEP_GOING[kind]:
                return {}
            return {"domainstate": ENDS_IN[kind]}

        self.row.update(change, event=f"{kind} done: {ENDS_IN[kind]}")
