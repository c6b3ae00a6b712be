"""What must hold at every tick of every run, checked against the simulated truth.

Safety, checked after every tick and at the moment of the events they concern; a
violation stops the run at once:

* a VM runs on at most one host;
* a VM is only started on a host when no other node that is not fenced lists it in its
  ``runningdomains`` and no other host holds it (so nothing starts elsewhere before its
  old node is confirmed fenced);
* a running VM never runs outside its node limit;
* a VM is only sent (node changed while running or to run) to a node whose daemon runs
  and which is ready (or being readied, for a VM returning home);
* a node marked ``fenced`` runs nothing and has no daemon running.

Bookkeeping and reporting; a violation is logged where it happens and fails the run at
its end, so the log shows the whole story first:

* a VM's previous node (``lastnode``) is never its current node;
* a ``--wait`` or a flush/ready outcome that says a VM runs on its node is only given
  while that node runs it;
* when a flush, a ready or a fence recovery ends, every VM of its record has a final
  outcome; once a ready is done, no VM of the node still waits to autostart.

Liveness, checked at the end of a run: every request waited on has settled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pvc_common.ha import RUNNING_STATES
from pvc_common.maintenance import FINAL_OUTCOMES
from pvc_common.models import VmRecord

from .host import Domain, Host

if TYPE_CHECKING:
    from .simulation import Simulation


class InvariantViolation(AssertionError):
    """A broken invariant, with the tick, the cluster's state and the log so far."""

    def __init__(self, sim: Simulation, message: str) -> None:
        self.message = message
        self.tick = sim.clock.ticks
        self.now = sim.clock.now
        self.state = describe_state(sim)
        self.log = sim.log.text()
        super().__init__(
            f"invariant violated at t={self.now:.1f} (tick {self.tick}): {message}\n\n"
            f"state:\n{self.state}\n\nlog (last lines):\n{sim.log.tail()}"
        )


def describe_state(sim: Simulation) -> str:
    """The cluster as the simulator sees it: rows, hosts, processes, VM records."""
    lines = []
    for name in sorted(sim.hosts):
        host = sim.hosts[name]
        node = sim.store.nodes.get(name)
        daemon = sim.daemons.get(name)
        row = (
            f"daemonstate={node.daemonstate} domainstate={node.domainstate} "
            f"runningdomains=[{', '.join(sim.vm_name(u) for u in node.runningdomains)}]"
            if node
            else "not registered"
        )
        domains = ", ".join(
            f"{d.name}({d.presence.value})" for d in sorted(host.domains.values(), key=_name)
        )
        power = "on" if host.powered else "off"
        process = daemon.status if daemon else "no daemon"
        lines.append(f"  {name}: power {power}, {process}; {row}; host runs [{domains}]")
    for vm in sim.store.load_vms():
        lines.append(
            f"  vm {vm.name}: state={vm.state} node={vm.node} lastnode={vm.lastnode or '-'} "
            f"autostart={vm.node_autostart} failedreason={vm.failedreason or '-'}"
        )
    return "\n".join(lines)


def _name(domain: Domain) -> str:
    return domain.name


