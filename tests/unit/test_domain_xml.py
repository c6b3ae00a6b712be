"""Tests of reading libvirt domain XML into DomainInfo."""

from __future__ import annotations

import pytest

from pvc_common.domain_xml import parse_domain_xml
from pvc_common.errors import InvalidInput
from pvc_common.models import CpuTopology, DiskInfo, InterfaceInfo

UUID = "3f2a9c4e-7b1d-4e8a-9c0f-5d6e7f8a9b0c"

FULL_DOMAIN = f"""<?xml version='1.0' encoding='UTF-8'?>
<domain type='kvm'>
  <name> web1 </name>
  <uuid>{UUID.upper()}</uuid>
  <description>Front-end web server</description>
  <memory unit='MiB'>4096</memory>
  <currentMemory unit='MiB'>4096</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <cpu mode='host-passthrough'>
    <topology sockets='1' cores='2' threads='1'/>
  </cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='network' device='disk'>
      <driver name='qemu' discard='unmap'/>
      <auth username='libvirt'>
        <secret type='ceph' uuid='0e8c7a5b-1f2d-4c3b-9a8e-7d6c5b4a3f21'/>
      </auth>
      <source protocol='rbd' name='vms/web1_disk0'>
        <host name='10.0.0.1' port='6789'/>
        <host name='10.0.0.2' port='6789'/>
        <host name='10.0.0.3' port='6789'/>
      </source>
      <target dev='sda' bus='scsi'/>
    </disk>
    <disk type='network' device='disk'>
      <auth username='libvirt'>
        <secret type='ceph' uuid='0e8c7a5b-1f2d-4c3b-9a8e-7d6c5b4a3f21'/>
      </auth>
      <source protocol='rbd' name='vms/web1_disk1'><host name='10.0.0.1' port='6789'/></source>
      <target dev='sdb' bus='scsi'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web1-scratch.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <source dev='/dev/mapper/vg0-web1'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/srv/iso/debian-12.iso'/>
      <target dev='hda' bus='ide'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='hdb' bus='ide'/>
      <readonly/>
    </disk>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <interface type='bridge'>
      <mac address='52:54:00:12:34:56'/>
      <source bridge='vmbr100'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:12:34:57'/>
      <source bridge='vmbr200'/>
      <model type='e1000'/>
    </interface>
    <interface type='network'>
      <source network='default'/>
    </interface>
    <serial type='pty'>
      <log file='/var/log/pvc/console/web1.log' append='on'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
"""


def domain(body: str = "", *, memory: str = "<memory>1048576</memory>", vcpu: str = "2") -> str:
    """A minimal valid domain, with ``body`` added inside ``<domain>``."""
    vcpu_element = f"<vcpu>{vcpu}</vcpu>" if vcpu else ""
    return f"<domain><name>t</name><uuid>{UUID}</uuid>{memory}{vcpu_element}{body}</domain>"


def test_full_domain() -> None:
    info = parse_domain_xml(FULL_DOMAIN)

    assert info.name == "web1"
    assert info.uuid == UUID
    assert info.memory_mib == 4096
    assert info.vcpus == 2
    assert info.topology == CpuTopology(sockets=1, cores=2, threads=1)
    assert info.disks == (
        DiskInfo("disk", "network", "sda", "vms/web1_disk0", "rbd"),
        DiskInfo("disk", "network", "sdb", "vms/web1_disk1", "rbd"),
        DiskInfo("disk", "file", "vda", "/var/lib/libvirt/images/web1-scratch.qcow2", None),
        DiskInfo("disk", "block", "vdb", "/dev/mapper/vg0-web1", None),
        DiskInfo("cdrom", "file", "hda", "/srv/iso/debian-12.iso", None),
        DiskInfo("cdrom", "file", "hdb", None, None),
    )
    assert info.interfaces == (
        InterfaceInfo("bridge", "52:54:00:12:34:56", "vmbr100", "virtio", 100),
        InterfaceInfo("bridge", "52:54:00:12:34:57", "vmbr200", "e1000", 200),
        InterfaceInfo("network", "", "default", "", None),
    )
    assert info.console_log_path == "/var/log/pvc/console/web1.log"
    assert info.rbd_volumes == ("vms/web1_disk0", "vms/web1_disk1")
    assert info.networks == ("100", "200", "default")


def test_bytes_input_is_parsed_like_text() -> None:
    assert parse_domain_xml(FULL_DOMAIN.encode("utf-8")) == parse_domain_xml(FULL_DOMAIN)


