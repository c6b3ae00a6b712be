"""Carrying out one reconcile decision for one VM (runs in that VM's worker).

Each function takes the VM as just read, does the libvirt part through the
:class:`Hypervisor` adapter and writes the result with version checks. A conflict means
somebody changed the VM meanwhile: the daemon simply decides again on the next pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pvc_common import schema
from pvc_common.errors import Conflict, HypervisorError, NotFound, PvcError
from pvc_common.models import NodeRecord, VmRecord
from pvc_common.mutations import update_vm
from pvc_common.node_stats import counted
from pvc_common.reconcile import (
    Action,
    Kind,
    Presence,
    migration_method_for,
    migration_revert,
)
from pvc_common.snapshot import load_node, load_vms
from pvc_common.storage import RbdLocks
from pvc_common.store import ZkStore
from pvc_common.vm_rules import live_retry_refusal

from .config import NodeConfig
from .hypervisor import Hypervisor
from .node_row import NodeRow

log = logging.getLogger(__name__)


@dataclass
class ActionContext:
    """What an action needs from the daemon."""

    config: NodeConfig
    store: ZkStore
    hypervisor: Hypervisor
    row: NodeRow
    #: Marks a VM as being started here (listed in runningdomains before it runs) or not.
    set_starting: Callable[[str, bool], None]
    #: What ``runningdomains`` must list now, given the row (re-lists from libvirt).
    listed_now: Callable[[], tuple[str, ...]]
    #: Called after a crash restart, to spend one unit of the VM's restart budget.
    note_crash_restart: Callable[[str], None]
    #: RBD lock listing and clearing (the same code as fence recovery).
    rbd: RbdLocks
    #: Keeps a VM that left by live migration listed here until its target lists it.
    note_departed: Callable[[str, str], None] = lambda uuid, target: None
    #: Takes the VM's console log offset just before it starts here.
    prime_console: Callable[[VmRecord], None] = lambda vm: None

    @property
    def here(self) -> str:
        return self.config.node.name


def carry_out(ctx: ActionContext, vm: VmRecord, action: Action) -> None:
    """Do ``action`` for ``vm``; a libvirt failure ends in ``state=fail`` with its reason."""
    handler = _HANDLERS.get(action.kind)
    if handler is None:
        return
    log.info("vm %r: %s: %s", vm.name, action.kind.value, action.reason)
    try:
        handler(ctx, vm, action)
    except Conflict as error:
        log.info("vm %r changed while acting on it (%s): deciding again", vm.name, error)
    except HypervisorError as error:
        _record_failure(ctx, vm, str(error))


def _record_failure(ctx: ActionContext, vm: VmRecord, reason: str) -> None:
    log.error("vm %r: %s", vm.name, reason)
    try:
        update_vm(
            ctx.store,
            vm,
            {"state": "fail", "failedreason": reason},
            event=f"fail on {ctx.here}: {reason}",
        )
    except Conflict:
        log.info("vm %r changed meanwhile: not recording the failure over it", vm.name)


# ----------------------------------------------------------------------------- actions


def _start(ctx: ActionContext, vm: VmRecord, action: Action) -> None:
    _start_here(ctx, vm)
    if action.crash_restart:
        ctx.note_crash_restart(vm.uuid)
    # Rewritten even when the state stays 'start': 'confirmed' is how a client waiting on
    # the start (pvc --wait) knows it succeeded, not just that the VM was listed.
    update_vm(
        ctx.store,
        vm,
        {"state": action.then_state or "start", "confirmed": vm.request},
        event=f"started on {ctx.here}",
        why=action.reason,
    )


def _check_rbd_locks(ctx: ActionContext, vm: VmRecord) -> None:
    """Refuse to start a VM whose RBD images someone holds a lock on; never break it.

    Only advisory locks count: librbd's own exclusive lock ('auto ...') is handed over
    between clients by librbd itself. A dead holder's lock is cleared by fence recovery
    or, on request, by ``pvc vm flush-locks``.
    """
    if not vm.rbdlist:
        return
    try:
        held = [lock for lock in ctx.rbd.held_by_others(vm.rbdlist) if not lock.is_exclusive_lock]
    except PvcError as error:
        raise HypervisorError(f"cannot check the RBD locks of its disks: {error}") from None
    if held:
        holders = "; ".join(f"{lock.image} by {lock.describe()}" for lock in held)
        raise HypervisorError(
            f"not started: RBD lock held ({holders}); if the holder is dead, "
            "run 'pvc vm flush-locks'"
        )


def _start_here(ctx: ActionContext, vm: VmRecord) -> None:
    """List the VM in runningdomains (only if it is still ours as read), then start it."""
    _check_rbd_locks(ctx, vm)
    ctx.set_starting(vm.uuid, True)
    try:
        ctx.row.update(
            lambda row: {"runningdomains": tuple(sorted({*ctx.listed_now(), vm.uuid}))},
            guard=vm,
        )
        ctx.prime_console(vm)
        ctx.hypervisor.start(vm.uuid, vm.xml)
    except BaseException:
        ctx.set_starting(vm.uuid, False)
        _publish_running(ctx)
        raise
    ctx.set_starting(vm.uuid, False)


def _shutdown(ctx: ActionContext, vm: VmRecord, action: Action) -> None:
    how = ctx.hypervisor.shutdown(vm.uuid, ctx.config.vm.shutdown_timeout)
    _publish_running(ctx)
    if action.then_state:
        update_vm(
            ctx.store,
            vm,
            {"state": action.then_state},
            event=f"{how} on {ctx.here}",
            why=action.reason,
        )


def _destroy(ctx: ActionContext, vm: VmRecord, action: Action) -> None:
    ctx.hypervisor.destroy(vm.uuid)
    _publish_running(ctx)
    log.info("vm %r: stopped on %s (%s)", vm.name, ctx.here, action.reason)


def _restart(ctx: ActionContext, vm: VmRecord, action: Action) -> None:
    ctx.hypervisor.shutdown(vm.uuid, ctx.config.vm.shutdown_timeout)
    _publish_running(ctx)
    _start_here(ctx, vm)
    update_vm(
        ctx.store,
        vm,
        {"state": "start", "confirmed": vm.request},
        event=f"restarted on {ctx.here}",
    )


def _record(ctx: ActionContext, vm: VmRecord, action: Action) -> None:
    if action.then_state == "start":
        # A VM that arrived here by live migration: list it now, not at the next
        # keepalive, so waiters (pvc --wait, a flush) see it where it runs at once.
        _publish_running(ctx)
    changes: dict[str, Any] = {"state": action.then_state}
    if action.then_state == "start":
        changes["confirmed"] = vm.request  # it runs here, as the request wanted
    if action.failedreason:
        changes["failedreason"] = action.failedreason
    update_vm(ctx.store, vm, changes, event=f"{action.reason}: state {action.then_state}")


def _migrate_out(ctx: ActionContext, vm: VmRecord, action: Action) -> None:
    """Send a VM that runs here to ``action.target``: live, else by shutdown and start."""
    target, method, why_not = _target_now(ctx, vm, action.target)
    if target is None or method == "stay":
        _stay(ctx, vm, why_not)
        return
    started = time.monotonic()
    live_error = ""
    if method == "live":
        live_error = _try_live(ctx, vm, target)
        if not live_error:
            # Until the target lists it, this node keeps listing it: a running VM must never
            # be listed nowhere, or a third node sent it could start a second copy.
            ctx.note_departed(vm.uuid, target.name)
            _publish_running(ctx)
            try:
                update_vm(
                    ctx.store,
                    vm,
                    # Not confirmed here: only the node it runs on confirms, from what
                    # its own libvirt says (it may have crashed there already).
                    {"state": "start"},
                    event=f"live-migrated {ctx.here} -> {target.name}",
                )
            except Conflict:
                # The target saw it arrive and recorded it first: nothing left to do.
                pass
            _count(ctx, "migration_live", started)
            return
        if vm.migration_method == "live":
            _stay(ctx, vm, f"{live_error} (to {target.name}); migration_method is live")
            return
        # Look at the target again before shutting the VM down for it: one that died
        # during the live attempts still shows 'run' until it is judged dead.
        why_not = _still_alive(ctx, vm, target.name)
        if why_not:
            _stay(ctx, vm, f"{live_error} (to {target.name}); not shut down: {why_not}")
            return
        log.warning("vm %r: %s; falling back to shutdown and start", vm.name, live_error)
    how = ctx.hypervisor.shutdown(vm.uuid, ctx.config.vm.shutdown_timeout)
    changes: dict[str, Any] = {"state": "start"}
    if live_error:
        changes["failedreason"] = f"{live_error}; moved by shutdown and start instead"
    # The target starts it only once this node no longer lists it: write both at once.
    ctx.row.hand_over(
        vm,
        changes,
        lambda row: {"runningdomains": ctx.listed_now()},
        event=f"shutdown-migrated {ctx.here} -> {target.name} ({how})",
    )
    _count(ctx, "migration_shutdown", started)


def _count(ctx: ActionContext, counter: str, started: float) -> None:
    """Add a finished migration to this node's counters (for /metrics); never fatal."""
    seconds = time.monotonic() - started
    try:
        ctx.row.update(lambda row: {"stats": counted(row.stats, counter, seconds)})
    except PvcError as error:
        log.warning("could not count a %s: %s", counter, error)


