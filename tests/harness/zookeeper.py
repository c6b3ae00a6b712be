"""Run real Apache ZooKeeper servers on loopback for tests and developer scripts.

The servers come from Debian's ``zookeeper`` package (jars in /usr/share/java) and are
launched directly with ``java`` and a zoo.cfg written by this module, never as a system
service, so every test run owns its processes and data directories completely.

Processes are tracked by PID: they are stopped by signalling the PID recorded at start
and always reaped, so nothing here ever kills by process name (other ZooKeeper servers
on the machine are left alone).

This module must not import pytest: it is shared by ``tests/conftest.py`` and by plain
scripts, e.g. ``python -m tests.harness.zookeeper --members 3`` from the repository root.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

from kazoo.client import KazooClient

T = TypeVar("T")

#: Where Debian's zookeeper package (and its dependencies) install their jars.
JAVA_DIR = Path("/usr/share/java")

#: Jars that must be on the classpath. zookeeper.jar's manifest pulls in most of its
#: dependencies, but not netty-codec, without which the server fails at startup.
REQUIRED_JARS = ("zookeeper.jar", "netty-codec.jar", "slf4j-log4j12.jar", "log4j-1.2.jar")

#: log4j 1.2 configuration shipped by the package; it defines the CONSOLE appender.
LOG4J_CONFIG = Path("/etc/zookeeper/conf_example/log4j.properties")

#: QuorumPeerMain runs standalone when zoo.cfg has no server.N lines, so one entry point
#: serves both the single server and the ensemble members.
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

INSTALL_HINT = "install Debian's zookeeper package: make test does it"

LOOPBACK = "127.0.0.1"


class ZooKeeperError(RuntimeError):
    """A ZooKeeper server could not be started, did not serve, or died."""


class ZooKeeperUnavailable(ZooKeeperError):
    """Java or the ZooKeeper jars are not installed on this machine."""


# --------------------------------------------------------------------------------------
# Small utilities


def check_prerequisites(java_dir: Path = JAVA_DIR) -> tuple[str, str]:
    """Return ``(java executable, classpath)`` or raise :class:`ZooKeeperUnavailable`.

    Checked before anything is launched so a missing package gives one clear message
    instead of a Java stack trace buried in a server log.
    """
    java = shutil.which("java")
    if java is None:
        raise ZooKeeperUnavailable(f"no 'java' executable on PATH; {INSTALL_HINT}")
    jars = [java_dir / name for name in REQUIRED_JARS]
    missing = [str(jar) for jar in jars if not jar.is_file()]
    if missing:
        raise ZooKeeperUnavailable(f"missing ZooKeeper jars {', '.join(missing)}; {INSTALL_HINT}")
    return java, os.pathsep.join(str(jar) for jar in jars)


def find_free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are currently free on 127.0.0.1.

    All sockets stay bound until every port has been chosen, so the kernel cannot hand
    out the same port twice. (Another process may still grab a port before the server
    binds it; that race is inherent and rare enough for tests.)
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def find_free_port() -> int:
    """Return one TCP port that is currently free on 127.0.0.1."""
    return find_free_ports(1)[0]


def four_letter_word(port: int, command: str, host: str = LOOPBACK, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command (``srvr``, ``ruok``, ...) and return the reply.

    Raises :class:`OSError` (including ``TimeoutError``) when the server does not answer;
    a paused server accepts the connection (the kernel does) but never replies.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(command.encode("ascii"))
        chunks: list[bytes] = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def port_accepts_connections(port: int, host: str = LOOPBACK, timeout: float = 1.0) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_is_running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie.

    ``kill -0`` succeeds on zombies (exited but not yet reaped), so read the state
    field of /proc/PID/stat instead. The command name in that file is in parentheses
    and may itself contain spaces or parentheses, hence the split on the last ')'.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone (FileNotFoundError) or vanishing while read (ESRCH)
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def wait_until(
    predicate: Callable[[], T | None | Literal[False]],
    timeout: float,
    message: str,
    interval: float = 0.1,
) -> T:
    """Poll ``predicate`` until it returns neither None nor False, and return that value.

    A predicate may thus return 0 (e.g. a member index) as its result. Raises
    ``TimeoutError(message)`` after ``timeout`` seconds. Tests use this instead of bare
    sleeps so they are as fast as the system allows and fail with a reason.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} (waited {timeout:.1f} s)")
        time.sleep(interval)


