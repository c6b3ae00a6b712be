"""A tiny bootable QEMU guest for tests: a Debian kernel plus a busybox initramfs.

The guest has no disk and no network. Its ``/init`` (a busybox shell script, PID 1)
mounts proc, sys and dev, prints one boot line to the serial port and then a numbered
tick line every 0.5 s, forever. Tests read these lines from the console log file that
libvirt's ``<serial><log file=...>`` writes:

``pvc-guest: booted <name>``
    Printed once per boot (``BOOT_LINE_PREFIX`` + name). ``<name>`` is the value of the
    ``hostname=`` kernel command line parameter (``guest_domain_xml`` sets it to the
    domain name) or ``guest`` when there is none.
``pvc-guest: tick <N>``
    ``TICK_LINE_PREFIX`` + N, with N = 1, 2, 3, ... every 0.5 s. The counter lives in
    guest memory, so it keeps increasing across a live migration (no new boot line),
    while a restarted guest starts again at 1 after a new boot line.
``pvc-guest: power button, powering off``
    ``POWEROFF_LINE``: printed when the guest handles an ACPI power-button press
    (libvirt ``dom.shutdown()``) just before it powers itself off. The kernel's
    ``button`` and ``evdev`` modules turn the button into an input event that busybox
    ``acpid`` reads. acpid starts just before the boot line: a press earlier in the
    boot may be lost (as on real machines, pair shutdown() with a timeout).

``pvc-guest: disk write <N>``
    ``DISK_WRITE_LINE_PREFIX`` + N: only in the *disk* variant of the guest
    (``build_guest_image(disk=True)``), whose initramfs also has the virtio block driver.
    Right after the boot line, in the background, it reads a counter from the start of
    ``/dev/vda`` (0 on a blank disk), writes counter + 1 back with an fsync and prints this
    line once the write is done. So a disk on Ceph RBD sees a write at every boot (which
    is what makes QEMU's librbd take the image's exclusive lock), and N counts the boots
    that reached the disk. Guests without a ``vda`` print nothing more.

Serial output has CRLF line ends and, rarely, kernel messages between the lines; use
:func:`parse_console` rather than matching whole lines.

The kernel is extracted (never installed) from the kernel package that Debian's
``linux-image-cloud-amd64`` metapackage depends on, the initramfs is written here as a
deterministic gzip-compressed cpio (newc) archive. Both are cached under ``cache_dir``
(default ``<repo>/.cache/guest``); every libvirtd host reads them at the same path.

This module must not import pytest: it is used by test fixtures and by scripts, e.g.
``python -m tests.harness.guest --build`` prints the image paths.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import uuid as uuid_module
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: The repository root (this file is tests/harness/guest.py).
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

#: Where built images live unless a caller chooses another directory.
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "guest"

#: Console line formats (see the module docstring). Keep them stable: tests and the
#: node daemon's tests parse them.
BOOT_LINE_PREFIX = "pvc-guest: booted "
TICK_LINE_PREFIX = "pvc-guest: tick "
POWEROFF_LINE = "pvc-guest: power button, powering off"
DISK_WRITE_LINE_PREFIX = "pvc-guest: disk write "

#: Kernel command line parameter that names the guest in its boot line.
HOSTNAME_PARAM = "hostname"

#: Seconds between two tick lines.
TICK_INTERVAL = 0.5

#: Debian metapackage whose (single) kernel dependency provides the kernel. The cloud
#: flavour is small and boots quickly: it lacks most hardware drivers.
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"

#: Kernel modules the guest loads (dependencies are added automatically): ``button``
#: registers the ACPI power button as an input device, ``evdev`` exposes it as
#: /dev/input/eventN for acpid; ``pvpanic-mmio`` tells QEMU when the guest kernel panics,
#: so libvirt applies the domain's ``on_crash`` action (a real guest crash, for tests).
GUEST_MODULES = ("button", "evdev", "pvpanic-mmio")

#: Extra modules of the disk variant: the virtio PCI transport and the virtio block
#: driver (both are modules in the cloud kernel), so a ``<disk ... bus='virtio'>`` is
#: /dev/vda in the guest.
DISK_MODULES = ("virtio_pci", "virtio_blk")

#: Applets the disk variant's /init needs on top of BUSYBOX_APPLETS.
DISK_APPLETS = ("dd", "tr")

#: Where the disk variant keeps its kernel and modules inside the cache directory (the
#: default image's "kernel" directory is left exactly as it is).
DISK_KERNEL_DIR = "kernel-disk"

#: The statically linked busybox from Debian's busybox-static package.
BUSYBOX = Path("/bin/busybox")

#: Applets linked into /bin; /init and the ACPI handler use nothing else.
BUSYBOX_APPLETS = (
    "sh",
    "mount",
    "cat",
    "sleep",
    "hostname",
    "insmod",
    "acpid",
    "poweroff",
)

INSTALL_HINT = "install busybox-static (make system-deps does it)"

# Busybox acpid maps the power button (input key 116) to the event "PWRF/00000080" and
# runs the file of that name below its config directory (-c).
ACPI_EVENT_SCRIPT = "PWRF/00000080"

INIT_SCRIPT = f"""#!/bin/sh
# PID 1 of the pvc test guest; generated by tests/harness/guest.py (see its docstring for
# the console line formats, which tests rely on).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mount -t tmpfs tmpfs /dev
name=guest
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        {HOSTNAME_PARAM}=?*) name="${{arg#{HOSTNAME_PARAM}=}}" ;;
    esac
