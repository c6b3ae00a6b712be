"""What a daemon asks of its libvirtd, on a :class:`Host` stand-in, taking simulated time.

The methods mirror ``pvc_noded.hypervisor.Hypervisor``: ``start`` and ``destroy`` are
immediate; ``shutdown`` and ``migrate`` are activities (generators yielding the seconds
they wait), since in the real cluster they take seconds during which everything else
goes on. Failures come back as :class:`HypervisorError` with libvirt-like messages,
exactly where the real adapter raises them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pvc_common.errors import HypervisorError
from pvc_common.models import VmRecord
from pvc_common.reconcile import Exit, Presence

from .clock import Activity
from .host import Domain, Host

if TYPE_CHECKING:
    from .simulation import Simulation


class SimHypervisor:
    """One daemon's connection to its own host's libvirtd."""

    def __init__(self, sim: Simulation, host: Host) -> None:
        self.sim = sim
        self.host = host

    @property
    def name(self) -> str:
        """The node this libvirtd belongs to."""
        return self.host.name

    def last_exit(self, uuid: str) -> Exit:
        """How the VM last stopped here since this daemon started."""
        return self.host.exits.get(uuid, Exit.UNKNOWN)

    def start(self, vm: VmRecord, *, in_place: bool = False) -> None:
        """Start the VM here (``createXML``); raises on an injected or real failure.

        ``in_place``: the second half of a restart, the VM having run here until now.
        """
        message = self.sim.faults.take_start_failure(vm.name)
        if message is None and vm.uuid in self.host.domains:
            message = f"domain '{vm.name}' is already active"
        if message is not None:
            self.sim.log.emit(f"host {self.name!r}: {vm.name} start failed: {message}")
            raise HypervisorError(f"start failed: {message}")
        self.host.exits.pop(vm.uuid, None)
        self.host.intended.discard(vm.uuid)
        size = self.sim.store.sizes[vm.uuid]
        domain = Domain(vm.uuid, vm.name, Presence.RUNNING, size, self.sim.next_generation())
        self.host.domains[vm.uuid] = domain
        self.sim.log.emit(f"host {self.name!r}: {vm.name} started")
        self.sim.domain_started(self.host, domain, migrated=False, in_place=in_place)

    def destroy(self, uuid: str) -> None:
        """Stop the VM at once; one that is not running is fine."""
        domain = self.host.domains.get(uuid)
        if domain is None:
            return
        self.host.intended.add(uuid)
        self.host.remove(uuid, Exit.DESTROYED)
        self.sim.log.emit(f"host {self.name!r}: {domain.name} destroyed")

    def shutdown(self, uuid: str, timeout: float) -> Activity:
        """ACPI power button, then destroy after ``timeout``: ``"shutdown"|"destroyed"``."""
        domain = self.host.domains.get(uuid)
        if domain is None:
            return "shutdown"
        self.host.intended.add(uuid)
        settings = self.sim.settings
        hangs = domain.name in self.sim.faults.hanging_shutdowns
        if hangs or settings.shutdown_time > timeout:
            yield timeout
            if self.host.domains.get(uuid) is not domain:
                return "shutdown"  # it went away meanwhile (a crash, say)
            self.destroy(uuid)
            return "destroyed"
        yield settings.shutdown_time
        if self.host.domains.get(uuid) is domain:
            self.host.remove(uuid, Exit.DESTROYED)
            self.sim.log.emit(f"host {self.name!r}: {domain.name} shut down")
        return "shutdown"

    def migrate(self, uuid: str, target: str) -> Activity:
        """Live-migrate the VM to ``target``'s libvirtd (one attempt).

        During the migration the VM runs here and the target holds it paused (incoming);
        at the switch it runs on the target only. A failure leaves it running here. The
        call returns at the switch or a tick later (see the comment there).
        """
        domain = self.host.domains.get(uuid)
        if domain is None or domain.presence is not Presence.RUNNING:
            raise HypervisorError("live migration failed: the VM is not running here")
        peer = self.sim.hosts[target]
        if not peer.up:
            yield self.sim.settings.bmc_call_time
            raise self._failed(domain, target, f"cannot connect to {target}: no route to host")
        if uuid in peer.domains:
            raise self._failed(domain, target, f"domain '{domain.name}' already exists on {target}")
        injected = self.sim.faults.take_live_failure(domain.name)
        incoming = Domain(uuid, domain.name, Presence.INCOMING, domain.size, domain.generation)
        peer.domains[uuid] = incoming
        self.sim.migrations[uuid] = (self.name, target)
        self.sim.log.emit(f"host {self.name!r}: {domain.name} live migration to {target} started")
        yield self.sim.settings.live_migration_time
        self.sim.migrations.pop(uuid, None)
        arrived = peer.up and peer.domains.get(uuid) is incoming
        still_here = self.host.domains.get(uuid) is domain
        if injected is None and arrived and still_here:
            self.host.remove(uuid, Exit.MIGRATED)
            incoming.presence = Presence.RUNNING
            self.sim.log.emit(f"host {target!r}: {domain.name} arrived from {self.name}")
            self.sim.domain_started(peer, incoming, migrated=True)
            # Who writes first after the switch is a race in the real cluster: the source,
            # whose migrate call returns, or the target, woken by libvirt's event. A seeded
            # coin decides whether the source's call returns now or a tick later.
            if self.sim.rng.random() < 0.5:
                yield self.sim.settings.tick
            return None
        if arrived:
            del peer.domains[uuid]  # the target's paused copy is discarded
        if injected is not None:
            why = injected
        elif not peer.up or not arrived:  # down, or rebooted: its paused copy is gone
            why = f"connection to {target} lost"
        else:
            why = "the VM is not running here"
        raise self._failed(domain, target, why)

    def _failed(self, domain: Domain, target: str, why: str) -> HypervisorError:
        self.sim.log.emit(
            f"host {self.name!r}: {domain.name} live migration to {target} failed: {why}"
        )
        return HypervisorError(f"live migration failed: {why}")
