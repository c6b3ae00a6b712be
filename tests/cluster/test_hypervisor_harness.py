"""The libvirtd host and tiny-guest harness itself, exercised on real libvirtd + QEMU.

Timings are printed (visible with ``pytest -s``) so regressions in boot or migration
speed show up. At most two guests run at once: the machines have two cores.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from tests.harness import guest as guest_module
from tests.harness.guest import (
    BOOT_LINE_PREFIX,
    POWEROFF_LINE,
    TICK_LINE_PREFIX,
    ConsoleLog,
    GuestImage,
    build_guest_image,
    guest_domain_xml,
    parse_console,
    read_console,
)
from tests.harness.hypervisor import LibvirtHost, LibvirtHostError
from tests.harness.zookeeper import pid_is_running, wait_until

pytestmark = pytest.mark.cluster

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

#: The host_factory fixture (see conftest.py): name and LibvirtHost keyword arguments in,
#: a started and ready host out.
HostFactory = Callable[..., LibvirtHost]

#: Generous deadlines: a guest boots in ~3 s and a migration takes ~1 s when the machine
#: is idle, but CI machines are shared.
BOOT_TIMEOUT = 45.0
MIGRATE_TIMEOUT = 60.0

#: The migration call a node daemon makes: live, source libvirtd drives it, and the data
#: connection explicitly on loopback (the destination would advertise its hostname and
#: listen on every address otherwise).
MIGRATE_PARAMS = {
    libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1",
    libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "127.0.0.1",
}
MIGRATE_FLAGS = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER


@dataclass
class Guest:
    """A guest started by a test: its libvirt handle and console log."""

    name: str
    uuid: str
    console_log: Path
    domain: libvirt.virDomain

    def console(self) -> ConsoleLog:
        return read_console(self.console_log)

    def wait_ticks(self, at_least: int, timeout: float = BOOT_TIMEOUT) -> int:
        """Wait until the last tick counter is at least ``at_least``; return it."""

        def reached() -> int | None:
            last = self.console().last_tick
            return last if last is not None and last >= at_least else None

        return wait_until(reached, timeout, f"{self.name}: no tick {at_least} in console")


@pytest.fixture
def connections() -> Iterator[list[libvirt.virConnect]]:
    """Connections opened by a test; closed before its hosts stop."""
    opened: list[libvirt.virConnect] = []
    yield opened
    for conn in opened:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass


def gone(pid: int) -> Callable[[], bool]:
    """A wait_until predicate: the process has exited (zombies count as exited)."""
    return lambda: not pid_is_running(pid)


def start_guest(
    host: LibvirtHost,
    image: GuestImage,
    workdir: Path,
    connections: list[libvirt.virConnect],
    name: str,
    *,
    persistent: bool = False,
) -> Guest:
    """Start the tiny guest on ``host`` (transient unless ``persistent``)."""
    conn = libvirt.open(host.uri)
    connections.append(conn)
    guest_uuid = str(uuid.uuid4())
    console_log = workdir / f"{name}.console.log"
    xml = guest_domain_xml(name, uuid=guest_uuid, image=image, console_log=console_log)
    if persistent:
        domain = conn.defineXML(xml)
        domain.create()
    else:
        domain = conn.createXML(xml, 0)
    return Guest(name, guest_uuid, console_log, domain)


# --------------------------------------------------------------------------------------
# The guest image and XML (no libvirtd needed)


def test_guest_image_is_reused_and_rebuilt_when_init_changes(
    guest_image: GuestImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seed a private cache with the extracted kernel so this needs no download.
    cache = tmp_path / "guest-cache"
    cache.mkdir()
    shutil.copytree(guest_image.kernel.parent, cache / "kernel")

    first = build_guest_image(cache)
    mtime = first.initrd.stat().st_mtime_ns
    again = build_guest_image(cache)
    assert again == first
    assert again.initrd.stat().st_mtime_ns == mtime, "an unchanged image was rebuilt"
    assert first.initrd.read_bytes() == guest_image.initrd.read_bytes(), "not deterministic"

    monkeypatch.setattr(guest_module, "INIT_SCRIPT", guest_module.INIT_SCRIPT + "# changed\n")
    changed = build_guest_image(cache)
    assert changed.kernel == first.kernel
    assert changed.initrd != first.initrd
    archive = gzip.decompress(changed.initrd.read_bytes())
    assert b"# changed\n" in archive
    assert archive.startswith(b"070701"), "not a cpio newc archive"

    # Every host reads the files at the same path, as whatever user QEMU runs as.
    for path in (guest_image.kernel, guest_image.initrd):
        assert path.stat().st_mode & 0o004


def test_guest_domain_xml_shape(guest_image: GuestImage, tmp_path: Path) -> None:
    guest_uuid = str(uuid.uuid4())
    log = tmp_path / "vm1.console.log"
    root = ET.fromstring(
        guest_domain_xml("vm1", uuid=guest_uuid, image=guest_image, console_log=log)
    )

    assert root.get("type") == "qemu"  # /dev/kvm is unusable here: software emulation
    assert root.findtext("name") == "vm1"
    assert root.findtext("uuid") == guest_uuid
    assert root.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert root.findtext("memory") == "128"
    assert root.findtext("os/kernel") == str(guest_image.kernel)
    assert root.findtext("os/initrd") == str(guest_image.initrd)
    cmdline = (root.findtext("os/cmdline") or "").split()
    assert {"console=ttyS0", "panic=-1", "hostname=vm1"} <= set(cmdline)
    assert root.find("features/acpi") is not None
    assert root.find("cpu/model").get("fallback") == "allow"  # type: ignore[union-attr]
    assert root.findtext("on_crash") == "destroy"
    log_element = root.find("devices/serial/log")
    assert log_element is not None
    assert log_element.get("file") == str(log)
    assert log_element.get("append") == "on"
    assert root.find("devices/console/target").get("type") == "serial"  # type: ignore[union-attr]
    assert root.find("devices/memballoon").get("model") == "none"  # type: ignore[union-attr]
    assert root.find("devices/disk") is None
    assert root.find("devices/interface") is None

    with pytest.raises(ValueError):
        guest_domain_xml("vm1", uuid="not-a-uuid", image=guest_image, console_log=log)


def test_console_parser_tolerates_crlf_and_kernel_noise() -> None:
    text = (
        f"{BOOT_LINE_PREFIX}vm1\r\n{TICK_LINE_PREFIX}1\r\n"
        f"[    3.1] some kernel line\r\n{TICK_LINE_PREFIX}2\r\n"
        f"{BOOT_LINE_PREFIX}vm1\r\n{TICK_LINE_PREFIX}1\r\n{POWEROFF_LINE}\r\n"
    )
    console = parse_console(text)
    assert console.boots == ["vm1", "vm1"]
    assert console.ticks == [1, 2, 1]
    assert console.ticks_since_last_boot() == [1]
    assert console.last_tick == 1
    assert console.poweroffs == 1


# --------------------------------------------------------------------------------------
# Hosts


def test_second_host_starts_fast_from_capability_cache(
    host_factory: HostFactory, capability_cache: Path, connections: list[libvirt.virConnect]
) -> None:
    started = time.monotonic()
    first = host_factory("hva")  # probes QEMU (~8 s) only if the shared cache is empty
    first_seconds = time.monotonic() - started
    cached = sorted(capability_cache.glob("*.xml"))
    assert cached, "the first host did not fill the shared capability cache"

    started = time.monotonic()
    second = host_factory("hvb")
    second_seconds = time.monotonic() - started
    print(f"\nhost start: first {first_seconds:.2f} s, second (cached) {second_seconds:.2f} s")
    assert second_seconds < 5.0, f"cached start took {second_seconds:.1f} s"
    # libvirtd used the seeded files as they were (a re-probe rewrites them).
    for source in cached:
        seeded = second.capabilities_dir / source.name
        assert seeded.read_bytes() == source.read_bytes()
        assert seeded.stat().st_mtime_ns == source.stat().st_mtime_ns

    assert first.host_uuid != second.host_uuid
    assert first.tcp_port != second.tcp_port
    a_min, a_max = first.migration_ports
    b_min, b_max = second.migration_ports
    assert a_max < b_min or b_max < a_min, "migration port ranges overlap"
    for host in (first, second):
        assert pid_is_running(host.pid or 0)
        for uri in (host.uri, host.tcp_uri):
            conn = libvirt.open(uri)
            connections.append(conn)
            capabilities = ET.fromstring(conn.getCapabilities())
            # Each connection reaches its own daemon, which has its own host UUID.
            assert capabilities.findtext("host/uuid") == host.host_uuid
        state = json.loads(host.state_path.read_text())
        assert state["pid"] == host.pid and state["tcp_port"] == host.tcp_port


def test_guest_boots_and_live_migrates_without_restarting(
    host_factory: HostFactory,
    guest_image: GuestImage,
    host_workdir: Path,
    connections: list[libvirt.virConnect],
) -> None:
    source, destination = host_factory("hva"), host_factory("hvb")
    started = time.monotonic()
    guest = start_guest(source, guest_image, host_workdir, connections, "vm1")
    wait_until(lambda: bool(guest.console().boots), BOOT_TIMEOUT, "no boot line")
    boot_seconds = time.monotonic() - started
    assert guest.console().boots == ["vm1"]
    before = guest.wait_ticks(3)
    assert source.running_domains() == {guest.uuid}
    assert destination.running_domains() == set()
    source_pid = source.qemu_pids()["vm1"]

    started = time.monotonic()
    guest.domain.migrateToURI3(destination.tcp_uri, MIGRATE_PARAMS, MIGRATE_FLAGS)
    migrate_seconds = time.monotonic() - started
    print(f"\nguest boot to first line {boot_seconds:.2f} s, migration {migrate_seconds:.2f} s")

    assert source.running_domains() == set()
    assert destination.running_domains() == {guest.uuid}
    wait_until(gone(source_pid), 10.0, "source QEMU still running")
    assert source.qemu_pids() == {}
    assert set(destination.qemu_pids()) == {"vm1"}
    assert destination.qemu_pids()["vm1"] != source_pid

    # The counter goes on from where it was, in the same (appended) log: same boot.
    guest.wait_ticks(before + 3, timeout=MIGRATE_TIMEOUT)
    console = guest.console()
    assert console.boots == ["vm1"], "the guest restarted"
    assert console.ticks == list(range(1, len(console.ticks) + 1)), "tick counter jumped"

    destination_pid = destination.qemu_pids()["vm1"]
    destination_libvirtd = destination.pid
    destination.stop()
    assert not pid_is_running(destination_pid)
    assert not pid_is_running(destination_libvirtd or 0)


def test_acpi_shutdown_powers_the_guest_off_cleanly(
    host_factory: HostFactory,
    guest_image: GuestImage,
    host_workdir: Path,
    connections: list[libvirt.virConnect],
) -> None:
    host = host_factory("hva")
    guest = start_guest(host, guest_image, host_workdir, connections, "vm1", persistent=True)
    guest.wait_ticks(1)  # acpid runs before the boot line is printed
    qemu_pid = host.qemu_pids()["vm1"]

    started = time.monotonic()
    guest.domain.shutdown()
    wait_until(
        lambda: guest.domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF,
        20.0,
        "the guest ignored the ACPI power button",
        interval=0.05,
    )
    print(f"\nACPI shutdown took {time.monotonic() - started:.2f} s")
    # SHUTDOWN, not DESTROYED: the guest powered itself off.
    assert guest.domain.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN]
    assert guest.console().poweroffs == 1
    wait_until(gone(qemu_pid), 10.0, "QEMU still running")
    assert host.qemu_pids() == {}


def test_stop_destroys_guests_and_leaves_no_process(
    host_factory: HostFactory,
    guest_image: GuestImage,
    host_workdir: Path,
    connections: list[libvirt.virConnect],
) -> None:
    host = host_factory("hva")
    start_guest(host, guest_image, host_workdir, connections, "vm1")
    start_guest(host, guest_image, host_workdir, connections, "vm2")
    qemu_pids = host.qemu_pids()
    assert set(qemu_pids) == {"vm1", "vm2"}
    libvirtd_pid, supervisor_pid = host.pid, host.supervisor_pid
    assert libvirtd_pid is not None and supervisor_pid is not None

    started = time.monotonic()
    host.stop()
    print(f"\nstop with two guests took {time.monotonic() - started:.2f} s")
    for pid in (libvirtd_pid, supervisor_pid, *qemu_pids.values()):
        assert not pid_is_running(pid), f"pid {pid} survived stop()"
    assert not host.is_alive()
    host.stop()  # a second stop is harmless


def test_kill_keeps_guests_restart_reattaches_and_stop_falls_back_to_pids(
    host_factory: HostFactory,
    guest_image: GuestImage,
    host_workdir: Path,
    connections: list[libvirt.virConnect],
) -> None:
    host = host_factory("hva")
    guest = start_guest(host, guest_image, host_workdir, connections, "vm1")
    qemu_pid = host.qemu_pids()["vm1"]
    first_libvirtd, first_supervisor = host.pid, host.supervisor_pid

    host.kill()  # a libvirtd crash: the guest goes on
    assert not pid_is_running(first_libvirtd or 0)
    assert pid_is_running(qemu_pid)
    assert host.qemu_pids() == {"vm1": qemu_pid}
    with pytest.raises(libvirt.libvirtError):
        host.running_domains()

    host.start()  # the new libvirtd finds the running guest again
    host.wait_ready()
    assert host.pid != first_libvirtd
    assert host.running_domains() == {guest.uuid}
    assert host.qemu_pids() == {"vm1": qemu_pid}

    second_libvirtd = host.pid
    host.kill()
    host.stop()  # libvirtd is dead: the guest is killed by the PID in its pid file
    for pid in (qemu_pid, second_libvirtd, first_supervisor, host.supervisor_pid):
        assert not pid_is_running(pid or 0), f"pid {pid} survived stop()"
    assert host.qemu_pids() == {}


def test_detached_host_outlives_its_starter_and_stops_from_another_process(
    host_workdir: Path, capability_cache: Path
) -> None:
    def harness(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.harness.hypervisor",
                *args,
                "--workdir",
                str(host_workdir),
            ]
            + ["--name", "hvd", "--capability-cache", str(capability_cache)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    try:
        started = harness("start")
        assert started.returncode == 0, started.stderr
        state = json.loads(started.stdout)
        pid = int(state["pid"])
        # The starting process has exited; libvirtd runs on and answers.
        assert pid_is_running(pid)
        host = LibvirtHost.attach(host_workdir, "hvd")
        assert host.pid == pid and host.tcp_port == state["tcp_port"]
        assert host.running_domains() == set()
        assert harness("status").returncode == 0

        stopped = harness("stop")
        assert stopped.returncode == 0, stopped.stderr
        assert not pid_is_running(pid)
        assert harness("status").returncode == 3
    finally:
        # Whatever failed above, never leave the detached daemon behind.
        try:
            LibvirtHost.attach(host_workdir, "hvd").stop()
        except LibvirtHostError:
            pass


#: Run by the test below in a child process: start a host and a guest, report the PIDs,
#: then wait to be killed.
_DOOMED_STARTER = """
import json, sys, time, uuid
from pathlib import Path
import libvirt
from tests.harness.guest import build_guest_image, guest_domain_xml
from tests.harness.hypervisor import LibvirtHost

