"""Pure reconcile decisions of a node daemon: what ZooKeeper wants x what libvirt has.

A node daemon calls :func:`decide` for every VM that is assigned to its node or runs on
its host, with the VM's record, what its own libvirtd says about the VM, and which other
nodes report the VM running. The answer is one :class:`Action`; the daemon carries it out
in the VM's worker and then writes ``then_state`` (with a version check).

Two rules keep a VM from ever running on two hosts:

* only the node named by the VM's ``node`` key starts it, and only when no other node
  reports it in its ``runningdomains`` (a node lists a VM there from just before it starts
  it until it has seen it stop);
* a node that runs a VM assigned elsewhere never hands it over by writing ``node``: it
  migrates it live (libvirt moves it atomically) or stops it first, then writes the new
  state together with its updated ``runningdomains`` in one transaction.

Nothing here does I/O or reads a clock: crash history is passed in as a count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from .models import NodeRecord, VmRecord
from .vm_rules import DRAINED_DOMAIN_STATES


class Presence(StrEnum):
    """What a node's libvirtd says about one VM."""

    RUNNING = "running"  # running or paused: QEMU holds the guest here
    INCOMING = "incoming"  # the target side of a live migration, not yet resumed
    STOPPED = "stopped"  # not running here (no domain, or a shut-off one)


class Exit(StrEnum):
    """How the VM last stopped on this host, as libvirt's lifecycle events said."""

    UNKNOWN = "unknown"  # no event seen (e.g. the daemon restarted since)
    GUEST_SHUTDOWN = "guest-shutdown"  # the guest powered itself off
    CRASHED = "crashed"  # QEMU died or the guest crashed
    DESTROYED = "destroyed"  # someone (usually this daemon) stopped it
    MIGRATED = "migrated"  # it left by live migration


class Kind(StrEnum):
    """The action a daemon takes for one VM."""

    NONE = "none"  # nothing to do
    WAIT = "wait"  # something else must happen first; look again soon
    START = "start"  # start it here
    SHUTDOWN = "shutdown"  # ACPI power button, destroy after the shutdown timeout
    DESTROY = "destroy"  # stop it at once
    RESTART = "restart"  # shut down (as above), then start
    MIGRATE_OUT = "migrate-out"  # send it to ``target`` (live, or by shutdown and start)
    RECORD = "record"  # nothing to do on the host; only write ``then_state``
    FLUSH_LOCKS = "flush-locks"  # clear the RBD locks of a VM that is not running


@dataclass(frozen=True)
class Action:
    """One decision: what to do, why, and the state to write once it is done."""

    kind: Kind
    reason: str
    then_state: str | None = None
    target: str = ""
    #: The start is a restart after a crash: it spends one unit of the restart budget.
    crash_restart: bool = False
    failedreason: str = ""


def decide(
    vm: VmRecord | None,
    *,
    here: str,
    presence: Presence,
    last_exit: Exit = Exit.UNKNOWN,
    running_elsewhere: Sequence[str] = (),
    recent_crash_restarts: int = 0,
    restart_budget: int = 3,
) -> Action:
    """Decide the one action this node takes for a VM.

    ``vm`` is ``None`` for a domain libvirt runs that the cluster does not know (it is left
    alone). ``running_elsewhere`` names the other nodes whose ``runningdomains`` list the
    VM. ``recent_crash_restarts`` counts the crash restarts within the restart window.
    """
    if vm is None:
        return Action(Kind.NONE, "not a cluster VM: left alone")
    if vm.node == here:
        return _decide_owned(
            vm, presence, last_exit, running_elsewhere, recent_crash_restarts, restart_budget
        )
    if presence is Presence.STOPPED:
        return Action(Kind.NONE, f"assigned to {vm.node or 'no node'} and not running here")
    return _decide_foreign(vm, presence)


