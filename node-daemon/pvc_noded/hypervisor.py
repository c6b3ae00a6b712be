"""The libvirt adapter: the only module of the node daemon that imports libvirt.

It gives the daemon what it needs in plain terms: which cluster VMs the host runs
(:class:`DomainStatus`), start / shutdown / destroy / live-migrate, the host's figures, and
lifecycle events that only *wake* the daemon (plus the last way each VM stopped, which the
reconcile core needs to tell a crash from a guest powering itself off).

VMs run as transient libvirt domains: ZooKeeper holds their definitions, so a host keeps
nothing to go stale. Every libvirt failure becomes a one-line :class:`HypervisorError`.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import libvirt

from pvc_common.errors import HypervisorError
from pvc_common.reconcile import Exit, Presence

log = logging.getLogger(__name__)

_event_loop_lock = threading.Lock()
_event_loop_started = False

#: libvirt's stopped-event details, in the terms of the reconcile core.
_STOP_DETAILS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: Exit.GUEST_SHUTDOWN,
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: Exit.DESTROYED,
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: Exit.CRASHED,
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: Exit.MIGRATED,
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: Exit.CRASHED,
}


def _start_event_loop() -> None:
    """Run libvirt's default event loop on a daemon thread, once per process.

    It must be registered before the first connection is opened, or that connection
    never delivers events.
    """
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.registerErrorHandler(lambda *args: None, None)  # no stderr noise
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def _message(error: libvirt.libvirtError) -> str:
    return " ".join((error.get_error_message() or str(error)).split())


@dataclass(frozen=True)
class DomainStatus:
    """One domain as this host's libvirtd sees it."""

    uuid: str
    name: str
    presence: Presence
    memory_mib: int
    vcpus: int


@dataclass(frozen=True)
class HostFigures:
    """The host's resource figures, in the units of the node keys."""

    memtotal: int
    memfree: int
    cpus: int
    cpuload: float
    kernel: str
    os_name: str
    arch: str


