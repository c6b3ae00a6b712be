"""Run a real single-host Ceph cluster (one mon, one memstore OSD) on loopback for tests.

The daemons come from Debian's ``ceph-mon`` and ``ceph-osd`` packages, the ``ceph`` and
``rbd`` command-line tools from ``ceph-common``. Nothing is started as a system service
and nothing is written outside ``workdir``:

``ceph.conf``
    fsid, the mon's v2/v1 addresses on free 127.0.0.1 ports, cephx, size-1 pools, fast
    paxos settings, and every path (logs, run dir, admin sockets, keyrings, data).
``client.admin.keyring``
    The admin key used by the ``ceph``/``rbd`` tools (:attr:`CephCluster.admin_keyring`).
``mon/`` ``osd/``
    The mon's keyring, monmap and store; the OSD's keyring and (tiny, in-memory) store.
``log/``
    Daemon logs, cluster logs and the daemons' stdout/stderr (``*.out``).
``run/``
    Admin sockets.

The OSD uses ``memstore``: its data lives in the OSD's memory, so the cluster starts in
about a second but loses its images when the OSD restarts. That is fine for what it is
for: RBD locks, watchers and blocklists, which live in the mon and the OSD.

No mgr runs: RBD locks and blocklists do not need one. (Without a mgr, ``ceph -s`` shows no
pools; ``mon mgr mkfs grace`` is raised so the health does not turn ``MGR_DOWN`` after two
minutes.)

Processes are tracked by PID, never by name: :meth:`CephCluster.stop` signals the PIDs it
recorded at start (the OSD before the mon, so the OSD can still report its shutdown) and
reaps them. Other Ceph daemons on the machine are left alone.

This module must not import pytest: it is shared by fixtures and scripts, e.g.
``python -m tests.harness.ceph --workdir DIR`` runs a cluster until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from tests.harness.zookeeper import (
    LOOPBACK,
    find_free_ports,
    log_tail,
    pid_is_running,
    port_accepts_connections,
    wait_until,
)

#: Executables a cluster needs, with the Debian package providing each.
REQUIRED_TOOLS = {
    "ceph-mon": "ceph-mon",
    "ceph-osd": "ceph-osd",
    "ceph": "ceph-common",
    "rbd": "ceph-common",
    "ceph-authtool": "ceph-common",
    "monmaptool": "ceph-common",
}

INSTALL_HINT = "install ceph-mon, ceph-osd and ceph-common (make system-deps does it)"

#: The pool the cluster creates for RBD images (rbd's default pool name).
POOL = "rbd"

#: Timeout of one ``ceph``/``rbd`` CLI call made by the harness. Generous because a CLI
#: call on a loaded 2-core machine can take a while, yet bounded so a wedged cluster
#: fails a test instead of hanging it.
CLI_TIMEOUT = 60.0


class CephError(RuntimeError):
    """A Ceph daemon could not be set up or started, or a harness CLI call failed."""


class CephUnavailable(CephError):
    """The Ceph daemons or tools are not installed on this machine."""


def check_prerequisites() -> dict[str, str]:
    """Return ``{tool: absolute path}`` or raise :class:`CephUnavailable`.

    Checked before anything is written, so a missing package gives one clear message.
    """
    found: dict[str, str] = {}
    missing: list[str] = []
    for tool, package in REQUIRED_TOOLS.items():
        path = shutil.which(tool)
        if path is None:
            missing.append(f"{tool} (package {package})")
        else:
            found[tool] = path
    if missing:
        raise CephUnavailable(f"missing {', '.join(missing)}; {INSTALL_HINT}")
    return found


def parse_blocklist(output: str) -> list[str]:
    """The blocklisted addresses in ``ceph osd blocklist ls --format json`` output.

    That command prints two JSON arrays back to back (single addresses, then address
    ranges), which ``json.loads`` rejects; decode them one after the other. Each entry
    is ``{"addr": "127.0.0.1:0/NONCE", "until": "..."}``; ranges are returned as well.
    """
    decoder = json.JSONDecoder()
    addresses: list[str] = []
    position = 0
    text = output.strip()
    while position < len(text):
        value, end = decoder.raw_decode(text, position)
        for entry in value:
            addresses.append(str(entry["addr"]))
        position = end
        while position < len(text) and text[position].isspace():
            position += 1
    return addresses


# --------------------------------------------------------------------------------------
# Cleanup of clusters left running when the interpreter exits

_RUNNING: set[CephCluster] = set()


def stop_all_clusters() -> None:
    """Stop every cluster started by this process that is still running (atexit)."""
    for cluster in list(_RUNNING):
        with contextlib.suppress(Exception):
            cluster.stop(timeout=2.0)


atexit.register(stop_all_clusters)


class _Daemon:
    """One Ceph daemon process run in the foreground (``-f``), tracked by its PID."""

    def __init__(self, name: str, command: list[str], cwd: Path, out_path: Path) -> None:
        self.name = name
        self.command = command
        self.cwd = cwd
        self.out_path = out_path
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.out_path.open("ab") as out:
            out.write(f"==== harness: starting {' '.join(self.command)}\n".encode())
            out.flush()
            # A new session keeps terminal signals (Ctrl-C) away from the daemon: the
            # harness stops the daemons itself, in order.
            self._process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self._process.pid

    def is_alive(self) -> bool:
        if self._process is None or self._process.poll() is not None or self.pid is None:
            return False
        return pid_is_running(self.pid)

    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, SIGKILL after ``timeout``, and reap; None if it was not started."""
        process = self._process
        if process is None:
            return None
        # send_signal() is a no-op once the child has been reaped, so a recycled PID is
        # never signalled by mistake.
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGCONT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._process = None
        return process.returncode


