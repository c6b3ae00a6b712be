"""The local cluster: a real ZooKeeper, hypervisor hosts and a ``pvcnoded`` for each.

``make cluster`` runs ``python -m tests.harness.cluster up`` and the cluster tests use the
same :class:`LocalCluster` as a fixture, so what the demo shows is what the tests prove.

Two modes:

``qemu`` (default)
    Each node is a real ``libvirtd`` in its own mount namespace
    (:class:`tests.harness.hypervisor.LibvirtHost`) running tiny QEMU guests under software
    emulation (:mod:`tests.harness.guest`). Live migration, consoles and crashes are real.
``test``
    Each node's daemon uses libvirt's in-process test driver (no libvirtd, no QEMU), for
    machines without them. VMs "run" only in the daemon's memory: live migration is not
    supported there, so migrations use the shutdown-and-start fallback.

``make cluster`` also gives every node a simulated BMC (:mod:`tests.harness.bmc`) when
ipmi_sim and ipmitool are installed, with fast fencing settings, so a power cut is fenced
within seconds (``make demo`` shows it).

Everything lives in one work directory (``.cluster/`` for ``make cluster``) with a
``cluster.json`` recording every PID, so ``down`` stops exactly what ``up`` started, from
any process. Processes are always stopped by recorded PID (checked against their command
line, so a recycled PID is never signalled), never by name.

This module must not import pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid as uuid_module
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from pvc_common.cluster_ops import cluster_exists, init_cluster
from pvc_common.snapshot import load_nodes
from pvc_common.store import ZkStore
from tests.harness.zookeeper import (
    ZooKeeperEnsemble,
    ZooKeeperServer,
    log_tail,
    pid_is_running,
    wait_until,
)

Mode = Literal["qemu", "test"]

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_WORKDIR = REPO_ROOT / ".cluster"
NODE_NAMES = ("hv1", "hv2", "hv3")
STATE_FILE = "cluster.json"

#: Memory of a test-driver node, MiB (the test driver reports what its node file says).
TEST_NODE_MEMORY_MIB = 8192

#: The demo VM ``up`` defines and starts.
DEMO_VM = "demo1"
DEMO_UUID = "5eed0000-0000-4000-8000-00000000d001"


class ClusterError(RuntimeError):
    """The local cluster could not be brought up or stopped."""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_pid(pid: int | None, marker: str, timeout: float = 10.0) -> None:
    """SIGTERM (then SIGKILL) ``pid`` if it is still the process we started.

    ``marker`` must appear in its command line: a PID recycled by an unrelated process
    is left alone.
    """
    if not pid or not pid_is_running(pid) or marker not in _cmdline(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_is_running(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_is_running(pid), 5.0, f"process {pid} did not die")


@dataclass
class NodeDaemonProcess:
    """One daemon process of the cluster (a ``pvcnoded``, or the ``pvcapid`` with
    ``module``), started and stopped by PID."""

    name: str
    config_path: Path
    log_path: Path
    die_with_parent: bool
    pid: int | None = None
    _process: subprocess.Popen[bytes] | None = None
    module: str = "pvc_noded.main"

    def start(self) -> None:
        """Start the daemon (its output is appended to :attr:`log_path`)."""
        if self.is_alive():
            raise ClusterError(f"{self.module} {self.name} already runs (pid {self.pid})")
        command = [sys.executable, "-m", self.module, "--config", str(self.config_path)]
        if self.die_with_parent:
            command = ["setpriv", "--pdeathsig", "SIGKILL", "--", *command]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=not self.die_with_parent,
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.pid = self._process.pid

    def is_alive(self) -> bool:
        """Whether the daemon process runs (zombies count as dead)."""
        if self._process is not None:
            return self._process.poll() is None and pid_is_running(self._process.pid)
        package = self.module.split(".")[0]
        return bool(self.pid and pid_is_running(self.pid) and package in _cmdline(self.pid))

    def stop(self, timeout: float = 20.0) -> None:
        """Stop it cleanly (SIGTERM: running VMs are left running)."""
        stop_pid(self.pid, str(self.config_path), timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL it, as a crash would."""
        if self.pid and self.is_alive():
            os.kill(self.pid, signal.SIGKILL)
        wait_until(lambda: not self.is_alive(), 5.0, f"pvcnoded {self.name} survived SIGKILL")
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)


