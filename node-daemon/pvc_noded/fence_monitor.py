"""Dead-node detection, fencing and recovery, run by coordinator daemons.

Every keepalive interval a coordinator judges every other node with the pure core
(:func:`pvc_common.ha.judge_node`): dead means its daemon was ``run``, it wrote no
keepalive for ``fencing.intervals`` intervals, *and* its ZooKeeper session is gone. A
node must look dead on ``fencing.rechecks`` consecutive checks, and the storm guard
(:func:`pvc_common.ha.fencing_allowed`) can refuse when too many look dead at once. One
coordinator fences a given node (an ephemeral lock): the node is marked ``dead`` (so it
never attracts a placement), powered off through its BMC, and only a *confirmed*
power-off lets its VMs be recovered elsewhere (RBD locks cleared first). A failed fence
recovers nothing unless configured otherwise, says so in the node's ``maintenance``
record and at ERROR in the log, and is retried on later checks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pvc_common import schema
from pvc_common.errors import Conflict, InvalidInput, PvcError
from pvc_common.ha import (
    fence_retry_reason,
    fencing_allowed,
    judge_node,
    recovery_plan,
    recovery_unfinished,
)
from pvc_common.maintenance import load_inputs, new_record, record_vm
from pvc_common.models import NodeRecord
from pvc_common.mutations import update_node, update_vm
from pvc_common.node_ops import live_nodes
from pvc_common.node_stats import counted
from pvc_common.snapshot import load_node, load_nodes
from pvc_common.storage import RbdLocks
from pvc_common.store import ZkStore
from pvc_common.vm_rules import as_request

from .config import NodeConfig
from .fencing import BmcAddress, CommandFencer, Fencer, IpmitoolFencer

log = logging.getLogger(__name__)


def make_fencer(config: NodeConfig) -> Fencer:
    """The fencer the configuration asks for."""
    fencing = config.fencing
    if fencing.method == "command":
        if not fencing.command:
            raise InvalidInput("fencing.command: required when fencing.method is command")
        return CommandFencer(fencing.command, timeout=fencing.timeout)
    return IpmitoolFencer(timeout=fencing.timeout)


class FenceMonitor:
    """One coordinator's watch over the other nodes."""

    def __init__(
        self,
        store: ZkStore,
        config: NodeConfig,
        *,
        fencer: Fencer,
        rbd: RbdLocks,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.config, self.fencer, self.rbd = store, config, fencer, rbd
        self.here = config.node.name
        self.clock = clock
        self._suspects: dict[str, int] = {}
        self._refused = ""

    # ----------------------------------------------------------------- one check

    def check_once(self) -> None:
        """Judge every other node; fence those dead long enough (if the guard allows)."""
        nodes = load_nodes(self.store)
        live = live_nodes(self.store)
        now = self.clock()
        interval = self.config.daemon.keepalive_interval
        healths = {
            node.name: judge_node(
                node,
                session_alive=node.name in live,
                now=now,
                keepalive_interval=interval,
                fence_intervals=self.config.fencing.intervals,
            )
            for node in nodes
            if node.name != self.here
        }
        # A node left 'dead' by a fence that failed is tried again; never this node itself
        # (its own session may be new and its liveness not claimed again yet).
        retry = {
            n.name: fence_retry_reason(n)
            for n in nodes
            if n.name != self.here and n.daemonstate == "dead" and n.name not in live
        }
        # A node left fenced in 'fence-flush' by a coordinator that stopped during its
        # recovery: the fence was confirmed, so finishing the recovery is safe.
        for node in nodes:
            if recovery_unfinished(node, self.here, live):
                self._resume(node.name)
        dead = sorted({name for name, h in healths.items() if h.dead} | set(retry))
        self._suspects = {name: self._suspects.get(name, 0) + 1 for name in dead}
        if not dead:
            return
        # Reads succeeded, so this daemon talks to a ZooKeeper quorum.
        allowed, why = fencing_allowed(
            len(nodes), dead, quorum=True, max_dead_fraction=self.config.fencing.max_dead_fraction
        )
        if not allowed:
            if why != self._refused:
                log.error("%s (dead: %s)", why, ", ".join(dead))
            self._refused = why
            return
        self._refused = ""
        for name in dead:
            if self._suspects[name] < self.config.fencing.rechecks:
                # judge_node says "daemon dead: not fenced" of a node to retry: not why.
                reason = retry[name] if name in retry else healths[name].reason
                log.warning(
                    "node %r looks dead (%s): check %d of %d before fencing",
                    name,
                    reason,
                    self._suspects[name],
                    self.config.fencing.rechecks,
                )
                continue
            self._fence(name)

    # ----------------------------------------------------------------- fencing

    def _fence(self, name: str) -> None:
        lock = schema.fence_lock_path(name)
        if not self.store.try_lock(lock, self.here.encode()):
            log.info("node %r: another coordinator is fencing it", name)
            return
        try:
            self._fence_locked(name)
        finally:
            self._suspects.pop(name, None)
            self.store.release_ephemeral(lock)

    def _resume(self, name: str) -> None:
        """Finish the recovery of a fenced node, under the same lock as a fence.

        The lock is an ephemeral znode: while the coordinator that fenced the node is
        alive (recovering) it holds it; it is free only once that session has ended.
        """
        lock = schema.fence_lock_path(name)
        if not self.store.try_lock(lock, self.here.encode()):
            return  # its recovery is under way, by the coordinator that fenced it
        try:
            node = load_node(self.store, name)
            if not recovery_unfinished(node, self.here, live_nodes(self.store)):
                return
            log.warning(
                "node %r: resuming its recovery (the coordinator that fenced it stopped "
                "before finishing it)",
                name,
            )
            record = dict(node.maintenance, resumed_by=self.here)
            record = self._recover(node, record)
            self._write_node(
                load_node(self.store, name),
                {"domainstate": "flushed", "maintenance": dict(record, status="done")},
                "recovery done (resumed): flushed",
                only_if=("fenced",),
            )
        finally:
            self.store.release_ephemeral(lock)

    def _fence_locked(self, name: str) -> None:
        node = load_node(self.store, name)
        if node.daemonstate not in ("run", "dead") or name in live_nodes(self.store):
            log.info("node %r came back (%s): not fencing it", name, node.daemonstate)
            return
        record = dict(new_record("fence", self.clock()), by=self.here)
        marked = self._write_node(
            node, {"daemonstate": "dead", "maintenance": record}, "dead", only_if=("run", "dead")
        )
        if marked is None:
            log.info("node %r came back: not fencing it", name)
            return
        node = marked
        bmc, why_not = _bmc_of(node)
        if bmc is None:
            self._fence_failed(node, record, why_not)
            return
        log.warning("node %r: fencing it through its BMC %s", name, bmc)
        fence_started = time.monotonic()
        result = self.fencer.fence(bmc)
        fence_seconds = time.monotonic() - fence_started
        if not result.confirmed_off:
            if self.config.fencing.recover_after_failed_fence:
                log.error(
                    "node %r: fence NOT confirmed (%s); recovering anyway as configured",
                    name,
                    result.detail,
                )
            else:
                self._fence_failed(node, record, result.detail, fence_seconds)
                return
        log.warning("node %r: fenced (%s)", name, result.detail)
        record = dict(record, fence=result.detail)
        fenced = self._write_node(
            node,
            lambda row: {
                "daemonstate": "fenced",
                "domainstate": "fence-flush",
                "maintenance": record,
                "stats": counted(row.stats, "fence", fence_seconds),
            },
            f"fenced ({result.detail})",
            only_if=("dead",),
        )
        if fenced is None:
            # Its daemon registered again (powered on and booted) before we could record
            # the fence: it is a live node now, and its VMs are its own to start.
            log.warning("node %r is back before its recovery: nothing recovered", name)
            return
        record = self._recover(fenced, record)
        self._write_node(
            load_node(self.store, name),
            {"domainstate": "flushed", "maintenance": dict(record, status="done")},
            "recovery done: flushed",
            only_if=("fenced",),
        )

    def _fence_failed(
        self, node: NodeRecord, record: dict[str, Any], detail: str, seconds: float = 0.0
    ) -> None:
        message = f"FENCE FAILED, nothing recovered: {detail}"
        log.error("node %r: %s", node.name, message)
        self._write_node(
            load_node(self.store, node.name),
            lambda row: {
                "maintenance": dict(record, status="failed", fence=message),
                "stats": counted(row.stats, "fence_failed", seconds),
            },
            message,
        )

    def _write_node(
        self,
        node: NodeRecord,
        changes: dict[str, Any] | Callable[[NodeRecord], dict[str, Any]],
        event: str,
        only_if: tuple[str, ...] = (),
    ) -> NodeRecord | None:
        """Write ``changes`` (or what ``changes(row)`` gives), re-reading on a conflict;
        None if ``only_if`` no longer holds.

        A client may write the row meanwhile (pvc node ready), and the node itself may come
        back: ``only_if`` names the daemon states the write still makes sense in.
        """
        for attempt in range(5):
            if only_if and node.daemonstate not in only_if:
                return None
            values = changes(node) if callable(changes) else changes
            try:
                return update_node(self.store, node, values, event=event)
            except Conflict:
                if attempt == 4:
                    raise
                node = load_node(self.store, node.name)
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------- recovery

    def _recover(self, node: NodeRecord, record: dict[str, Any]) -> dict[str, Any]:
        """Start each VM of the fenced ``node`` elsewhere (or stop it with autostart)."""
        inputs = load_inputs(self.store)
        plan = recovery_plan(
            node.name,
            inputs.vms,
            inputs.nodes,
            inputs.sizes,
            default_selector=inputs.default_selector,
            live=live_nodes(self.store),
        )
        by_uuid = {vm.uuid: vm for vm in inputs.vms}
        record = dict(record, kind="recovery")
        for step in plan.steps:
            vm = by_uuid[step.uuid]
            outcome, reason = "stayed", step.reason
            try:
                if step.action != "stay":
                    outcome, reason = self._recover_vm(vm, step.action, step.target, step.reason)
                elif vm.state == "shutdown":
                    # It was being shut down when the power went: it is stopped now, and
                    # only its (dead) node would have recorded that.
                    update_vm(self.store, vm, {"state": "stop"}, event="stopped (node fenced)")
                    outcome, reason = "stopped", "was shutting down; the power-off stopped it"
            except PvcError as error:
                outcome, reason = "failed", str(error)
            log.info("vm %r: recovery: %s %s", vm.name, outcome, reason)
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

    def _recover_vm(self, vm: Any, action: str, target: str, reason: str) -> tuple[str, str]:
        # The fence is confirmed: breaking the dead node's RBD locks (and blocklisting its
        # clients) is now safe, and the new instance needs the images.
        failures = [o.message for o in self.rbd.clear_locks(vm.rbdlist) if not o.ok]
        if failures:
            update_vm(
                self.store,
                vm,
                {"state": "fail", "failedreason": "; ".join(failures)},
                event="recovery failed: RBD locks",
            )
            return "failed", "; ".join(failures)
        lastnode = vm.lastnode or vm.node
        if lastnode == target:
            lastnode = ""  # recovered onto its home: not migrated away from anywhere
        if action == "start":
            update_vm(
                self.store,
                vm,
                as_request(
                    vm,
                    {"node": target, "lastnode": lastnode, "state": "start", "failedreason": ""},
                ),
                event=f"recovered {vm.node} -> {target}",
                why="fenced",
            )
            return "started", f"start requested on {target}"
        update_vm(
            self.store,
            vm,
            as_request(vm, {"state": "stop", "node_autostart": True, "failedreason": reason}),
            event="stopped with autostart",
            why=f"{vm.node} fenced; {reason}",
        )
        return "stopped-autostart", reason


def _bmc_of(node: NodeRecord) -> tuple[BmcAddress | None, str]:
    """The node's BMC, or None and why it cannot be used (for the FENCE FAILED record)."""
    try:
        bmc = BmcAddress.from_node(node)
    except InvalidInput as error:
        return None, f"its BMC settings cannot be used: {error}"
    if bmc is None:
        return None, "no BMC address is configured for it"
    return bmc, ""
