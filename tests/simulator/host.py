"""Stand-ins for what sits below the daemons: each node's libvirtd, its power, its BMC.

A :class:`Host` knows which domains run on it and how each one last stopped (the libvirt
lifecycle events the real ``Hypervisor`` adapter records). :class:`Faults` holds the
failures a scenario injects (a start that fails, a live migration that fails, a guest that
ignores its power button, a VM that crashes); :class:`Bmc` is a node's power controller,
which may work, fail (it accepts power-off but the power stays on) or not answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pvc_common.ha import VmSize
from pvc_common.reconcile import Exit, Presence

#: How a BMC behaves when asked to power its node off.
BMC_MODES = ("works", "fails", "unreachable")


@dataclass
class Domain:
    """One domain on a host."""

    uuid: str
    name: str
    presence: Presence
    size: VmSize
    #: Counts the starts of this domain, so a crash scheduled for one run of the VM
    #: does not hit a later one.
    generation: int = 0


@dataclass
class Host:
    """One node's hardware and libvirtd."""

    name: str
    memory_mib: int
    cpuload: float = 0.0
    powered: bool = True
    #: Whether it has booted since it was powered on (libvirtd answers, a daemon can run).
    booted: bool = True
    domains: dict[str, Domain] = field(default_factory=dict)
    #: How each VM last stopped here, as the adapter learnt it from libvirt's events.
    exits: dict[str, Exit] = field(default_factory=dict)
    #: VMs this host's daemon is stopping on purpose (their stop is not the guest's doing).
    intended: set[str] = field(default_factory=set)

    @property
    def up(self) -> bool:
        """Powered and booted: its libvirtd answers."""
        return self.powered and self.booted

    def presence(self, uuid: str) -> Presence:
        """What libvirt says about the VM here."""
        domain = self.domains.get(uuid)
        return domain.presence if domain else Presence.STOPPED

    def running(self) -> list[str]:
        """UUIDs of the domains that run here (not the incoming side of a migration)."""
        return sorted(u for u, d in self.domains.items() if d.presence is Presence.RUNNING)

    def memfree(self) -> int:
        """Memory not taken by any domain (the test driver's way of counting it)."""
        taken = sum(domain.size.memory_mib for domain in self.domains.values())
        return max(0, self.memory_mib - taken)

    def remove(self, uuid: str, how: Exit) -> Domain | None:
        """Take a domain away; a stop this daemon asked for counts as destroyed."""
        domain = self.domains.pop(uuid, None)
        if domain is None:
            return None
        if uuid in self.intended and how is not Exit.MIGRATED:
            how = Exit.DESTROYED
        self.intended.discard(uuid)
        self.exits[uuid] = how
        return domain

    def power_loss(self) -> list[str]:
        """Everything running here dies at once; returns the names that were there."""
        names = sorted(domain.name for domain in self.domains.values())
        self.powered = False
        self.booted = False
        self.domains.clear()
        self.exits.clear()
        self.intended.clear()
        return names


@dataclass
class LiveFailure:
    """Live migrations of one VM fail ``times`` more times (None: until cleared)."""

    message: str
    times: int | None


@dataclass
class Faults:
    """Failures a scenario has injected, by VM name."""

    failing_starts: dict[str, str] = field(default_factory=dict)
    failing_live: dict[str, LiveFailure] = field(default_factory=dict)
    hanging_shutdowns: set[str] = field(default_factory=set)
    #: VM name -> seconds after each start at which it crashes again.
    crash_loops: dict[str, float] = field(default_factory=dict)
    #: Coordinators whose daemon is killed right after it records its next fence.
    crash_after_fence: set[str] = field(default_factory=set)

    def take_start_failure(self, vm_name: str) -> str | None:
        """The message of an injected start failure of ``vm_name`` (used up), or None."""
        return self.failing_starts.pop(vm_name, None)

    def take_live_failure(self, vm_name: str) -> str | None:
        """The message of an injected live-migration failure of ``vm_name``, or None."""
        failure = self.failing_live.get(vm_name)
        if failure is None:
            return None
        if failure.times is not None:
            failure.times -= 1
            if failure.times <= 0:
                del self.failing_live[vm_name]
        return failure.message


@dataclass
class Bmc:
    """A node's BMC: how it answers a power-off, and whether it powers on after a fence."""

    node: str
    mode: str = "works"
    power_on_after_fence: bool = True

    def __post_init__(self) -> None:
        if self.mode not in BMC_MODES:
            raise ValueError(f"BMC mode {self.mode!r}: use one of {', '.join(BMC_MODES)}")

    @property
    def address(self) -> str:
        """The address fence messages name."""
        return f"{self.node}-bmc:623"
