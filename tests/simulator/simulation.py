"""The simulated cluster: nodes, their daemons, the store, the operator, and the tick loop.

One :meth:`Simulation.tick` is: scheduled events that are due (operator commands,
faults, boots, crashes) in the order they were scheduled; session expiry; one step of
every daemon process (in name order, or in a seeded random order when ``shuffle`` is
set, to vary interleavings); the operator's pending ``--wait`` judgements; the
invariants. Then the clock moves on by one tick.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from pvc_common.reconcile import Exit, Presence
from pvc_common.vm_wait import running_on

from .clock import Activity, EventLog, VirtualClock
from .daemon import ENDED, DaemonProcess
from .host import Bmc, Domain, Faults, Host
from .invariants import Invariants
from .known_bugs import KNOWN_BUGS
from .operator import Operator
from .store import SimStore


@dataclass(frozen=True)
class Settings:
    """Cluster and daemon settings (seconds unless said otherwise)."""

    tick: float = 0.5
    keepalive_interval: float = 2.0
    fence_intervals: int = 3
    rechecks: int = 2
    session_timeout: float = 4.0
    max_dead_fraction: float = 0.34
    recover_after_failed_fence: bool = False
    default_selector: str = "mem"
    concurrency: int = 2
    vm_timeout: float = 60.0
    shutdown_timeout: float = 10.0
    restart_budget: int = 3
    restart_window: float = 300.0
    migration_attempts: int = 3
    workers: int = 8
    #: How long things take on the simulated hardware.
    start_time: float = 1.0
    shutdown_time: float = 2.0
    live_migration_time: float = 1.5
    boot_time: float = 5.0
    restart_delay: float = 1.0
    bmc_call_time: float = 0.5
    bmc_unreachable_time: float = 2.0
    fence_timeout: float = 10.0
    #: Step the daemons in a seeded random order each tick (property tests).
    shuffle: bool = False
    #: Known defects to step past (names from ``known_bugs.KNOWN_BUGS``; property tests).
    workarounds: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.workarounds) - set(KNOWN_BUGS)
        if unknown:
            raise ValueError(f"unknown workaround(s): {', '.join(sorted(unknown))}")

    @classmethod
    def keys(cls) -> set[str]:
        """The names a ``settings:`` mapping may use (workarounds are not for scenarios)."""
        return {item.name for item in fields(cls)} - {"workarounds"}


@dataclass(frozen=True)
class NodeSpec:
    """One node of a cluster description."""

    name: str
    memory: int = 8192
    coordinator: bool = False
    load: float = 0.0
    bmc: str = "works"  #: works, fails, unreachable, or none (no BMC configured)
    power_on_after_fence: bool = True


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster description (``cluster.yaml``)."""

    nodes: dict[str, NodeSpec]
    settings: Settings = field(default_factory=Settings)
    seed: int = 1


@dataclass(order=True)
class _Timer:
    at: float
    seq: int
    label: str = field(compare=False)
    action: Callable[[], None] = field(compare=False)