def _target_now(ctx: ActionContext, vm: VmRecord, name: str) -> tuple[NodeRecord | None, str, str]:
    """The target's row now, and how the VM may be sent to it (``migration_method_for``)."""
    try:
        target: NodeRecord | None = load_node(ctx.store, name)
    except NotFound:
        target = None
    alive = ctx.store.exists(schema.liveness_path(name))
    return (target, *migration_method_for(vm, target, alive=alive))


def _still_alive(ctx: ActionContext, vm: VmRecord, name: str) -> str:
    """'' once the target shows it can still take the VM, else why not.

    Its row and ZooKeeper session must still allow it, and it must write a keepalive
    from now on (proof that it lives after the failed live attempts, not only before;
    keepalive values are compared with the target's own, never with this node's clock).
    Waits up to two keepalive intervals for that keepalive.
    """
    deadline = time.monotonic() + 2 * ctx.config.daemon.keepalive_interval + 1
    first: int | None = None
    while True:
        target, method, why_not = _target_now(ctx, vm, name)
        if target is None or method == "stay":
            return why_not
        if first is None:
            first = target.keepalive
        elif target.keepalive != first:
            return ""
        if time.monotonic() >= deadline:
            return f"{name} wrote no keepalive after the failed live migration"
        time.sleep(0.25)