def _decide_owned(
    vm: VmRecord,
    presence: Presence,
    last_exit: Exit,
    elsewhere: Sequence[str],
    crash_restarts: int,
    budget: int,
) -> Action:
    state = vm.state
    if vm.lockflush == "requested":
        # The worker refuses (and records why) if the VM runs: a flush blocklists holders.
        return Action(Kind.FLUSH_LOCKS, "RBD lock flush requested")
    if presence is Presence.INCOMING:
        return Action(Kind.WAIT, "incoming live migration in progress")
    if presence is Presence.RUNNING:
        if state == "migrate":
            # The live migration has landed here: whichever side sees it first records it.
            return Action(Kind.RECORD, "live migration arrived", then_state="start")
        if state == "start" and vm.confirmed != vm.request:
            # A request no action answered (a stop then a start before it was carried
            # out, say): confirm it, or its waiter never learns that the VM runs.
            return Action(Kind.RECORD, "running as requested: confirming", then_state="start")
        return {
            "start": Action(Kind.NONE, "running as wanted"),
            "restart": Action(Kind.RESTART, "restart requested", then_state="start"),
            "shutdown": Action(Kind.SHUTDOWN, "shutdown requested", then_state="stop"),
            "stop": Action(Kind.DESTROY, "stop requested"),
            "disable": Action(Kind.SHUTDOWN, "disabled: shutting it down"),
            "delete": Action(Kind.DESTROY, "being removed"),
        }.get(state, Action(Kind.NONE, f"state {state}: left as it is"))
    # Not running here.
    if state in ("start", "restart", "migrate"):
        if elsewhere:
            where = ", ".join(sorted(elsewhere))
            return Action(Kind.WAIT, f"waiting for it to stop on {where} before starting it")
        if state == "start" and last_exit is Exit.GUEST_SHUTDOWN:
            return Action(Kind.RECORD, "the guest shut itself down", then_state="stop")
        if state == "start" and last_exit is Exit.CRASHED:
            if crash_restarts >= budget:
                reason = (
                    f"crashed again after {crash_restarts} restart(s) in the restart window; "
                    "not restarting it"
                )
                return Action(Kind.RECORD, reason, then_state="fail", failedreason=reason)
            return Action(Kind.START, "crashed: restarting it", crash_restart=True)
        reasons = {"start": "start requested", "restart": "restart requested"}
        reason = reasons.get(state, "migration target: nothing runs it, starting it here")
        return Action(Kind.START, reason, then_state=None if state == "start" else "start")
    if state == "shutdown":
        return Action(Kind.RECORD, "already shut down", then_state="stop")
    return Action(Kind.NONE, f"{state} and not running")


def _decide_foreign(vm: VmRecord, presence: Presence) -> Action:
    """A VM that runs (or arrives) here while its record names another node."""
    if presence is Presence.INCOMING:
        return Action(Kind.WAIT, "incoming migration of a VM assigned elsewhere")
    if not vm.node:
        return Action(Kind.NONE, "running here but assigned to no node: left alone")
    if vm.state in ("migrate", "start", "restart"):
        return Action(Kind.MIGRATE_OUT, f"assigned to {vm.node}", target=vm.node)
    if vm.state in ("shutdown", "disable"):
        return Action(Kind.SHUTDOWN, f"{vm.state} requested while it runs here")
    if vm.state in ("stop", "delete"):
        return Action(Kind.DESTROY, f"{vm.state} requested while it runs here")
    return Action(Kind.NONE, f"state {vm.state}: left as it is")


def crash_restarts_within(history: Sequence[float], *, now: float, window: float) -> int:
    """How many of the crash-restart times in ``history`` fall within ``window`` of ``now``."""
    return sum(1 for moment in history if now - moment < window)


def migration_method_for(
    vm: VmRecord, target: NodeRecord | None, *, alive: bool = True
) -> tuple[str, str]:
    """How to send a running VM to its target: ``("live"|"shutdown", "")`` or ``("stay", why)``.

    ``live`` means live, falling back to shutdown and start unless the VM is live-only.
    A VM is never shut down for a target that cannot take it (unknown node, daemon not
    running, no ZooKeeper session (``alive``), flushed or fenced, no published URIs): it
    stays where it runs, with the reason. The daemon asks again after failed live
    attempts, before it falls back: a target that died meanwhile keeps its row's ``run``
    for a while.
    """
    if target is None:
        return "stay", f"migration target {vm.node!r} is not a known node"
    if target.daemonstate != "run":
        return "stay", f"migration target {target.name}'s daemon is {target.daemonstate}, not run"
    if not alive:
        return "stay", f"migration target {target.name} has no ZooKeeper session (down?)"
    if target.domainstate in DRAINED_DOMAIN_STATES:
        return "stay", f"migration target {target.name} is {target.domainstate}"
    if not (target.libvirturi and target.migrationuri):
        return "stay", f"migration target {target.name} has not published its libvirt URIs"
    return ("shutdown" if vm.migration_method == "shutdown" else "live"), ""


def migration_revert(vm: VmRecord, here: str, reason: str) -> dict[str, str]:
    """The write that keeps a VM where it runs when its migration cannot happen.

    The VM stays on ``here``, running; ``lastnode`` goes back to what it was before the
    request (a temporary migration from here set it to ``here``); ``failedreason`` says why.
    """
    return {
        "node": here,
        "lastnode": "" if vm.lastnode == here else vm.lastnode,
        "state": "start",
        "failedreason": f"{reason}; it stays on {here}",
    }
