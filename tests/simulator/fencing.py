"""Dead-node detection, fencing and recovery by a coordinator (``FenceMonitor``).

Mirrors ``pvc_noded.fence_monitor``: every keepalive interval a coordinator judges every
other node with the real :func:`pvc_common.ha.judge_node` (a node left ``dead`` by a
failed fence is tried again, with the reason :func:`fence_retry_reason` gives; never the
observer's own node), counts consecutive dead verdicts, asks the real storm guard
:func:`fencing_allowed`, and fences a node dead for ``rechecks`` checks under a lock (an
ephemeral znode, so only one coordinator fences it): ``dead``, power-off through the
node's :class:`~tests.simulator.host.Bmc`, and only on a confirmed power-off ``fenced``,
``fence-flush``, the real :func:`recovery_plan` carried out, ``flushed``.

The BMC procedure mirrors ``pvc_noded.fencing._ConfirmingFencer``: ``off``, then status
reads until it says off or the timeout passes; a confirmed fence sends ``on`` when the
node's BMC is set to, and the node boots and its daemon registers again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pvc_common.errors import Conflict, PvcError
from pvc_common.ha import (
    NodeHealth,
    fence_retry_reason,
    fencing_allowed,
    judge_node,
    recovery_plan,
    recovery_unfinished,
)
from pvc_common.maintenance import new_record, record_vm
from pvc_common.models import NodeRecord, VmRecord
from pvc_common.vm_rules import as_request

from .clock import Activity, Task

if TYPE_CHECKING:
    from .daemon import DaemonProcess


class FenceMonitor:
    """One coordinator's watch over the other nodes."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.sim = daemon.sim
        self.here = daemon.name
        self.suspects: dict[str, int] = {}
        self.refused = ""
        self.task: Task | None = None
        self.next_check = self.sim.clock.now + self.sim.settings.keepalive_interval

    def step(self) -> None:
        """Go on with a check under way, or start one when its interval has passed."""
        clock = self.sim.clock
        if self.task is None and clock.reached(self.next_check):
            self.task = Task(f"fence-check:{self.here}", self.check_once(), clock.now)
        if self.task is not None and self.task.advance(clock):
            self.task = None
            # The loop waits a full interval after each check (a fence blocks it).
            self.next_check = clock.now + self.sim.settings.keepalive_interval

    def abandon(self) -> None:
        """The process is gone: drop whatever it was doing (its lock dies with it)."""
        if self.task is not None:
            self.task.abandon()
            self.task = None

    # ----------------------------------------------------------------- one check

    def check_once(self) -> Activity:
        """Judge every other node; fence those dead long enough (if the guard allows)."""
        store, settings = self.sim.store, self.sim.settings
        nodes = store.load_nodes()
        live = store.live_nodes()
        healths: dict[str, NodeHealth] = {
            node.name: judge_node(
                node,
                session_alive=node.name in live,
                now=self.sim.clock.now,
                keepalive_interval=settings.keepalive_interval,
                fence_intervals=settings.fence_intervals,
            )
            for node in nodes
            if node.name != self.here
        }
        # A node left 'dead' by a fence that failed is tried again; never this node itself.
        retry = {
            n.name: fence_retry_reason(n)
            for n in nodes
            if n.name != self.here and n.daemonstate == "dead" and n.name not in live
        }
        # A node left fenced in 'fence-flush' by a coordinator that died in its recovery.
        for node in nodes:
            if recovery_unfinished(node, self.here, live):
                self._resume(node.name)
        dead = sorted({name for name, h in healths.items() if h.dead} | set(retry))
        self.suspects = {name: self.suspects.get(name, 0) + 1 for name in dead}
        if not dead:
            return
        allowed, why = fencing_allowed(
            len(nodes), dead, quorum=True, max_dead_fraction=settings.max_dead_fraction
        )
        if not allowed:
            if why != self.refused:
                self.sim.log.emit(f"fencing ({self.here}): {why} (dead: {', '.join(dead)})")
            self.refused = why
            return
        self.refused = ""
        for name in dead:
            if self.suspects[name] < settings.rechecks:
                reason = retry[name] if name in retry else healths[name].reason
                self.sim.log.emit(
                    f"fencing ({self.here}): node {name!r} looks dead ({reason}): "
                    f"check {self.suspects[name]} of {settings.rechecks}"
                )
                continue
            yield from self._fence(name)

    # ----------------------------------------------------------------- fencing

    def _fence(self, name: str) -> Activity:
        lock = f"locks/fence/{name}"
        store = self.sim.store
        if not store.try_lock(lock, self.daemon.session):
            return  # another coordinator is fencing it
        died = yield from self._fence_locked(name)
        if died:
            return  # a dead process releases nothing: its lock goes with its session
        self.suspects.pop(name, None)
        store.release_ephemeral(lock, self.daemon.session)

    def _resume(self, name: str) -> None:
        """Finish the recovery of a fenced node, under the same lock as a fence."""
        lock = f"locks/fence/{name}"
        store = self.sim.store
        if not store.try_lock(lock, self.daemon.session):
            return  # its recovery is under way, by the coordinator that fenced it
        node = store.node(name)
        if recovery_unfinished(node, self.here, store.live_nodes()):
            self.sim.log.emit(f"fencing ({self.here}): node {name!r}: resuming its recovery")
            record = self._recover(node, dict(node.maintenance, resumed_by=self.here))
            self.sim.invariants.maintenance_ended(name, "recovery", record)
            self._write_node(
                store.node(name),
                {"domainstate": "flushed", "maintenance": dict(record, status="done")},
                "recovery done (resumed): flushed",
                only_if=("fenced",),
            )
        store.release_ephemeral(lock, self.daemon.session)

    def _fence_locked(self, name: str) -> Activity:
        store = self.sim.store
        node = store.node(name)
        if node.daemonstate not in ("run", "dead") or name in store.live_nodes():
            self.sim.log.emit(f"fencing ({self.here}): node {name!r} came back: not fencing it")
            return
        record = dict(new_record("fence", self.sim.clock.now), by=self.here)
        marked = self._write_node(
            node, {"daemonstate": "dead", "maintenance": record}, "dead", only_if=("run", "dead")
        )
        if marked is None:
            self.sim.log.emit(f"fencing ({self.here}): node {name!r} came back: not fencing it")
            return
        node = marked
        bmc = self.sim.bmcs.get(name)
        if bmc is None:
            self._fence_failed(node, record, "no BMC address is configured for it")
            return
        self.sim.log.emit(f"fencing ({self.here}): powering {name} off through {bmc.address}")
        confirmed, detail = yield from self.sim.bmc_fence(bmc)
        if not confirmed:
            if not self.sim.settings.recover_after_failed_fence:
                self._fence_failed(node, record, detail)
                return
            self.sim.log.emit(f"fencing ({self.here}): NOT confirmed; recovering anyway")
        record = dict(record, fence=detail)
        fenced = self._write_node(
            node,
            {"daemonstate": "fenced", "domainstate": "fence-flush", "maintenance": record},
            f"fenced ({detail})",
            only_if=("dead",),
        )
        if fenced is None:
            # Its daemon registered again before the fence could be recorded: a live node,
            # whose VMs are its own to start.
            self.sim.log.emit(
                f"fencing ({self.here}): node {name!r} is back before its recovery: "
                "nothing recovered"
            )
            return
        if self.here in self.sim.faults.crash_after_fence:
            self.sim.faults.crash_after_fence.discard(self.here)
            self.sim.log.emit(f"fault: daemon on {self.here} killed before recovering {name}")
            here = self.here
            self.sim.schedule(
                self.sim.clock.now, f"kill {here}", lambda: self.sim.kill_daemon(here)
            )
            return True
        record = self._recover(fenced, record)
        self.sim.invariants.maintenance_ended(name, "recovery", record)
        self._write_node(
            store.node(name),
            {"domainstate": "flushed", "maintenance": dict(record, status="done")},
            "recovery done: flushed",
            only_if=("fenced",),
        )

    def _fence_failed(self, node: NodeRecord, record: dict[str, Any], detail: str) -> None:
        message = f"FENCE FAILED, nothing recovered: {detail}"
        self._write_node(
            self.sim.store.node(node.name),
            {"maintenance": dict(record, status="failed", fence=message)},
            message,
        )

    def _write_node(
        self,
        node: NodeRecord,
        changes: dict[str, Any],
        event: str,
        only_if: tuple[str, ...] = (),
    ) -> NodeRecord | None:
        """Write ``changes``, re-reading on a conflict; None if ``only_if`` (the daemon
        states the write still makes sense in) no longer holds."""
        store = self.sim.store
        for attempt in range(5):
            if only_if and node.daemonstate not in only_if:
                return None
            try:
                return store.update_node(node, changes, event=event)
            except Conflict:
                if attempt == 4:
                    raise
                node = store.node(node.name)
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------- recovery

    def _recover(self, node: NodeRecord, record: dict[str, Any]) -> dict[str, Any]:
        """Start each VM of the fenced ``node`` elsewhere (or stop it with autostart)."""
        store = self.sim.store
        vms = store.load_vms()
        plan = recovery_plan(
            node.name,
            vms,
            store.load_nodes(),
            store.sizes,
            default_selector=store.default_selector,
            live=store.live_nodes(),
        )
        by_uuid = {vm.uuid: vm for vm in vms}
        record = dict(record, kind="recovery")
        for step in plan.steps:
            vm = by_uuid[step.uuid]
            outcome, reason = "stayed", step.reason
            try:
                if step.action != "stay":
                    outcome, reason = self._recover_vm(vm, step.action, step.target, step.reason)
                elif vm.state == "shutdown":
                    # It was being shut down when the power went: the power-off stopped it.
                    store.update_vm(vm, {"state": "stop"}, event="stopped (node fenced)")
                    outcome, reason = "stopped", "was shutting down; the power-off stopped it"
            except PvcError as error:
                outcome, reason = "failed", str(error)
            if outcome in ("stayed", "failed"):
                self.sim.log.emit(f"recovery of {node.name}: vm {vm.name!r} {outcome}: {reason}")
            record = record_vm(
                record,
                vm.uuid,
                name=vm.name,
                action=step.action,
                target=step.target,
                outcome=outcome,
                reason=reason,
            )
        return record

    def _recover_vm(self, vm: VmRecord, action: str, target: str, reason: str) -> tuple[str, str]:
        # The simulated VMs have no RBD disks: there are no locks to clear first.
        store = self.sim.store
        lastnode = vm.lastnode or vm.node
        if lastnode == target:
            lastnode = ""  # recovered onto its home: not migrated away from anywhere
        if action == "start":
            store.update_vm(
                vm,
                as_request(
                    vm,
                    {"node": target, "lastnode": lastnode, "state": "start", "failedreason": ""},
                ),
                event=f"recovered {vm.node} -> {target} (fenced)",
            )
            return "started", f"start requested on {target}"
        store.update_vm(
            vm,
            as_request(vm, {"state": "stop", "node_autostart": True, "failedreason": reason}),
            event=f"stopped with autostart ({vm.node} fenced; {reason})",
        )
        return "stopped-autostart", reason