class Hypervisor:
    """A connection to one libvirtd, reopened when it drops.

    ``on_event`` is called (on libvirt's event thread; it must only signal) with a VM's
    UUID whenever libvirt reports a lifecycle change, and with ``""`` when the connection
    dropped or came back.
    """

    def __init__(self, uri: str, *, on_event: Callable[[str], None] = lambda uuid: None) -> None:
        self.uri = uri
        self._on_event = on_event
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.RLock()
        self._exits: dict[str, Exit] = {}
        # VMs this daemon is stopping on purpose: their next stop is not the guest's doing,
        # whatever libvirt's event detail says (an ACPI shutdown reports "shutdown").
        self._intended: set[str] = set()
        self._callback_id: int | None = None

    # ----------------------------------------------------------------- connection

    def connection(self) -> libvirt.virConnect:
        """The open connection, opening (or reopening) it when needed."""
        with self._lock:
            if self._conn is not None and self._conn.isAlive():
                return self._conn
            self._drop()
            _start_event_loop()
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as error:
                raise HypervisorError(f"cannot connect to {self.uri}: {_message(error)}") from None
            try:
                # Notice a dead libvirtd within ~15 s instead of on the next call.
                conn.setKeepAlive(5, 3)
            except libvirt.libvirtError:
                pass  # the test driver has no keepalive
            conn.registerCloseCallback(self._closed, None)
            self._callback_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None
            )
            self._conn = conn
            log.info("connected to libvirt at %s", self.uri)
            self._on_event("")
            return conn

    def close(self) -> None:
        """Close the connection (running VMs are not touched)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._callback_id is not None:
                conn.domainEventDeregisterAny(self._callback_id)
            conn.unregisterCloseCallback()
            conn.close()
        except libvirt.libvirtError:
            pass
        self._callback_id = None

    def _closed(self, conn: Any, reason: int, opaque: Any) -> None:
        log.warning("libvirt connection to %s closed (reason %s)", self.uri, reason)
        self._on_event("")

    def _lifecycle(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        uuid = dom.UUIDString()
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            exit_kind = _STOP_DETAILS.get(detail, Exit.UNKNOWN)
            if uuid in self._intended and exit_kind is not Exit.MIGRATED:
                exit_kind = Exit.DESTROYED
            self._intended.discard(uuid)
            self._exits[uuid] = exit_kind
        elif event == libvirt.VIR_DOMAIN_EVENT_CRASHED:
            self._exits[uuid] = Exit.CRASHED
        self._on_event(uuid)

    def last_exit(self, uuid: str) -> Exit:
        """How the VM last stopped on this host since the daemon started."""
        return self._exits.get(uuid, Exit.UNKNOWN)

    # ----------------------------------------------------------------- reads

    def domains(self) -> dict[str, DomainStatus]:
        """Every domain this host runs (shut-off ones are left out), by UUID."""
        conn = self.connection()
        found: dict[str, DomainStatus] = {}
        try:
            domains = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except libvirt.libvirtError as error:
            raise HypervisorError(f"cannot list domains on {self.uri}: {_message(error)}") from None
        for dom in domains:
            try:
                state, reason = dom.state()
                info = dom.info()
            except libvirt.libvirtError:
                continue  # it went away between the listing and the read
            uuid = dom.UUIDString()
            found[uuid] = DomainStatus(
                uuid=uuid,
                name=dom.name(),
                presence=_presence(state, reason),
                memory_mib=int(info[1]) // 1024,
                vcpus=int(info[3]),
            )
        return found

    def presence(self, uuid: str) -> Presence:
        """Whether this host runs the VM right now."""
        dom = self._lookup(uuid)
        if dom is None:
            return Presence.STOPPED
        try:
            state, reason = dom.state()
        except libvirt.libvirtError:
            return Presence.STOPPED
        return _presence(state, reason)

    def host_figures(self, domains: dict[str, DomainStatus]) -> HostFigures:
        """Memory, CPUs and load of this host (``domains`` as from :meth:`domains`)."""
        conn = self.connection()
        try:
            info = conn.getInfo()
            free_bytes = conn.getFreeMemory()
        except libvirt.libvirtError as error:
            raise HypervisorError(f"cannot read host figures: {_message(error)}") from None
        memtotal = int(info[1])
        if free_bytes:
            memfree = int(free_bytes) // (1024 * 1024)
        else:
            # libvirt's test driver reports no free memory: count what its VMs take.
            memfree = max(0, memtotal - sum(d.memory_mib for d in domains.values()))
        return HostFigures(
            memtotal=memtotal,
            memfree=min(memfree, memtotal),
            cpus=int(info[2]),
            cpuload=os.getloadavg()[0],
            kernel=platform.release(),
            os_name=platform.system().lower(),
            arch=platform.machine(),
        )

    # ----------------------------------------------------------------- actions

    def start(self, uuid: str, xml: str) -> None:
        """Start the VM from its XML as a transient domain."""
        conn = self.connection()
        self._exits.pop(uuid, None)
        self._intended.discard(uuid)
        try:
            conn.createXML(xml, 0)
        except libvirt.libvirtError as error:
            raise HypervisorError(f"start failed: {_message(error)}") from None

    def destroy(self, uuid: str) -> None:
        """Stop the VM at once; a VM that is not running is fine."""
        dom = self._lookup(uuid)
        if dom is None:
            return
        self._intended.add(uuid)
        try:
            dom.destroy()
        except libvirt.libvirtError as error:
            if self._lookup(uuid) is None or not self._is_active(uuid):
                return
            self._intended.discard(uuid)
            raise HypervisorError(f"stop failed: {_message(error)}") from None

    def shutdown(self, uuid: str, timeout: float) -> str:
        """Press the VM's ACPI power button; destroy it if still running after ``timeout``.

        Returns ``"shutdown"`` or ``"destroyed"``. A guest that ignores the button (no
        ACPI support) is the common case this timeout exists for.
        """
        dom = self._lookup(uuid)
        if dom is None:
            return "shutdown"
        self._intended.add(uuid)
        try:
            dom.shutdown()
        except libvirt.libvirtError as error:
            if not self._is_active(uuid):
                return "shutdown"
            log.warning("ACPI shutdown of %s refused (%s): destroying it", uuid, _message(error))
            self.destroy(uuid)
            return "destroyed"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._is_active(uuid):
                return "shutdown"
            time.sleep(0.2)
        log.info("%s did not shut down within %g s: destroying it", uuid, timeout)
        self.destroy(uuid)
        return "destroyed"

    def migrate(
        self,
        uuid: str,
        *,
        peer_uri: str,
        migration_uri: str,
        max_downtime_ms: int,
        timeout: float,
    ) -> None:
        """Live-migrate the VM to the libvirtd at ``peer_uri`` (peer to peer).

        The QEMU data stream goes to ``migration_uri`` (given explicitly: the target's
        own idea of its hostname may not be reachable). A migration still running after
        ``timeout`` seconds is aborted, leaving the VM running here.
        """
        dom = self._lookup(uuid)
        if dom is None:
            raise HypervisorError("live migration failed: the VM is not running here")
        try:
            dom.migrateSetMaxDowntime(max_downtime_ms, 0)
        except libvirt.libvirtError as error:
            log.debug("cannot set max downtime of %s: %s", uuid, _message(error))
        aborted = threading.Event()

        def abort() -> None:
            aborted.set()
            try:
                dom.abortJob()
            except libvirt.libvirtError:
                pass

        timer = threading.Timer(timeout, abort)
        timer.daemon = True
        timer.start()
        flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
        params = {libvirt.VIR_MIGRATE_PARAM_URI: migration_uri}
        listen = urlsplit(migration_uri).hostname
        if listen:
            # Without it the target QEMU listens on every address, not only the one given.
            params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = listen
        self._intended.add(uuid)
        started = time.monotonic()
        try:
            dom.migrateToURI3(peer_uri, params, flags)
        except libvirt.libvirtError as error:
            self._intended.discard(uuid)
            why = f"timed out after {timeout:g} s" if aborted.is_set() else _message(error)
            raise HypervisorError(f"live migration failed: {why}") from None
        finally:
            timer.cancel()
        # The benchmark reads this line: libvirt's own share of a migration.
        log.info("%s: libvirt live migration took %.3f s", uuid, time.monotonic() - started)

    # ----------------------------------------------------------------- plumbing

    def _lookup(self, uuid: str) -> libvirt.virDomain | None:
        try:
            return self.connection().lookupByUUIDString(uuid)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise HypervisorError(f"cannot look up {uuid}: {_message(error)}") from None

    def _is_active(self, uuid: str) -> bool:
        dom = self._lookup(uuid)
        if dom is None:
            return False
        try:
            return bool(dom.isActive())
        except libvirt.libvirtError:
            return False


def _presence(state: int, reason: int) -> Presence:
    if state in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED):
        return Presence.STOPPED
    if state == libvirt.VIR_DOMAIN_PAUSED and reason in (
        libvirt.VIR_DOMAIN_PAUSED_MIGRATION,
        libvirt.VIR_DOMAIN_PAUSED_STARTING_UP,
    ):
        # The target side of a live migration waits paused until the source hands over.
        return Presence.INCOMING
    return Presence.RUNNING
