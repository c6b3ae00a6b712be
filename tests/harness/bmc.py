"""Simulated BMCs: OpenIPMI's ``ipmi_sim`` speaking real IPMI over LAN on loopback.

Each :class:`BmcSimulator` is one ``ipmi_sim`` process with its own files under
``workdir/<name>/``:

``lan.conf``, ``bmc.emu``, ``state/``
    ipmi_sim's configuration (one LAN channel on 127.0.0.1:<free UDP port>, user
    ``admin`` with administrator rights), its emulated management controller and its
    persistent state directory.
``chassis_control``
    The power model (:data:`CHASSIS_CONTROL_SCRIPT`), run by ipmi_sim for every chassis
    command as ``chassis_control NODE_DIR get power`` or ``... set power 0|1`` (also
    ``set reset 1``, ``set shutdown 1``, ``get boot``, ``set boot DEV``).
``node/``
    The simulated machine (:attr:`BmcSimulator.node_dir`):

    ``power``       ``1`` or ``0``: what the BMC reports.
    ``pids``        processes that "run on" the machine, one ``PID STARTTIME`` per line
                    (:meth:`BmcSimulator.set_power_pids`). Power off SIGKILLs them and
                    all their descendants at once, as a power loss would.
    ``power-on``    optional executable started, fully detached, at power on
                    (:meth:`BmcSimulator.set_power_on_hook`); its output goes to
                    ``power-on.log``.
    ``refuse-power-off``  when present, ``set power 0`` is acknowledged but does nothing
                    (a broken BMC): fencing must then not be confirmed.
    ``power-off-error``  when present, ``set power 0`` powers off but answers with an
                    error: the power state, not the reply, says whether the node is off.
    ``chassis.log`` one line per chassis_control run: what ran and how long it took.
``ipmi_sim.log``, ``bmc.json``
    The simulator's output, and the harness's record of port/password/PID so another
    process can :meth:`BmcSimulator.attach` and stop it (``make cluster``).

ipmi_sim runs chassis_control synchronously and ipmitool retransmits after about a
second, so the script must finish well under a second or the action would run twice:
it is plain Python run with ``-I -S`` (about 10 ms to start), never waits for what it
starts, and every action is idempotent anyway (off when off, on when on do nothing).

Processes are tracked by PID, never by name: stopping a simulator signals the PID
recorded at start (checked against its command line when re-attached).

This module must not import pytest: it is shared by test fixtures and scripts, e.g.
``python -m tests.harness.bmc start --workdir DIR --name hv1``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tests.harness.zookeeper import LOOPBACK, log_tail, pid_is_running, wait_until

if TYPE_CHECKING:
    from pvc_noded.fencing import BmcAddress

INSTALL_HINT = "install Debian's openipmi and ipmitool packages (make system-deps does it)"

#: The BMC user the simulator defines (user id 2, administrator).
USERNAME = "admin"

#: ipmitool options every call needs here: lanplus with cipher suite 3 (without -C 3 each
#: call first waits 10 s for the cipher suite list), and one 1-second retry so a BMC that
#: does not answer fails in about 2 s instead of 20 s.
IPMITOOL_OPTIONS = ("-I", "lanplus", "-C", "3", "-N", "1", "-R", "1")

#: Characters allowed in paths written into lan.conf: ipmi_sim splits the chassis_control
#: string on blanks and has no quoting inside it.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+:@%,=-]+$")

#: Passwords go into a quoted lan.conf string; IPMI 1.5 passwords have at most 16 bytes.
_SAFE_PASSWORD = re.compile(r"^[A-Za-z0-9_.+:@%,=!#$*/?^~-]{1,16}$")

#: The power model run by ipmi_sim (see the module docstring). Written to the BMC's
#: directory with a ``#!<python> -IS`` line: isolated mode without site-packages starts
#: in ~10 ms, and the script needs only the standard library.
CHASSIS_CONTROL_SCRIPT = r'''
import os, signal, subprocess, sys, time

START = time.monotonic()


def read(path, default=""):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return default


def write(path, text):
    # Atomic: the harness may read the power state at any moment.
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def stat_fields(pid):
    """Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, [19] starttime."""
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rpartition(")")[2].split()


def process_table():
    """PID -> parent PID of every process that is not a zombie."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = stat_fields(int(entry))
            except (OSError, IndexError):
                continue
            if fields[0] not in ("Z", "X"):
                table[int(entry)] = int(fields[1])
    return table