class Invariants:
    """The checks, called by the simulation after each tick and at the events."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        #: Broken bookkeeping and reporting invariants, in the order they broke.
        self.broken: list[str] = []
        self._broken_keys: set[str] = set()
        #: Where each VM ran at the end of the previous tick.
        self._ran_on: dict[str, list[str]] = {}

    def fail(self, message: str) -> None:
        """Stop the run with ``message`` (safety: nothing after it can be trusted)."""
        raise InvariantViolation(self.sim, message)

    def note(self, key: str, message: str) -> None:
        """Record a broken bookkeeping or reporting invariant, once per ``key``, and go on
        (the run's end fails with it, but the log shows the whole story first)."""
        if key in self._broken_keys:
            return
        self._broken_keys.add(key)
        self.broken.append(message)
        self.sim.log.emit(f"INVARIANT VIOLATED: {message}")

    # ----------------------------------------------------------------- every tick

    def after_tick(self) -> None:
        """The safety checks on the state reached at the end of a tick."""
        sim = self.sim
        where: dict[str, list[str]] = {}
        for host in sim.hosts.values():
            for uuid in host.running():
                where.setdefault(uuid, []).append(host.name)
        self._ran_on = where
        for uuid, hosts in where.items():
            name = sim.vm_name(uuid)
            if len(hosts) > 1:
                self.fail(f"vm {name!r} runs on {len(hosts)} hosts: {', '.join(sorted(hosts))}")
            vm = sim.store.vm(uuid)
            if vm is not None and vm.node_limit and hosts[0] not in vm.node_limit:
                self.fail(
                    f"vm {name!r} runs on {hosts[0]}, outside its limit {','.join(vm.node_limit)}"
                )
        for node in sim.store.nodes.values():
            if node.daemonstate != "fenced":
                continue
            if sim.hosts[node.name].running():
                self.fail(f"node {node.name!r} is marked fenced but its host runs VMs")
            if node.name in sim.daemons:
                # Its list is ignored by every other daemon: a live daemon must not be fenced.
                self.fail(f"node {node.name!r} is marked fenced but its daemon runs")
        for vm in sim.store.vms.values():
            if vm.lastnode and vm.lastnode == vm.node:
                self.note(
                    f"lastnode:{vm.uuid}:{vm.node}",
                    f"vm {vm.name!r} has its current node {vm.node} as its lastnode",
                )

    # ----------------------------------------------------------------- events

    def domain_started(self, host: Host, domain: Domain, *, in_place: bool = False) -> None:
        """A host starts a VM (not a live migration's arrival).

        A restart in place (the VM ran on this host until its shutdown a moment ago) is
        only checked against the hosts: another node may still list it, e.g. the source
        of its last live migration keeping it listed as departed, without running it.
        """
        sim = self.sim
        for node in [] if in_place else sim.store.nodes.values():
            if node.name == host.name or domain.uuid not in node.runningdomains:
                continue
            if node.daemonstate != "fenced":
                self.fail(
                    f"vm {domain.name!r} started on {host.name} while {node.name} "
                    f"(daemon {node.daemonstate}, not fenced) still lists it as running"
                )
        for other in sim.hosts.values():
            if other is not host and domain.uuid in other.domains:
                self.fail(
                    f"vm {domain.name!r} started on {host.name} while {other.name} still "
                    f"holds it ({other.domains[domain.uuid].presence.value})"
                )

    def vm_written(self, before: VmRecord, after: VmRecord, event: str) -> None:
        """A VM record was written: a VM sent to a node needs a node that can take it."""
        if after.node == before.node or after.state not in RUNNING_STATES:
            return
        if event.startswith("migration undone"):
            return  # not sent anywhere: it stays where it ran (migration_revert)
        node = self.sim.store.nodes.get(after.node)
        returning = node is not None and node.domainstate == "unflush"
        if node is None or node.daemonstate != "run" or not (node.is_ready or returning):
            state = f"daemon {node.daemonstate}, {node.domainstate}" if node else "unknown"
            self.fail(f"vm {after.name!r} sent to {after.node} ({state}) by: {event}")

    def reported_running(self, uuid: str, who: str) -> None:
        """An outcome says the VM runs on its node: it must, right now, or it must have at
        the end of the previous tick (a crash or a power loss within the tick the report
        is made in races with any report, as it does in a real cluster)."""
        vm = self.sim.store.vm(uuid)
        host = self.sim.hosts.get(vm.node) if vm else None
        if vm is not None and vm.node in self._ran_on.get(uuid, ()):
            return
        if vm is not None and (host is None or vm.uuid not in host.running()):
            self.note(
                f"report:{who}:{self.sim.clock.ticks}",
                f"{who} reports vm {vm.name!r} running on {vm.node}, which does not run it",
            )

    def maintenance_ended(self, node: str, kind: str, record: dict[str, Any]) -> None:
        """A flush, ready or fence recovery of ``node`` has its final record."""
        for entry in record.get("vms", {}).values():
            if entry.get("outcome") not in FINAL_OUTCOMES:
                self.note(
                    f"outcome:{node}:{self.sim.clock.ticks}:{entry.get('name')}",
                    f"{kind} of {node} ended with vm {entry.get('name')!r} "
                    f"{entry.get('outcome')!r}, not a final outcome",
                )
        if kind != "ready" or record.get("status") != "done":
            return
        for vm in self.sim.store.vms.values():
            if vm.node == node and vm.node_autostart and vm.state not in RUNNING_STATES:
                self.note(
                    f"autostart:{node}:{vm.uuid}:{self.sim.clock.ticks}",
                    f"ready of {node} done but vm {vm.name!r} still waits to autostart",
                )

    # ----------------------------------------------------------------- the end

    def at_end(self) -> None:
        """Liveness: every request waited on has an outcome (a real wait would run
        into its timeout)."""
        unsettled = self.sim.operator.pending()
        problems = list(self.broken)
        if unsettled:
            labels = "; ".join(request.label for request in unsettled)
            problems.append(f"request(s) never settled: {labels}")
        if problems:
            self.fail(" / ".join(problems))