def _stay(ctx: ActionContext, vm: VmRecord, reason: str) -> None:
    revert = migration_revert(vm, ctx.here, reason)
    log.warning("vm %r: %s", vm.name, revert["failedreason"])
    update_vm(ctx.store, vm, revert, event=f"migration undone: {revert['failedreason']}")


def _try_live(ctx: ActionContext, vm: VmRecord, target: NodeRecord) -> str:
    """Live-migrate, a few attempts; return '' on success or the last error."""
    error = ""
    for attempt in range(1, ctx.config.migration.attempts + 1):
        if attempt > 1:
            found = load_vms(ctx.store, [vm.uuid])
            refusal = live_retry_refusal(
                found[0] if found else None, load_node(ctx.store, target.name)
            )
            if refusal:
                log.warning("vm %r: not trying again: %s", vm.name, refusal)
                return f"{error}; not tried again: {refusal}"
        try:
            ctx.hypervisor.migrate(
                vm.uuid,
                peer_uri=target.libvirturi,
                migration_uri=target.migrationuri,
                max_downtime_ms=ctx.config.migration.max_downtime_ms,
                timeout=ctx.config.migration.timeout,
            )
            return ""
        except HypervisorError as failure:
            error = str(failure)
            log.warning(
                "vm %r: live migration to %s, attempt %d of %d: %s",
                vm.name,
                target.name,
                attempt,
                ctx.config.migration.attempts,
                error,
            )
    return error


def _flush_locks(ctx: ActionContext, vm: VmRecord, action: Action) -> None:
    """Clear the RBD locks of a VM that is not running, and record the outcome."""
    if vm.state in ("start", "restart", "migrate") or (
        ctx.hypervisor.presence(vm.uuid) is not Presence.STOPPED
    ):
        outcome = "refused: the VM is running"
    else:
        results = ctx.rbd.clear_locks(vm.rbdlist)
        text = "; ".join(result.message for result in results)
        outcome = ("done: " if all(r.ok for r in results) else "failed: ") + text
    update_vm(ctx.store, vm, {"lockflush": outcome}, event=f"RBD lock flush {outcome}")


def _publish_running(ctx: ActionContext) -> None:
    """Rewrite runningdomains from libvirt now, so peers waiting on it see the change."""
    try:
        ctx.row.update(lambda row: {"runningdomains": ctx.listed_now()})
    except PvcError as error:
        log.warning("could not publish runningdomains: %s", error)


_HANDLERS: dict[Kind, Callable[[ActionContext, VmRecord, Action], None]] = {
    Kind.START: _start,
    Kind.SHUTDOWN: _shutdown,
    Kind.DESTROY: _destroy,
    Kind.RESTART: _restart,
    Kind.RECORD: _record,
    Kind.MIGRATE_OUT: _migrate_out,
    Kind.FLUSH_LOCKS: _flush_locks,
}