class Simulation:
    """A whole cluster on a virtual clock."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.settings = spec.settings
        self.rng = random.Random(spec.seed)
        self.clock = VirtualClock(spec.settings.tick)
        self.log = EventLog(self.clock)
        self.store = SimStore(self.clock, self.log, session_timeout=spec.settings.session_timeout)
        self.store.default_selector = spec.settings.default_selector
        self.hosts = {n.name: Host(n.name, n.memory, n.load) for n in spec.nodes.values()}
        self.bmcs = {
            n.name: Bmc(n.name, n.bmc, n.power_on_after_fence)
            for n in spec.nodes.values()
            if n.bmc != "none"
        }
        self.faults = Faults()
        self.daemons: dict[str, DaemonProcess] = {}
        #: Live migrations under way: VM UUID -> (source, target).
        self.migrations: dict[str, tuple[str, str]] = {}
        self.invariants = Invariants(self)
        self.operator = Operator(self)
        self.store.vm_hooks.append(self.invariants.vm_written)
        self._timers: list[_Timer] = []
        self._seq = 0
        self._generation = 0
        for name in sorted(spec.nodes):
            self.start_daemon(name)

    # ----------------------------------------------------------------- time

    def schedule(self, at: float, label: str, action: Callable[[], None]) -> None:
        """Run ``action`` at the first tick at or after ``at``."""
        self._seq += 1
        heapq.heappush(self._timers, _Timer(at, self._seq, label, action))

    def tick(self) -> None:
        """One tick of the whole cluster, then the invariants."""
        while self._timers and self.clock.reached(self._timers[0].at):
            heapq.heappop(self._timers).action()
        for session in self.store.expire_sessions():
            self.log.emit(f"zookeeper: session of {session.owner}'s daemon expired")
        names = sorted(self.daemons)
        if self.settings.shuffle:
            self.rng.shuffle(names)
        for name in names:
            daemon = self.daemons.get(name)
            if daemon is not None:
                daemon.step()
                if daemon.status == ENDED and self.daemons.get(name) is daemon:
                    del self.daemons[name]
        self.operator.settle()
        self.invariants.after_tick()
        self.clock.advance()

    def run_until(self, moment: float) -> None:
        """Tick until the clock has passed ``moment``."""
        while self.clock.now <= moment + 1e-9:
            self.tick()

    def next_generation(self) -> int:
        """A fresh number for one start of a domain."""
        self._generation += 1
        return self._generation

    def vm_name(self, uuid: str) -> str:
        """The name of a VM (its UUID if unknown)."""
        vm = self.store.vm(uuid)
        return vm.name if vm else uuid

    # ----------------------------------------------------------------- processes

    def start_daemon(self, name: str) -> None:
        """Start the node's daemon (if its host is on and none runs)."""
        if not self.hosts[name].up or name in self.daemons:
            return
        self.daemons[name] = DaemonProcess(self, name)

    def kill_daemon(self, name: str) -> None:
        """SIGKILL of the node's daemon; its VMs keep running."""
        daemon = self.daemons.pop(name, None)
        if daemon is not None:
            daemon.kill()

    def stop_daemon(self, name: str, then_start: bool = False) -> None:
        """A clean stop; with ``then_start``, start it again once it has stopped."""
        daemon = self.daemons.get(name)
        if daemon is None:
            return
        daemon.request_stop()
        if then_start:
            self._start_when_stopped(name, daemon)

    def _start_when_stopped(self, name: str, daemon: DaemonProcess) -> None:
        def check() -> None:
            if daemon.status == ENDED:
                self.start_daemon(name)
            else:
                self._start_when_stopped(name, daemon)

        self.schedule(self.clock.now + self.settings.restart_delay, f"restart {name}", check)

    def abort_migrations_from(self, name: str) -> None:
        """The source of these migrations is gone: their targets drop the paused copy."""
        for uuid, (source, target) in list(self.migrations.items()):
            if source == name:
                del self.migrations[uuid]
                peer = self.hosts[target]
                domain = peer.domains.get(uuid)
                if domain is not None and domain.presence is Presence.INCOMING:
                    del peer.domains[uuid]
                    self.log.emit(f"host {target!r}: incoming {domain.name} dropped")

    # ----------------------------------------------------------------- power

    def power_off(self, name: str, why: str) -> None:
        """The node loses power: its daemon and every VM on it vanish at once."""
        host = self.hosts[name]
        if not host.powered:
            return
        self.kill_daemon(name)
        self.abort_migrations_from(name)
        gone = host.power_loss()
        self.log.emit(f"host {name!r}: powered off ({why}); gone: {', '.join(gone) or 'nothing'}")

    def power_on(self, name: str) -> None:
        """Power the node on: its daemon starts once it has booted."""
        host = self.hosts[name]
        if host.powered:
            return
        host.powered = True
        host.booted = False
        self.log.emit(f"host {name!r}: powered on, booting")
        self.schedule(
            self.clock.now + self.settings.boot_time, f"boot {name}", lambda: self._booted(name)
        )

    def _booted(self, name: str) -> None:
        host = self.hosts[name]
        if host.powered and not host.booted:
            host.booted = True
            self.start_daemon(name)

    def bmc_fence(self, bmc: Bmc) -> Activity:
        """Power a node off through its BMC and confirm it: ``(confirmed, detail)``."""
        settings = self.settings
        started = self.clock.now
        if bmc.mode == "unreachable":
            yield settings.bmc_unreachable_time  # power off: no answer
            yield settings.bmc_unreachable_time  # status: no answer either
            return False, f"BMC {bmc.address} did not answer (ipmitool: no response)"
        yield settings.bmc_call_time  # power off accepted
        if bmc.mode == "fails":
            yield settings.fence_timeout  # status keeps reading on
            elapsed = self.clock.now - started
            return False, (
                f"BMC {bmc.address} accepted power off but still reports power on "
                f"after {elapsed:.1f} s"
            )
        self.power_off(bmc.node, "fenced through its BMC")
        yield settings.bmc_call_time  # status reads off
        detail = f"power off confirmed after {self.clock.now - started:.2f} s"
        if bmc.power_on_after_fence:
            self.power_on(bmc.node)
            detail += "; power on sent"
        else:
            detail += "; power on not requested"
        return True, detail

    # ----------------------------------------------------------------- VMs

    def domain_started(
        self, host: Host, domain: Domain, *, migrated: bool, in_place: bool = False
    ) -> None:
        """A domain began running on ``host``: check it, and arm an injected crash loop."""
        if not migrated:
            self.invariants.domain_started(host, domain, in_place=in_place)
        after = self.faults.crash_loops.get(domain.name)
        if after is not None:
            self.schedule(
                self.clock.now + after,
                f"crash {domain.name}",
                lambda: self.crash(host.name, domain.uuid, domain.generation),
            )

    def crash(self, node: str, uuid: str, generation: int | None = None) -> None:
        """The VM's QEMU dies on ``node`` (only that run of it, if ``generation`` is set)."""
        host = self.hosts[node]
        domain = host.domains.get(uuid)
        if domain is None or (generation is not None and domain.generation != generation):
            return
        if domain.presence is not Presence.RUNNING:
            return
        host.remove(uuid, Exit.CRASHED)
        self.log.emit(f"host {node!r}: {domain.name} crashed")

    def guest_shutdown(self, node: str, uuid: str) -> None:
        """The guest powers itself off."""
        host = self.hosts[node]
        domain = host.domains.get(uuid)
        if domain is None:
            return
        host.remove(uuid, Exit.GUEST_SHUTDOWN)
        self.log.emit(f"host {node!r}: {domain.name} powered itself off")

    def running_on(self, uuid: str) -> tuple[str, ...]:
        """The nodes listing the VM, as ``pvc_common.vm_wait.running_on`` reads them."""
        return running_on(self.store.load_nodes(), uuid)

    def host_of(self, uuid: str) -> str | None:
        """The host where the VM runs, if any."""
        for host in self.hosts.values():
            if host.presence(uuid) is Presence.RUNNING:
                return host.name
        return None