@pytest.mark.parametrize(
    ("memory", "expected_mib"),
    [
        ("<memory>1048576</memory>", 1024),  # KiB when no unit is given
        ("<memory unit='KiB'>2048</memory>", 2),
        ("<memory unit='k'>1025</memory>", 2),  # rounds up
        ("<memory unit='MiB'>512</memory>", 512),
        ("<memory unit='M'>512</memory>", 512),
        ("<memory unit='GiB'>4</memory>", 4096),
        ("<memory unit='G'>1</memory>", 1024),
        ("<memory unit='TiB'>1</memory>", 1024 * 1024),
        ("<memory unit='bytes'>1073741824</memory>", 1024),
        ("<memory unit='b'>1</memory>", 1),
        ("<memory unit='MB'>1000</memory>", 954),  # 10^9 bytes = 953.67 MiB, rounded up
        ("<memory unit='KB'>1048576</memory>", 1000),  # 1.048576e9 bytes = 1000 MiB exactly
        ("<memory unit='GB'>1</memory>", 954),
        ("<memory unit='mib'>8</memory>", 8),  # libvirt reads units case-insensitively
        ("<memory unit='GiB'> 2 </memory>", 2048),
    ],
)
def test_memory_units(memory: str, expected_mib: int) -> None:
    assert parse_domain_xml(domain(memory=memory)).memory_mib == expected_mib


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", None),
        ("<devices><serial type='pty'><target port='0'/></serial></devices>", None),
        (
            "<devices><console type='file'><log file='/var/log/c.log'/></console></devices>",
            "/var/log/c.log",
        ),
        (
            "<devices><serial type='pty'/><serial type='pty'><log file='/l/second.log'/>"
            "</serial><console type='pty'><log file='/l/console.log'/></console></devices>",
            "/l/second.log",
        ),
    ],
)
def test_console_log_path(body: str, expected: str | None) -> None:
    assert parse_domain_xml(domain(body)).console_log_path == expected


def test_minimal_domain_has_no_topology_devices_or_log() -> None:
    info = parse_domain_xml(domain())
    assert (info.topology, info.disks, info.interfaces) == (None, (), ())
    assert (info.rbd_volumes, info.networks) == ((), ())


@pytest.mark.parametrize(
    ("disk", "expected"),
    [
        (
            "<disk type='volume'><source pool='ssd' volume='v1'/><target dev='vdc'/></disk>",
            DiskInfo("disk", "volume", "vdc", "ssd/v1", None),
        ),
        (
            "<disk type='network' device='cdrom'><target dev='sdc'/></disk>",
            DiskInfo("cdrom", "network", "sdc", None, None),
        ),
        (
            "<disk type='network'><source protocol='nbd'/></disk>",
            DiskInfo("disk", "network", "", None, "nbd"),
        ),
        ("<disk><source file='/x.img'/></disk>", DiskInfo("disk", "file", "", "/x.img", None)),
        ("<disk type='block'><source file='/x'/></disk>", DiskInfo("disk", "block", "", None)),
    ],
)
def test_disk_variants(disk: str, expected: DiskInfo) -> None:
    assert parse_domain_xml(domain(f"<devices>{disk}</devices>")).disks == (expected,)


def test_only_rbd_network_disks_are_rbd_volumes() -> None:
    disks = (
        "<disk type='network'><source protocol='iscsi' name='iqn.x/1'/></disk>"
        "<disk type='file'><source file='vms/not_rbd'/></disk>"
        "<disk type='network'><source protocol='rbd' name='pool/img'/></disk>"
    )
    assert parse_domain_xml(domain(f"<devices>{disks}</devices>")).rbd_volumes == ("pool/img",)


@pytest.mark.parametrize(
    ("interface", "vni", "source"),
    [
        ("<interface type='bridge'><source bridge='vmbr42'/></interface>", 42, "vmbr42"),
        ("<interface type='bridge'><source bridge='br0'/></interface>", None, "br0"),
        ("<interface type='bridge'><source bridge='vmbr0'/></interface>", None, "vmbr0"),
        ("<interface type='bridge'><source bridge='vmbr007'/></interface>", None, "vmbr007"),
        (
            "<interface type='bridge'><source bridge='vmbr16777216'/></interface>",
            None,
            "vmbr16777216",
        ),
        ("<interface type='bridge'><source bridge='vmbr10x'/></interface>", None, "vmbr10x"),
        (
            "<interface type='bridge'><source bridge='vmbr16777215'/></interface>",
            16777215,
            "vmbr16777215",
        ),
        ("<interface type='network'><source network='300'/></interface>", 300, "300"),
        ("<interface type='network'><source network='vmbr5'/></interface>", None, "vmbr5"),
        ("<interface type='direct'><source dev='eth0' mode='bridge'/></interface>", None, ""),
        ("<interface type='bridge'/>", None, ""),
    ],
)
def test_interface_vni(interface: str, vni: int | None, source: str) -> None:
    (parsed,) = parse_domain_xml(domain(f"<devices>{interface}</devices>")).interfaces
    assert (parsed.vni, parsed.source) == (vni, source)