def log_tail(path: Path, lines: int = 40) -> str:
    """Last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------
# Cleanup of servers left running when the interpreter exits

_RUNNING: set[ZooKeeperServer] = set()


def stop_all_servers() -> None:
    """Stop every server started by this process that is still running.

    Registered with :mod:`atexit` so an aborted test run or a crashed script does not
    leave JVMs behind. (Servers are also started with a parent-death signal, which
    covers the cases where atexit handlers never run, such as SIGKILL or os._exit.)
    """
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop(timeout=2.0)


atexit.register(stop_all_servers)


# --------------------------------------------------------------------------------------
# One server


class _ServingContext:
    """``with`` support: start and wait until serving on entry, stop on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def wait_serving(self, timeout: float = 30.0) -> object:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> object:
        raise NotImplementedError

    def __enter__(self: _Self) -> _Self:
        self.start()
        try:
            self.wait_serving()
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


_Self = TypeVar("_Self", bound=_ServingContext)


class ZooKeeperServer(_ServingContext):
    """One ZooKeeper server process (standalone, or a member of an ensemble).

    Files live in ``workdir``: ``zoo.cfg``, ``data/`` (with ``myid`` for ensemble
    members) and ``zookeeper.log`` (the server's stdout and stderr, appended across
    restarts so earlier runs stay visible).

    ``peers`` lists every ensemble member as ``(myid, peer_port, election_port)``,
    including this one; ``myid`` names this server among them. Without ``peers`` the
    server runs standalone.

    ``die_with_parent`` makes the kernel SIGKILL the server when the thread that started
    it exits (via ``setpriv --pdeathsig``), so even a SIGKILLed test run leaves no JVM
    behind. Scripts that start servers from a short-lived thread must pass False.
    """

    def __init__(
        self,
        workdir: Path,
        client_port: int | None = None,
        *,
        myid: int | None = None,
        peers: list[tuple[int, int, int]] | None = None,
        extra_config: dict[str, str] | None = None,
        java_dir: Path = JAVA_DIR,
        die_with_parent: bool = True,
    ) -> None:
        if peers is not None and myid not in {peer[0] for peer in peers}:
            raise ValueError(f"myid {myid!r} is not one of the peers {peers!r}")
        if peers is None and myid is not None:
            raise ValueError("myid only makes sense together with peers")
        self.workdir = Path(workdir)
        # The port is chosen now, not at start(), so hosts is known up front and a
        # restarted server comes back on the same address.
        self.client_port = client_port if client_port is not None else find_free_port()
        self.myid = myid
        self.peers = list(peers) if peers is not None else None
        self.extra_config = dict(extra_config or {})
        self.java_dir = Path(java_dir)
        self.die_with_parent = die_with_parent
        #: PID of the most recently started process; kept after stop() so callers can
        #: check that it is gone.
        self.pid: int | None = None
        self.returncode: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        role = f"myid={self.myid}" if self.myid is not None else "standalone"
        return f"<ZooKeeperServer {self.hosts} {role} pid={self.pid}>"

    # -- paths and configuration

    @property
    def hosts(self) -> str:
        """Connect string for this server alone, e.g. ``127.0.0.1:2181``."""
        return f"{LOOPBACK}:{self.client_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "zoo.cfg"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "zookeeper.log"

    def render_config(self) -> str:
        """The zoo.cfg text for this server."""
        settings = {
            # Short ticks make session expiry and leader election fast in tests; the
            # minimum session timeout is 2 ticks (1 s), the maximum is raised so
            # clients may ask for long sessions too.
            "tickTime": "500",
            "initLimit": "10",
            "syncLimit": "5",
            "dataDir": str(self.data_dir),
            "clientPortAddress": LOOPBACK,
            "clientPort": str(self.client_port),
            "maxSessionTimeout": "60000",
            # All test clients come from 127.0.0.1; the default limit of 60 connections
            # per address is easy to hit with many kazoo clients.
            "maxClientCnxns": "0",
            # The admin HTTP server would need another free port (default 8080).
            "admin.enableServer": "false",
            # srvr is how we detect that the server serves and which role it has.
            "4lw.commands.whitelist": "*",
            # Test data is disposable: skip fsync on every transaction (becomes the
            # zookeeper.forceSync system property).
            "forceSync": "no",
        }
        settings.update(self.extra_config)
        lines = [f"{key}={value}" for key, value in settings.items()]
        for peer_id, peer_port, election_port in self.peers or []:
            lines.append(f"server.{peer_id}={LOOPBACK}:{peer_port}:{election_port}")
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        """The command line that start() runs (raises if Java or the jars are missing)."""
        java, classpath = check_prerequisites(self.java_dir)
        command = [
            java,
            "-Xmx128m",
            "-XX:+UseSerialGC",
            # No /tmp/hsperfdata_* files that would outlive killed JVMs.
            "-XX:-UsePerfData",
            "-Dzookeeper.root.logger=INFO,CONSOLE",
        ]
        if LOG4J_CONFIG.is_file():
            command.append(f"-Dlog4j.configuration=file:{LOG4J_CONFIG}")
        command += ["-cp", classpath, MAIN_CLASS, str(self.config_path)]
        setpriv = shutil.which("setpriv")
        if self.die_with_parent and setpriv is not None:
            # setpriv execs java, so the recorded PID is the JVM's own PID.
            command = [setpriv, "--pdeathsig", "KILL", "--", *command]
        return command

    # -- lifecycle

    def start(self) -> None:
        """Write zoo.cfg (and myid) and launch the server; does not wait for it to serve."""
        if self._process is not None and self._process.poll() is None:
            raise ZooKeeperError(f"{self!r} is already running")
        command = self.command()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        if self.myid is not None:
            (self.data_dir / "myid").write_text(f"{self.myid}\n")
        with self.log_path.open("ab") as log:
            log.write(f"==== harness: starting {' '.join(command)}\n".encode())
            log.flush()
            # A new session keeps terminal signals (Ctrl-C) away from the JVM: the
            # harness decides when servers stop, in order, and reaps them.
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self._process.pid
        self.returncode = None
        if self.die_with_parent:
            # Detached servers (make cluster) are meant to outlive this process.
            _RUNNING.add(self)

    def wait_serving(self, timeout: float = 30.0) -> str:
        """Wait until the server serves clients and return its mode.

        ``ruok`` answers before an ensemble has a quorum, so poll ``srvr`` until its
        reply has a ``Mode:`` line. Raises :class:`ZooKeeperError` with the tail of
        the server log if the process dies or the timeout passes.
        """
        if self._process is None:
            raise ZooKeeperError(f"{self!r} was not started")
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_alive():
                code = self._process.poll()
                raise ZooKeeperError(
                    f"ZooKeeper server {self.hosts} (pid {self.pid}) exited with code {code} "
                    f"before serving; tail of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            mode = self.mode(timeout=0.5)
            if mode is not None:
                return mode
            if time.monotonic() >= deadline:
                raise ZooKeeperError(
                    f"ZooKeeper server {self.hosts} (pid {self.pid}) not serving after "
                    f"{timeout:.1f} s; tail of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def terminate(self) -> None:
        """Ask the server to shut down (SIGTERM) without waiting; stop() waits and reaps."""
        process = self._process
        if process is None:
            return
        # send_signal() is a no-op once the child has been reaped, so a recycled PID
        # can never be signalled by mistake.
        process.send_signal(signal.SIGTERM)
        # A paused (SIGSTOPped) JVM only acts on SIGTERM once it is continued.
        process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the server gracefully (SIGTERM, then SIGKILL after ``timeout``) and reap it.

        Returns the exit status (negative signal number when killed by a signal), or
        None if the server was not running. Safe to call more than once.
        """
        process = self._process
        if process is None:
            return None
        self.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return self._forget()

    def kill(self) -> int | None:
        """SIGKILL the server and reap it, to simulate a crash (no clean shutdown)."""
        process = self._process
        if process is None:
            return None
        process.kill()
        process.wait()
        return self._forget()

    def _forget(self) -> int | None:
        assert self._process is not None
        self.returncode = self._process.returncode
        self._process = None
        _RUNNING.discard(self)
        return self.returncode

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers."""
        self._running_process().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused server (SIGCONT)."""
        self._running_process().send_signal(signal.SIGCONT)

    def _running_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ZooKeeperError(f"{self!r} is not running")
        return self._process

    # -- state

    @property
    def started(self) -> bool:
        """True between start() and stop()/kill(), even if the process died meanwhile."""
        return self._process is not None

    def is_alive(self) -> bool:
        """True if the server process exists and is not a zombie (see pid_is_running)."""
        if self._process is None or self._process.returncode is not None or self.pid is None:
            return False
        return pid_is_running(self.pid)

    def mode(self, timeout: float = 1.0) -> str | None:
        """The server's role from ``srvr``: 'standalone', 'leader', 'follower', ...

        None when the server does not answer or does not serve yet (no quorum).
        """
        try:
            reply = four_letter_word(self.client_port, "srvr", timeout=timeout)
        except OSError:
            return None
        for line in reply.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Mode":
                return value.strip()
        return None


# --------------------------------------------------------------------------------------
# An ensemble


class ZooKeeperEnsemble(_ServingContext):
    """``size`` ZooKeeper servers forming one ensemble, each in ``workdir/zkN``.

    Members are indexed from 0 (``member(0)`` has myid 1). Client, peer and election
    ports are all distinct free ports on 127.0.0.1.
    """

    def __init__(self, workdir: Path, size: int = 3, *, die_with_parent: bool = True) -> None:
        if size < 1:
            raise ValueError("an ensemble needs at least one member")
        self.workdir = Path(workdir)
        ports = find_free_ports(3 * size)
        client_ports = ports[:size]
        peers = [(i + 1, ports[size + i], ports[2 * size + i]) for i in range(size)]
        self.members = [
            ZooKeeperServer(
                self.workdir / f"zk{i + 1}",
                client_ports[i],
                myid=i + 1,
                peers=peers,
                die_with_parent=die_with_parent,
            )
            for i in range(size)
        ]

    def __repr__(self) -> str:
        return f"<ZooKeeperEnsemble {self.hosts}>"

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[ZooKeeperServer]:
        return iter(self.members)

    @property
    def hosts(self) -> str:
        """Connect string naming every member, e.g. ``127.0.0.1:a,127.0.0.1:b,...``."""
        return ",".join(member.hosts for member in self.members)

    def member(self, index: int) -> ZooKeeperServer:
        """The member at ``index`` (0-based; its myid is index + 1)."""
        return self.members[index]

    def start(self) -> None:
        """Launch every member (without waiting); on failure stop those already started."""
        try:
            for member in self.members:
                member.start()
        except BaseException:
            self.stop()
            raise

    def wait_serving(self, timeout: float = 30.0) -> None:
        """Wait until every started member serves (a quorum exists and it has a role).

        Members that were stopped or killed deliberately are skipped; one that died by
        itself raises :class:`ZooKeeperError` with its log tail.
        """
        deadline = time.monotonic() + timeout
        for member in self.members:
            if member.started:
                member.wait_serving(timeout=max(deadline - time.monotonic(), 0.1))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop all members; SIGTERM goes to all of them first so they shut down together."""
        for member in self.members:
            member.terminate()
        for member in self.members:
            member.stop(timeout=timeout)

    def modes(self) -> list[str | None]:
        """Each member's mode (None for members that do not answer)."""
        return [member.mode() for member in self.members]

    def leader(self) -> int | None:
        """Index of the member that reports itself leader; None if there is no unique one."""
        leaders = [i for i, mode in enumerate(self.modes()) if mode == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def wait_leader(self, timeout: float = 30.0) -> int:
        """Wait until exactly one live member leads and every other live member follows.

        Returns the leader's index. Used after a leader is killed: the survivors go
        through a new election before they serve again.
        """

        def settled() -> int | None:
            live = [i for i, member in enumerate(self.members) if member.is_alive()]
            modes = {i: self.members[i].mode() for i in live}
            leaders = [i for i in live if modes[i] == "leader"]
            followers = [i for i in live if modes[i] == "follower"]
            if len(leaders) == 1 and len(followers) == len(live) - 1:
                return leaders[0]
            return None

        return wait_until(settled, timeout, f"no settled leader in {self!r}")


# --------------------------------------------------------------------------------------
# Isolated trees (chroots) on a shared server


def create_chroot(hosts: str, prefix: str = "t-", timeout: float = 10.0) -> str:
    """Create a uniquely named top-level node and return ``hosts`` chrooted to it.

    Clients given the result (e.g. ``127.0.0.1:2181/t-3f2a...``) see that node as "/",
    so tests sharing one server cannot see each other's data.
    """
    path = f"/{prefix}{uuid.uuid4().hex}"
    client = KazooClient(hosts=hosts, timeout=timeout)
    client.start(timeout=timeout)
    try:
        client.create(path, makepath=True)
    finally:
        client.stop()
        client.close()
    return f"{hosts}{path}"


def delete_chroot(chrooted_hosts: str, timeout: float = 10.0) -> None:
    """Best-effort recursive delete of the tree a chrooted connect string points at.

    Failures are ignored: the data lives in a throwaway server, and an ephemeral node
    of a client that is still closing may legitimately make the delete race.
    """
    hosts, slash, path = chrooted_hosts.partition("/")
    if not slash or not path:
        raise ValueError(f"{chrooted_hosts!r} has no chroot; refusing to delete '/'")
    with contextlib.suppress(Exception):
        client = KazooClient(hosts=hosts, timeout=timeout)
        client.start(timeout=timeout)
        try:
            client.delete(f"/{path}", recursive=True)
        finally:
            client.stop()
            client.close()


# --------------------------------------------------------------------------------------
# Developer entry point: run servers in the foreground until Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.harness.zookeeper [--members N] [--workdir DIR]``."""
    parser = argparse.ArgumentParser(description="Run throwaway ZooKeeper servers on loopback.")
    parser.add_argument("--members", type=int, default=1, help="1 = standalone (default)")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pvc-zookeeper-"))
    target: ZooKeeperServer | ZooKeeperEnsemble
    if args.members == 1:
        target = ZooKeeperServer(workdir)
    else:
        target = ZooKeeperEnsemble(workdir, args.members)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # `kill PID` should stop the servers as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, interrupt)
    try:
        with target:
            print(f"ZooKeeper serving at {target.hosts} (files in {workdir}); Ctrl-C stops it")
            sys.stdout.flush()
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except ZooKeeperError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