workdir, cache = Path(sys.argv[1]), Path(sys.argv[2])
libvirt.registerErrorHandler(lambda *args: None, None)
host = LibvirtHost(workdir, "hvx", capability_cache=cache)
host.start()
host.wait_ready()
xml = guest_domain_xml(
    "vm1", uuid=str(uuid.uuid4()), image=build_guest_image(), console_log=workdir / "vm1.log"
)
libvirt.open(host.uri).createXML(xml, 0)
pids = {"libvirtd": host.pid, "supervisor": host.supervisor_pid, **host.qemu_pids()}
print(json.dumps(pids), flush=True)
time.sleep(600)
"""


def test_host_dies_with_a_sigkilled_parent_guests_included(
    host_workdir: Path, capability_cache: Path, guest_image: GuestImage
) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", _DOOMED_STARTER, str(host_workdir), str(capability_cache)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    pids: dict[str, int] = {}
    try:
        assert starter.stdout is not None
        pids = json.loads(starter.stdout.readline() or "{}")
        assert set(pids) == {"libvirtd", "supervisor", "vm1"}, pids
        assert all(pid_is_running(pid) for pid in pids.values())
        starter.kill()  # no atexit handlers, no cleanup code: only the kernel's signal
        starter.wait()
        for role, pid in pids.items():
            wait_until(gone(pid), 10.0, f"{role} (pid {pid}) outlived its SIGKILLed parent")
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        try:
            LibvirtHost.attach(host_workdir, "hvx").stop()  # only if the test failed
        except LibvirtHostError:
            pass


def test_a_host_execing_libvirtd_counts_as_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: while the supervisor's child execs libvirtd, /proc/PID/cmdline reads
    # empty for an instant; that was taken for "exited before it was ready".
    import tests.harness.hypervisor as hypervisor

    host = LibvirtHost(tmp_path, "hvx")
    host.pid = os.getpid()  # a live process
    monkeypatch.setattr(hypervisor, "_cmdline", lambda pid: [])
    assert host.is_alive()
    monkeypatch.setattr(hypervisor, "_cmdline", lambda pid: ["/usr/bin/something-else"])
    assert not host.is_alive()  # a recycled PID is still told apart
