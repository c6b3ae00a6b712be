"""Run real libvirtd hypervisor hosts (QEMU, software emulation) on one machine.

Each :class:`LibvirtHost` is one ``libvirtd --listen`` process with its own files under
``workdir/<name>/``:

``libvirtd.conf``
    Passed with ``--config``: unix socket dir, no auth, TCP on 127.0.0.1, a distinct
    ``host_uuid`` (libvirt refuses to migrate between hosts with equal UUIDs).
``run/ lib/ cache/ log/ etc/``
    Bind-mounted over /run/libvirt, /var/lib/libvirt, /var/cache/libvirt,
    /var/log/libvirt and /etc/libvirt inside a private mount namespace
    (``unshare --mount``), so several libvirtds coexist: a second one would otherwise
    fail on the shared pid files and state. ``etc/qemu.conf`` runs guests as root
    without cgroups, security drivers or virtlogd, and gives the host its own
    migration port range. QEMU pid files are in ``run/qemu/<domain>.pid``.
``sock/libvirt-sock``
    The unix socket (:attr:`LibvirtHost.uri`); TCP is :attr:`LibvirtHost.tcp_uri`.
``libvirtd.pid``, ``state.json``, ``libvirtd.out``, ``log/libvirtd.log``
    PID (written by libvirtd), the harness's record of ports/UUID/PID (so another
    process can :meth:`LibvirtHost.attach` and stop the host), the daemon's
    stdout/stderr and its log file (warnings and errors).

The first start of a libvirtd probes QEMU for ~8 s and caches the result in
``cache/qemu/capabilities``; a shared ``capability_cache`` directory copies that file
between hosts, making later starts take a fraction of a second.

libvirtd runs under a small supervisor process (:data:`SUPERVISOR_SCRIPT`) that reaps
the QEMU processes libvirtd daemonizes (otherwise every destroy waits ~2 s for PID 1
to reap them) and takes the whole host down if the test process dies.

Processes are tracked by PID, never by name: stopping a host destroys the guests it
runs (through libvirt, falling back to SIGKILL of the PIDs in its QEMU pid files),
then SIGTERMs (later SIGKILLs) its own libvirtd. Other libvirtds or QEMUs on the
machine are left alone.

This module must not import pytest: it is shared by test fixtures and scripts, e.g.
``python -m tests.harness.hypervisor start --workdir DIR --name hv1``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import random
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import libvirt

from tests.harness.zookeeper import (
    LOOPBACK,
    find_free_port,
    log_tail,
    pid_is_running,
    port_accepts_connections,
    wait_until,
)

#: A capability cache shared by every host of every run on this checkout, so only the
#: very first host start pays for the QEMU probe. (Callers opt in: the default of
#: ``LibvirtHost(capability_cache=...)`` is no sharing.)
DEFAULT_CAPABILITY_CACHE = Path(__file__).resolve().parent.parent.parent / ".cache" / "libvirt"

#: System paths libvirtd uses, mapped to the subdirectory of the host dir that is
#: bind-mounted over them inside the host's mount namespace.
BIND_MOUNTS = {
    "run": Path("/run/libvirt"),
    "lib": Path("/var/lib/libvirt"),
    "cache": Path("/var/cache/libvirt"),
    "log": Path("/var/log/libvirt"),
    "etc": Path("/etc/libvirt"),
}

#: Number of ports in a host's incoming-migration range (one per concurrent migration).
MIGRATION_PORT_COUNT = 4

#: Longest unix socket path the kernel accepts (sun_path is 108 bytes with the NUL).
MAX_SOCKET_PATH = 107

INSTALL_HINT = (
    "install libvirt-daemon, libvirt-daemon-driver-qemu and qemu-system-x86 "
    "(make system-deps does it)"
)

#: Argument that marks a host's supervisor process, so it is recognised by PID later.
SUPERVISOR_MARKER = "pvc-libvirtd-supervisor"

#: The supervisor: the parent of libvirtd, run with ``python -c``. Arguments: the fd to
#: report libvirtd's PID on, SUPERVISOR_MARKER, then the libvirtd command line.
#:
#: It exists because libvirtd daemonizes QEMU: a guest's parent is not libvirtd but
#: whatever reaps orphans. On these machines that is PID 1, which reaps only every ~2 s,
#: and libvirtd waits until the QEMU PID is really gone, so every destroy, shutdown and
#: migration took ~2 s longer. As a child subreaper the supervisor gets the orphaned
#: QEMUs and reaps them at once. It also knows all processes of the host: on SIGTERM
#: (sent by the kernel when the test process dies, see die_with_parent) it SIGKILLs
#: libvirtd and every guest, which a parent-death signal to libvirtd alone would leave
#: running. It exits with libvirtd's status once its last child is gone, so after
#: kill() it stays while the guests that outlived libvirtd run.
SUPERVISOR_SCRIPT = """
import ctypes, os, signal, sys

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
report_fd, command, me = int(sys.argv[1]), sys.argv[3:], os.getpid()