class CephCluster:
    """One ceph-mon and one memstore ceph-osd on 127.0.0.1, all files under ``workdir``.

    ``with CephCluster(path) as ceph:`` starts it, waits until pool ``rbd`` is usable and
    stops it afterwards. :attr:`env` and :attr:`cli_args` point ``ceph``/``rbd`` (or
    :class:`pvc_common.storage.RbdLocks`) at this cluster as ``client.admin``.

    ``die_with_parent`` makes the kernel SIGKILL the daemons when the thread that started
    them exits (``setpriv --pdeathsig``), so even a SIGKILLed test run leaves no daemon
    behind. Scripts starting a cluster from a short-lived thread must pass False.
    """

    def __init__(self, workdir: Path, *, die_with_parent: bool = True) -> None:
        self.workdir = Path(workdir)
        self.die_with_parent = die_with_parent
        # Chosen now so the configuration is known before start().
        self.mon_ports = tuple(find_free_ports(2))
        self.fsid = str(uuid.uuid4())
        self.osd_uuid = str(uuid.uuid4())
        #: Seconds the last start() + wait_ready() took (None before the first one).
        self.start_seconds: float | None = None
        self._started_at: float | None = None
        self._mon: _Daemon | None = None
        self._osd: _Daemon | None = None
        self._pool_ready = False

    def __repr__(self) -> str:
        return f"<CephCluster {self.mon_host} in {self.workdir}>"

    # -- paths and configuration

    @property
    def conf_path(self) -> Path:
        return self.workdir / "ceph.conf"

    @property
    def admin_keyring(self) -> Path:
        return self.workdir / "client.admin.keyring"

    @property
    def mon_dir(self) -> Path:
        return self.workdir / "mon"

    @property
    def osd_dir(self) -> Path:
        return self.workdir / "osd"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    @property
    def run_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def mon_host(self) -> str:
        """The ``mon host`` value: msgr2 and legacy msgr1 address of the one mon."""
        v2, v1 = self.mon_ports
        return f"[v2:{LOOPBACK}:{v2},v1:{LOOPBACK}:{v1}]"

    @property
    def env(self) -> dict[str, str]:
        """Environment for ``ceph``/``rbd`` child processes: this process's plus CEPH_CONF.

        CEPH_CONF makes the tools read this cluster's ceph.conf (and, through it, the
        admin keyring) instead of /etc/ceph/ceph.conf.
        """
        return {**os.environ, "CEPH_CONF": str(self.conf_path)}

    @property
    def cli_args(self) -> list[str]:
        """Arguments that point ``ceph``/``rbd`` at this cluster without the environment."""
        return ["--conf", str(self.conf_path)]

    def render_config(self) -> str:
        """The ceph.conf text for this cluster."""
        d = self.workdir
        return f"""\
[global]
fsid = {self.fsid}
mon host = {self.mon_host}
public addr = {LOOPBACK}
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
# One OSD: pools of size 1, and CRUSH places replicas per OSD instead of per host.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
# Everything below workdir, nothing in /var/log/ceph, /var/run/ceph or /etc/ceph.
run dir = {d}/run
log file = {d}/log/$name.log
mon cluster log file = default={d}/log/$channel.log cluster={d}/log/cluster.log
ms bind ipv6 = false
# A nearly full /tmp must not make the mon shut itself down mid-test.
mon data avail warn = 2
mon data avail crit = 1

[mon]
mon data = {d}/mon/$name
keyring = {d}/mon/keyring
admin socket = {d}/run/$name.asok
# A single mon commits proposals at once instead of batching them for a second; this is
# what makes the cluster come up in about 1 s instead of about 7 s.
paxos propose interval = 0.05
paxos min wait = 0.01
# No mgr runs (RBD locks do not need one): without this the health turns MGR_DOWN after
# two minutes. (`ceph health mute` cannot be used up front: it refuses unraised alerts.)
mon mgr mkfs grace = 31536000

[osd]
osd data = {d}/osd/$name
keyring = {d}/osd/$name/keyring
admin socket = {d}/run/$name.asok
osd objectstore = memstore
memstore device bytes = 536870912

[client]
keyring = {d}/client.admin.keyring
# Clients are many short-lived processes: one socket and log per PID.
admin socket = {d}/run/$name.$pid.asok
log file = {d}/log/$name.$pid.log
"""

    # -- running tools

    def _run(
        self, command: list[str], timeout: float = CLI_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                command,
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CephError(f"{' '.join(command)} timed out after {timeout:.0f} s") from None
        if check and result.returncode != 0:
            raise CephError(
                f"{' '.join(command)} exited {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def ceph(
        self, *args: str, timeout: float = CLI_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ceph ARGS`` against this cluster as client.admin."""
        return self._run(["ceph", *self.cli_args, *args], timeout=timeout, check=check)

    def rbd(
        self, *args: str, timeout: float = CLI_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rbd ARGS`` against this cluster as client.admin (text output)."""
        return self._run(["rbd", *self.cli_args, *args], timeout=timeout, check=check)

    def create_image(self, name: str, size_mb: int = 16) -> str:
        """Create image ``name`` in pool ``rbd`` and return its ``rbd/name`` spec.

        Images get rbd's default features, exclusive-lock included, like the volumes
        a VM would use.
        """
        spec = f"{POOL}/{name}"
        self.rbd("create", "--size", f"{size_mb}M", spec)
        return spec

    def blocklist(self) -> list[str]:
        """The addresses (and ranges) currently in the OSD blocklist."""
        return parse_blocklist(self.ceph("osd", "blocklist", "ls", "--format", "json").stdout)

    # -- lifecycle

    def _daemon_command(self, *args: str) -> list[str]:
        command = list(args)
        setpriv = shutil.which("setpriv")
        if self.die_with_parent and setpriv is not None:
            # setpriv execs the daemon, so the recorded PID is the daemon's own.
            command = [setpriv, "--pdeathsig", "KILL", "--", *command]
        return command

    def start(self) -> None:
        """Create the cluster from scratch and launch the mon and the OSD.

        The mon must serve before the OSD can be registered, so this waits for the mon;
        it does not wait for the OSD to come up (:meth:`wait_ready` does). Any existing
        files of an earlier run in ``workdir`` are replaced: memstore kept no data anyway.
        """
        if self._mon is not None:
            raise CephError(f"{self!r} is already running")
        tools = check_prerequisites()
        self._started_at = time.monotonic()
        self._pool_ready = False
        for sub in ("mon", "osd", "log", "run"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
            (self.workdir / sub).mkdir(parents=True)
        self.conf_path.write_text(self.render_config())
        conf = ["--conf", str(self.conf_path)]
        if self.die_with_parent:
            _RUNNING.add(self)
        try:
            self._create_mon(tools, conf)
            self._create_osd(tools, conf)
        except BaseException:
            self.stop()
            raise

    def _create_mon(self, tools: dict[str, str], conf: list[str]) -> None:
        mon_keyring = self.mon_dir / "keyring"
        monmap = self.mon_dir / "monmap"
        authtool = tools["ceph-authtool"]
        self._run([authtool, "--create-keyring", str(mon_keyring), "--gen-key", "-n", "mon.",
                   "--cap", "mon", "allow *"])  # fmt: skip
        self._run([authtool, "--create-keyring", str(self.admin_keyring), "--gen-key",
                   "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *",
                   "--cap", "mgr", "allow *", "--cap", "mds", "allow *"])  # fmt: skip
        # The mon's initial auth database is its keyring: import the admin key into it.
        self._run([authtool, str(mon_keyring), "--import-keyring", str(self.admin_keyring)])
        self._run([tools["monmaptool"], *conf, "--create", "--addv", "a", self.mon_host,
                   "--fsid", self.fsid, str(monmap)])  # fmt: skip
        self._run([tools["ceph-mon"], *conf, "--mkfs", "-i", "a", "--monmap", str(monmap),
                   "--keyring", str(mon_keyring)])  # fmt: skip
        self._mon = _Daemon(
            "mon.a",
            self._daemon_command(tools["ceph-mon"], *conf, "-i", "a", "-f"),
            self.workdir,
            self.log_dir / "mon.a.out",
        )
        self._mon.start()

        def mon_listens() -> bool:
            if not self._mon or not self._mon.is_alive():
                raise CephError(self._died("mon.a", self._mon))
            return port_accepts_connections(self.mon_ports[0], timeout=0.2)

        wait_until(mon_listens, 30.0, f"{self!r}: mon.a does not listen", interval=0.02)

    def _create_osd(self, tools: dict[str, str], conf: list[str]) -> None:
        # `osd new` registers the OSD (id 0) in the osdmap; the mon hands out its key.
        osd_id = self.ceph("osd", "new", self.osd_uuid).stdout.strip()
        if osd_id != "0":
            raise CephError(f"expected osd id 0, the mon assigned {osd_id!r}")
        data = self.osd_dir / "osd.0"
        data.mkdir(parents=True)
        self.ceph("auth", "get-or-create", "osd.0", "mon", "allow profile osd",
                  "osd", "allow *", "mgr", "allow profile osd",
                  "-o", str(data / "keyring"))  # fmt: skip
        self._run([tools["ceph-osd"], *conf, "-i", "0", "--mkfs", "--osd-uuid", self.osd_uuid])
        self._osd = _Daemon(
            "osd.0",
            self._daemon_command(tools["ceph-osd"], *conf, "-i", "0", "-f"),
            self.workdir,
            self.log_dir / "osd.0.out",
        )
        self._osd.start()

    def _died(self, name: str, daemon: _Daemon | None) -> str:
        code = daemon.exit_code() if daemon else None
        log = self.log_dir / f"{name}.log"
        out = self.log_dir / f"{name}.out"
        return (
            f"{self!r}: {name} exited with code {code}; tail of {out}:\n{log_tail(out)}\n"
            f"tail of {log}:\n{log_tail(log)}"
        )

    def osd_up(self) -> bool:
        """True if the osdmap reports osd.0 up."""
        result = self.ceph("osd", "dump", "--format", "json", check=False, timeout=10.0)
        if result.returncode != 0:
            return False
        osds = json.loads(result.stdout).get("osds", [])
        return any(osd.get("osd") == 0 and osd.get("up") == 1 for osd in osds)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until osd.0 is up, then (once) create pool ``rbd`` and initialise it."""
        if self._mon is None or self._osd is None:
            raise CephError(f"{self!r} was not started")

        def up() -> bool:
            for name, daemon in (("mon.a", self._mon), ("osd.0", self._osd)):
                if daemon is None or not daemon.is_alive():
                    raise CephError(self._died(name, daemon))
            return self.osd_up()

        wait_until(up, timeout, f"{self!r}: osd.0 not up", interval=0.05)
        if not self._pool_ready:
            self.ceph("osd", "pool", "create", POOL, "8", "8")
            # Writes the pool's rbd metadata object: returns once the PGs are active.
            self.rbd("pool", "init", POOL, timeout=timeout)
            self._pool_ready = True
        if self._started_at is not None:
            self.start_seconds = time.monotonic() - self._started_at
            self._started_at = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the OSD, then the mon (SIGTERM, SIGKILL after ``timeout``); idempotent.

        The OSD goes first: stopped after the mon, it would wait for a mon to report
        its shutdown to.
        """
        try:
            if self._osd is not None:
                self._osd.stop(timeout)
            if self._mon is not None:
                self._mon.stop(timeout)
        finally:
            self._osd = None
            self._mon = None
            _RUNNING.discard(self)

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the running daemons by name (``mon.a``, ``osd.0``)."""
        return {
            daemon.name: daemon.pid
            for daemon in (self._mon, self._osd)
            if daemon is not None and daemon.pid is not None and daemon.is_alive()
        }

    def __enter__(self) -> CephCluster:
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


# --------------------------------------------------------------------------------------
# Developer entry point: run a cluster in the foreground until Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.harness.ceph [--workdir DIR]``."""
    parser = argparse.ArgumentParser(description="Run a throwaway one-OSD Ceph on loopback.")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pvc-ceph-"))

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        with CephCluster(workdir) as cluster:
            print(
                f"Ceph ready in {cluster.start_seconds:.1f} s; "
                f"CEPH_CONF={cluster.conf_path} rbd ls; Ctrl-C stops it"
            )
            sys.stdout.flush()
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except CephError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
