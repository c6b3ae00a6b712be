"""A daemon's VM worker: one reconcile decision carried out, step for step as the real one.

Mirrors ``pvc_noded.vm_actions``: the decision comes from the real
:func:`pvc_common.reconcile.decide`, the migration choice and its undo from the real
:func:`migration_method_for` / :func:`migration_revert`, and every write is the same
version-checked write with the same event text. What differs is only that libvirt calls
take simulated time (each handler is an activity), so other daemons act meanwhile.

Handlers catch ``Exception`` and never use ``finally``: a killed daemon's activity is
dropped without running any clean-up, as a killed process runs none. Simulated VMs have
no RBD disks, so the lock check before a start and ``Kind.FLUSH_LOCKS`` never apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pvc_common.errors import Conflict, HypervisorError
from pvc_common.models import NodeRecord, VmRecord
from pvc_common.reconcile import Action, Kind, migration_method_for, migration_revert
from pvc_common.vm_rules import live_retry_refusal

from .clock import Activity

if TYPE_CHECKING:
    from .daemon import DaemonProcess


def work(daemon: DaemonProcess, uuid: str) -> Activity:
    """The VM's worker (``NodeDaemon._work``): decide again on fresh data, then act."""
    vm = daemon.sim.store.vm(uuid)
    if vm is None:
        return
    action = daemon.decide(vm, uuid)
    yield from carry_out(daemon, vm, action)


def carry_out(daemon: DaemonProcess, vm: VmRecord, action: Action) -> Activity:
    """Do ``action`` for ``vm``; a libvirt failure ends in ``state=fail`` with its reason."""
    handler = _HANDLERS.get(action.kind)
    if handler is None:
        return
    try:
        yield from handler(daemon, vm, action)
    except Conflict:
        pass  # the VM changed meanwhile: the next pass decides again on fresh data
    except HypervisorError as error:
        _record_failure(daemon, vm, str(error))


def _record_failure(daemon: DaemonProcess, vm: VmRecord, reason: str) -> None:
    try:
        daemon.sim.store.update_vm(
            vm,
            {"state": "fail", "failedreason": reason},
            event=f"fail on {daemon.name}: {reason}",
        )
    except Conflict:
        pass  # changed meanwhile: the failure is not recorded over the newer state


def _start(daemon: DaemonProcess, vm: VmRecord, action: Action) -> Activity:
    yield from _start_here(daemon, vm)
    if action.crash_restart:
        daemon.note_crash_restart(vm.uuid)
    # Rewritten even when the state stays 'start': 'confirmed' is how a client waiting on
    # the start knows it succeeded.
    daemon.sim.store.update_vm(
        vm,
        {"state": action.then_state or "start", "confirmed": vm.request},
        event=f"started on {daemon.name} ({action.reason})",
    )


def _start_here(daemon: DaemonProcess, vm: VmRecord, *, in_place: bool = False) -> Activity:
    """List the VM in runningdomains (only if it is still ours as read), then start it."""
    daemon.starting.add(vm.uuid)
    try:
        daemon.update_row(
            lambda row: {"runningdomains": tuple(sorted({*daemon.listed_now(), vm.uuid}))},
            guard=vm,
        )
        yield daemon.sim.settings.start_time
        daemon.hypervisor.start(vm, in_place=in_place)
    except Exception:
        daemon.starting.discard(vm.uuid)
        daemon.publish_running()
        raise
    daemon.starting.discard(vm.uuid)


def _shutdown(daemon: DaemonProcess, vm: VmRecord, action: Action) -> Activity:
    how = yield from daemon.hypervisor.shutdown(vm.uuid, daemon.sim.settings.shutdown_timeout)
    daemon.publish_running()
    if action.then_state:
        daemon.sim.store.update_vm(
            vm,
            {"state": action.then_state},
            event=f"{how} on {daemon.name} ({action.reason})",
        )


def _destroy(daemon: DaemonProcess, vm: VmRecord, action: Action) -> Activity:
    daemon.hypervisor.destroy(vm.uuid)
    daemon.publish_running()
    yield 0


def _restart(daemon: DaemonProcess, vm: VmRecord, action: Action) -> Activity:
    yield from daemon.hypervisor.shutdown(vm.uuid, daemon.sim.settings.shutdown_timeout)
    daemon.publish_running()
    yield from _start_here(daemon, vm, in_place=True)
    daemon.sim.store.update_vm(
        vm, {"state": "start", "confirmed": vm.request}, event=f"restarted on {daemon.name}"
    )