def children():
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rpartition(")")[2].split()[1]) == me:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return found


def take_down(signum, frame):
    for pid in children():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


signal.signal(signal.SIGTERM, take_down)
daemon = os.fork()
if daemon == 0:
    # libvirtd must not outlive its supervisor (e.g. a SIGKILL of the supervisor).
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != me:
        os._exit(127)
    os.close(report_fd)
    os.execv(command[0], command)
os.write(report_fd, b"%d\\n" % daemon)
os.close(report_fd)
status = 0
while True:
    try:
        pid, wait_status = os.wait()
    except ChildProcessError:
        break
    if pid == daemon:
        status = os.waitstatus_to_exitcode(wait_status)
sys.exit(status if status >= 0 else 128 - status)
"""


class LibvirtHostError(RuntimeError):
    """A libvirtd host could not be started, did not become ready, or died."""


# --------------------------------------------------------------------------------------
# Small utilities

# Ports handed out by this process; the checks below only prove a port is free *now*,
# and a migration range is not bound until a migration starts, so without this two
# hosts made one after another could be given overlapping ports.
_HANDED_OUT: set[int] = set()


def find_free_port_range(count: int = MIGRATION_PORT_COUNT, attempts: int = 50) -> tuple[int, int]:
    """Return ``(first, last)`` of ``count`` consecutive ports free on 127.0.0.1.

    The range lies below the kernel's ephemeral port range: a port from that range can be
    taken at any moment as the local end of some outgoing connection, which would make
    the destination QEMU (or a test occupying the range on purpose) fail to listen.
    """
    low, high = _below_ephemeral_range()
    for _ in range(attempts):
        first = random.randrange(low, high - count)
        ports = range(first, first + count)
        if ports[-1] > 65535 or _HANDED_OUT.intersection(ports):
            continue
        sockets: list[socket.socket] = []
        try:
            for port in ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((LOOPBACK, port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        _HANDED_OUT.update(ports)
        return first, ports[-1]
    raise LibvirtHostError(f"no {count} consecutive free ports found in {attempts} attempts")


def _below_ephemeral_range() -> tuple[int, int]:
    """Ports from 10000 up to the start of the kernel's ephemeral range."""
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        start = 32768
    return 10000, max(start, 10000 + 1000)


def _free_port() -> int:
    """A free port not handed out before by this process."""
    while True:
        port = find_free_port()
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _cmdline(pid: int) -> list[str]:
    """The argv of a process ([] if it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited (a zombie counts as exited); True if it did."""
    try:
        wait_until(lambda: not pid_is_running(pid), timeout, f"pid {pid} running", interval=0.05)
    except TimeoutError:
        return False
    return True