def listed_pids(node_dir):
    """The PIDs in the pids file that still are the processes listed there.

    A line is "PID STARTTIME" (or a bare PID); the start time makes sure a PID recycled
    by an unrelated process since it was written is never signalled.
    """
    pids = set()
    for line in read(os.path.join(node_dir, "pids")).splitlines():
        parts = line.split()
        if not parts or not parts[0].isdigit():
            continue
        try:
            fields = stat_fields(int(parts[0]))
        except (OSError, IndexError):
            continue
        if fields[0] in ("Z", "X"):
            continue
        if len(parts) > 1 and fields[19] != parts[1]:
            continue
        pids.add(int(parts[0]))
    return pids


def ancestors():
    """This script, ipmi_sim and their ancestors: never killed, whatever the pids file says."""
    chain, pid = set(), os.getpid()
    while pid > 1:
        chain.add(pid)
        try:
            pid = int(stat_fields(pid)[1])
        except (OSError, IndexError, ValueError):
            break
    return chain | {1}


def power_loss(node_dir):
    """SIGKILL the listed processes and all their descendants, as a power cut would.

    Everything is frozen with SIGSTOP first, so nothing can fork or react (libvirtd's
    supervisor reaping, a daemon noticing its peer died) between the scan and the kill;
    the scan repeats until it finds nothing new. QEMU guests are children of libvirtd's
    supervisor (a child subreaper), so listing the supervisor takes them down too.
    """
    protected = ancestors()
    victims = set()
    for _ in range(10):
        table = process_table()
        children = {}
        for pid, parent in table.items():
            children.setdefault(parent, []).append(pid)
        found, todo = set(), list(listed_pids(node_dir) | victims)
        while todo:
            pid = todo.pop()
            if pid in found or pid in protected:
                continue
            found.add(pid)
            todo.extend(children.get(pid, ()))
        new = found - victims
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        victims |= new
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # The processes are gone: the list must not be used again after a later power on.
    write(os.path.join(node_dir, "pids"), "")
    write(os.path.join(node_dir, "power"), "0")
    return f"killed {sorted(victims)}"