def _record(daemon: DaemonProcess, vm: VmRecord, action: Action) -> Activity:
    if action.then_state == "start":
        # A VM that arrived here by live migration: list it now, not at the next keepalive.
        daemon.publish_running()
    changes: dict[str, Any] = {"state": action.then_state}
    if action.then_state == "start":
        changes["confirmed"] = vm.request  # it runs here, as the request wanted
    if action.failedreason:
        changes["failedreason"] = action.failedreason
    daemon.sim.store.update_vm(vm, changes, event=f"{action.reason}: state {action.then_state}")
    yield 0


def _migrate_out(daemon: DaemonProcess, vm: VmRecord, action: Action) -> Activity:
    """Send a VM that runs here to ``action.target``: live, else by shutdown and start."""
    store = daemon.sim.store
    target, method, why_not = _target_now(daemon, vm, action.target)
    if target is None or method == "stay":
        _stay(daemon, vm, why_not)
        return
    live_error = ""
    if method == "live":
        live_error = yield from _try_live(daemon, vm, target)
        if not live_error:
            # Until the target lists it, this node keeps listing it: a running VM must never
            # be listed nowhere.
            daemon.note_departed(vm.uuid, target.name)
            daemon.publish_running()
            try:
                store.update_vm(
                    vm,
                    {"state": "start"},  # confirmed by the target, as NodeDaemon does
                    event=f"live-migrated {daemon.name} -> {target.name}",
                )
            except Conflict:
                pass  # the target saw it arrive and recorded it first
            return
        if vm.migration_method == "live":
            _stay(daemon, vm, f"{live_error} (to {target.name}); migration_method is live")
            return
        # As NodeDaemon: look at the target again before shutting the VM down for it.
        why_not = yield from _still_alive(daemon, vm, target.name)
        if why_not:
            _stay(daemon, vm, f"{live_error} (to {target.name}); not shut down: {why_not}")
            return
    how = yield from daemon.hypervisor.shutdown(vm.uuid, daemon.sim.settings.shutdown_timeout)
    changes: dict[str, Any] = {"state": "start"}
    if live_error:
        changes["failedreason"] = f"{live_error}; moved by shutdown and start instead"
    # The target starts it only once this node no longer lists it: write both at once.
    store.update_vm_and_node(
        vm,
        changes,
        store.node(daemon.name),
        {"runningdomains": daemon.listed_now()},
        event=f"shutdown-migrated {daemon.name} -> {target.name} ({how})",
    )


def _target_now(
    daemon: DaemonProcess, vm: VmRecord, name: str
) -> tuple[NodeRecord | None, str, str]:
    """The target's row now, and how the VM may be sent to it (``vm_actions._target_now``)."""
    store = daemon.sim.store
    target = store.nodes.get(name)
    return (target, *migration_method_for(vm, target, alive=name in store.live_nodes()))


def _still_alive(daemon: DaemonProcess, vm: VmRecord, name: str) -> Activity:
    """'' once the target shows it can still take the VM, else why not
    (``vm_actions._still_alive``: a new keepalive within two intervals)."""
    sim = daemon.sim
    deadline = sim.clock.now + 2 * sim.settings.keepalive_interval + 1
    first: int | None = None
    while True:
        target, method, why_not = _target_now(daemon, vm, name)
        if target is None or method == "stay":
            return why_not
        if first is None:
            first = target.keepalive
        elif target.keepalive != first:
            return ""
        if sim.clock.now >= deadline:
            return f"{name} wrote no keepalive after the failed live migration"
        yield sim.settings.tick


def _stay(daemon: DaemonProcess, vm: VmRecord, reason: str) -> None:
    revert = migration_revert(vm, daemon.name, reason)
    daemon.sim.store.update_vm(vm, revert, event=f"migration undone: {revert['failedreason']}")


def _try_live(daemon: DaemonProcess, vm: VmRecord, target: NodeRecord) -> Activity:
    """Live-migrate, a few attempts; return '' on success or the last error."""
    error = ""
    store = daemon.sim.store
    for attempt in range(daemon.sim.settings.migration_attempts):
        if attempt > 0:
            refusal = live_retry_refusal(store.vm(vm.uuid), store.node(target.name))
            if refusal:
                return f"{error}; not tried again: {refusal}"
        try:
            yield from daemon.hypervisor.migrate(vm.uuid, target.name)
            return ""
        except HypervisorError as failure:
            error = str(failure)
    return error


_HANDLERS: dict[Kind, Callable[[DaemonProcess, VmRecord, Action], Activity]] = {
    Kind.START: _start,
    Kind.SHUTDOWN: _shutdown,
    Kind.DESTROY: _destroy,
    Kind.RESTART: _restart,
    Kind.RECORD: _record,
    Kind.MIGRATE_OUT: _migrate_out,
}
