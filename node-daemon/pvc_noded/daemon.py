"""The node daemon: registration, keepalive and the reconcile loop.

One pass of the loop reads a snapshot (every VM, every node, this host's domains), asks
the pure core (:func:`pvc_common.reconcile.decide`) what to do for each VM that is
assigned here or runs here, and hands each action to that VM's worker. Workers run in a
bounded pool, one action per VM at a time, so a slow shutdown never delays another VM.
ZooKeeper watches and libvirt events only wake the loop; a periodic pass catches anything
they missed. When ZooKeeper cannot be read, the daemon takes no action at all: VMs keep
running as they are until it can see the truth again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pvc_common import schema
from pvc_common.cluster_ops import cluster_exists, set_default_selector
from pvc_common.domain_xml import parse_domain_xml
from pvc_common.errors import HypervisorError, InvalidInput, PreconditionFailed, PvcError
from pvc_common.history import set_process_actor
from pvc_common.models import NodeRecord, VmRecord
from pvc_common.node_ops import register_node
from pvc_common.reconcile import (
    Action,
    Exit,
    Kind,
    Presence,
    crash_restarts_within,
    decide,
)
from pvc_common.snapshot import check_schema, load_nodes, load_vms
from pvc_common.storage import RbdLocks
from pvc_common.store import ZkStore

from .config import NodeConfig
from .console_watcher import ConsoleWatchers
from .departures import DepartureBook
from .fence_monitor import FenceMonitor, make_fencer
from .hypervisor import DomainStatus, Hypervisor
from .maintenance_runner import MaintenanceRunner
from .node_row import NodeRow, node_figures
from .vm_actions import ActionContext, carry_out

log = logging.getLogger(__name__)

#: How soon a VM that waits on something else (a peer stopping it) is looked at again.
WAIT_RECHECK = 0.5
#: How long a worker waits for libvirt's stop event of a VM it saw running a moment ago.
EXIT_EVENT_GRACE = 1.0
#: VM states in which a VM may be running on its node.
MAY_RUN_STATES = frozenset({"start", "restart", "migrate", "shutdown"})
#: The node domain states that ask this daemon for a flush or a ready.
MAINTENANCE_KINDS = {"flush": "flush", "unflush": "ready"}


class NodeDaemon:
    """One hypervisor's daemon. :meth:`run` blocks until :meth:`request_stop`."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        store: ZkStore | None = None,
        hypervisor: Hypervisor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.name = config.node.name
        # Every VM change this process writes names this daemon in the VM's history.
        set_process_actor(f"pvcnoded {self.name}")
        self.store = store or ZkStore(config.zookeeper.hosts, timeout=config.zookeeper.timeout)
        self.hypervisor = hypervisor or Hypervisor(config.libvirt.uri, on_event=self._on_libvirt)
        self.clock = clock
        self.row = NodeRow(self.store, self.name)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._session_lost = threading.Event()
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._starting: set[str] = set()
        # VMs that left by live migration, listed here until their target's list is trusted.
        self._departed = DepartureBook()
        self._seen_running: set[str] = set()
        self._crash_restarts: dict[str, list[float]] = {}
        self._watched: set[str] = set()
        self._memory: dict[str, tuple[int, int]] = {}  # uuid -> (row version, MiB)
        self._pool = ThreadPoolExecutor(config.vm.workers, thread_name_prefix="vm")
        self._store_ok = True
        self._maintenance: threading.Thread | None = None
        self.consoles = ConsoleWatchers(self.store, config.console)
        self._console_paths: dict[str, tuple[int, str | None]] = {}  # uuid -> (version, path)
        self.actions = ActionContext(
            config=config,
            store=self.store,
            hypervisor=self.hypervisor,
            row=self.row,
            set_starting=self._set_starting,
            listed_now=self._listed_now,
            note_crash_restart=self._note_crash_restart,
            note_departed=self._note_departed,
            prime_console=self._prime_console,
            rbd=RbdLocks(config.fencing.rbd_command[0], args=config.fencing.rbd_command[1:]),
        )

    # ----------------------------------------------------------------- lifecycle

    def run(self) -> None:
        """Start up, serve until asked to stop, then stop cleanly (VMs keep running)."""
        self._connect()
        if self._stopping.is_set():
            return
        self._register()
        keepalive = threading.Thread(target=self._keepalive_loop, name="keepalive", daemon=True)
        keepalive.start()
        consoles = threading.Thread(
            target=self.consoles.run, args=(self._stopping,), name="console", daemon=True
        )
        consoles.start()
        if self.config.node.coordinator and self.config.fencing.enabled:
            threading.Thread(target=self._fence_loop, name="fencing", daemon=True).start()
        try:
            self._reconcile_loop()
        finally:
            self._shut_down(consoles)
            keepalive.join(timeout=self.config.zookeeper.timeout)

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (from a signal handler or another thread)."""
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Ask for a reconcile pass now."""
        self._wake.set()

    def _connect(self) -> None:
        """Connect to ZooKeeper, waiting (and saying so) for as long as it takes."""
        delay = 1.0
        while not self._stopping.is_set():
            try:
                self.store.connect()
                break
            except PvcError as error:
                log.warning("%s; retrying in %g s", error, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, 30.0)
        if self._stopping.is_set():
            return
        if not cluster_exists(self.store):
            raise PreconditionFailed(
                f"no cluster at {self.store.hosts}: run 'pvc cluster init' first"
            )
        check_schema(self.store)
        self.store.on_connection_change(self._on_connection)

    def _register(self) -> None:
        node_type = "coordinator" if self.config.node.coordinator else "hypervisor"
        fencing = self.config.fencing
        register_node(
            self.store,
            self.name,
            node_type=node_type,
            daemonstate="init",
            libvirturi=self.config.peer_libvirt_uri(),
            migrationuri=self.config.migration_uri(),
            ipmihostname=fencing.bmc_address,
            ipmiusername=fencing.bmc_username,
            ipmipassword=fencing.bmc_password,
        )
        self.row.forget()
        self._claim_liveness()
        self._publish_default_selector()
        self._keepalive()
        self.row.update({"daemonstate": "run"}, event="daemon running")
        self.store.ensure_path(schema.DOMAINS_PATH)
        self.store.watch_children(schema.DOMAINS_PATH, self._domains_changed)
        # Its own row: a flush or ready request starts at once, not at the next full pass.
        self.store.watch_data(schema.node_path(self.name), self._domains_changed)

    def _claim_liveness(self) -> None:
        self.store.ensure_path(schema.LIVENESS_PATH)
        data = f"pid={os.getpid()} started={int(self.clock())}".encode()
        self.store.claim_ephemeral(schema.liveness_path(self.name), data)

    def _publish_default_selector(self) -> None:
        selector = self.config.daemon.default_selector
        if not (selector and self.config.node.coordinator):
            return
        set_default_selector(self.store, selector)

    def _shut_down(self, consoles: threading.Thread | None = None) -> None:
        """``shutdown`` -> ``stop``; in-flight actions finish, running VMs are not touched."""
        log.info("stopping: waiting for in-flight VM actions")
        try:
            self.row.update({"daemonstate": "shutdown"}, event="daemon shutting down")
        except PvcError as error:
            log.warning("could not record shutdown: %s", error)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if consoles is not None:
            consoles.join(timeout=self.config.zookeeper.timeout)  # its last reads, written
        try:
            self.row.update({"daemonstate": "stop"}, event="daemon stopped")
            self.store.release_ephemeral(schema.liveness_path(self.name))
        except PvcError as error:
            log.warning("could not record stop: %s", error)
        self.store.close()
        self.hypervisor.close()

    # ----------------------------------------------------------------- wake-ups

    def _on_libvirt(self, uuid: str) -> None:
        self._wake.set()

    def _on_connection(self, state: str) -> None:
        # Runs on kazoo's thread: only record and signal.
        if state == "lost":
            log.warning("ZooKeeper session expired: acting on nothing until a new one is up")
            self._session_lost.set()
        elif state == "suspended":
            log.warning("ZooKeeper connection suspended: acting on nothing until it returns")
        else:
            log.info("ZooKeeper connection is back")
        self._wake.set()

    def _domains_changed(self) -> None:
        self._wake.set()

    def _watch_vms(self, uuids: set[str]) -> None:
        # A VM's own znode is rewritten by every change of the VM: one watch sees them all.
        for uuid in uuids - self._watched:
            self.store.watch_data(schema.domain_path(uuid), self._domains_changed)
        self._watched &= uuids
        self._watched |= uuids

    # ----------------------------------------------------------------- keepalive

    def _keepalive_loop(self) -> None:
        interval = self.config.daemon.keepalive_interval
        while not self._stopping.wait(interval):
            try:
                if self._session_lost.is_set() and self.store.connected:
                    # A new session: the ephemeral znode died with the old one.
                    log.info("new ZooKeeper session: claiming the liveness znode again")
                    self._session_lost.clear()
                    self.row.forget()
                    self._claim_liveness()
                self._keepalive()
            except (PvcError, HypervisorError) as error:
                log.warning("keepalive failed: %s", error)

    def _fence_loop(self) -> None:
        """Coordinators: judge the other nodes every keepalive interval, fence the dead."""
        monitor = FenceMonitor(
            self.store,
            self.config,
            fencer=make_fencer(self.config),
            rbd=self.actions.rbd,
            clock=self.clock,
        )
        while not self._stopping.wait(self.config.daemon.keepalive_interval):
            try:
                monitor.check_once()
            except PvcError as error:
                log.warning("dead-node check skipped: %s", error)
            except Exception:
                log.exception("dead-node check failed unexpectedly")

    def _keepalive(self) -> None:
        if self.row.record.daemonstate == "dead":
            # A coordinator took this node for dead (e.g. it was frozen) but it is alive.
            log.warning("this node was marked dead but its daemon runs: marking it run")
            self.row.update({"daemonstate": "run"}, event="alive again")
        try:
            domains = self.hypervisor.domains()
        except HypervisorError as error:
            # The daemon is alive even if libvirtd is not (a libvirtd restart must never
            # look like a dead node): keep the last figures, and list what may run here,
            # which keeps other nodes from starting it. That is the last list plus every
            # VM assigned here that should run: one may have just arrived by live
            # migration, and its source trusts this list after two keepalives.
            log.warning("libvirt unavailable, keepalive only: %s", error)
            assigned = {
                vm.uuid
                for vm in load_vms(self.store)
                if vm.node == self.name and vm.state in MAY_RUN_STATES
            }
            with self._lock:
                extra = assigned | self._starting | self._departed.uuids()
            self.row.update(
                lambda row: {
                    "keepalive": int(self.clock()),
                    "runningdomains": tuple(sorted(set(row.runningdomains) | extra)),
                }
            )
            return
        figures = node_figures(
            self.hypervisor.host_figures(domains),
            domains,
            self._provisioned(),
            listed=self._listed(domains),
            now=self.clock(),
        )
        self.row.update(figures)

    def _provisioned(self) -> list[int]:
        with self._lock:
            return [memory for _, memory in self._memory.values()]

    # ----------------------------------------------------------------- runningdomains

    def _set_starting(self, uuid: str, starting: bool) -> None:
        with self._lock:
            if starting:
                self._starting.add(uuid)
            else:
                self._starting.discard(uuid)

    def _listed(self, domains: dict[str, DomainStatus]) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(set(domains) | self._starting | self._departed.uuids()))

    def _note_departed(self, uuid: str, target: str) -> None:
        with self._lock:
            self._departed.note(uuid, target)

    def _forget_departed(self, nodes: list[NodeRecord]) -> None:
        """Stop listing departed VMs once their target's list can be trusted about them."""
        with self._lock:
            if not self._departed:
                return
            dropped = self._departed.settle(nodes, self.name)
        for uuid, reason in dropped.items():
            log.info("vm %s: no longer listed here as departed (%s)", uuid, reason)
        if dropped:
            # Waiters see the VM on its target alone now, not at the next keepalive.
            self.row.update(lambda row: {"runningdomains": self._listed_now()})

    def _listed_now(self) -> tuple[str, ...]:
        return self._listed(self.hypervisor.domains())

    def _note_crash_restart(self, uuid: str) -> None:
        with self._lock:
            self._crash_restarts.setdefault(uuid, []).append(self.clock())

    # ----------------------------------------------------------------- reconcile

    def _reconcile_loop(self) -> None:
        interval = self.config.daemon.reconcile_interval
        next_full = 0.0
        while not self._stopping.is_set():
            self._wake.clear()
            soon = self.reconcile_once()
            now = time.monotonic()
            if now >= next_full:
                next_full = now + interval
            timeout = min(next_full - now, WAIT_RECHECK if soon else interval)
            self._wake.wait(max(0.05, timeout))

    def reconcile_once(self) -> bool:
        """One pass; returns whether some VM waits and should be looked at again soon."""
        try:
            vms = load_vms(self.store)
            nodes = load_nodes(self.store)
            domains = self.hypervisor.domains()
        except PvcError as error:
            # No fresh truth, no action: VMs keep running as they are.
            if self._store_ok:
                log.warning("reconcile paused: %s", error)
            self._store_ok = False
            return False
        if not self._store_ok:
            log.info("reconcile resumed")
            self._store_ok = True
        self._remember_memory(vms)
        self._follow_consoles(vms, domains)
        self._forget_departed(nodes)
        self._watch_vms({vm.uuid for vm in vms})
        self._seen_running = {uuid for uuid, d in domains.items() if d.presence is Presence.RUNNING}
        own = next((node for node in nodes if node.name == self.name), None)
        if own is not None and own.domainstate in MAINTENANCE_KINDS:
            self._start_maintenance(MAINTENANCE_KINDS[own.domainstate])
        by_uuid = {vm.uuid: vm for vm in vms}
        elsewhere = _running_elsewhere(nodes, self.name)
        relevant = {vm.uuid for vm in vms if vm.node == self.name} | set(domains)
        waiting = dispatched = 0
        for uuid in sorted(relevant):
            with self._lock:
                if uuid in self._busy:
                    continue
            presence = domains[uuid].presence if uuid in domains else Presence.STOPPED
            action = self._decide(by_uuid.get(uuid), uuid, presence, elsewhere.get(uuid, ()))
            if action.kind is Kind.WAIT:
                waiting += 1
                log.debug("vm %s: waiting: %s", uuid, action.reason)
            elif action.kind is not Kind.NONE:
                dispatched += 1
                self._dispatch(uuid)
        if dispatched or waiting:
            log.info(
                "pass: %d VM(s) here, %d action(s) started, %d waiting",
                len(relevant),
                dispatched,
                waiting,
            )
        return waiting > 0

    def _start_maintenance(self, kind: str) -> None:
        """Run a flush or ready of this node on its own thread (one at a time)."""
        if self._maintenance is not None and self._maintenance.is_alive():
            return
        runner = MaintenanceRunner(
            self.store,
            self.row,
            self.name,
            concurrency=self.config.maintenance.concurrency,
            vm_timeout=self.config.maintenance.vm_timeout,
            stopping=self._stopping,
            clock=self.clock,
        )

        def run() -> None:
            try:
                runner.run(kind)
            except PvcError as error:
                log.warning(
                    "%s of %s interrupted (%s): resuming on the next pass", kind, self.name, error
                )
            except Exception:
                log.exception("%s of %s failed unexpectedly", kind, self.name)
            finally:
                self._wake.set()

        self._maintenance = threading.Thread(target=run, name=kind, daemon=True)
        self._maintenance.start()

    def _decide(
        self, vm: VmRecord | None, uuid: str, presence: Presence, elsewhere: tuple[str, ...]
    ) -> Action:
        with self._lock:
            history = list(self._crash_restarts.get(uuid, ()))
            departed_to = self._departed.target_of(uuid)
        if departed_to is not None:
            # It left for departed_to by live migration and that node's list cannot be
            # trusted about it yet: as far as this node knows, it runs there.
            elsewhere = tuple(sorted({*elsewhere, departed_to}))
        return decide(
            vm,
            here=self.name,
            presence=presence,
            last_exit=self.hypervisor.last_exit(uuid),
            running_elsewhere=elsewhere,
            recent_crash_restarts=crash_restarts_within(
                history, now=self.clock(), window=self.config.vm.restart_window
            ),
            restart_budget=self.config.vm.restart_budget,
        )

    def _dispatch(self, uuid: str) -> None:
        with self._lock:
            if uuid in self._busy or self._stopping.is_set():
                return
            self._busy.add(uuid)
        try:
            self._pool.submit(self._work, uuid)
        except RuntimeError:  # the pool is shutting down
            with self._lock:
                self._busy.discard(uuid)

    def _work(self, uuid: str) -> None:
        """The VM's worker: decide again on fresh data, then act."""
        try:
            vms = load_vms(self.store, [uuid])
            vm = vms[0] if vms else None
            if vm is None:
                return
            presence = self.hypervisor.presence(uuid)
            elsewhere = _running_elsewhere(load_nodes(self.store), self.name).get(uuid, ())
            action = self._decide(vm, uuid, presence, elsewhere)
            if (
                action.kind is Kind.START
                and vm.state == "start"
                and self.hypervisor.last_exit(uuid) is Exit.UNKNOWN
                and uuid in self._seen_running
            ):
                # It ran here a moment ago and libvirt's event saying how it stopped (a
                # guest poweroff is not restarted) may still be on its way: give it time.
                time.sleep(EXIT_EVENT_GRACE)
                presence = self.hypervisor.presence(uuid)
                action = self._decide(vm, uuid, presence, elsewhere)
            carry_out(self.actions, vm, action)
        except (PvcError, HypervisorError) as error:
            log.warning("vm %s: action not carried out: %s", uuid, error)
        except Exception:
            log.exception("vm %s: unexpected error in its worker", uuid)
        finally:
            with self._lock:
                self._busy.discard(uuid)
            self._wake.set()

    def _console_path(self, vm: VmRecord) -> str | None:
        """The VM's serial log file from its XML, parsed once per row version."""
        known = self._console_paths.get(vm.uuid)
        if known is None or known[0] != vm.version:
            try:
                path = parse_domain_xml(vm.xml).console_log_path
            except InvalidInput:
                path = None
            known = self._console_paths[vm.uuid] = (vm.version, path)
        return known[1]

    def _follow_consoles(self, vms: list[VmRecord], domains: dict[str, DomainStatus]) -> None:
        """Feed the console buffer of every VM that runs or arrives here, or is to start here."""
        wanted: dict[str, str] = {}
        for vm in vms:
            here = vm.uuid in domains or (vm.node == self.name and vm.state in MAY_RUN_STATES)
            path = self._console_path(vm) if here else None
            if path:
                wanted[vm.uuid] = path
        known = {vm.uuid for vm in vms}
        self._console_paths = {u: p for u, p in self._console_paths.items() if u in known}
        self.consoles.sync(wanted)

    def _prime_console(self, vm: VmRecord) -> None:
        path = self._console_path(vm)
        if path:
            self.consoles.prime(vm.uuid, path)

    def _remember_memory(self, vms: list[VmRecord]) -> None:
        """Keep the memory of every VM assigned here, parsing each XML once per version."""
        mine: dict[str, tuple[int, int]] = {}
        for vm in vms:
            if vm.node != self.name:
                continue
            known = self._memory.get(vm.uuid)
            if known and known[0] == vm.version:
                mine[vm.uuid] = known
                continue
            try:
                mine[vm.uuid] = (vm.version, parse_domain_xml(vm.xml).memory_mib)
            except InvalidInput:
                mine[vm.uuid] = (vm.version, 0)
        with self._lock:
            self._memory = mine


def _running_elsewhere(nodes: list[NodeRecord], here: str) -> dict[str, tuple[str, ...]]:
    """VM UUID -> the other nodes that list it in their runningdomains.

    A fenced node's list is ignored: its power was confirmed off, so nothing runs there.
    """
    found: dict[str, list[str]] = {}
    for node in nodes:
        if node.name == here or node.daemonstate == "fenced":
            continue
        for uuid in node.runningdomains:
            found.setdefault(uuid, []).append(node.name)
    return {uuid: tuple(names) for uuid, names in found.items()}
