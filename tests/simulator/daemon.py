"""One run of ``pvcnoded`` on one node, stepped by the simulation's ticks.

Mirrors ``pvc_noded.daemon.NodeDaemon``: registration (``init`` then ``run``), a keepalive
every interval with the figures and ``runningdomains`` computed by the real
:func:`pvc_noded.node_row.node_figures`, and a reconcile pass that asks the real
:func:`pvc_common.reconcile.decide` about every VM assigned here or running here and
hands each action to that VM's worker (a bounded pool, one action per VM at a time). A
``flush``/``unflush`` domain state starts a :class:`MaintenanceRun`; a coordinator also
runs a :class:`FenceMonitor`.

The process can be stopped cleanly (in-flight actions finish, VMs keep running), killed
(everything in memory is gone at once), or frozen (SIGSTOP: nothing runs, its ZooKeeper
session expires after the timeout; on SIGCONT it carries on where it was).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pvc_common.errors import PvcError
from pvc_common.models import NodeRecord, VmRecord
from pvc_common.reconcile import Action, Kind, crash_restarts_within, decide
from pvc_noded.daemon import MAINTENANCE_KINDS, _running_elsewhere
from pvc_noded.departures import DepartureBook
from pvc_noded.hypervisor import DomainStatus, HostFigures
from pvc_noded.node_row import node_figures

from .clock import Task
from .fencing import FenceMonitor
from .hypervisor import SimHypervisor
from .maintenance import MaintenanceRun
from .vm_actions import work

if TYPE_CHECKING:
    from .simulation import Simulation

#: The states of a daemon process.
RUNNING, FROZEN, STOPPING, ENDED = "running", "frozen", "stopping", "ended"


class DaemonProcess:
    """One daemon process; a restarted daemon is a new object that knows nothing."""

    def __init__(self, sim: Simulation, name: str) -> None:
        self.sim = sim
        self.name = name
        self.host = sim.hosts[name]
        self.hypervisor = SimHypervisor(sim, self.host)
        self.status = RUNNING
        self.session = sim.store.open_session(name)
        self.session_lost = False
        self.workers: dict[str, Task] = {}
        self.queued: list[str] = []
        self.starting: set[str] = set()
        #: VMs that left by live migration, listed until their target's list is trusted
        #: (``NodeDaemon._departed``, the same book).
        self.departed = DepartureBook()
        self.crash_restarts: dict[str, list[float]] = {}
        self.memory: dict[str, int] = {}
        self.maintenance: MaintenanceRun | None = None
        spec = sim.spec.nodes[name]
        self.coordinator = spec.coordinator
        self.fence_monitor = FenceMonitor(self) if spec.coordinator else None
        self.next_keepalive = sim.clock.now + sim.settings.keepalive_interval
        # A new process's libvirt adapter has seen no lifecycle events yet.
        self.host.exits.clear()
        self.host.intended.clear()
        self._register()

    # ----------------------------------------------------------------- lifecycle

    def _register(self) -> None:
        node_type = "coordinator" if self.coordinator else "hypervisor"
        self.sim.store.register_node(
            self.name,
            node_type=node_type,
            daemonstate="init",
            libvirturi=f"qemu+tcp://{self.name}/system",
            migrationuri=f"tcp://{self.name}",
            ipmihostname=self.sim.bmcs[self.name].address if self.name in self.sim.bmcs else "",
            ipmiusername="admin",
        )
        self.sim.store.claim_ephemeral(f"liveness/{self.name}", self.session)
        self.keepalive()
        self.update_row({"daemonstate": "run"}, event="daemon running")

    def request_stop(self) -> None:
        """A clean stop: ``shutdown``, in-flight actions finish, then ``stop``."""
        if self.status not in (RUNNING, FROZEN):
            return
        self.status = STOPPING
        self.update_row({"daemonstate": "shutdown"}, event="daemon shutting down")
        self.queued.clear()  # queued actions are cancelled; running ones finish
        self.maintenance = None  # its thread returns without a final write

    def kill(self) -> None:
        """SIGKILL or power loss: the process is gone; its session lingers until expiry."""
        self.status = ENDED
        for task in self.workers.values():
            task.abandon()
        self.workers.clear()
        self.queued.clear()
        self.maintenance = None
        if self.fence_monitor is not None:
            self.fence_monitor.abandon()
        self.sim.abort_migrations_from(self.name)

    def freeze(self) -> None:
        """SIGSTOP."""
        if self.status == RUNNING:
            self.status = FROZEN

    def thaw(self) -> None:
        """SIGCONT."""
        if self.status == FROZEN:
            self.status = RUNNING

    def _finish_stop(self) -> None:
        self.update_row({"daemonstate": "stop"}, event="daemon stopped")
        self.sim.store.release_ephemeral(f"liveness/{self.name}", self.session)
        self.sim.store.close_session(self.session)
        if self.fence_monitor is not None:
            self.fence_monitor.abandon()
        self.status = ENDED

    # ----------------------------------------------------------------- one tick

    def step(self) -> None:
        """Everything this process does during one tick (nothing while frozen)."""
        if self.status in (FROZEN, ENDED):
            return
        if not self.session.alive:
            # The client library opens a new session; the old one's znodes are gone.
            self.session = self.sim.store.open_session(self.name)
            self.session_lost = True
        self.sim.store.heartbeat(self.session)
        if self.status == RUNNING and self.sim.clock.reached(self.next_keepalive):
            self.next_keepalive = self.sim.clock.now + self.sim.settings.keepalive_interval
            self._keepalive_tick()
        self._advance_workers()
        if self.status == STOPPING:
            if not self.workers:
                self._finish_stop()
            return
        if self.maintenance is not None:
            self._step_maintenance()
        self.reconcile_once()
        if self.fence_monitor is not None:
            self.fence_monitor.step()

    def _keepalive_tick(self) -> None:
        if self.session_lost:
            self.session_lost = False
            self.sim.store.claim_ephemeral(f"liveness/{self.name}", self.session)
        self.keepalive()

    # ----------------------------------------------------------------- keepalive

    def keepalive(self) -> None:
        """Write the figures and ``runningdomains`` (``NodeDaemon._keepalive``)."""
        if self.sim.store.node(self.name).daemonstate == "dead":
            # A coordinator took this node for dead (it was frozen, say) but it is alive.
            self.update_row({"daemonstate": "run"}, event="alive again")
        domains = {
            uuid: DomainStatus(uuid, d.name, d.presence, d.size.memory_mib, d.size.vcpus)
            for uuid, d in self.host.domains.items()
        }
        host = HostFigures(
            memtotal=self.host.memory_mib,
            memfree=self.host.memfree(),
            cpus=8,
            cpuload=self.host.cpuload,
            kernel="6.1.0-sim",
            os_name="linux",
            arch="x86_64",
        )
        figures = node_figures(
            host,
            domains,
            list(self.memory.values()),
            listed=self.listed_now(),
            now=self.sim.clock.now,
        )
        self.update_row(figures)

    # ----------------------------------------------------------------- the row

    def update_row(
        self,
        changes: Mapping[str, Any] | Callable[[NodeRecord], Mapping[str, Any]],
        *,
        event: str = "",
        guard: VmRecord | None = None,
    ) -> NodeRecord:
        """Write this node's row as ``NodeRow.update`` does (on a fresh read, so only a
        changed ``guard`` VM can conflict, and that conflict is raised)."""
        current = self.sim.store.node(self.name)
        values = changes(current) if callable(changes) else changes
        if not values:
            return current
        return self.sim.store.update_node(current, values, event=event, guard=guard)

    def listed_now(self) -> tuple[str, ...]:
        """What ``runningdomains`` must list: what libvirt has, VMs being started, and VMs
        that left by live migration and are not yet listed by their target."""
        return tuple(sorted(set(self.host.domains) | self.starting | self.departed.uuids()))

    def note_departed(self, uuid: str, target: str) -> None:
        """Keep a VM that left by live migration listed here (``DepartureBook.note``)."""
        self.departed.note(uuid, target)

    def _forget_departed(self, nodes: list[NodeRecord]) -> None:
        """Stop listing departed VMs whose target's list can now be trusted, as
        ``NodeDaemon._forget_departed`` does."""
        if self.departed and self.departed.settle(nodes, self.name):
            self.publish_running()

    def publish_running(self) -> None:
        """Rewrite ``runningdomains`` now, so peers waiting on it see the change."""
        self.update_row(lambda row: {"runningdomains": self.listed_now()})

    def note_crash_restart(self, uuid: str) -> None:
        """Spend one unit of the VM's restart budget."""
        self.crash_restarts.setdefault(uuid, []).append(self.sim.clock.now)

    # ----------------------------------------------------------------- reconcile

    def reconcile_once(self) -> None:
        """One pass (``NodeDaemon.reconcile_once``)."""
        store = self.sim.store
        vms = store.load_vms()
        nodes = store.load_nodes()
        self.memory = {
            vm.uuid: store.sizes[vm.uuid].memory_mib for vm in vms if vm.node == self.name
        }
        self._forget_departed(nodes)
        own = store.nodes.get(self.name)
        if own is not None and own.domainstate in MAINTENANCE_KINDS and self.maintenance is None:
            self._step_maintenance(MAINTENANCE_KINDS[own.domainstate])
        by_uuid = {vm.uuid: vm for vm in vms}
        elsewhere = _running_elsewhere(nodes, self.name)
        relevant = {vm.uuid for vm in vms if vm.node == self.name} | set(self.host.domains)
        for uuid in sorted(relevant):
            if uuid in self.workers or uuid in self.queued:
                continue
            action = self._decide(by_uuid.get(uuid), uuid, elsewhere.get(uuid, ()))
            if action.kind not in (Kind.WAIT, Kind.NONE):
                self._dispatch(uuid)

    def _step_maintenance(self, kind: str = "") -> None:
        """Start (with ``kind``) or go on with the flush/ready run, as its thread would.

        A run that meets an error ends, as the real thread does; its record still says
        ``running``, so the next pass starts a new run that resumes from it.
        """
        try:
            if kind:
                self.maintenance = MaintenanceRun(self, kind)
            if self.maintenance is not None and self.maintenance.step():
                self.maintenance = None
        except PvcError as error:
            label = self.maintenance.label if self.maintenance else f"{kind} of {self.name}"
            self.sim.log.emit(f"{label}: interrupted ({error}): resuming on the next pass")
            self.maintenance = None

    def decide(self, vm: VmRecord | None, uuid: str) -> Action:
        """Decide on fresh data (what a VM worker does before it acts)."""
        elsewhere = _running_elsewhere(self.sim.store.load_nodes(), self.name)
        return self._decide(vm, uuid, elsewhere.get(uuid, ()))

    def _decide(self, vm: VmRecord | None, uuid: str, elsewhere: tuple[str, ...]) -> Action:
        settings = self.sim.settings
        departed_to = self.departed.target_of(uuid)
        if departed_to is not None:
            # As NodeDaemon._decide: it runs at its target as far as this node knows.
            elsewhere = tuple(sorted({*elsewhere, departed_to}))
        history = self.crash_restarts.get(uuid, [])
        return decide(
            vm,
            here=self.name,
            presence=self.host.presence(uuid),
            last_exit=self.hypervisor.last_exit(uuid),
            running_elsewhere=elsewhere,
            recent_crash_restarts=crash_restarts_within(
                history, now=self.sim.clock.now, window=settings.restart_window
            ),
            restart_budget=settings.restart_budget,
        )

    # ----------------------------------------------------------------- workers

    def _dispatch(self, uuid: str) -> None:
        if len(self.workers) < self.sim.settings.workers:
            self._run_worker(uuid)
        else:
            self.queued.append(uuid)

    def _run_worker(self, uuid: str) -> None:
        task = Task(f"{self.name}:{uuid}", work(self, uuid), self.sim.clock.now)
        if not task.advance(self.sim.clock):
            self.workers[uuid] = task

    def _advance_workers(self) -> None:
        for uuid in sorted(self.workers):
            if self.workers[uuid].advance(self.sim.clock):
                del self.workers[uuid]
        while self.queued and len(self.workers) < self.sim.settings.workers:
            self._run_worker(self.queued.pop(0))
