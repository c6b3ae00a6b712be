"""Pure rules of the VM lifecycle: which requested change makes sense, and what it writes.

Each function takes a :class:`VmRecord` (and plain values) and returns a :class:`Change`
(field key -> new value, plus the event text), or raises :class:`PreconditionFailed`
with a one-line reason. No I/O: the operations layer reads, calls these, and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInput, PreconditionFailed
from .models import NodeRecord, VmRecord

#: States in which the VM is (or is about to be) running on its node.
ACTIVE_STATES = frozenset({"start", "restart", "migrate"})

#: Operator actions on a VM's state, and the states each one may start from.
_ALLOWED_FROM: dict[str, frozenset[str]] = {
    "start": frozenset({"stop", "shutdown", "disable", "fail"}),
    "restart": frozenset({"start"}),
    "shutdown": frozenset({"start", "restart"}),
    "stop": frozenset({"start", "restart", "shutdown", "migrate", "fail"}),
    "disable": frozenset({"start", "restart", "shutdown", "stop", "fail"}),
}
STATE_ACTIONS = tuple(_ALLOWED_FROM)


@dataclass(frozen=True)
class Change:
    """What a rule decided: the keys to write and the event line's text."""

    values: dict[str, Any] = field(default_factory=dict)
    event: str = ""


def as_request(vm: VmRecord, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` written as a new request on ``vm``: numbered one above its last.

    The number lets a waiter tell a later request (its own was superseded) from any other
    write, and lets a node daemon confirm exactly which request it saw running
    (``confirmed``). Flush, ready and fence recovery number their requests the same way.
    """
    return {**values, "request": vm.request + 1}


def state_change(vm: VmRecord, action: str) -> Change:
    """Decide the write for ``start``, ``restart``, ``shutdown``, ``stop`` or ``disable``."""
    allowed = _ALLOWED_FROM.get(action)
    if allowed is None:
        raise InvalidInput(f"unknown VM action {action!r}: use one of {', '.join(STATE_ACTIONS)}")
    if vm.state == "delete":
        raise PreconditionFailed(f"VM {vm.name!r} is being removed")
    if vm.state not in allowed:
        raise PreconditionFailed(
            f"cannot {action} VM {vm.name!r}: its state is {vm.state} "
            f"(allowed from {', '.join(sorted(allowed))})"
        )
    values: dict[str, Any] = {"state": action}
    if action == "start":
        values["failedreason"] = ""  # a new attempt: the old failure no longer describes it
    return Change(as_request(vm, values), f"{action} (was {vm.state})")


def migration_change(vm: VmRecord, target: str, *, force: bool = False) -> Change:
    """Decide the write of a temporary migration to ``target``.

    The VM's current node becomes its previous node (``lastnode``), unless it already has
    one and ``force`` is given: then the original previous node is kept, since it is the
    home the administrator will want to unmigrate to.
    """
    check_migratable(vm, force=force)
    lastnode = vm.lastnode if vm.lastnode else vm.node
    values = _placement_values(vm, target)
    # Sent (by force) to its own home, the VM is no longer migrated away from anywhere.
    values["lastnode"] = "" if lastnode == target else lastnode
    return Change(values, f"migrate {vm.node or '-'} -> {target}")


def check_migratable(vm: VmRecord, *, force: bool = False) -> None:
    """Refuse a temporary migration of a VM that is migrating, or already migrated without force."""
    _refuse_during_migration(vm)
    if vm.lastnode and not force:
        raise PreconditionFailed(
            f"VM {vm.name!r} is already migrated from {vm.lastnode}: unmigrate it, "
            "or use --force to migrate it again (keeping its previous node)"
        )


def move_change(vm: VmRecord, target: str) -> Change:
    """Decide the write of a permanent move to ``target`` (clears the previous node)."""
    _refuse_during_migration(vm)
    values = _placement_values(vm, target)
    values["lastnode"] = ""
    return Change(values, f"move {vm.node or '-'} -> {target}")


def unmigrate_change(vm: VmRecord) -> Change:
    """Decide the write that sends a migrated VM back to its previous node."""
    _refuse_during_migration(vm)
    if not vm.lastnode:
        raise PreconditionFailed(f"VM {vm.name!r} is not migrated: nothing to unmigrate")
    values = _placement_values(vm, vm.lastnode)
    values["lastnode"] = ""
    return Change(values, f"unmigrate {vm.node or '-'} -> {vm.lastnode}")


def _refuse_during_migration(vm: VmRecord) -> None:
    if vm.state == "migrate":
        raise PreconditionFailed(f"VM {vm.name!r} is already migrating to {vm.node}; wait for it")
    if vm.state == "delete":
        raise PreconditionFailed(f"VM {vm.name!r} is being removed")


def _placement_values(vm: VmRecord, target: str) -> dict[str, Any]:
    # A running VM is live-migrated by the daemons; a stopped one only changes its node.
    values: dict[str, Any] = {"node": target}
    if vm.state in ("start", "restart"):
        values["state"] = "migrate"
        values["failedreason"] = ""  # the outcome of this migration will say what happened
    return as_request(vm, values)


def live_retry_refusal(vm: VmRecord | None, target: NodeRecord) -> str:
    """Why a failed live migration to ``target`` must not be tried again ('' if it may).

    Read both afresh before each retry: meanwhile the target may have been fenced or
    flushed (no VM may arrive on it), or the VM sent elsewhere by a newer request.
    """
    if vm is None:
        return "the VM was removed"
    if vm.node != target.name:
        return f"the VM is now meant for {vm.node or 'no node'}, not {target.name}"
    if target.daemonstate != "run" or target.domainstate in DRAINED_DOMAIN_STATES:
        return (
            f"{target.name} cannot take it any more "
            f"(daemon {target.daemonstate}, domain {target.domainstate})"
        )
    return ""


#: A node in these domain states is being emptied, is empty, or was fenced: no VM may
#: arrive on it (a node being readied, ``unflush``, takes its VMs back).
DRAINED_DOMAIN_STATES = ("flush", "flushed", "fence-flush")