done
hostname "$name"
# Power button -> acpid -> poweroff. Modules are listed dependencies first. A failure
# only costs the clean ACPI shutdown (the host then destroys the guest), so go on.
for module in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$module.ko" 2>/dev/null
done
acpid -c /etc/acpi -l /dev/null -p /run/acpid.pid 2>/dev/null
echo "{BOOT_LINE_PREFIX}$name" > /dev/ttyS0
n=1
while true; do
    echo "{TICK_LINE_PREFIX}$n" > /dev/ttyS0
    n=$((n + 1))
    sleep {TICK_INTERVAL}
done
"""

POWEROFF_SCRIPT = f"""#!/bin/sh
# Run by busybox acpid when the ACPI power button is pressed (libvirt dom.shutdown()).
# There is nothing to flush (no disks): power off at once.
echo "{POWEROFF_LINE}" > /dev/ttyS0
poweroff -f
"""


# The disk variant's /init runs this after its boot line (see the module docstring). It
# waits for the driver to create /dev/vda (probing is asynchronous), so a guest without
# a disk only spends a few seconds looking. Runs in the background: ticks never wait on
# the disk (a write to an RBD image can block while another client holds its lock).
DISK_SCRIPT = f"""(
    tries=0
    while [ ! -b /dev/vda ] && [ $tries -lt 20 ]; do sleep 0.25; tries=$((tries + 1)); done
    if [ -b /dev/vda ]; then
        previous=$(dd if=/dev/vda bs=64 count=1 2>/dev/null | tr -cd 0-9)
        writes=$(( ${{previous:-0}} + 1 ))
        if echo "$writes" | dd of=/dev/vda bs=64 count=1 conv=sync,fsync 2>/dev/null; then
            echo "{DISK_WRITE_LINE_PREFIX}$writes" > /dev/ttyS0
        fi
    fi
) &
"""


def _init_script(disk: bool) -> str:
    """The /init of the default guest, or of the disk variant (DISK_SCRIPT added)."""
    if not disk:
        return INIT_SCRIPT
    boot_line = f'echo "{BOOT_LINE_PREFIX}$name" > /dev/ttyS0\n'
    if boot_line not in INIT_SCRIPT:
        raise GuestImageError("the guest /init has no boot line to add the disk write after")
    return INIT_SCRIPT.replace(boot_line, boot_line + DISK_SCRIPT, 1)


class GuestImageError(RuntimeError):
    """The guest kernel or initramfs could not be built."""


@dataclass(frozen=True)
class GuestImage:
    """Paths of a built guest: the kernel and its initramfs (both world-readable)."""

    kernel: Path
    initrd: Path


# --------------------------------------------------------------------------------------
# Console log parsing

_BOOT_RE = re.compile(re.escape(BOOT_LINE_PREFIX) + r"(\S+)")
_TICK_RE = re.compile(re.escape(TICK_LINE_PREFIX) + r"(\d+)")
_DISK_WRITE_RE = re.compile(re.escape(DISK_WRITE_LINE_PREFIX) + r"(\d+)")


@dataclass
class ConsoleLog:
    """What a guest console log says: boot names and tick counters, in order.

    ``events`` interleaves both as ``("boot", name)`` / ``("tick", n)`` so callers can
    tell which ticks belong to which boot.
    """

    boots: list[str] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)
    events: list[tuple[str, str | int]] = field(default_factory=list)
    poweroffs: int = 0
    #: Counters of the disk variant's boot-time disk writes, in order.
    disk_writes: list[int] = field(default_factory=list)

    @property
    def last_tick(self) -> int | None:
        """The most recent tick counter, or None before the first tick."""
        return self.ticks[-1] if self.ticks else None

    def ticks_since_last_boot(self) -> list[int]:
        """Tick counters printed after the most recent boot line."""
        result: list[int] = []
        for kind, value in self.events:
            if kind == "boot":
                result = []
            elif kind == "tick":
                assert isinstance(value, int)
                result.append(value)
        return result


def parse_console(text: str) -> ConsoleLog:
    """Parse console log text into boots and ticks (tolerates CRLF and kernel noise)."""
    log = ConsoleLog()
    for line in text.splitlines():
        if match := _BOOT_RE.search(line):
            log.boots.append(match.group(1))
            log.events.append(("boot", match.group(1)))
        elif match := _TICK_RE.search(line):
            log.ticks.append(int(match.group(1)))
            log.events.append(("tick", int(match.group(1))))
        elif POWEROFF_LINE in line:
            log.poweroffs += 1
        elif match := _DISK_WRITE_RE.search(line):
            log.disk_writes.append(int(match.group(1)))
    return log


def read_console(path: Path) -> ConsoleLog:
    """Parse a console log file; a missing file reads as empty (the guest has not started)."""
    try:
        return parse_console(Path(path).read_text(errors="replace"))
    except FileNotFoundError:
        return ConsoleLog()


# --------------------------------------------------------------------------------------
# Domain XML


def guest_domain_xml(
    name: str,
    *,
    uuid: str,
    image: GuestImage,
    console_log: Path,
    memory_mib: int = 128,
    vcpus: int = 1,
    rbd_disks: tuple[str, ...] = (),
    ceph_conf: Path | None = None,
    ceph_monitor: tuple[str, int] | None = None,
) -> str:
    """Libvirt domain XML for the tiny guest (no network; no disks unless ``rbd_disks``).

    Software emulation only (``type='qemu'``: /dev/kvm is unusable here). The serial
    console goes to a pty and is logged to ``console_log`` with ``append='on'``, so a
    migration destination (same path, shared filesystem) continues the file instead of
    truncating it. 96 MiB is the least that boots.

    ``rbd_disks`` (``pool/image``) become virtio disks vda, vdb, ... opened by QEMU's own
    rbd driver (Debian's qemu-block-extra): ``<source protocol='rbd'>`` with a
    ``<config file=ceph_conf>``, from which librbd reads the monitor address and (cephx)
    its keyring, so no libvirt secret is needed; ``ceph_monitor`` (address, v1 port) adds
    a ``<host>`` element as well. Only the disk variant of the image
    (``build_guest_image(disk=True)``) sees them.
    """
    str(uuid_module.UUID(uuid))  # validate early: libvirt's message would be less clear
    domain = ET.Element("domain", type="qemu")
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "uuid").text = uuid
    ET.SubElement(domain, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(domain, "vcpu").text = str(vcpus)

    os_element = ET.SubElement(domain, "os")
    ET.SubElement(os_element, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_element, "kernel").text = str(image.kernel)
    ET.SubElement(os_element, "initrd").text = str(image.initrd)
    # quiet: fewer kernel lines between ours on the serial console. panic=-1: reboot at
    # once instead of hanging should /init ever die.
    # unknown_nmi_panic: an NMI (libvirt's injectNMI) panics the guest, which is how tests
    # make it crash on purpose.
    cmdline = ["console=ttyS0", "panic=-1", "quiet", "unknown_nmi_panic=1"]
    if re.fullmatch(r"[A-Za-z0-9._-]+", name):
        cmdline.append(f"{HOSTNAME_PARAM}={name}")
    ET.SubElement(os_element, "cmdline").text = " ".join(cmdline)

    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")  # the power button that dom.shutdown() presses
    cpu = ET.SubElement(domain, "cpu", mode="custom")
    ET.SubElement(cpu, "model", fallback="allow").text = "qemu64"
    ET.SubElement(domain, "on_crash").text = "destroy"

    devices = ET.SubElement(domain, "devices")
    # libvirt adds a USB controller to 'pc' machines unless told not to; nothing uses it.
    ET.SubElement(devices, "controller", type="usb", model="none")
    if rbd_disks and ceph_conf is None:
        raise GuestImageError("RBD disks need the Ceph configuration file (ceph_conf)")
    for index, rbd_image in enumerate(rbd_disks):
        disk = ET.SubElement(devices, "disk", type="network", device="disk")
        # cache='none': every guest fsync reaches librbd at once.
        ET.SubElement(disk, "driver", name="qemu", type="raw", cache="none")
        source = ET.SubElement(disk, "source", protocol="rbd", name=rbd_image)
        if ceph_monitor is not None:
            ET.SubElement(source, "host", name=ceph_monitor[0], port=str(ceph_monitor[1]))
        ET.SubElement(source, "config", file=str(ceph_conf))
        ET.SubElement(disk, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "log", file=str(console_log), append="on")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    ET.SubElement(devices, "memballoon", model="none")
    # The pvpanic device: a guest panic reaches QEMU, then libvirt's on_crash (destroy).
    ET.SubElement(devices, "panic", model="isa")

    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode") + "\n"


# --------------------------------------------------------------------------------------
# Kernel extraction


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """Serialise builds between processes (e.g. a test run and ``make cluster``)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: list[str], cwd: Path | None = None) -> str:
    """Run a command and return its stdout; raise GuestImageError with stderr on failure."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise GuestImageError(f"{command[0]} is not installed: {exc}") from exc
    if result.returncode != 0:
        raise GuestImageError(
            f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result.stdout


def kernel_package() -> str:
    """Name of the kernel package the cloud metapackage depends on (from apt's lists)."""
    output = _run(["apt-cache", "depends", "--important", KERNEL_METAPACKAGE])
    for line in output.splitlines():
        kind, _, package = line.strip().partition(":")
        package = package.strip()
        if kind.strip().lstrip("|") == "Depends" and package.startswith("linux-image-"):
            return package
    raise GuestImageError(f"no linux-image-* dependency of {KERNEL_METAPACKAGE} in:\n{output}")


def _download_deb(package: str, directory: Path) -> Path:
    """``apt-get download`` one package into ``directory`` (refreshing stale lists once)."""
    # Download as root: the default _apt sandbox user cannot write a private temp dir.
    command = ["apt-get", "download", "-o", "APT::Sandbox::User=root", package]
    try:
        _run(command, cwd=directory)
    except GuestImageError:
        # The lists may name a version the mirror no longer has (superseded by an update).
        _run(["apt-get", "update"])
        _run(command, cwd=directory)
    debs = sorted(directory.glob("*.deb"))
    if len(debs) != 1:
        raise GuestImageError(f"apt-get download {package} left {debs!r} in {directory}")
    return debs[0]


def _module_depends(data: bytes) -> list[str]:
    """The ``depends=`` field of a kernel module's .modinfo section (no modinfo needed)."""
    match = re.search(rb"(?:^|\0)depends=([^\0]*)", data)
    if match is None or not match.group(1):
        return []
    return [name.decode() for name in match.group(1).split(b",") if name]


def _normalise_module(name: str) -> str:
    return name.replace("-", "_")


def _extract_kernel(deb: Path, target: Path, wanted: tuple[str, ...]) -> dict[str, str]:
    """Extract vmlinuz and the ``wanted`` modules (plus dependencies) from a kernel .deb.

    Writes ``target/vmlinuz`` and ``target/modules/<name>.ko`` and returns a manifest.
    The data archive is streamed through tarfile; every module is kept in memory only
    until the dependency closure is known (no modules.dep in the package: depmod builds
    it at install time).
    """
    kernel_data: bytes | None = None
    release = ""
    modules: dict[str, bytes] = {}
    process = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert process.stdout is not None
    with process.stdout, tarfile.open(fileobj=process.stdout, mode="r|") as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if not member.isfile():
                continue
            if re.fullmatch(r"boot/vmlinuz-.+", name):
                release = name.removeprefix("boot/vmlinuz-")
                kernel_data = _read_member(archive, member)
            elif name.startswith("lib/modules/") and name.endswith(".ko"):
                stem = _normalise_module(Path(name).name.removesuffix(".ko"))
                modules[stem] = _read_member(archive, member)
    if process.wait() != 0:
        raise GuestImageError(f"dpkg-deb --fsys-tarfile {deb} failed ({process.returncode})")
    if kernel_data is None:
        raise GuestImageError(f"no boot/vmlinuz-* in {deb}")

    order: list[str] = []

    def add(module: str, chain: tuple[str, ...]) -> None:
        if module in order:
            return
        if module in chain:
            raise GuestImageError(f"module dependency cycle: {' -> '.join((*chain, module))}")
        if module not in modules:
            raise GuestImageError(f"module {module} is not in {deb} (built into the kernel?)")
        for dependency in _module_depends(modules[module]):
            add(_normalise_module(dependency), (*chain, module))
        order.append(module)

    for module in wanted:
        add(_normalise_module(module), ())

    (target / "modules").mkdir(parents=True)
    (target / "vmlinuz").write_bytes(kernel_data)
    for module in order:
        (target / "modules" / f"{module}.ko").write_bytes(modules[module])
    manifest = {
        "deb": deb.name,
        "release": release,
        "requested": ",".join(wanted),
        "load_order": ",".join(order),
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise GuestImageError(f"cannot read {member.name} from the kernel package")
    with handle:
        return handle.read()


def _ensure_kernel(
    cache_dir: Path, modules: tuple[str, ...] = GUEST_MODULES, directory: str = "kernel"
) -> tuple[Path, dict[str, str]]:
    """Return ``(kernel dir, manifest)``, extracting the kernel once per cache dir.

    ``modules`` are extracted (with their dependencies) into ``cache_dir/directory``.

    apt is not consulted while a kernel with the wanted modules is cached, so builds
    after the first need no network (a newer kernel in apt's lists is not picked up
    until the cache directory is removed).
    """
    kernel_dir = cache_dir / directory
    manifest_path = kernel_dir / "manifest.json"
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("requested") == ",".join(modules) and (kernel_dir / "vmlinuz").is_file():
            return kernel_dir, manifest
    package = kernel_package()
    staging = Path(tempfile.mkdtemp(prefix="kernel.", dir=cache_dir))
    try:
        with tempfile.TemporaryDirectory(prefix="pvc-kernel-deb-") as download_dir:
            deb = _download_deb(package, Path(download_dir))
            manifest = _extract_kernel(deb, staging / "kernel", modules)
        # mkdtemp makes 0700 directories; every libvirtd host must read the files.
        staging.chmod(0o755)
        if kernel_dir.exists():
            shutil.rmtree(kernel_dir)
        (staging / "kernel").rename(kernel_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return kernel_dir, manifest


# --------------------------------------------------------------------------------------
# Initramfs


class _CpioWriter:
    """Minimal writer for the cpio "newc" format the kernel unpacks as initramfs.

    Every entry gets uid/gid 0 and mtime 0, so the same inputs give the same bytes.
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._inode = 0

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        self._inode += 1
        encoded = name.encode() + b"\0"
        fields = [
            self._inode,  # c_ino
            mode,  # c_mode
            0,  # c_uid
            0,  # c_gid
            2 if stat.S_ISDIR(mode) else 1,  # c_nlink
            0,  # c_mtime
            len(data),  # c_filesize
            0,  # c_devmajor
            0,  # c_devminor
            rdev[0],  # c_rdevmajor
            rdev[1],  # c_rdevminor
            len(encoded),  # c_namesize (including the NUL)
            0,  # c_check
        ]
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._chunks.append(header + encoded)
        self._pad()
        self._chunks.append(data)
        self._pad()

    def _pad(self) -> None:
        size = sum(len(chunk) for chunk in self._chunks)
        self._chunks.append(b"\0" * (-size % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        """The archive including the trailer entry."""
        self._entry("TRAILER!!!", 0)
        return b"".join(self._chunks)


def _initramfs_bytes(busybox: bytes, modules: list[tuple[str, bytes]], disk: bool = False) -> bytes:
    """The uncompressed initramfs: busybox, /init, the ACPI handler and the modules.

    ``disk``: the disk variant (more applets, and DISK_SCRIPT in /init).
    """
    cpio = _CpioWriter()
    acpi_event_dir = str(Path("etc/acpi") / Path(ACPI_EVENT_SCRIPT).parent)
    for directory in ("bin", "dev", "etc", "etc/acpi", acpi_event_dir, "lib", "lib/modules"):
        cpio.directory(directory)
    for mount_point in ("proc", "sys", "run", "tmp"):
        cpio.directory(mount_point)
    # The kernel opens /dev/console for init's stdin/stdout before /init runs (and
    # before devtmpfs is mounted), so the node must be in the archive itself.
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox, 0o755)
    for applet in BUSYBOX_APPLETS + (DISK_APPLETS if disk else ()):
        cpio.symlink(f"bin/{applet}", "busybox")
    cpio.file("init", _init_script(disk).encode(), 0o755)
    cpio.file(f"etc/acpi/{ACPI_EVENT_SCRIPT}", POWEROFF_SCRIPT.encode(), 0o755)
    for name, data in modules:
        cpio.file(f"lib/modules/{name}.ko", data)
    cpio.file("lib/modules/load-order", "".join(f"{name}\n" for name, _ in modules).encode())
    return cpio.finish()


def build_guest_image(cache_dir: Path = DEFAULT_CACHE_DIR, *, disk: bool = False) -> GuestImage:
    """Build (or reuse) the guest kernel and initramfs under ``cache_dir``.

    ``disk=True`` builds the disk variant (virtio block driver, a disk write at boot: see
    the module docstring) from its own kernel directory; the default image is unchanged.

    Idempotent: the kernel is extracted once; the initramfs file name carries a hash of
    its uncompressed content (init script, ACPI handler, busybox, modules, layout), so
    changing any of them builds a new one and an unchanged one is reused. Older
    initramfs files are kept: running guests and migrations may still use them. Safe
    to call from several processes at once (a lock file serialises builds).
    """
    cache_dir = Path(cache_dir).resolve()
    if not BUSYBOX.is_file():
        raise GuestImageError(f"{BUSYBOX} is missing; {INSTALL_HINT}")
    with _locked(cache_dir):
        if disk:
            kernel_dir, manifest = _ensure_kernel(
                cache_dir, GUEST_MODULES + DISK_MODULES, DISK_KERNEL_DIR
            )
        else:
            kernel_dir, manifest = _ensure_kernel(cache_dir)
        order = [name for name in manifest["load_order"].split(",") if name]
        modules = [(name, (kernel_dir / "modules" / f"{name}.ko").read_bytes()) for name in order]
        # The archive is deterministic and takes milliseconds to assemble; naming the
        # file after its hash rebuilds exactly when anything in it changed.
        archive = _initramfs_bytes(BUSYBOX.read_bytes(), modules, disk)
        initrd = cache_dir / f"initrd-{hashlib.sha256(archive).hexdigest()[:16]}.img"
        if not initrd.is_file():
            compressed = gzip.compress(archive, mtime=0)
            temporary = initrd.with_name(f".{initrd.name}.{os.getpid()}")
            temporary.write_bytes(compressed)
            temporary.chmod(0o644)
            temporary.rename(initrd)
    return GuestImage(kernel=kernel_dir / "vmlinuz", initrd=initrd)


# --------------------------------------------------------------------------------------
# Developer entry point


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.harness.guest --build [--cache-dir DIR] [--xml NAME]``."""
    parser = argparse.ArgumentParser(description="Build the tiny test guest.")
    parser.add_argument("--build", action="store_true", help="build and print the image paths")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--xml", metavar="NAME", help="also print a domain XML for NAME")
    args = parser.parse_args(argv)
    if not (args.build or args.xml):
        parser.error("nothing to do: pass --build and/or --xml NAME")
    try:
        image = build_guest_image(args.cache_dir)
    except GuestImageError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"kernel: {image.kernel}")
    print(f"initrd: {image.initrd}")
    if args.xml:
        console_log = Path(tempfile.gettempdir()) / f"{args.xml}.console.log"
        print(
            guest_domain_xml(
                args.xml, uuid=str(uuid_module.uuid4()), image=image, console_log=console_log
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