def power_on(node_dir):
    write(os.path.join(node_dir, "power"), "1")
    hook = os.path.join(node_dir, "power-on")
    if not os.access(hook, os.X_OK):
        return "no power-on hook"
    with open(os.path.join(node_dir, "power-on.log"), "ab") as log:
        # A new session, no inherited descriptors and no wait: ipmi_sim reads our output
        # until EOF and blocks while we run, so the hook must hold nothing of ours.
        process = subprocess.Popen(
            [hook], cwd=node_dir, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    return f"power-on hook started (pid {process.pid})"


def act(node_dir, operation, parameter, value):
    # A missing state file means a new machine, which is on (as BmcSimulator.prepare writes).
    powered = read(os.path.join(node_dir, "power"), "1") == "1"
    if operation == "get" and parameter == "power":
        print(f"power:{1 if powered else 0}")
        return "reported " + ("on" if powered else "off")
    if operation == "get" and parameter == "boot":
        print(f"boot:{read(os.path.join(node_dir, 'boot'), 'none')}")
        return "reported boot device"
    if operation != "set":
        raise ValueError(f"unknown operation {operation!r}")
    if parameter == "power" and value == "1":
        return power_on(node_dir) if not powered else "already on"
    # A soft shutdown has no OS to ask here: it is a power off like any other.
    if (parameter, value) in (("power", "0"), ("shutdown", "1")):
        if os.path.exists(os.path.join(node_dir, "refuse-power-off")):
            return "power off refused (refuse-power-off), acknowledged anyway"
        # Idempotent: a retransmitted off finds an empty pids file and power already 0.
        result = power_loss(node_dir)
        if os.path.exists(os.path.join(node_dir, "power-off-error")):
            raise RuntimeError(f"{result}, but reporting an error (power-off-error)")
        return result
    if parameter == "reset" and value == "1":
        if os.path.exists(os.path.join(node_dir, "refuse-power-off")):
            return "reset refused (refuse-power-off), acknowledged anyway"
        return power_loss(node_dir) + "; " + power_on(node_dir)
    if parameter == "boot":
        write(os.path.join(node_dir, "boot"), value)
        return f"boot device {value}"
    raise ValueError(f"unsupported {operation} {parameter} {value!r}")


def main(argv):
    node_dir, operation, parameter = argv[1], argv[2], argv[3]
    value = argv[4] if len(argv) > 4 else ""
    status = 0
    try:
        result = act(node_dir, operation, parameter, value)
    except Exception as error:  # ipmi_sim turns a non-zero exit into an IPMI error
        result, status = f"error: {error}", 1
    elapsed = (time.monotonic() - START) * 1000
    line = f"{time.time():.3f} {operation} {parameter} {value}: {result} ({elapsed:.0f} ms)"
    with open(os.path.join(node_dir, "chassis.log"), "a") as log:
        log.write(line + "\n")
    return status


sys.exit(main(sys.argv))
'''


class BmcError(RuntimeError):
    """A simulated BMC could not be started, did not answer, or died."""


class BmcUnavailable(BmcError):
    """ipmi_sim or ipmitool is not installed on this machine."""


# --------------------------------------------------------------------------------------
# Small utilities

# UDP ports handed out by this process: the check below only proves a port is free *now*,
# and simulators made one after another would otherwise be given the same port before
# the first one binds it.
_HANDED_OUT: set[int] = set()


def find_free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 now and not handed out before by this process."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def udp_port_bound(port: int, host: str = LOOPBACK) -> bool:
    """True if some socket is bound to UDP ``host:port`` (from /proc/net/udp).

    Checked before the first ipmitool call: a datagram to a port nobody listens on makes
    ipmitool wait for its full retry time instead of failing at once.
    """
    # The kernel prints the address as the raw 32-bit value in host byte order.
    wanted = f"{int.from_bytes(socket.inet_aton(host), sys.byteorder):08X}:{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == wanted for line in lines if len(line.split()) > 1)


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None if gone or a zombie.

    Recorded next to each PID in the pids file, so a recycled PID is never killed.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def check_prerequisites() -> tuple[str, str]:
    """Return ``(ipmi_sim, ipmitool)`` executables or raise :class:`BmcUnavailable`."""
    ipmi_sim = shutil.which("ipmi_sim")
    ipmitool = shutil.which("ipmitool")
    missing = [name for name, path in (("ipmi_sim", ipmi_sim), ("ipmitool", ipmitool)) if not path]
    if ipmi_sim is None or ipmitool is None:
        raise BmcUnavailable(f"no {' or '.join(missing)} on PATH; {INSTALL_HINT}")
    return ipmi_sim, ipmitool


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _write_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """Replace ``path`` so the chassis script never reads a half-written file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    if mode is not None:
        temporary.chmod(mode)
    temporary.rename(path)


# --------------------------------------------------------------------------------------
# Cleanup of simulators left running when the interpreter exits

_RUNNING: set[BmcSimulator] = set()


def stop_all_bmcs() -> None:
    """Stop every simulator this process started with ``die_with_parent`` that still runs.

    (When atexit handlers do not run, e.g. on SIGKILL, the parent-death signal of each
    ipmi_sim still takes it down.)
    """
    for bmc in list(_RUNNING):
        with contextlib.suppress(Exception):
            bmc.stop(timeout=2.0)


atexit.register(stop_all_bmcs)


# --------------------------------------------------------------------------------------
# One simulated BMC


class BmcSimulator:
    """One ``ipmi_sim`` on ``127.0.0.1:<port>`` (UDP) controlling a simulated machine.

    The port and password are chosen at construction, so the address is known before
    start and a restarted BMC comes back on the same address with the same credentials.

    ``die_with_parent=True`` (tests) makes the kernel SIGKILL ipmi_sim when the thread that
    started it exits (``setpriv --pdeathsig``); an atexit handler stops it cleanly on a
    normal exit. ``die_with_parent=False`` (``make cluster``) starts it detached; a later
    process re-attaches with :meth:`attach` and can :meth:`stop` it.
    """

    def __init__(
        self,
        workdir: Path,
        name: str,
        *,
        port: int | None = None,
        password: str | None = None,
        die_with_parent: bool = True,
    ) -> None:
        if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"invalid BMC name {name!r}")
        if password is not None and not _SAFE_PASSWORD.match(password):
            raise ValueError("a BMC password must be 1-16 characters without quotes or blanks")
        self.workdir = Path(workdir).resolve()
        self.name = name
        if not _SAFE_PATH.match(str(self.bmc_dir)):
            raise ValueError(f"{self.bmc_dir} contains characters ipmi_sim cannot take")
        self._port = port if port is not None else find_free_udp_port()
        self._password = password if password is not None else secrets.token_hex(8)
        self.die_with_parent = die_with_parent
        #: PID of the most recently started ipmi_sim; kept after stop() so callers can
        #: check that it is gone.
        self._pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<BmcSimulator {self.name} {LOOPBACK}:{self._port} pid={self._pid}>"

    # -- identity

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        """The UDP port ipmi_sim listens on (RMCP; real BMCs use 623)."""
        return self._port

    @property
    def username(self) -> str:
        return USERNAME

    @property
    def password(self) -> str:
        return self._password

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def ipmihostname(self) -> str:
        """The value for a node's ``ipmihostname`` key: ``127.0.0.1:<port>``."""
        return f"{LOOPBACK}:{self._port}"

    def address(self) -> BmcAddress:
        """This BMC as the fencing code addresses it."""
        from pvc_noded.fencing import BmcAddress

        return BmcAddress(LOOPBACK, self._port, USERNAME, self._password)

    # -- paths

    @property
    def bmc_dir(self) -> Path:
        """``workdir/<name>``: everything of this BMC lives here."""
        return self.workdir / self.name

    @property
    def node_dir(self) -> Path:
        """The simulated machine's state (see the module docstring)."""
        return self.bmc_dir / "node"

    @property
    def state_dir(self) -> Path:
        return self.bmc_dir / "state"

    @property
    def config_path(self) -> Path:
        return self.bmc_dir / "lan.conf"

    @property
    def emu_path(self) -> Path:
        return self.bmc_dir / "bmc.emu"

    @property
    def script_path(self) -> Path:
        return self.bmc_dir / "chassis_control"

    @property
    def log_path(self) -> Path:
        """ipmi_sim's stdout and stderr, appended across restarts."""
        return self.bmc_dir / "ipmi_sim.log"

    @property
    def chassis_log_path(self) -> Path:
        """One line per chassis_control run (what it did, how long it took)."""
        return self.node_dir / "chassis.log"

    @property
    def record_path(self) -> Path:
        return self.bmc_dir / "bmc.json"

    # -- configuration

    def render_lan_conf(self) -> str:
        """ipmi_sim's lan.conf: one LAN channel on loopback and one administrator."""
        auths = "none md2 md5 straight"
        return "\n".join(
            [
                f'name "{self.name}"',
                "set_working_mc 0x20",
                "startlan 1",
                f"  addr {LOOPBACK} {self._port}",
                "  priv_limit admin",
                f"  allowed_auths_callback {auths}",
                f"  allowed_auths_user {auths}",
                f"  allowed_auths_operator {auths}",
                f"  allowed_auths_admin {auths}",
                # A fixed GUID per BMC name keeps restarts identical.
                f"  guid {uuid.uuid5(uuid.NAMESPACE_URL, f'pvc-bmc/{self.name}').hex}",
                "endlan",
                f'chassis_control "{self.script_path} {self.node_dir}"',
                f'user 2 true "{USERNAME}" "{self._password}" admin 10 {auths}',
                "",
            ]
        )

    @staticmethod
    def render_emu() -> str:
        """The emulated BMC itself: one management controller at IPMB address 0x20."""
        return "\n".join(
            [
                "mc_setbmc 0x20",
                "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr",
                "sel_enable 0x20 1000 0x0a",
                "mc_enable 0x20",
                "",
            ]
        )

    def prepare(self) -> None:
        """Write the configuration, the power model and (once) the machine's state.

        A new machine starts powered on with nothing listed to kill. Called by
        :meth:`start`; the power helpers call it too, so they work before start.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_lan_conf())
        self.emu_path.write_text(self.render_emu())
        # -IS: isolated mode without site-packages; starts in ~10 ms (see the docstring).
        _write_atomically(
            self.script_path, f"#!{sys.executable} -IS\n{CHASSIS_CONTROL_SCRIPT}", 0o755
        )
        self.prepare_node_dir()

    def command(self) -> list[str]:
        """The command line :meth:`start` runs (raises if ipmi_sim is missing)."""
        ipmi_sim, _ = check_prerequisites()
        command = [
            ipmi_sim,
            "-c",
            str(self.config_path),
            "-f",
            str(self.emu_path),
            "-s",
            str(self.state_dir),
            "-n",
        ]
        setpriv = shutil.which("setpriv")
        if self.die_with_parent and setpriv is not None:
            # setpriv execs ipmi_sim, so the recorded PID is ipmi_sim's own.
            command = [setpriv, "--pdeathsig", "KILL", "--", *command]
        return command

    # -- lifecycle

    def start(self) -> None:
        """Write the files and launch ipmi_sim; does not wait for it (see wait_ready)."""
        if self.is_alive():
            raise BmcError(f"{self!r} is already running")
        command = self.command()
        self.prepare()
        with self.log_path.open("ab") as log:
            log.write(f"==== harness: starting {shlex.join(command)}\n".encode())
            log.flush()
            # A new session keeps terminal signals (Ctrl-C) away from the simulator.
            self._process = subprocess.Popen(
                command,
                cwd=self.bmc_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pid = self._process.pid
        self._write_record()
        if self.die_with_parent:
            _RUNNING.add(self)

    def wait_ready(self, timeout: float = 10.0) -> float:
        """Wait until the BMC answers ``chassis power status``; return the seconds waited.

        Raises :class:`BmcError` with the log tail if ipmi_sim dies or does not answer.
        """
        started = time.monotonic()
        deadline = started + timeout
        last = "port not bound yet"
        while True:
            if not self.is_alive():
                raise self._failure("exited before it answered")
            if udp_port_bound(self._port):
                result = self.ipmitool("chassis", "power", "status", timeout=5.0)
                if result.returncode == 0 and "Chassis Power is" in result.stdout:
                    return time.monotonic() - started
                last = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
            if time.monotonic() >= deadline:
                raise self._failure(f"did not answer within {timeout:.1f} s ({last})")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop ipmi_sim (SIGTERM, SIGKILL after ``timeout``) and reap it.

        Works for simulators re-attached with :meth:`attach` too; safe to call twice.
        The simulated machine's state (power, pids) is left as it is.
        """
        pid = self._live_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                # A paused simulator only acts on SIGTERM once it is continued.
                os.kill(pid, signal.SIGCONT)
            if not self._wait_gone(pid, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_gone(pid, 5.0)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=1.0)
            self._process = None
        _RUNNING.discard(self)

    def pause(self) -> None:
        """Freeze ipmi_sim (SIGSTOP): the BMC stops answering while its machine runs on."""
        os.kill(self._require_pid(), signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused simulator (SIGCONT)."""
        os.kill(self._require_pid(), signal.SIGCONT)

    def is_alive(self) -> bool:
        """True if ipmi_sim runs (a zombie or a stopped-and-reaped process does not)."""
        return self._live_pid() is not None

    def _live_pid(self) -> int | None:
        """ipmi_sim's PID if it runs and still is our simulator.

        Our own unreaped child cannot have been replaced. A PID from a record (attach) is
        checked against its command line, which must name our lan.conf; not for our own
        child, whose command line reads empty for a moment while setpriv execs ipmi_sim.
        """
        pid = self._pid
        if pid is None or not pid_is_running(pid):
            return None
        if self._process is not None:
            return pid if self._process.poll() is None else None
        return pid if str(self.config_path) in _cmdline(pid) else None

    def _require_pid(self) -> int:
        pid = self._live_pid()
        if pid is None:
            raise BmcError(f"{self!r} is not running")
        return pid

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        # Reap our own child as soon as it exits; for attached ones a zombie counts as gone.
        def gone() -> bool:
            if self._process is not None:
                self._process.poll()
            return not pid_is_running(pid)

        try:
            wait_until(gone, timeout, f"ipmi_sim {pid} still running", interval=0.02)
        except TimeoutError:
            return False
        return True

    def _write_record(self) -> None:
        record = {
            "name": self.name,
            "pid": self._pid,
            "port": self._port,
            "username": USERNAME,
            "password": self._password,
            "die_with_parent": self.die_with_parent,
        }
        _write_atomically(self.record_path, json.dumps(record, indent=2) + "\n")

    @classmethod
    def attach(cls, workdir: Path, name: str) -> BmcSimulator:
        """The simulator of ``workdir/<name>`` as recorded by whichever process started it."""
        path = Path(workdir).resolve() / name / "bmc.json"
        try:
            record: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BmcError(f"no usable BMC record {path}: {exc}") from exc
        bmc = cls(
            Path(workdir),
            name,
            port=int(record["port"]),
            password=str(record["password"]),
            die_with_parent=bool(record.get("die_with_parent", False)),
        )
        pid = record.get("pid")
        bmc._pid = int(pid) if pid is not None else None
        return bmc

    # -- the simulated machine

    def set_power_pids(self, pids: Iterable[int]) -> None:
        """List the processes that run on this machine; power off SIGKILLs them.

        Their descendants die with them (found at power-off time), so a libvirtd
        supervisor's PID stands for libvirtd and every QEMU guest it runs. Each PID is
        stored with its start time: a PID reused later by another process is never hit.
        Raises :class:`BmcError` for a PID that is not running now.
        """
        lines = []
        for pid in pids:
            start = process_start_time(int(pid))
            if start is None:
                raise BmcError(f"pid {pid} is not running; cannot put it on {self.name}")
            lines.append(f"{int(pid)} {start}\n")
        self.prepare_node_dir()
        _write_atomically(self.node_dir / "pids", "".join(lines))

    def power_pids(self) -> list[int]:
        """The PIDs currently listed (the list is emptied by each power off)."""
        try:
            text = (self.node_dir / "pids").read_text()
        except OSError:
            return []
        return [int(line.split()[0]) for line in text.splitlines() if line.split()]

    def set_power_on_hook(self, command: Iterable[str]) -> None:
        """Run ``command`` (detached, output to ``node/power-on.log``) at each power on."""
        argv = [str(part) for part in command]
        if not argv:
            raise ValueError("the power-on hook needs a command")
        self.prepare_node_dir()
        script = f"#!/bin/sh\nexec {shlex.join(argv)}\n"
        _write_atomically(self.node_dir / "power-on", script, 0o755)

    def clear_power_on_hook(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.node_dir / "power-on").unlink()

    def refuse_power_off(self, refuse: bool = True) -> None:
        """Make the BMC acknowledge ``power off`` without acting on it (a broken BMC)."""
        self._set_flag("refuse-power-off", refuse)

    def report_power_off_error(self, report: bool = True) -> None:
        """Make the BMC power off but answer ``power off`` with an error anyway."""
        self._set_flag("power-off-error", report)

    def _set_flag(self, name: str, present: bool) -> None:
        self.prepare_node_dir()
        flag = self.node_dir / name
        if present:
            flag.touch()
        else:
            with contextlib.suppress(FileNotFoundError):
                flag.unlink()

    def power_is_on(self) -> bool:
        """The machine's power state as the BMC reports it (read from the state file)."""
        try:
            return (self.node_dir / "power").read_text().strip() == "1"
        except FileNotFoundError:
            return True  # prepare() writes "1": a new machine is on

    def set_power_state(self, on: bool) -> None:
        """Set the reported power state without killing or starting anything."""
        self.prepare_node_dir()
        _write_atomically(self.node_dir / "power", "1" if on else "0")

    def chassis_log(self) -> list[str]:
        """The chassis_control runs so far, one line each."""
        try:
            return self.chassis_log_path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def prepare_node_dir(self) -> None:
        """Create the machine's directory with its initial state if it does not exist."""
        self.node_dir.mkdir(parents=True, exist_ok=True)
        if not (self.node_dir / "power").exists():
            _write_atomically(self.node_dir / "power", "1")

    # -- talking to the BMC

    def ipmitool_command(self, *args: str) -> list[str]:
        """``ipmitool`` argv for this BMC; the password comes from IPMI_PASSWORD (-E)."""
        _, ipmitool = check_prerequisites()
        return [
            ipmitool,
            *IPMITOOL_OPTIONS,
            "-H",
            LOOPBACK,
            "-p",
            str(self._port),
            "-U",
            USERNAME,
            "-E",
            *args,
        ]

    def ipmitool(
        self, *args: str, password: str | None = None, timeout: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ipmitool against this BMC (text output; a timeout raises TimeoutExpired)."""
        env = {**os.environ, "IPMI_PASSWORD": self._password if password is None else password}
        return subprocess.run(
            self.ipmitool_command(*args),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # -- context manager

    def __enter__(self) -> BmcSimulator:
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

    def _failure(self, what: str) -> BmcError:
        return BmcError(
            f"ipmi_sim {self.name} (pid {self._pid}, port {self._port}) {what}\n"
            f"--- tail of {self.log_path}:\n{log_tail(self.log_path)}"
        )


# --------------------------------------------------------------------------------------
# Developer entry point


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.harness.bmc {start,stop,status} --workdir DIR --name NAME``.

    ``start`` launches a detached simulator (it outlives this command) and prints its
    record; ``stop`` stops it from any later process; ``status`` prints its power state.
    """
    parser = argparse.ArgumentParser(description="Run a simulated BMC (ipmi_sim) on loopback.")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            bmc = BmcSimulator(args.workdir, args.name, die_with_parent=False)
            bmc.start()
            bmc.wait_ready()
            print(bmc.record_path.read_text(), end="")
        elif args.action == "stop":
            BmcSimulator.attach(args.workdir, args.name).stop()
        else:
            bmc = BmcSimulator.attach(args.workdir, args.name)
            alive = bmc.is_alive()
            power = "on" if bmc.power_is_on() else "off"
            state = "running" if alive else "stopped"
            print(f"{bmc.name}: {state} pid={bmc.pid} {bmc.ipmihostname} power={power}")
            return 0 if alive else 3
    except BmcError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