class LocalCluster:
    """ZooKeeper + one hypervisor host and node daemon per name, in ``workdir``."""

    def __init__(
        self,
        workdir: Path = DEFAULT_WORKDIR,
        *,
        mode: Mode = "qemu",
        nodes: tuple[str, ...] = NODE_NAMES,
        die_with_parent: bool = True,
        daemon_settings: dict[str, dict[str, Any]] | None = None,
        zookeeper_members: int = 1,
        bmcs: bool = False,
        api_port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.mode = mode
        self.node_names = nodes
        self.die_with_parent = die_with_parent
        self.daemon_settings = daemon_settings or {}
        # One server for make cluster; the fault tests use a 3-member ensemble.
        self.zookeeper: ZooKeeperServer | ZooKeeperEnsemble
        if zookeeper_members == 1:
            self.zookeeper = ZooKeeperServer(
                self.workdir / "zookeeper", die_with_parent=die_with_parent
            )
        else:
            self.zookeeper = ZooKeeperEnsemble(
                self.workdir / "zookeeper", zookeeper_members, die_with_parent=die_with_parent
            )
        self.with_bmcs = bmcs
        self.bmcs: dict[str, Any] = {}  # name -> BmcSimulator (with bmcs=True)
        self.hosts: dict[str, Any] = {}  # name -> LibvirtHost (qemu mode)
        self.daemons: dict[str, NodeDaemonProcess] = {}
        self.image: Any = None  # GuestImage (qemu mode)
        self.disk_image: Any = None  # GuestImage, disk variant (qemu mode, built on demand)
        #: With ``api_port``: a pvcapid on 127.0.0.1 there, with a generated API key.
        self.api_port = api_port
        self.api: NodeDaemonProcess | None = None
        self.api_key = ""

    # ----------------------------------------------------------------- paths

    @property
    def zk_hosts(self) -> str:
        """The ZooKeeper connect string (``PVC_ZOOKEEPER``)."""
        return self.zookeeper.hosts

    @property
    def console_dir(self) -> Path:
        """Where the guests' serial console logs are written."""
        return self.workdir / "console"

    def console_log(self, vm_name: str) -> Path:
        """The console log file of a VM defined with :meth:`vm_xml`."""
        return self.console_dir / f"{vm_name}.log"

    def node_dir(self, name: str) -> Path:
        return self.workdir / "nodes" / name

    # ----------------------------------------------------------------- up / down

    def start(self, timeout: float = 120.0) -> None:
        """Bring everything up and wait until every node daemon is ``run``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_dir.mkdir(exist_ok=True)
        try:
            self.zookeeper.start()
            self.zookeeper.wait_serving()
            with self.store() as store:
                if not cluster_exists(store):
                    init_cluster(store)
            if self.mode == "qemu":
                self._start_hosts()
            if self.with_bmcs:
                self._start_bmcs()
            for name in self.node_names:
                self._write_daemon_config(name)
                daemon = NodeDaemonProcess(
                    name,
                    self.node_dir(name) / "pvcnoded.yaml",
                    self.node_dir(name) / "pvcnoded.log",
                    self.die_with_parent,
                )
                self.daemons[name] = daemon
                daemon.start()
            if self.api_port is not None:
                self._start_api()
            if not self.die_with_parent:  # recorded for make cluster-down
                self._save_state()
            for name in self.bmcs:
                self.wire_power(name)
            self.wait_nodes_running(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_hosts(self) -> None:
        from tests.harness.guest import build_guest_image
        from tests.harness.hypervisor import DEFAULT_CAPABILITY_CACHE, LibvirtHost

        self.image = build_guest_image()
        for name in self.node_names:
            host = LibvirtHost(
                self.workdir / "hosts",
                name,
                capability_cache=DEFAULT_CAPABILITY_CACHE,
                die_with_parent=self.die_with_parent,
            )
            self.hosts[name] = host
            host.start()
            host.wait_ready()

    def _start_bmcs(self) -> None:
        from tests.harness.bmc import BmcSimulator

        for name in self.node_names:
            bmc = BmcSimulator(self.workdir / "bmcs", name, die_with_parent=self.die_with_parent)
            self.bmcs[name] = bmc
            bmc.start()
            bmc.wait_ready()

    def wire_power(self, name: str) -> None:
        """Make ``name``'s BMC power-off kill what runs that node now (daemon, libvirtd, VMs).

        Call it again after restarting a node's processes (a power-off forgets them).
        """
        pids = [self.daemons[name].pid] if name in self.daemons else []
        host = self.hosts.get(name)
        if host is not None and host.supervisor_pid:
            pids.append(host.supervisor_pid)  # libvirtd and every guest descend from it
        self.bmcs[name].set_power_pids([pid for pid in pids if pid])

    def power_on(self, name: str) -> None:
        """What booting a node after a power-on does: its libvirtd, then its daemon."""
        host = self.hosts.get(name)
        if host is not None:
            host.stop()  # reap what the power loss left (nothing runs any more)
            host.start()
            host.wait_ready()
        daemon = self.daemons[name]
        daemon.stop()
        daemon.start()
        self.wire_power(name)
        if not self.die_with_parent:  # a detached cluster: make cluster-down needs the new PID
            self._save_state()

    def wait_nodes_running(self, timeout: float = 60.0) -> None:
        """Wait until every node's daemon state is ``run``."""

        def all_running() -> bool:
            for name, daemon in self.daemons.items():
                if not daemon.is_alive():
                    raise ClusterError(
                        f"pvcnoded {name} exited; its log {daemon.log_path} ends:\n"
                        + log_tail(daemon.log_path)
                    )
            with self.store() as store:
                states = {node.name: node.daemonstate for node in load_nodes(store)}
            return all(states.get(name) == "run" for name in self.node_names)

        wait_until(all_running, timeout, "node daemons did not all reach 'run'", interval=0.2)

    @property
    def api_url(self) -> str:
        """The API daemon's base URL (``PVC_API_URL``)."""
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def _start_api(self) -> None:
        """Start pvcapid with a new random API key; wait until it answers."""
        import secrets
        import urllib.request

        directory = self.workdir / "api"
        directory.mkdir(exist_ok=True)
        self.api_key = secrets.token_hex(16)
        config = directory / "pvcapid.yaml"
        config.write_text(
            f"zookeeper:\n  hosts: {self.zk_hosts}\n"
            f"api:\n  listen_address: 127.0.0.1\n  port: {self.api_port}\n"
            f"  keys:\n    - {self.api_key}\n"
        )
        config.chmod(0o600)  # it holds the key
        self.api = NodeDaemonProcess(
            "api", config, directory / "pvcapid.log", self.die_with_parent, module="pvc_apid.main"
        )
        self.api.start()

        def answers() -> bool:
            if not self.api or not self.api.is_alive():
                raise ClusterError(
                    f"pvcapid exited; its log ends:\n{log_tail(directory / 'pvcapid.log')}"
                )
            try:
                with urllib.request.urlopen(self.api_url, timeout=2) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        wait_until(answers, 30, f"pvcapid does not answer on {self.api_url}", interval=0.2)

    def stop(self) -> None:
        """Stop daemons (VMs untouched by them), then hosts with their guests, then ZooKeeper."""
        if self.api is not None:
            with contextlib.suppress(Exception):
                self.api.stop()
        for daemon in self.daemons.values():
            with contextlib.suppress(Exception):
                daemon.stop()
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host.stop()
        for bmc in self.bmcs.values():
            with contextlib.suppress(Exception):
                bmc.stop()
        with contextlib.suppress(Exception):
            self.zookeeper.stop()
        with contextlib.suppress(OSError):
            (self.workdir / STATE_FILE).unlink()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- state file

    def _save_state(self) -> None:
        state = {
            "mode": self.mode,
            "zookeeper": {"hosts": self.zk_hosts, "pid": self._zookeeper_server().pid},
            "nodes": {
                name: {"daemon_pid": daemon.pid, "config": str(daemon.config_path)}
                for name, daemon in self.daemons.items()
            },
        }
        if self.bmcs:  # each records itself in bmcs/<name>/bmc.json
            state["bmcs"] = {name: {"port": bmc.port} for name, bmc in sorted(self.bmcs.items())}
        if self.api is not None:
            state["api"] = {
                "pid": self.api.pid,
                "config": str(self.api.config_path),
                "port": self.api_port,
                "key": self.api_key,
            }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, workdir: Path = DEFAULT_WORKDIR) -> LocalCluster:
        """The cluster recorded in ``workdir`` (started by another process)."""
        workdir = Path(workdir).resolve()
        try:
            state = json.loads((workdir / STATE_FILE).read_text())
        except (OSError, ValueError) as error:
            raise ClusterError(f"no cluster recorded in {workdir}: {error}") from None
        # Its processes are detached (die_with_parent=False): what this process restarts
        # (power_on) is recorded in the state file too.
        cluster = cls(
            workdir, mode=state["mode"], nodes=tuple(state["nodes"]), die_with_parent=False
        )
        server = cluster._zookeeper_server()
        server.client_port = int(state["zookeeper"]["hosts"].rsplit(":", 1)[1])
        server.pid = state["zookeeper"]["pid"]
        for name, node in state["nodes"].items():
            cluster.daemons[name] = NodeDaemonProcess(
                name, Path(node["config"]), cluster.node_dir(name) / "pvcnoded.log", False
            )
            cluster.daemons[name].pid = node["daemon_pid"]
            if cluster.mode == "qemu":
                from tests.harness.hypervisor import LibvirtHost

                cluster.hosts[name] = LibvirtHost.attach(workdir / "hosts", name)
        if state.get("bmcs"):
            from tests.harness.bmc import BmcSimulator

            cluster.with_bmcs = True
            for name in state["bmcs"]:
                cluster.bmcs[name] = BmcSimulator.attach(workdir / "bmcs", name)
        if "api" in state:
            api = state["api"]
            cluster.api_port, cluster.api_key = int(api["port"]), str(api["key"])
            cluster.api = NodeDaemonProcess(
                "api",
                Path(api["config"]),
                workdir / "api" / "pvcapid.log",
                False,
                module="pvc_apid.main",
            )
            cluster.api.pid = api["pid"]
        return cluster

    def is_running(self) -> bool:
        """Whether every recorded process is alive."""
        pid = self._zookeeper_server().pid
        zookeeper_alive = bool(pid and pid_is_running(pid) and str(self.workdir) in _cmdline(pid))
        hosts_alive = all(host.is_alive() for host in self.hosts.values())
        api_alive = self.api is None or self.api.is_alive()
        daemons_alive = all(d.is_alive() for d in self.daemons.values())
        bmcs_alive = all(bmc.is_alive() for bmc in self.bmcs.values())
        return zookeeper_alive and hosts_alive and daemons_alive and api_alive and bmcs_alive

    def stop_recorded(self) -> None:
        """Stop what :meth:`attach` found (from another process than the one that started it)."""
        if self.api is not None:
            self.api.stop()
        for daemon in self.daemons.values():
            daemon.stop()
        for host in self.hosts.values():
            host.stop()
        for bmc in self.bmcs.values():
            bmc.stop()
        stop_pid(self._zookeeper_server().pid, str(self.workdir))
        with contextlib.suppress(OSError):
            (self.workdir / STATE_FILE).unlink()

    # ----------------------------------------------------------------- helpers

    def _zookeeper_server(self) -> ZooKeeperServer:
        # Only a single-server cluster is recorded for another process (make cluster).
        if not isinstance(self.zookeeper, ZooKeeperServer):
            raise ClusterError("an ensemble cluster cannot be recorded or re-attached")
        return self.zookeeper

    @contextlib.contextmanager
    def store(self) -> Iterator[ZkStore]:
        """A connected store on the cluster's ZooKeeper."""
        with ZkStore(self.zk_hosts, timeout=10.0) as store:
            yield store

    def libvirt_uri(self, name: str) -> str:
        """The URI of a node's own libvirt."""
        if self.mode == "qemu":
            return str(self.hosts[name].uri)
        return f"test://{self.node_dir(name) / 'node.xml'}"

    def vm_xml(
        self,
        name: str,
        uuid: str | None = None,
        memory_mib: int = 128,
        rbd_images: tuple[str, ...] = (),
        ceph_conf: Path | None = None,
        ceph_monitor: tuple[str, int] | None = None,
    ) -> str:
        """Domain XML of a tiny guest that boots and prints to its serial console.

        ``rbd_images`` (``pool/image``) become RBD disks. In test mode the test driver
        never opens them, so they need no Ceph settings in the XML. In qemu mode QEMU's
        rbd driver opens them with the client settings (monitor, keyring) of the
        ``ceph_conf`` file (required then; ``ceph_monitor`` adds a ``<host>`` element),
        and the guest is the disk variant, which writes to its first disk at every boot
        (see :mod:`tests.harness.guest`): that write takes the image's exclusive lock.
        """
        uuid = uuid or str(uuid_module.uuid4())
        if rbd_images and self.mode == "qemu" and ceph_conf is None:
            raise ClusterError("RBD disks of a QEMU guest need a Ceph configuration (ceph_conf)")
        if self.mode == "qemu":
            from tests.harness.guest import build_guest_image, guest_domain_xml

            image = self.image
            if rbd_images:
                if self.disk_image is None:
                    self.disk_image = build_guest_image(disk=True)
                image = self.disk_image
            return guest_domain_xml(
                name,
                uuid=uuid,
                image=image,
                console_log=self.console_log(name),
                memory_mib=memory_mib,
                rbd_disks=rbd_images,
                ceph_conf=ceph_conf,
                ceph_monitor=ceph_monitor,
            )
        return (
            f"<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>"
            f"<memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu>"
            "<os><type>hvm</type></os>"
            "<devices>"
            + "".join(
                f"<disk type='network' device='disk'><source protocol='rbd' name='{image}'/>"
                f"<target dev='vd{chr(ord('a') + index)}' bus='virtio'/></disk>"
                for index, image in enumerate(rbd_images)
            )
            + f"<serial type='pty'><log file='{self.console_log(name)}' append='on'/>"
            "</serial></devices></domain>"
        )

    def _write_daemon_config(self, name: str) -> None:
        node_dir = self.node_dir(name)
        node_dir.mkdir(parents=True, exist_ok=True)
        if self.mode == "qemu":
            host = self.hosts[name]
            peer_uri = f"qemu+tcp://{{address}}:{host.tcp_port}/system"
        else:
            (node_dir / "node.xml").write_text(_test_node_xml(TEST_NODE_MEMORY_MIB))
            peer_uri = "test:///default"
        config: dict[str, Any] = {
            "node": {"name": name, "coordinator": True, "address": "127.0.0.1"},
            "zookeeper": {"hosts": self.zk_hosts, "timeout": 5},
            "libvirt": {"uri": self.libvirt_uri(name), "peer_uri": peer_uri},
            "migration": {"uri": "tcp://{address}", "attempts": 2, "timeout": 60},
            "vm": {"shutdown_timeout": 10, "restart_budget": 3, "restart_window": 120},
            "console": {"log_directory": str(self.console_dir)},
            "daemon": {"keepalive_interval": 1, "reconcile_interval": 5},
            "logging": {"level": "info"},
        }
        bmc = self.bmcs.get(name)
        if bmc is not None:
            config["fencing"] = {
                "bmc_address": bmc.ipmihostname,
                "bmc_username": bmc.username,
                "bmc_password": bmc.password,
            }
        for section, values in self.daemon_settings.items():
            config.setdefault(section, {}).update(values)
        (node_dir / "pvcnoded.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _test_node_xml(memory_mib: int) -> str:
    return (
        "<node><cpu><mhz>2000</mhz><model>x86_64</model><active>4</active><nodes>1</nodes>"
        "<sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>"
        f"<memory>{memory_mib * 1024}</memory></node>\n"
    )


# ----------------------------------------------------------------------------- make cluster


def _define_demo_vm(cluster: LocalCluster, timeout: float = 120.0) -> None:
    """Define and start the demo VM (unless it exists) and wait until it runs."""
    from pvc_common import vm_ops
    from pvc_common.errors import Conflict
    from pvc_common.snapshot import find_vm
    from pvc_common.vm_wait import wait_for_vm

    with cluster.store() as store:
        try:
            vm_ops.define_vm(store, cluster.vm_xml(DEMO_VM, DEMO_UUID), target="hv1")
        except Conflict:
            pass
        record = find_vm(store, DEMO_VM)
        if record.state != "start":
            vm_ops.change_vm_state(store, DEMO_VM, "start")
        outcome = wait_for_vm(store, DEMO_UUID, "start", timeout=timeout)
        if not outcome.ok:
            raise ClusterError(f"demo VM {DEMO_VM!r} did not start: {outcome.message}")


def _usage(cluster: LocalCluster) -> str:
    pvc = REPO_ROOT / ".venv" / "bin" / "pvc"
    lines = [
        f"Local cluster ({cluster.mode} mode) is up in {cluster.workdir}:",
        f"  ZooKeeper   {cluster.zk_hosts}",
    ]
    for name in cluster.node_names:
        daemon = cluster.daemons[name]
        lines.append(f"  {name:<11} pvcnoded pid {daemon.pid}, log {daemon.log_path}")
        if name in cluster.bmcs:
            lines.append(f"  {'':<11} BMC {cluster.bmcs[name].ipmihostname} (IPMI over LAN)")
    lines += [
        f"  demo VM     {DEMO_VM}, console log {cluster.console_log(DEMO_VM)}",
        "",
        "Try (after the export below):",
        f"  {pvc} node list",
        f"  {pvc} vm list",
        f"  {pvc} vm info {DEMO_VM}",
        f"  {pvc} vm migrate {DEMO_VM} --target hv2 --wait",
        f"  {pvc} vm unmigrate {DEMO_VM} --wait",
        f"  tail -f {cluster.console_log(DEMO_VM)}",
        "Or take the guided tour (flush, ready, a power cut and its fence): make demo",
        "Stop it all with: make cluster-down",
        "",
    ]
    if cluster.api is not None:
        lines[2:2] = [f"  API         {cluster.api_url} (pvcapid pid {cluster.api.pid})"]
        lines += [
            f"export PVC_API_URL={cluster.api_url}",
            f"export PVC_API_KEY={cluster.api_key}",
        ]
    lines.append(f"export PVC_ZOOKEEPER={cluster.zk_hosts}")
    return "\n".join(lines)


def _clear_workdir(workdir: Path) -> None:
    """Remove the files of a previous (stopped) cluster, keeping nothing stale."""
    import shutil

    for child in ("zookeeper", "nodes", "hosts", "bmcs", "console", "api", STATE_FILE):
        path = workdir / child
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


#: Daemon settings of ``make cluster`` when it has BMCs: a node whose power is cut is
#: found dead and fenced within seconds (as in tests/cluster/test_fencing.py).
FAST_FENCING: dict[str, dict[str, Any]] = {"fencing": {"intervals": 3, "rechecks": 2, "timeout": 5}}


def bmcs_available() -> bool:
    """Whether ipmi_sim and ipmitool are installed (make system-deps installs them)."""
    from tests.harness.bmc import BmcUnavailable, check_prerequisites

    try:
        check_prerequisites()
    except BmcUnavailable:
        return False
    return True


def up(workdir: Path, mode: Mode, api_port: int = 7370, bmcs: bool | None = None) -> LocalCluster:
    """Bring the cluster up, or leave a running one as it is (idempotent).

    ``bmcs``: give every node a simulated BMC (power-off through IPMI kills the node's
    processes, and the daemons fence a dead node with it, within seconds); ``None``
    (default) does so when ipmi_sim and ipmitool are installed.
    """
    if (workdir / STATE_FILE).exists():
        existing = LocalCluster.attach(workdir)
        if existing.is_running() and existing.mode == mode:
            print("The local cluster is already running.", file=sys.stderr)
            return existing
        print("Stopping what is left of a previous cluster ...", file=sys.stderr)
        existing.stop_recorded()
    _clear_workdir(workdir)
    if bmcs is None:
        bmcs = bmcs_available()
    cluster = LocalCluster(
        workdir,
        mode=mode,
        die_with_parent=False,
        api_port=api_port,
        bmcs=bmcs,
        daemon_settings=FAST_FENCING if bmcs else None,
    )
    print(
        f"Starting ZooKeeper, {len(cluster.node_names)} hosts and node daemons ...", file=sys.stderr
    )
    cluster.start()
    print(f"Defining and starting the demo VM {DEMO_VM!r} ...", file=sys.stderr)
    try:
        _define_demo_vm(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def down(workdir: Path) -> None:
    """Stop exactly what :func:`up` started (nothing if no cluster is recorded)."""
    if not (workdir / STATE_FILE).exists():
        print(f"No local cluster recorded in {workdir}: nothing to stop.")
        return
    LocalCluster.attach(workdir).stop_recorded()
    print("Local cluster stopped.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.cluster",
        description="Bring a local pvc cluster (ZooKeeper, hypervisor hosts, node daemons) "
        "up or down.",
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(
        "--mode",
        choices=("qemu", "test"),
        default=os.environ.get("PVC_CLUSTER_MODE", "qemu"),
        help="qemu: real libvirtd hosts and QEMU guests; test: libvirt's test driver (no QEMU)",
    )
    parser.add_argument(
        "--api-port", type=int, default=7370, help="port of the API daemon on 127.0.0.1"
    )
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    try:
        if args.action == "down":
            down(workdir)
            return 0
        if args.action == "status":
            cluster = LocalCluster.attach(workdir)
            print(_usage(cluster) if cluster.is_running() else "The local cluster is not running.")
            return 0 if cluster.is_running() else 1
        cluster = up(workdir, args.mode, args.api_port)
    except (ClusterError, TimeoutError) as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    print(_usage(cluster))
    return 0


if __name__ == "__main__":
    sys.exit(main())
