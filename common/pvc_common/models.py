"""Plain frozen data the pure core works on: VMs, nodes, networks and parsed domain XML.

These records are what the store adapter reads and the decision functions take; they
carry no connection and do no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DiskInfo:
    """One ``<disk>`` of a domain."""

    device: str  #: ``disk``, ``cdrom``, ``floppy`` or ``lun``
    kind: str  #: the disk ``type``: ``file``, ``block``, ``network``, ``volume``, ...
    target: str  #: guest device name, e.g. ``vda``; '' when absent
    source: str | None  #: file path, block device, or ``pool/volume`` for RBD; None when empty
    protocol: str | None = None  #: network protocol (``rbd``, ...) for network disks


@dataclass(frozen=True)
class InterfaceInfo:
    """One ``<interface>`` of a domain."""

    kind: str  #: the interface ``type``: ``bridge``, ``network``, ...
    mac: str  #: MAC address, '' when libvirt is to generate one
    source: str  #: bridge or network name the interface attaches to
    model: str  #: device model, e.g. ``virtio``; '' when absent
    vni: int | None  #: the cluster network (VNI) it attaches to, when the source names one


@dataclass(frozen=True)
class CpuTopology:
    """``<cpu><topology .../></cpu>`` of a domain."""

    sockets: int
    cores: int
    threads: int


@dataclass(frozen=True)
class DomainInfo:
    """What the cluster needs to know of a libvirt domain XML document."""

    name: str
    uuid: str  #: canonical lower-case UUID
    memory_mib: int
    vcpus: int
    topology: CpuTopology | None
    disks: tuple[DiskInfo, ...]
    interfaces: tuple[InterfaceInfo, ...]
    console_log_path: str | None  #: file of the serial console ``<log>``; None when not configured

    @property
    def rbd_volumes(self) -> tuple[str, ...]:
        """``pool/volume`` names of the Ceph RBD network disks, in document order."""
        return tuple(
            disk.source
            for disk in self.disks
            if disk.kind == "network" and disk.protocol == "rbd" and disk.source
        )

    @property
    def networks(self) -> tuple[str, ...]:
        """The networks the interfaces attach to, in document order without repeats.

        A VNI is given as its decimal number; an interface whose source names no cluster
        network is given by its source name, so the listing still shows it.
        """
        seen: dict[str, None] = {}
        for interface in self.interfaces:
            label = str(interface.vni) if interface.vni is not None else interface.source
            if label:
                seen.setdefault(label, None)
        return tuple(seen)


@dataclass(frozen=True)
class VmRecord:
    """A VM as stored under ``/domains/<uuid>``."""

    uuid: str
    name: str
    xml: str = ""
    state: str = "stop"
    node: str = ""
    lastnode: str = ""
    failedreason: str = ""
    node_limit: tuple[str, ...] = ()
    node_selector: str = "none"
    node_autostart: bool = False
    rbdlist: tuple[str, ...] = ()
    migration_method: str = "none"
    lockflush: str = ""
    #: Number of the last state or placement request (see ``vm_rules.as_request``).
    request: int = 0
    #: The request its node daemon last confirmed running on its node.
    confirmed: int = 0
    #: Version of ``/domains/<uuid>``: the row version every change of this VM checks.
    version: int = -1


@dataclass(frozen=True)
class NodeRecord:
    """A node as stored under ``/nodes/<name>``."""

    name: str
    node_type: str = "hypervisor"
    daemonstate: str = "stop"
    domainstate: str = "ready"
    routerstate: str = "client"
    staticdata: tuple[str, ...] = ()
    memtotal: int = 0
    memused: int = 0
    memfree: int = 0
    memalloc: int = 0
    memprov: int = 0
    vcpualloc: int = 0
    cpuload: float = 0.0
    domainscount: int = 0
    runningdomains: tuple[str, ...] = ()
    keepalive: int = 0
    ipmihostname: str = ""
    ipmiusername: str = ""
    ipmipassword: str = field(default="", repr=False)
    libvirturi: str = ""
    migrationuri: str = ""
    #: The current or last flush/ready of the node (see ``pvc_common.maintenance``).
    maintenance: dict[str, Any] = field(default_factory=dict, compare=False)
    #: Counters its daemon keeps: migrations sent, fences made (see ``pvc_common.node_stats``).
    stats: dict[str, Any] = field(default_factory=dict, compare=False)
    #: Version of ``/nodes/<name>``: the row version every change of this node checks.
    version: int = -1

    @property
    def is_ready(self) -> bool:
        """Whether the node can take VMs: its daemon runs and it is not flushed."""
        return self.daemonstate == "run" and self.domainstate == "ready"


@dataclass(frozen=True)
class NetworkRecord:
    """A network as stored under ``/networks/<vni>``."""

    vni: int
    description: str = ""
    nettype: str = "bridged"
