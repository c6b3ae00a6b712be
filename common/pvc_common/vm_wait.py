"""Waiting for the daemons to carry out a VM request (``pvc vm ... --wait``).

Clients only write intent; this module watches the VM's record and the nodes'
``runningdomains`` until the request has an outcome. :func:`judge` is the pure part: given
what the cluster shows now, has the request succeeded, failed, or is it still going?
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import NotFound
from .models import NodeRecord, VmRecord
from .snapshot import load_nodes, load_vms
from .store import ZkStore

#: Requests that end with the VM running on its node.
RUNNING_ACTIONS = frozenset({"start", "restart", "migrate", "move", "unmigrate"})
#: Requests that end with the VM not running anywhere.
STOPPED_ACTIONS = frozenset({"shutdown", "stop", "disable"})


@dataclass(frozen=True)
class Outcome:
    """How a request ended: ``ok`` or not, and a one-line description."""

    ok: bool
    message: str


def running_on(nodes: Sequence[NodeRecord], uuid: str) -> tuple[str, ...]:
    """The nodes whose ``runningdomains`` list the VM, by name.

    A fenced node's list is left out, as the daemons do: its power-off was confirmed, and
    the list stays as it was at the power loss until its daemon registers again.
    """
    return tuple(
        sorted(
            node.name
            for node in nodes
            if uuid in node.runningdomains and node.daemonstate != "fenced"
        )
    )


def judge(
    action: str,
    vm: VmRecord,
    where: Sequence[str],
    target: str = "",
    request: int = 0,
) -> Outcome | None:
    """The outcome of ``action`` on ``vm`` as the cluster shows it now, or None if pending.

    ``where`` lists the nodes running the VM; ``target`` is the node a migration, move or
    unmigrate was sent to; ``request`` is the number the request was written with (the
    VM's ``request`` right after the write). A later request (an operator's, or a flush,
    ready or fence recovery) supersedes it. A daemon lists a VM just *before* it starts it,
    so a VM to be running counts as running only once its node daemon has confirmed this
    request (or a later one) with the VM running there (``confirmed``).
    """
    if vm.request > request > 0:
        return Outcome(
            False, f"superseded by a later request (now {vm.state} on {vm.node or 'no node'})"
        )
    if vm.state == "fail":
        return Outcome(False, f"failed: {vm.failedreason or 'no reason recorded'}")
    if action in STOPPED_ACTIONS:
        if where or vm.state == "shutdown":
            return None
        return Outcome(True, f"stopped (state {vm.state})")
    if action not in RUNNING_ACTIONS:
        raise ValueError(f"cannot wait for {action!r}")
    if vm.state in ("migrate", "restart"):
        return None
    if action in ("migrate", "move", "unmigrate") and target and vm.node != target:
        return Outcome(False, f"still on {vm.node}: {vm.failedreason or 'migration undone'}")
    if vm.state != "start":
        if action in ("start", "restart"):
            why = f": {vm.failedreason}" if vm.failedreason else ""
            return Outcome(False, f"not running: its state is {vm.state}{why}")
        # A stopped VM only changes its node: nothing has to run.
        return Outcome(True, f"assigned to {vm.node}, {vm.state}")
    if tuple(where) != (vm.node,) or vm.confirmed < request:
        return None
    note = f" ({vm.failedreason})" if vm.failedreason else ""
    return Outcome(True, f"running on {vm.node}{note}")


def wait_for_vm(
    store: ZkStore,
    uuid: str,
    action: str,
    *,
    target: str = "",
    request: int = 0,
    timeout: float = 300.0,
    interval: float = 0.25,
    on_progress: Callable[[str], None] = lambda text: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Poll until :func:`judge` gives an outcome, or ``timeout`` seconds have passed.

    ``on_progress`` gets a line whenever what the cluster shows changes, and every 10 s.
    """
    deadline = clock() + timeout
    last_seen: tuple[str, str, tuple[str, ...]] | None = None
    last_report = clock()
    while True:
        found = load_vms(store, [uuid])
        if not found:
            raise NotFound(f"the VM {uuid} was removed while waiting for it")
        vm = found[0]
        where = running_on(load_nodes(store), uuid)
        outcome = judge(action, vm, where, target, request)
        if outcome is not None:
            return outcome
        seen = (vm.state, vm.node, where)
        now = clock()
        if seen != last_seen or now - last_report >= 10:
            running = ", ".join(where) or "nowhere"
            left = max(0, int(deadline - now))
            on_progress(f"state {vm.state}, node {vm.node}, running on {running} ({left} s left)")
            last_seen, last_report = seen, now
        if now >= deadline:
            return Outcome(False, f"timed out after {timeout:g} s (state {vm.state})")
        sleep(interval)


def wait_for_lock_flush(
    store: ZkStore,
    uuid: str,
    *,
    timeout: float = 120.0,
    interval: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait until the VM's node daemon has answered a lock flush; return its outcome."""
    deadline = clock() + timeout
    while True:
        found = load_vms(store, [uuid])
        if not found:
            raise NotFound(f"the VM {uuid} was removed while waiting for it")
        if found[0].lockflush != "requested":
            return found[0].lockflush
        if clock() >= deadline:
            return f"timed out after {timeout:g} s (is the VM's node daemon running?)"
        sleep(interval)