def test_networks_are_listed_once_in_document_order() -> None:
    interfaces = "".join(
        f"<interface type='bridge'><source bridge='{bridge}'/></interface>"
        for bridge in ("vmbr300", "br-ext", "vmbr100", "vmbr300")
    )
    info = parse_domain_xml(domain(f"<devices>{interfaces}</devices>"))
    assert info.networks == ("300", "br-ext", "100")


@pytest.mark.parametrize(
    ("topology", "vcpu", "expected"),
    [
        ("sockets='2' cores='4' threads='2'", "16", CpuTopology(2, 4, 2)),
        ("sockets='1' dies='2' cores='2' threads='1'", "4", CpuTopology(1, 2, 1)),
    ],
)
def test_topology(topology: str, vcpu: str, expected: CpuTopology) -> None:
    info = parse_domain_xml(domain(f"<cpu><topology {topology}/></cpu>", vcpu=vcpu))
    assert info.topology == expected


@pytest.mark.parametrize(
    ("xml", "fragment"),
    [
        ("", "document is empty"),
        ("   \n", "document is empty"),
        ("this is not XML at all", "Start tag expected"),
        (FULL_DOMAIN[: len(FULL_DOMAIN) // 2], "line "),
        ("<domain><name>a</name>\n<uuid>x</domain>", "mismatch"),
        ("<network><name>default</name></network>", "root element is <network>"),
        (
            "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY n 'web'>]>"
            f"<domain><name>&n;</name><uuid>{UUID}</uuid></domain>",
            "DOCTYPE",
        ),
        (f"<domain><uuid>{UUID}</uuid><memory>1</memory><vcpu>1</vcpu></domain>", "<name>"),
        (domain().replace("<name>t</name>", "<name>  </name>"), "<name> is empty"),
        (domain().replace(f"<uuid>{UUID}</uuid>", ""), "missing <uuid>"),
        (domain().replace(UUID, "not-a-uuid"), "invalid UUID 'not-a-uuid'"),
        (domain(memory=""), "missing <memory>"),
        (domain(memory="<memory>abc</memory>"), "<memory> 'abc' is not a positive integer"),
        (domain(memory="<memory>0</memory>"), "<memory> '0' is not a positive integer"),
        (domain(memory="<memory>-5</memory>"), "<memory> '-5' is not a positive integer"),
        (domain(memory="<memory>1_000</memory>"), "'1_000' is not a positive integer"),
        (domain(memory="<memory unit='XB'>1</memory>"), "unit 'XB' is not a known unit"),
        (domain(memory="<memory>" + "9" * 30 + "</memory>"), "out of range"),
        (domain(vcpu=""), "missing <vcpu>"),
        (domain(vcpu="two"), "<vcpu> 'two' is not a positive integer"),
        (domain(vcpu="0"), "<vcpu> '0' is not a positive integer"),
        (
            domain("<cpu><topology sockets='1' cores='2' threads='2'/></cpu>", vcpu="2"),
            "<topology> gives 4 vCPUs",
        ),
        (domain("<cpu><topology sockets='1' cores='2'/></cpu>"), "<topology> threads ''"),
        (
            domain("<cpu><topology sockets='0' cores='2' threads='1'/></cpu>"),
            "<topology> sockets '0' is not a positive integer",
        ),
    ],
)
def test_invalid_documents(xml: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_domain_xml(xml)
    message = str(caught.value)
    assert message.startswith("invalid domain XML: ")
    assert fragment in message
    assert "\n" not in message


def test_syntax_error_reports_the_line() -> None:
    with pytest.raises(InvalidInput, match=r"^invalid domain XML: .*mismatch.*, line 3$"):
        parse_domain_xml("<domain>\n<name>a</name>\n<uuid>x</name></domain>")


def test_huge_document_is_refused_before_parsing() -> None:
    padding = "<!--" + "x" * (1024 * 1024) + "-->"
    with pytest.raises(InvalidInput, match="larger than"):
        parse_domain_xml(domain(padding))


def test_long_bad_value_is_cut_short_in_the_message() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_domain_xml(domain(vcpu="x" * 5000))
    assert len(str(caught.value)) < 200


def test_a_document_parsed_again_is_remembered_text_or_bytes_alike() -> None:
    text = domain("<devices><disk type='file'><source file='/a.img'/></disk></devices>")
    first = parse_domain_xml(text)
    assert parse_domain_xml(text) is first
    assert parse_domain_xml(text.encode()) is first
    changed = parse_domain_xml(text.replace("/a.img", "/b.img"))
    assert changed is not first and changed.disks[0].source == "/b.img"


def test_a_refused_document_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(InvalidInput, match="expected <domain>"):
            parse_domain_xml("<other/>")
    with pytest.raises(InvalidInput):
        parse_domain_xml(b"\xff<domain/>")  # not UTF-8: the parser's own refusal
