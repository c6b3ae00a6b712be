"""The libvirt adapter against libvirt's in-process test driver (no daemon, no QEMU).

The real libvirtd + QEMU behaviour (live migration, ACPI, crashes) is proven by the
cluster tests; here the adapter's own logic is checked: listing, presence, start/stop,
how stops are classified, figures and one-line errors.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pvc_common.errors import HypervisorError
from pvc_common.reconcile import Exit, Presence
from pvc_noded.hypervisor import DomainStatus, Hypervisor
from pvc_noded.node_row import node_figures
from tests.harness.cluster import _test_node_xml
from tests.harness.zookeeper import wait_until

UUID = "7a7a7a7a-0000-4000-8000-000000000001"
XML = (
    "<domain type='test'><name>t1</name><uuid>" + UUID + "</uuid>"
    "<memory unit='MiB'>512</memory><vcpu>2</vcpu><os><type>hvm</type></os></domain>"
)


@pytest.fixture
def hypervisor(tmp_path: Path) -> Hypervisor:
    node = tmp_path / "node.xml"
    node.write_text(_test_node_xml(4096))
    woken: list[str] = []
    host = Hypervisor(f"test://{node}", on_event=woken.append)
    host.woken = woken  # type: ignore[attr-defined]
    return host


def test_start_lists_and_destroy(hypervisor: Hypervisor) -> None:
    assert hypervisor.domains() == {}
    assert hypervisor.presence(UUID) is Presence.STOPPED
    hypervisor.start(UUID, XML)
    domains = hypervisor.domains()
    assert domains == {UUID: DomainStatus(UUID, "t1", Presence.RUNNING, memory_mib=512, vcpus=2)}
    assert hypervisor.presence(UUID) is Presence.RUNNING
    hypervisor.destroy(UUID)
    assert hypervisor.presence(UUID) is Presence.STOPPED
    hypervisor.destroy(UUID)  # already gone: fine


def test_figures_count_what_runs(hypervisor: Hypervisor) -> None:
    hypervisor.start(UUID, XML)
    domains = hypervisor.domains()
    host = hypervisor.host_figures(domains)
    # The test driver reports no free memory: the adapter subtracts what its VMs take.
    assert (host.memtotal, host.memfree, host.cpus) == (4096, 4096 - 512, 4)
    figures = node_figures(host, domains, [512, 1024], listed=[UUID, "other"], now=1234.9)
    assert figures["memalloc"] == 512 and figures["memprov"] == 1536
    assert figures["vcpualloc"] == 2 and figures["domainscount"] == 1
    assert figures["runningdomains"] == (UUID, "other")  # sorted
    assert figures["keepalive"] == 1234 and figures["memused"] == 512


def test_stops_are_told_apart(hypervisor: Hypervisor) -> None:
    assert hypervisor.last_exit(UUID) is Exit.UNKNOWN
    hypervisor.start(UUID, XML)
    hypervisor.destroy(UUID)
    # The lifecycle event arrives on libvirt's event thread.
    wait_until(lambda: hypervisor.last_exit(UUID) is Exit.DESTROYED, 5, "no stop event")
    hypervisor.start(UUID, XML)
    assert hypervisor.last_exit(UUID) is Exit.UNKNOWN  # a start forgets the last stop
    # An ACPI shutdown asked by the daemon is its own doing, not the guest's.
    assert hypervisor.shutdown(UUID, timeout=5) == "shutdown"
    wait_until(lambda: hypervisor.last_exit(UUID) is Exit.DESTROYED, 5, "no stop event")
    assert UUID in hypervisor.woken  # type: ignore[attr-defined]


def test_a_guest_shutdown_behind_the_daemons_back_is_the_guests(hypervisor: Hypervisor) -> None:
    hypervisor.start(UUID, XML)
    hypervisor.connection().lookupByUUIDString(UUID).shutdown()
    wait_until(lambda: hypervisor.last_exit(UUID) is Exit.GUEST_SHUTDOWN, 5, "no stop event")


def test_errors_are_one_line(hypervisor: Hypervisor) -> None:
    with pytest.raises(HypervisorError, match="^start failed: ") as caught:
        hypervisor.start(UUID, "<domain type='test'><name>broken</name></domain>")
    assert "\n" not in str(caught.value)
    with pytest.raises(HypervisorError, match="not running here"):
        hypervisor.migrate(
            UUID,
            peer_uri="test:///default",
            migration_uri="tcp://127.0.0.1",
            max_downtime_ms=100,
            timeout=1,
        )
    hypervisor.start(UUID, XML)
    started = time.monotonic()
    with pytest.raises(HypervisorError, match="^live migration failed: "):
        hypervisor.migrate(
            UUID,
            peer_uri="test:///default",
            migration_uri="tcp://127.0.0.1",
            max_downtime_ms=100,
            timeout=5,
        )
    assert time.monotonic() - started < 5
    assert hypervisor.presence(UUID) is Presence.RUNNING  # a failed migration leaves it here


def test_unreachable_libvirt_is_a_clear_error(tmp_path: Path) -> None:
    host = Hypervisor(f"qemu+unix:///system?socket={tmp_path}/nothing-here")
    with pytest.raises(HypervisorError, match="cannot connect to qemu\\+unix"):
        host.domains()