def _quiet_libvirt() -> None:
    """Stop libvirt-python printing every error to stderr (exceptions still carry them)."""
    libvirt.registerErrorHandler(lambda *args: None, None)


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` so that readers never see a half-written file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.rename(path)


# --------------------------------------------------------------------------------------
# Cleanup of hosts left running when the interpreter exits

_RUNNING: set[LibvirtHost] = set()


def stop_all_hosts() -> None:
    """Stop every host this process started with ``die_with_parent`` that still runs.

    Registered with :mod:`atexit` so a normal exit stops hosts cleanly, through libvirt.
    (When atexit handlers do not run, e.g. on SIGKILL, the supervisors' parent-death
    signal still takes everything down. Hosts started detached for ``make cluster``
    are meant to outlive this process and are not touched.)
    """
    for host in list(_RUNNING):
        with contextlib.suppress(Exception):
            host.stop(timeout=3.0)


atexit.register(stop_all_hosts)


# --------------------------------------------------------------------------------------
# One host


class LibvirtHost:
    """One libvirtd with QEMU guests, isolated from other hosts by a mount namespace.

    Ports are chosen at construction (so URIs are known before start and a restarted
    host comes back on the same addresses): ``tcp_port`` for the libvirt TCP listener,
    ``migration_ports`` the inclusive range destination QEMUs listen on for incoming
    migrations. ``capability_cache`` is a directory shared between hosts (see the
    module docstring).

    ``die_with_parent=True`` (tests) takes libvirtd and its guests down when the thread
    that started the host exits (``setpriv --pdeathsig`` to the supervisor), so even a
    SIGKILLed test run leaves nothing behind; an atexit handler stops hosts cleanly on
    a normal exit. Start hosts from a long-lived thread (or pass False).
    ``die_with_parent=False`` (``make cluster``) starts the host detached so it
    outlives the starting process; a later process re-attaches with :meth:`attach` and
    can :meth:`stop` it.
    """

    def __init__(
        self,
        workdir: Path,
        name: str,
        *,
        tcp_port: int | None = None,
        migration_ports: tuple[int, int] | None = None,
        host_uuid: str | None = None,
        capability_cache: Path | None = None,
        die_with_parent: bool = True,
    ) -> None:
        if not name or "/" in name:
            raise ValueError(f"invalid host name {name!r}")
        self.workdir = Path(workdir).resolve()
        self.name = name
        self.tcp_port = tcp_port if tcp_port is not None else _free_port()
        if migration_ports is None:
            migration_ports = find_free_port_range()
        if migration_ports[0] > migration_ports[1]:
            raise ValueError(f"empty migration port range {migration_ports!r}")
        self._migration_ports = (int(migration_ports[0]), int(migration_ports[1]))
        self.host_uuid = str(uuid.UUID(host_uuid)) if host_uuid else str(uuid.uuid4())
        self.capability_cache = Path(capability_cache) if capability_cache else None
        self.die_with_parent = die_with_parent
        #: PID of the most recently started libvirtd; kept after stop() so callers can
        #: check that it is gone.
        self.pid: int | None = None
        #: PID of the supervisor of the most recent start (libvirtd's parent, see
        #: SUPERVISOR_SCRIPT).
        self.supervisor_pid: int | None = None
        # Supervisors started by this object that may still run: after kill() and a new
        # start() the old one keeps reaping the guests that outlived libvirtd.
        self._supervisors: list[subprocess.Popen[bytes]] = []
        admin_socket = self.socket_dir / "libvirt-admin-sock"
        if len(str(admin_socket)) > MAX_SOCKET_PATH:
            raise ValueError(
                f"unix socket path {admin_socket} is longer than {MAX_SOCKET_PATH} bytes; "
                "use a shorter workdir"
            )

    def __repr__(self) -> str:
        return f"<LibvirtHost {self.name} tcp={self.tcp_port} pid={self.pid}>"

    # -- paths

    @property
    def host_dir(self) -> Path:
        """``workdir/<name>``: everything of this host lives here."""
        return self.workdir / self.name

    def state_dir(self, key: str) -> Path:
        """The host's private copy of a libvirt state dir: run, lib, cache, log or etc."""
        if key not in BIND_MOUNTS:
            raise KeyError(key)
        return self.host_dir / key

    @property
    def socket_dir(self) -> Path:
        return self.host_dir / "sock"

    @property
    def socket_path(self) -> Path:
        """The read-write unix socket clients use."""
        return self.socket_dir / "libvirt-sock"

    @property
    def config_path(self) -> Path:
        return self.host_dir / "libvirtd.conf"

    @property
    def qemu_config_path(self) -> Path:
        return self.state_dir("etc") / "qemu.conf"

    @property
    def pid_file(self) -> Path:
        return self.host_dir / "libvirtd.pid"

    @property
    def state_path(self) -> Path:
        return self.host_dir / "state.json"

    @property
    def log_path(self) -> Path:
        """libvirtd's own log file (``log_outputs``: warnings and errors)."""
        return self.state_dir("log") / "libvirtd.log"

    @property
    def output_path(self) -> Path:
        """libvirtd's stdout and stderr, appended across restarts."""
        return self.host_dir / "libvirtd.out"

    @property
    def capabilities_dir(self) -> Path:
        """Where libvirtd caches its QEMU probe results (cache/qemu/capabilities)."""
        return self.state_dir("cache") / "qemu" / "capabilities"

    def qemu_log_path(self, domain: str) -> Path:
        """The QEMU log libvirt writes for one domain (command line, QEMU errors)."""
        return self.state_dir("log") / "qemu" / f"{domain}.log"

    # -- addresses

    @property
    def uri(self) -> str:
        """Local connection URI through this host's unix socket."""
        return f"qemu+unix:///system?socket={self.socket_path}"

    @property
    def tcp_uri(self) -> str:
        """Connection URI over TCP on loopback (what peers use for migration)."""
        return f"qemu+tcp://{LOOPBACK}:{self.tcp_port}/system"

    @property
    def migration_ports(self) -> tuple[int, int]:
        """Inclusive ``(min, max)`` of the ports incoming migrations listen on."""
        return self._migration_ports

    # -- configuration

    def render_config(self) -> str:
        """The libvirtd.conf text for this host."""
        settings: dict[str, str | int] = {
            "unix_sock_dir": str(self.socket_dir),
            "auth_unix_rw": "none",
            "auth_unix_ro": "none",
            "listen_tcp": 1,
            "listen_tls": 0,
            "listen_addr": LOOPBACK,
            "tcp_port": str(self.tcp_port),
            "auth_tcp": "none",
            # Level 3 = warnings and errors; enough to explain a failed start.
            "log_outputs": f"3:file:{self.log_path}",
            "host_uuid": self.host_uuid,
        }
        return _render_settings(settings)

    def render_qemu_config(self) -> str:
        """The qemu.conf text for this host."""
        settings: dict[str, str | int | list[str]] = {
            # Guests run as root without ownership changes or confinement: the image
            # files are shared by all hosts and nothing here is untrusted.
            "user": "root",
            "group": "root",
            "dynamic_ownership": 0,
            "remember_owner": 0,
            "security_driver": "none",
            # No systemd and no delegated cgroup tree on these machines.
            "cgroup_controllers": [],
            # Serial <log file=...> written by QEMU itself: no virtlogd daemon needed.
            "stdio_handler": "file",
            # Incoming migrations listen in this host's own range. libvirt refuses
            # loopback for migration_address and migration_host, so a destination
            # advertises the machine's hostname and listens on all addresses unless the
            # caller passes VIR_MIGRATE_PARAM_URI (tcp://127.0.0.1) and
            # VIR_MIGRATE_PARAM_LISTEN_ADDRESS (127.0.0.1), as the tests do.
            "migration_port_min": self._migration_ports[0],
            "migration_port_max": self._migration_ports[1],
        }
        return _render_settings(settings)

    def write_config(self) -> None:
        """Create the host directory tree and write both configuration files."""
        for key in BIND_MOUNTS:
            self.state_dir(key).mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        self.qemu_config_path.write_text(self.render_qemu_config())

    def command(self, report_fd: int) -> list[str]:
        """The command line start() runs.

        unshare gives a private mount namespace, a shell bind-mounts the state dirs and
        execs the supervisor (:data:`SUPERVISOR_SCRIPT`), which forks libvirtd and writes
        its PID to ``report_fd``. Each step execs the next, so the process start()
        launches is the supervisor itself.
        """
        libvirtd = shutil.which("libvirtd") or "/usr/sbin/libvirtd"
        unshare = shutil.which("unshare")
        if not Path(libvirtd).is_file():
            raise LibvirtHostError(f"libvirtd is not installed; {INSTALL_HINT}")
        if unshare is None:
            raise LibvirtHostError("unshare (util-linux) is not installed")
        mounts = "; ".join(
            f"mount --bind {shlex.quote(str(self.state_dir(key)))} {shlex.quote(str(target))}"
            for key, target in BIND_MOUNTS.items()
        )
        supervisor = [
            sys.executable,
            "-I",  # isolated: no user site, no PYTHON* variables, nothing else imported
            "-S",
            "-c",
            SUPERVISOR_SCRIPT,
            str(report_fd),
            SUPERVISOR_MARKER,
            libvirtd,
            "--listen",
            "--config",
            str(self.config_path),
            "--pid-file",
            str(self.pid_file),
        ]
        script = f"set -e; {mounts}; exec {shlex.join(supervisor)}"
        command = [unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]
        setpriv = shutil.which("setpriv")
        if self.die_with_parent and setpriv is not None:
            # TERM, not KILL: the supervisor catches it and SIGKILLs libvirtd and every
            # guest, which a SIGKILL of the supervisor alone would leave running.
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        return command

    # -- capability cache

    def _seed_capabilities(self) -> None:
        """Copy cached QEMU capability XML from the shared cache into this host."""
        if self.capability_cache is None:
            return
        cached = sorted(self.capability_cache.glob("*.xml"))
        if not cached:
            return
        self.capabilities_dir.mkdir(parents=True, exist_ok=True)
        for source in cached:
            target = self.capabilities_dir / source.name
            if not target.exists():
                # copy2 keeps the mtime: a later diff shows whether libvirtd re-probed.
                shutil.copy2(source, target)

    def _publish_capabilities(self) -> None:
        """Copy this host's capability XML into the shared cache if that lacks it.

        A cached file that differs is replaced too: libvirtd only rewrites the file when
        it found the cached one stale (new QEMU or libvirt), and the next hosts should
        not pay for that probe again.
        """
        if self.capability_cache is None:
            return
        self.capability_cache.mkdir(parents=True, exist_ok=True)
        for source in sorted(self.capabilities_dir.glob("*.xml")):
            data = source.read_bytes()
            target = self.capability_cache / source.name
            with contextlib.suppress(OSError):
                if target.read_bytes() == data:
                    continue
            _write_atomically(target, data)

    # -- lifecycle

    def start(self, timeout: float = 15.0) -> None:
        """Write the configuration and launch libvirtd; does not wait for it to be ready.

        Returns once libvirtd's PID is known (:attr:`pid`), within milliseconds.
        """
        if self.is_alive():
            raise LibvirtHostError(f"{self!r} is already running")
        self.write_config()
        for target in BIND_MOUNTS.values():
            # Mount points must exist in the shared root filesystem (they stay empty
            # there: the bind mounts only exist inside each host's namespace).
            target.mkdir(parents=True, exist_ok=True)
        self._seed_capabilities()
        read_fd, write_fd = os.pipe()
        try:
            command = self.command(write_fd)
            with self.output_path.open("ab") as output:
                output.write(f"==== harness: starting {shlex.join(command)}\n".encode())
                output.flush()
                # A new session keeps terminal signals (Ctrl-C) away from the host, and
                # lets a detached host outlive the script that started it.
                process = subprocess.Popen(
                    command,
                    cwd=self.host_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(write_fd,),
                )
        finally:
            os.close(write_fd)
        try:
            reported = _read_report(read_fd, timeout)
        finally:
            os.close(read_fd)
        self._supervisors.append(process)
        self.supervisor_pid = process.pid
        if reported is None:
            # The shell (a bind mount) or the supervisor failed before forking libvirtd.
            try:
                process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                process.kill()  # libvirtd, if forked after all, follows (parent death)
                process.wait()
            raise self._failure(f"did not start (supervisor exit code {process.returncode})")
        self.pid = reported
        self._write_state()
        if self.die_with_parent:
            _RUNNING.add(self)

    def wait_ready(self, timeout: float = 30.0) -> int:
        """Wait until libvirtd answers on its unix socket and TCP port; return its version.

        Then publish the QEMU capabilities to the shared cache. Raises
        :class:`LibvirtHostError` with the log tails if libvirtd dies or does not answer.
        """
        _quiet_libvirt()
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while True:
            if not self.is_alive():
                raise self._failure("exited before it was ready")
            # The socket appears before the drivers are initialised; connect() would
            # then block until they are, so only try once it exists.
            if self.socket_path.exists():
                try:
                    with self.connection() as conn:
                        version = int(conn.getLibVersion())
                        conn.listAllDomains()
                        # libvirtd probes QEMU lazily: the first getCapabilities (or the
                        # first guest) pays ~8 s unless the cache was seeded. Pay it here,
                        # so a "ready" host starts guests and migrations promptly and
                        # its capability files exist for the shared cache.
                        conn.getCapabilities()
                    if port_accepts_connections(self.tcp_port, timeout=0.5):
                        break
                    last_error = f"TCP port {self.tcp_port} not accepting"
                except libvirt.libvirtError as exc:
                    last_error = str(exc)
            if time.monotonic() >= deadline:
                raise self._failure(f"not ready after {timeout:.1f} s ({last_error})")
            time.sleep(0.05)
        self._publish_capabilities()
        return version

    def stop(self, timeout: float = 10.0) -> None:
        """Destroy every guest of this host, then stop libvirtd (SIGTERM, later SIGKILL).

        Works on hosts started by this object and on hosts re-attached with
        :meth:`attach`. Safe to call more than once and on a host whose libvirtd
        already died. Afterwards no libvirtd, QEMU or supervisor process of this host
        is left.
        """
        deadline = time.monotonic() + timeout
        self._destroy_guests(deadline)
        pid = self._live_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                # A stopped (SIGSTOPped) libvirtd only acts on SIGTERM once continued.
                os.kill(pid, signal.SIGCONT)
            if not _wait_gone(pid, max(deadline - time.monotonic(), 0.5)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 10.0)
        self._stop_supervisors(max(deadline - time.monotonic(), 2.0))
        _RUNNING.discard(self)

    def kill(self) -> None:
        """SIGKILL libvirtd only (a daemon crash): its QEMU guests keep running."""
        pid = self._live_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10.0)

    def _destroy_guests(self, deadline: float) -> None:
        """Destroy all running domains: via libvirt if it answers, then by QEMU PID."""
        if self._live_pid() is not None and self.socket_path.exists():
            _quiet_libvirt()
            with contextlib.suppress(libvirt.libvirtError):
                with self.connection() as conn:
                    domains = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
                    # Destroy them all at once rather than one after another.
                    threads = [
                        threading.Thread(target=_destroy_quietly, args=(domain,), daemon=True)
                        for domain in domains
                    ]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join(max(deadline - time.monotonic(), 0.1))
        # Whatever libvirt did not destroy (libvirtd dead, hung, or a destroy failed).
        leftovers = self.qemu_pids()
        for pid in leftovers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in leftovers.values():
            _wait_gone(pid, max(deadline - time.monotonic(), 2.0))

    def _stop_supervisors(self, timeout: float) -> None:
        """Wait for this host's supervisors to exit, which they do once their last
        child (libvirtd, guests) is gone; SIGTERM (= SIGKILL everything left) otherwise.

        Includes supervisors of earlier starts (kill() then start()) that still reaped
        guests, and, for attached hosts, those recorded in the state file.
        """
        deadline = time.monotonic() + timeout
        pids = {pid for pid in self._recorded_supervisors() if self._is_supervisor(pid)}
        for process in self._supervisors:
            if process.poll() is None:
                pids.add(process.pid)
        for pid in pids:
            if not _wait_gone(pid, max(deadline - time.monotonic(), 0.2)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                if not _wait_gone(pid, 5.0):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    _wait_gone(pid, 5.0)
        for process in self._supervisors:
            # Reap our own children (pid_is_running already treats zombies as gone).
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1.0)
        self._supervisors = [process for process in self._supervisors if process.poll() is None]

    # -- state

    def _live_pid(self) -> int | None:
        """The PID of this host's libvirtd if it runs, checked against its command line.

        The check matters for re-attached hosts: a PID from a state file may have been
        recycled by an unrelated process since, which must never be signalled. (Until
        it execs libvirtd, the forked child still has the supervisor's command line,
        which names the same config file.)
        """
        pid = self.pid
        if pid is None or not pid_is_running(pid):
            return None
        argv = _cmdline(pid)
        # While the child execs libvirtd, /proc/PID/cmdline reads empty for an instant:
        # that is the same process, not a recycled PID (a flaky "exited before ready").
        return pid if not argv or str(self.config_path) in argv else None

    def _is_supervisor(self, pid: int) -> bool:
        argv = _cmdline(pid)
        return pid_is_running(pid) and SUPERVISOR_MARKER in argv and str(self.config_path) in argv

    def _recorded_supervisors(self) -> list[int]:
        """Supervisor PIDs in the state file (written by whichever process started us)."""
        with contextlib.suppress(OSError, ValueError, TypeError):
            state = json.loads(self.state_path.read_text())
            return [int(pid) for pid in state.get("supervisor_pids", [])]
        return []

    def is_alive(self) -> bool:
        """True if this host's libvirtd process exists and is not a zombie."""
        return self._live_pid() is not None

    def _write_state(self) -> None:
        supervisors = {pid for pid in self._recorded_supervisors() if self._is_supervisor(pid)}
        supervisors.update(p.pid for p in self._supervisors if p.poll() is None)
        state = {
            "name": self.name,
            "pid": self.pid,
            "supervisor_pids": sorted(supervisors),
            "tcp_port": self.tcp_port,
            "migration_ports": list(self._migration_ports),
            "host_uuid": self.host_uuid,
            "capability_cache": str(self.capability_cache) if self.capability_cache else None,
            "die_with_parent": self.die_with_parent,
            "uri": self.uri,
            "tcp_uri": self.tcp_uri,
        }
        _write_atomically(self.state_path, (json.dumps(state, indent=2) + "\n").encode())

    @classmethod
    def attach(cls, workdir: Path, name: str) -> LibvirtHost:
        """Re-create the host object for ``workdir/<name>`` from its state file.

        For a host started by another process (``die_with_parent=False``): the result
        has the same ports, UUID and PID, so :meth:`stop`, :meth:`qemu_pids` and the
        URIs work; :meth:`start` restarts it with the same configuration.
        """
        host_dir = Path(workdir).resolve() / name
        try:
            state: dict[str, Any] = json.loads((host_dir / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise LibvirtHostError(f"no usable state file in {host_dir}: {exc}") from exc
        cache = state.get("capability_cache")
        host = cls(
            Path(workdir),
            name,
            tcp_port=int(state["tcp_port"]),
            migration_ports=(int(state["migration_ports"][0]), int(state["migration_ports"][1])),
            host_uuid=str(state["host_uuid"]),
            capability_cache=Path(cache) if cache else None,
            die_with_parent=bool(state.get("die_with_parent", False)),
        )
        pid = state.get("pid")
        if pid is None:
            with contextlib.suppress(OSError, ValueError):
                pid = int(host.pid_file.read_text().strip())
        host.pid = int(pid) if pid is not None else None
        supervisors = state.get("supervisor_pids") or []
        host.supervisor_pid = int(supervisors[-1]) if supervisors else None
        return host

    # -- guests

    @contextlib.contextmanager
    def connection(self) -> Iterator[libvirt.virConnect]:
        """A libvirt connection over the unix socket, closed on exit."""
        conn = libvirt.open(self.uri)
        try:
            yield conn
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def qemu_pids(self) -> dict[str, int]:
        """Domain name -> PID of each live QEMU process, from ``run/qemu/*.pid``.

        Read from the files, not from libvirtd, so it also works while libvirtd is
        dead. Stale files (libvirtd killed with its guests) and PIDs recycled by
        something other than QEMU are skipped.
        """
        result: dict[str, int] = {}
        for pid_file in sorted((self.state_dir("run") / "qemu").glob("*.pid")):
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            argv = _cmdline(pid)
            if argv and "qemu-system" in Path(argv[0]).name and pid_is_running(pid):
                result[pid_file.stem] = pid
        return result

    def running_domains(self) -> set[str]:
        """UUIDs of the domains this libvirtd reports as active (asked live)."""
        _quiet_libvirt()
        with self.connection() as conn:
            domains = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            return {domain.UUIDString() for domain in domains}

    # -- context manager

    def __enter__(self) -> LibvirtHost:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _failure(self, what: str) -> LibvirtHostError:
        return LibvirtHostError(
            f"libvirtd {self.name} (pid {self.pid}) {what}\n"
            f"--- tail of {self.output_path}:\n{log_tail(self.output_path)}\n"
            f"--- tail of {self.log_path}:\n{log_tail(self.log_path)}"
        )


def _read_report(fd: int, timeout: float) -> int | None:
    """Read the PID the supervisor reports on ``fd``; None if it exits without one."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 64)
            if not chunk:  # EOF: every copy of the write end is closed
                return None
            data += chunk
    return int(data)


def _destroy_quietly(domain: libvirt.virDomain) -> None:
    """Destroy one domain; errors (e.g. it already stopped) are left to the PID fallback."""
    with contextlib.suppress(libvirt.libvirtError):
        domain.destroy()


def _render_settings(settings: dict[str, Any]) -> str:
    """Render libvirt's config syntax: ``key = "string"``, ``key = 1``, ``key = [ ... ]``."""
    lines = []
    for key, value in settings.items():
        if isinstance(value, bool):
            raise TypeError(f"{key}: write booleans as 0/1")
        if isinstance(value, int):
            rendered = str(value)
        elif isinstance(value, list):
            rendered = "[ " + ", ".join(json.dumps(str(item)) for item in value) + " ]"
        else:
            rendered = json.dumps(str(value))
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Developer entry point


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.harness.hypervisor {start,stop,status} --workdir DIR --name NAME``.

    ``start`` launches a detached host (it outlives this command) and prints its state;
    ``stop`` destroys its guests and stops it from any later process.
    """
    parser = argparse.ArgumentParser(description="Run a throwaway libvirtd host.")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument(
        "--capability-cache", type=Path, default=DEFAULT_CAPABILITY_CACHE, help="shared cache"
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            host = LibvirtHost(
                args.workdir,
                args.name,
                capability_cache=args.capability_cache,
                die_with_parent=False,
            )
            host.start()
            host.wait_ready()
            print(host.state_path.read_text(), end="")
        elif args.action == "stop":
            LibvirtHost.attach(args.workdir, args.name).stop()
        else:
            host = LibvirtHost.attach(args.workdir, args.name)
            alive = host.is_alive()
            print(f"{host.name}: {'running' if alive else 'stopped'} pid={host.pid} {host.uri}")
            for domain, pid in host.qemu_pids().items():
                print(f"  {domain}: qemu pid {pid}")
            return 0 if alive else 3
    except LibvirtHostError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
