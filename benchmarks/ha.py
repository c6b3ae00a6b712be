"""Benchmark maintenance and high availability: flush concurrency, and power loss to recovery.

What is measured
================

The script starts its own local clusters (``tests/harness/cluster.py``: a ZooKeeper
server, hosts hv1..hv3 and a ``pvcnoded`` for each, in a short temporary directory),
measures, and always stops them again by the PIDs the harness recorded.

(a) Flush of a node with N running VMs, at several ``maintenance.concurrency`` values.
    From just before launching ``pvc node flush hv1`` (the real console script, without
    ``--wait``) until ZooKeeper shows hv1's ``domainstate`` as ``flushed`` (polled every
    20 ms on an open connection). It is split with the node's ``maintenance`` record,
    whose ``started`` the flushing daemon stamps when its runner begins:

    * pickup = launch -> runner started: the CLI process and its write, then the wait for
      hv1's daemon to notice the request (see the interpretation printed at the end);
    * work = runner started -> ``flushed`` seen: the moves themselves, at most
      ``concurrency`` at once, which is what the setting governs.

    The daemon watches its own row, so the pickup is a watch round trip. (Before it did,
    a flush began only at its next periodic pass; each measured flush is still launched
    after an untimed random pause of 0 to ``reconcile_interval``, which keeps the pickup
    a fair sample should that ever change again.)

    Between two flushes ``pvc node ready hv1 --wait`` brings the VMs back; it is timed
    too and reported on its own (it moves the same VMs at the same concurrency), never
    as part of a flush. Every flush is checked: every VM ended ``live-migrated`` (QEMU)
    or ``shutdown-migrated`` (test driver, which cannot migrate live), runs on another
    node and hv1 lists nothing.

    Two clusters, one after the other: libvirt's test driver (orchestration only: N=24
    VMs of 256 MiB, all on hv1, no limits; a "VM" lives in its daemon's memory) and
    real QEMU guests (N=4 of 128 MiB; the machine has few cores). Only hv1's daemon
    reads ``maintenance.concurrency`` (its runner does the flush and the ready), so
    each cluster is started once and its settings are measured one after the other,
    highest first: one unmeasured flush warms the cluster up (the first migration
    between two libvirtds sets up their connection), then that setting's runs; then
    hv1's daemon is restarted with the next setting (a clean SIGTERM while hv1 is
    flushed, i.e. holds no VM, which matters for the test driver, whose VMs live in
    the daemon) and so on. Restarting before every run to interleave the settings
    would cost each run a full ``reconcile_interval`` (see the interpretation) for
    little gain: a cluster's runs take a couple of minutes.

(b) Power loss of a node to all its VMs running elsewhere.
    With 3 VMs running on hv3 and an OpenIPMI BMC simulator per node, hv3 is powered off
    through its BMC (``ipmitool chassis power off``): the simulator SIGKILLs hv3's daemon,
    its libvirtd and its guests at once. The clock starts at the power loss itself (the
    time the simulator's chassis_control script logs after killing them) and stops when
    ZooKeeper shows every VM of hv3 with ``state=start`` on another node that lists it in
    its ``runningdomains`` and, with QEMU, that node's libvirtd reports it running (both
    polled every 20 ms). The coordinators' millisecond log lines split it:

    * detection = power off -> ``node 'hv3': fencing it through its BMC`` (the first
      coordinator to act), with the moments hv3's ZooKeeper session was seen gone, its
      keepalive became older than the limit, and the first ``looks dead`` check;
    * fence = -> ``node 'hv3': fenced (power off confirmed after ...)``;
    * recovery = -> all VMs running elsewhere, with the coordinator's
      ``recovery done: flushed`` (all intents written) in between.

    At two settings of every daemon, each on its own QEMU cluster: fast, test-like
    settings (``daemon.keepalive_interval`` 1, ``fencing.intervals`` 3,
    ``fencing.rechecks`` 2, ``zookeeper.timeout`` 3) and this project's defaults, which
    are PVC's (5, 6, 2, 10; read from ``pvc_noded.config``). After each run hv3 is
    powered on again (its libvirtd and daemon restarted), ``pvc node ready hv3 --wait``
    brings its VMs back, and the next run waits until every guest ticks on hv3: runs
    start alike. That restore is timed and reported on its own (there is none after the
    last run: the cluster is stopped then).

Run it from the repository root::

    .venv/bin/python benchmarks/ha.py [--runs 3] [--fence-runs 2] [--quick] [--keep]
                                      [--json [FILE]]

It needs what ``make cluster`` and the fencing tests need (libvirtd, QEMU, ZooKeeper,
busybox-static, openipmi, ipmitool; ``make system-deps``). Figures go to stdout,
progress to stderr; ``--json FILE`` also writes the figures as JSON to FILE (``--json``
alone prints them after the table). The exit code is 0 when the measurements were made
(there is no speed target) and 1 when the benchmark itself failed; a failed cluster's
work directory is kept for its logs (with ``--keep``, every cluster's) and its path
printed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid as uuid_module
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import libvirt
import yaml
from machine_facts import machine_facts, zookeeper_version
from timing_table import banner, column_header, timing_row
from timing_table import ratio_of_medians as ratio

from pvc_common import vm_ops
from pvc_common.errors import PvcError
from pvc_common.models import NodeRecord
from pvc_common.node_ops import live_nodes
from pvc_common.snapshot import load_nodes, load_vms
from pvc_common.store import ZkStore
from pvc_common.vm_wait import running_on

if TYPE_CHECKING:  # imported at run time only after the repository root is on sys.path
    from tests.harness.cluster import LocalCluster, Mode

REPO_ROOT = Path(__file__).resolve().parent.parent
PVC = Path(sys.executable).parent / "pvc"

#: The node flushed in (a), and the node whose power is cut in (b).
HOME, VICTIM = "hv1", "hv3"

#: How often ZooKeeper, libvirtd or a process are looked at while timing.
POLL_INTERVAL = 0.02
#: Deadlines, generous for a loaded 2-core machine (nothing normally comes near them).
FLUSH_TIMEOUT = 300.0
RECOVERY_TIMEOUT = 240.0
BOOT_TIMEOUT = 120.0
#: How long a coordinator may take to write a log line after ZooKeeper shows its effect.
LOG_LINE_GRACE = 5.0

#: Fast, test-like detection settings (as in tests/integration/test_fast_fencing.py).
FAST_SETTINGS: dict[str, dict[str, Any]] = {
    "daemon": {"keepalive_interval": 1},
    "fencing": {"intervals": 3, "rechecks": 2},
    "zookeeper": {"timeout": 3},
}

#: Memory of each flushed VM, MiB, by driver (QEMU guests are real: keep them small).
FLUSH_MEMORY_MIB = {"test": 256, "qemu": 128}

#: A daemon log line (not journald): ISO 8601 UTC with milliseconds, level, text.
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\w+) (.*)$")
#: The fencer's own figure inside the coordinator's 'fenced (...)' line.
CONFIRMED_AFTER = re.compile(r"power off confirmed after ([0-9.]+) s")


class BenchmarkError(RuntimeError):
    """A step of the benchmark failed: its figures would not mean what they claim."""


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the figures."""
    print(f"[ha] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- figures


@dataclass
class Series:
    """Seconds measured over the runs of one variant."""

    seconds: list[float] = field(default_factory=list)

    def add(self, value: float | None) -> None:
        """Record one run's value; a phase whose log line was missing is left out."""
        if value is not None:
            self.seconds.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        if not self.seconds:
            return {"runs_s": []}
        return {
            "min_s": min(self.seconds),
            "median_s": self.median,
            "max_s": max(self.seconds),
            "runs_s": self.seconds,
        }


def pvc_defaults() -> dict[str, dict[str, Any]]:
    """The detection settings every daemon uses unless configured: this project's defaults.

    Read from the configuration's dataclasses, so the "defaults" run measures what a
    daemon without these keys in its file really does.
    """
    from pvc_noded.config import DaemonSection, FencingSection, ZooKeeperSection

    return {
        "daemon": {"keepalive_interval": DaemonSection.keepalive_interval},
        "fencing": {"intervals": FencingSection.intervals, "rechecks": FencingSection.rechecks},
        "zookeeper": {"timeout": ZooKeeperSection.timeout},
    }


def default_concurrency() -> int:
    """``maintenance.concurrency`` when the file does not set it."""
    from pvc_noded.config import MaintenanceSection

    return int(MaintenanceSection.concurrency)


# --------------------------------------------------------------------------- small helpers


def pvc_env(cluster: LocalCluster) -> dict[str, str]:
    """The environment the real ``pvc`` runs in: the cluster's ZooKeeper, no colours."""
    return {**os.environ, "PVC_ZOOKEEPER": cluster.zk_hosts, "NO_COLOR": "1"}


def run_pvc(cluster: LocalCluster, *args: str, timeout: float = 600.0) -> str:
    """Run ``pvc`` to completion; fail the benchmark if it fails."""
    result = subprocess.run(
        [str(PVC), *args],
        env=pvc_env(cluster),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise BenchmarkError(f"pvc {' '.join(args)} exited {result.returncode}:\n{output}")
    return output


def launch_pvc(cluster: LocalCluster, *args: str) -> subprocess.Popen[str]:
    """Start ``pvc`` without waiting for it (its output is a line: a pipe is fine)."""
    return subprocess.Popen(
        [str(PVC), *args],
        env=pvc_env(cluster),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_pvc(process: subprocess.Popen[str], args: str) -> None:
    """Reap a launched ``pvc``; fail the benchmark if it failed."""
    try:
        output, _ = process.communicate(timeout=120.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise BenchmarkError(f"pvc {args} did not exit within 120 s") from None
    if process.returncode != 0:
        raise BenchmarkError(f"pvc {args} exited {process.returncode}:\n{output}")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every :data:`POLL_INTERVAL` until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{what} (waited {timeout:g} s)")
        time.sleep(POLL_INTERVAL)


def file_size(path: Path) -> int:
    """Bytes in a log file so far: where the lines of the next run will begin."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_lines_since(path: Path, offset: int) -> list[tuple[float, str]]:
    """(time since the epoch, text) of each daemon log line written after byte ``offset``."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    lines = []
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
            lines.append((stamp.timestamp(), match.group(3)))
    return lines


def first_line_with(lines: list[tuple[float, str]], needle: str) -> tuple[float, str] | None:
    """The first (time, text) log line containing ``needle``, if any."""
    return next((entry for entry in lines if needle in entry[1]), None)


def since(start: float, moment: float | None) -> float | None:
    """``moment - start``, or None when the moment is unknown."""
    return None if moment is None else moment - start


def domain_running(conn: libvirt.virConnect, uuid: str) -> bool:
    """Whether a host's libvirtd runs the domain (a domain it does not know does not run)."""
    try:
        state = int(conn.lookupByUUIDString(uuid).state()[0])
    except libvirt.libvirtError:
        return False
    return state == int(libvirt.VIR_DOMAIN_RUNNING)


def version_text(number: int) -> str:
    """libvirt's packed version number (major * 1,000,000 + minor * 1,000 + micro)."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


# --------------------------------------------------------------------------- the clusters


@contextlib.contextmanager
def bench_cluster(
    mode: Mode, settings: dict[str, dict[str, Any]], *, bmcs: bool = False, keep: bool = False
) -> Iterator[LocalCluster]:
    """A started local cluster in a new short temporary directory, always stopped after.

    The directory is short on purpose (libvirtd's unix socket lives below it, and socket
    paths are limited to 107 bytes). It is removed afterwards unless the benchmark
    failed or ``keep`` asks for it, so that the daemon and libvirtd logs can be read.
    """
    from tests.harness.cluster import LocalCluster

    workdir = Path(tempfile.mkdtemp(prefix="pvch-", dir="/tmp"))
    cluster = LocalCluster(
        workdir, mode=mode, bmcs=bmcs, daemon_settings=settings, die_with_parent=True
    )
    succeeded = False
    try:
        log(f"starting a {mode} cluster in {workdir}" + (" with a BMC per node" if bmcs else ""))
        cluster.start()
        yield cluster
        succeeded = True
    finally:
        log("stopping that cluster (by the PIDs the harness recorded)")
        cluster.stop()
        if succeeded and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir} for inspection (daemon logs in nodes/, libvirtd's in hosts/)")


def define_running(
    cluster: LocalCluster, store: ZkStore, names: list[str], node: str, memory_mib: int
) -> dict[str, str]:
    """Define ``names`` on ``node`` and start them, in-process (set-up, not measured).

    Through the same operations the CLI calls, without a process per VM. Returns
    name -> UUID once every VM runs on ``node``. On libvirt's test driver, which cannot
    live-migrate, the VMs are configured for shutdown migration: a flush then measures
    the orchestration of the moves, not a live attempt that must fail followed by the
    daemon's check that the target still lives (a wait for its next keepalive).
    """
    method = "none" if cluster.mode == "qemu" else "shutdown"
    vms: dict[str, str] = {}
    for name in names:
        uuid = str(uuid_module.uuid4())
        cluster.console_log(name).unlink(missing_ok=True)
        vm_ops.define_vm(
            store,
            cluster.vm_xml(name, uuid, memory_mib=memory_mib),
            target=node,
            migration_method=method,
        )
        vm_ops.change_vm_state(store, name, "start")
        vms[name] = uuid
    wait_until(
        lambda: all_running_on(store, list(vms.values()), node),
        BOOT_TIMEOUT,
        f"the VMs did not all start on {node}",
    )
    return vms


def all_running_on(store: ZkStore, uuids: list[str], node: str) -> bool:
    """Whether ZooKeeper shows every VM started on ``node`` and listed by ``node`` only."""
    vms = load_vms(store, uuids)
    nodes = load_nodes(store)
    return len(vms) == len(uuids) and all(
        vm.state == "start" and vm.node == node and running_on(nodes, vm.uuid) == (node,)
        for vm in vms
    )


def wait_ticking(cluster: LocalCluster, names: list[str]) -> None:
    """Wait until every QEMU guest has printed a tick since its latest boot line.

    A guest still booting loads the CPUs: a run must not start with one.
    """
    from tests.harness.guest import read_console

    def ticking(name: str) -> bool:
        return bool(read_console(cluster.console_log(name)).ticks_since_last_boot())

    for name in names:
        wait_until(
            functools.partial(ticking, name),
            BOOT_TIMEOUT,
            f"{name}: no console tick after its latest boot",
        )


def daemon_config(cluster: LocalCluster, name: str) -> Any:
    """The configuration node ``name``'s daemon runs with, as pvcnoded reads it."""
    from pvc_noded.config import load_config

    return load_config(cluster.daemons[name].config_path)


# --------------------------------------------------------------------------- (a) flush


@dataclass
class FlushFigures:
    """Part (a), one concurrency value: the flushes and the readies between them."""

    concurrency: int
    total: Series = field(default_factory=Series)  # launch -> 'flushed' seen
    pickup: Series = field(default_factory=Series)  # launch -> runner started
    work: Series = field(default_factory=Series)  # runner started -> 'flushed' seen
    cli_exit: Series = field(default_factory=Series)  # launch -> the pvc process exited
    ready_total: Series = field(default_factory=Series)  # pvc node ready --wait, whole
    ready_work: Series = field(default_factory=Series)  # the ready runner: started -> finished
    outcomes: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "flush_total": self.total.as_dict(),
            "pickup": self.pickup.as_dict(),
            "work": self.work.as_dict(),
            "cli_exited": self.cli_exit.as_dict(),
            "ready_wait_total": self.ready_total.as_dict(),
            "ready_work": self.ready_work.as_dict(),
            "outcomes": dict(self.outcomes),
        }


class FlushBench:
    """Part (a) on one cluster: hv1 flushed and readied, at several concurrencies."""

    def __init__(self, cluster: LocalCluster, store: ZkStore, vms: dict[str, str]) -> None:
        self.cluster, self.store, self.vms = cluster, store, vms
        self.uuids = list(vms.values())
        self.conns: dict[str, libvirt.virConnect] = {}

    def node(self, name: str) -> NodeRecord:
        """One node's row as ZooKeeper shows it now."""
        found = next((n for n in load_nodes(self.store) if n.name == name), None)
        if found is None:
            raise BenchmarkError(f"no node {name} in ZooKeeper")
        return found

    def check_libvirt(self, where: dict[str, str]) -> None:
        """With QEMU: fail unless each VM runs on its node's libvirtd, and only there."""
        if not self.conns:  # the test driver's VMs live in the daemons: nothing to ask
            return
        for uuid, node in where.items():
            hosts = [host for host, conn in self.conns.items() if domain_running(conn, uuid)]
            if hosts != [node]:
                raise BenchmarkError(f"VM {uuid}: libvirt runs it on {hosts}, not on {node} alone")

    def set_concurrency(self, concurrency: int) -> None:
        """Restart hv1's daemon with ``concurrency``; hv1 must be flushed (holds no VM).

        A clean stop (SIGTERM) leaves VMs alone, but libvirt's test driver keeps its VMs
        in the daemon's memory: restarting only while hv1 holds none keeps both drivers
        comparable. The other daemons never read the setting.
        """
        daemon = self.cluster.daemons[HOME]
        if self.node(HOME).runningdomains:
            raise BenchmarkError(f"{HOME} still lists VMs: not restarting its daemon")
        config = yaml.safe_load(daemon.config_path.read_text())
        config.setdefault("maintenance", {})["concurrency"] = concurrency
        daemon.stop()
        daemon.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        daemon.start()
        self.cluster.wait_nodes_running()
        actual = daemon_config(self.cluster, HOME).maintenance.concurrency
        if actual != concurrency:
            raise BenchmarkError(f"{HOME}'s daemon reads concurrency {actual}, not {concurrency}")

    def time_flush(self, figures: FlushFigures | None) -> None:
        """Launch ``pvc node flush hv1``; time it to ``flushed``; check every VM left."""
        ready = self.node(HOME).domainstate == "ready"
        if not ready or not all_running_on(self.store, self.uuids, HOME):
            raise BenchmarkError(f"{HOME} is not ready with every VM before a flush")
        wall = time.time()
        process = launch_pvc(self.cluster, "node", "flush", HOME)
        cli_exit: float | None = None
        while True:
            # The clock is read after each look, so 'flushed' is timed when known for sure.
            node = self.node(HOME)
            now = time.time()
            if node.domainstate == "flushed":
                break
            if cli_exit is None and process.poll() is not None:
                cli_exit = now - wall
            if now - wall > FLUSH_TIMEOUT:
                process.kill()
                raise BenchmarkError(f"{HOME} not flushed {FLUSH_TIMEOUT:g} s after pvc node flush")
            time.sleep(POLL_INTERVAL)
        finish_pvc(process, f"node flush {HOME}")
        if cli_exit is None:
            cli_exit = time.time() - wall
        record = node.maintenance
        outcomes = Counter(entry.get("outcome", "?") for entry in record.get("vms", {}).values())
        self.check_flushed(record, outcomes)
        if figures is None:
            return
        started = float(record["started"])
        figures.total.add(now - wall)
        figures.pickup.add(started - wall)
        figures.work.add(now - started)
        figures.cli_exit.add(cli_exit)
        figures.outcomes.update(outcomes)

    def check_flushed(self, record: dict[str, Any], outcomes: Counter[str]) -> None:
        """Every VM moved the expected way, runs elsewhere, and hv1 lists none."""
        if record.get("kind") != "flush" or record.get("status") != "done":
            raise BenchmarkError(f"{HOME}'s flush record is not a finished flush: {record}")
        moved = ("live-migrated", "shutdown-migrated")
        if any(kind not in moved for kind in outcomes) or sum(outcomes.values()) != len(self.uuids):
            raise BenchmarkError(f"flush outcomes {dict(outcomes)} for {len(self.uuids)} VMs")
        nodes = load_nodes(self.store)
        where: dict[str, str] = {}
        for vm in load_vms(self.store, self.uuids):
            listed = running_on(nodes, vm.uuid)
            if vm.state != "start" or vm.node == HOME or listed != (vm.node,):
                raise BenchmarkError(f"{vm.name} after the flush: {vm.state} on {vm.node} {listed}")
            where[vm.uuid] = vm.node
        if self.node(HOME).runningdomains:
            raise BenchmarkError(f"{HOME} still lists VMs after its flush")
        self.check_libvirt(where)

    def time_ready(self, figures: FlushFigures) -> None:
        """``pvc node ready hv1 --wait`` (timed whole), then check every VM is back."""
        started = time.time()
        output = run_pvc(self.cluster, "node", "ready", HOME, "--wait", "--wait-timeout", "600")
        elapsed = time.time() - started
        if f"ready of {HOME} done" not in output:
            raise BenchmarkError(f"pvc node ready {HOME} --wait did not finish:\n{output}")
        wait_until(
            lambda: all_running_on(self.store, self.uuids, HOME),
            60.0,
            f"the VMs are not all back on {HOME} after ready",
        )
        self.check_libvirt(dict.fromkeys(self.uuids, HOME))
        record = self.node(HOME).maintenance
        figures.ready_total.add(elapsed)
        figures.ready_work.add(float(record["finished"]) - float(record["started"]))


def measure_flush(
    mode: Mode, vm_count: int, concurrencies: list[int], runs: dict[int, int], keep: bool
) -> dict[str, Any]:
    """Part (a) on a new cluster of ``mode``: a warm-up, then each setting's runs in turn."""
    # Highest first: the cluster starts with it, so the unmeasured warm-up is the shortest.
    schedule = [c for c in sorted(concurrencies, reverse=True) for _ in range(runs[c])]
    figures = {c: FlushFigures(c) for c in concurrencies}
    first = schedule[0]
    memory = FLUSH_MEMORY_MIB[mode]
    with (
        bench_cluster(mode, {"maintenance": {"concurrency": first}}, keep=keep) as cluster,
        cluster.store() as store,
        contextlib.ExitStack() as stack,
    ):
        names = [f"fl{index:02d}" for index in range(1, vm_count + 1)]
        log(f"(a) {mode}: defining and starting {vm_count} VMs of {memory} MiB on {HOME}")
        bench = FlushBench(cluster, store, define_running(cluster, store, names, HOME, memory))
        if mode == "qemu":
            bench.conns = {
                name: stack.enter_context(host.connection()) for name, host in cluster.hosts.items()
            }
            wait_ticking(cluster, names)
        config = daemon_config(cluster, HOME)
        log(f"(a) {mode}: warm-up flush at concurrency {first} (not measured)")
        bench.time_flush(None)
        current = first
        for index, concurrency in enumerate(schedule, 1):
            if concurrency != current:
                bench.set_concurrency(concurrency)
                current = concurrency
            bench.time_ready(figures[concurrency])
            # Unlock the request from the daemon's pass timer (see the module docstring).
            time.sleep(random.uniform(0.0, config.daemon.reconcile_interval))
            bench.time_flush(figures[concurrency])
            done = figures[concurrency]
            log(
                f"(a) {mode} run {index}/{len(schedule)}: concurrency {concurrency}: flush "
                f"{done.total.seconds[-1]:.2f} s (pickup {done.pickup.seconds[-1]:.2f} s, "
                f"work {done.work.seconds[-1]:.2f} s); ready before it "
                f"{done.ready_total.seconds[-1]:.2f} s"
            )
        facts = part_facts(cluster, bench.conns.get(HOME))
    return {
        "driver": mode,
        "vms": vm_count,
        "memory_mib": memory,
        "reconcile_interval_s": config.daemon.reconcile_interval,
        "keepalive_interval_s": config.daemon.keepalive_interval,
        "order": schedule,
        "settings": [figures[c].as_dict() for c in concurrencies],
        "software": facts,
    }


# --------------------------------------------------------------------------- (b) power loss


@dataclass
class FenceFigures:
    """Part (b), one setting: power loss to recovery, phase by phase."""

    total: Series = field(default_factory=Series)  # power off -> all running elsewhere
    detection: Series = field(default_factory=Series)  # power off -> 'fencing it'
    session_gone: Series = field(default_factory=Series)  # power off -> session seen gone
    keepalive_stale: Series = field(default_factory=Series)  # power off -> keepalive too old
    first_dead_check: Series = field(default_factory=Series)  # power off -> first 'looks dead'
    rechecks: Series = field(default_factory=Series)  # first 'looks dead' -> 'fencing it'
    fence: Series = field(default_factory=Series)  # 'fencing it' -> 'fenced'
    fence_confirmed: Series = field(default_factory=Series)  # the fencer's own off->confirmed
    recovery: Series = field(default_factory=Series)  # 'fenced' -> all running elsewhere
    intents: Series = field(default_factory=Series)  # 'fenced' -> 'recovery done: flushed'
    zookeeper_done: Series = field(default_factory=Series)  # 'fenced' -> done in ZooKeeper
    ipmitool_off: Series = field(default_factory=Series)  # our ipmitool launch -> power loss
    rejoin: Series = field(default_factory=Series)  # power on -> every daemon 'run'
    ready: Series = field(default_factory=Series)  # pvc node ready --wait, whole
    ready_work: Series = field(default_factory=Series)  # the ready runner: started -> finished
    fenced_by: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)


class PowerLossBench:
    """Part (b) on one cluster: hv3 powered off and recovered, then restored."""

    def __init__(self, cluster: LocalCluster, store: ZkStore, vms: dict[str, str]) -> None:
        self.cluster, self.store, self.vms = cluster, store, vms
        self.uuids = list(vms.values())
        self.config = daemon_config(cluster, HOME)
        self.coordinators = [name for name in cluster.node_names if name != VICTIM]

    def recovered(self, conns: dict[str, libvirt.virConnect]) -> tuple[bool, bool]:
        """(done in ZooKeeper, also confirmed by libvirtd) for every VM of the victim.

        Done in ZooKeeper: ``state=start`` on another node that lists it in its
        ``runningdomains`` (the fenced node's stale list is ignored, as the daemons do).
        """
        vms = load_vms(self.store, self.uuids)
        nodes = {node.name: node for node in load_nodes(self.store)}
        in_zookeeper = len(vms) == len(self.uuids) and all(
            vm.state == "start"
            and vm.node != VICTIM
            and vm.node in nodes
            and vm.uuid in nodes[vm.node].runningdomains
            for vm in vms
        )
        if not in_zookeeper or self.cluster.mode != "qemu":
            return in_zookeeper, in_zookeeper
        return True, all(domain_running(conns[vm.node], vm.uuid) for vm in vms)

    def time_power_loss(self, figures: FenceFigures) -> None:
        """Cut hv3's power through its BMC; time it to all its VMs running elsewhere."""
        bmc = self.cluster.bmcs[VICTIM]
        logs = {name: self.cluster.daemons[name].log_path for name in self.coordinators}
        offsets = {name: file_size(path) for name, path in logs.items()}
        chassis_before = len(bmc.chassis_log())
        with contextlib.ExitStack() as stack:
            # Opened before the power loss: the survivors' libvirtds are never restarted.
            conns = {
                name: stack.enter_context(self.cluster.hosts[name].connection())
                for name in self.coordinators
                if self.cluster.mode == "qemu"
            }
            launched = time.time()
            result = bmc.ipmitool("chassis", "power", "off")
            if result.returncode != 0:
                raise BenchmarkError(f"ipmitool chassis power off failed: {result.stderr}")
            session_gone: float | None = None
            zookeeper_done: float | None = None
            while True:
                # Every look is timed after it was made: a hit is never early.
                gone = VICTIM not in live_nodes(self.store)
                in_zookeeper, confirmed = self.recovered(conns)
                now = time.time()
                if gone and session_gone is None:
                    session_gone = now
                if in_zookeeper and zookeeper_done is None:
                    zookeeper_done = now
                if confirmed:
                    break
                if now - launched > RECOVERY_TIMEOUT:
                    raise BenchmarkError(
                        f"{VICTIM}'s VMs not all running elsewhere {RECOVERY_TIMEOUT:g} s "
                        "after its power-off"
                    )
                time.sleep(POLL_INTERVAL)
            done = now
        off = self.power_off_moment(chassis_before)
        victim = next(node for node in load_nodes(self.store) if node.name == VICTIM)
        marks = self.coordinator_marks(logs, offsets)
        self.check_recovery(victim)
        limit = self.config.daemon.keepalive_interval * self.config.fencing.intervals
        figures.total.add(done - off)
        figures.ipmitool_off.add(off - launched)
        figures.session_gone.add(since(off, session_gone))
        # Judged stale once 'now - keepalive > limit'; keepalive is whole seconds (int).
        figures.keepalive_stale.add(victim.keepalive + limit - off)
        figures.first_dead_check.add(since(off, marks["looks dead"]))
        if marks["looks dead"] is not None:  # not logged when rechecks is 1
            figures.rechecks.add(marks["fencing"] - marks["looks dead"])
        figures.detection.add(marks["fencing"] - off)
        figures.fence.add(marks["fenced"] - marks["fencing"])
        figures.fence_confirmed.add(marks["confirmed after"])
        figures.recovery.add(done - marks["fenced"])
        figures.intents.add(since(marks["fenced"], marks["recovery done"]))
        figures.zookeeper_done.add(since(marks["fenced"], zookeeper_done))
        figures.fenced_by[marks["by"]] += 1
        for vm in load_vms(self.store, self.uuids):
            figures.targets[vm.node] += 1

    def power_off_moment(self, lines_before: int) -> float:
        """When the BMC simulator cut the power: its chassis_control logs it right after."""
        for line in self.cluster.bmcs[VICTIM].chassis_log()[lines_before:]:
            if " set power 0:" in line:
                return float(line.split()[0])
        raise BenchmarkError(f"{VICTIM}'s BMC logged no power off")

    def coordinator_marks(self, logs: dict[str, Path], offsets: dict[str, int]) -> dict[str, Any]:
        """The coordinators' log lines about the victim: each phase's first occurrence.

        The first coordinator to take the fence lock fences; the other may have logged
        its own 'looks dead' checks, so the earliest of each line over both is taken.
        """
        needles = {
            "looks dead": f"node {VICTIM!r} looks dead",
            "fencing": f"node {VICTIM!r}: fencing it through its BMC",
            "fenced": f"node {VICTIM!r}: fenced (",
            "recovery done": f"node {VICTIM!r}: recovery done: flushed",
        }
        deadline = time.monotonic() + LOG_LINE_GRACE
        while True:
            found: dict[str, tuple[float, str, str] | None] = dict.fromkeys(needles)
            for name, path in logs.items():
                lines = log_lines_since(path, offsets[name])
                for key, needle in needles.items():
                    hit = first_line_with(lines, needle)
                    current = found[key]
                    if hit is not None and (current is None or hit[0] < current[0]):
                        found[key] = (hit[0], hit[1], name)
            missing = [key for key in ("fencing", "fenced") if found[key] is None]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise BenchmarkError(f"no coordinator logged {missing} for {VICTIM}")
            time.sleep(POLL_INTERVAL)
        fencing, fenced = found["fencing"], found["fenced"]
        assert fencing is not None and fenced is not None
        confirmed = CONFIRMED_AFTER.search(fenced[1])
        return {key: (entry[0] if entry is not None else None) for key, entry in found.items()} | {
            "by": fencing[2],
            "confirmed after": float(confirmed.group(1)) if confirmed else None,
        }

    def check_recovery(self, victim: NodeRecord) -> None:
        """The victim is recorded fenced and recovered, every VM with outcome 'started'."""
        record = victim.maintenance
        if victim.daemonstate != "fenced" or record.get("kind") != "recovery":
            raise BenchmarkError(f"{VICTIM}: {victim.daemonstate}, record {record}")
        outcomes = [entry.get("outcome") for entry in record.get("vms", {}).values()]
        if outcomes != ["started"] * len(self.uuids):
            raise BenchmarkError(f"{VICTIM}'s recovery outcomes: {outcomes}")

    def restore(self, figures: FenceFigures) -> None:
        """Power hv3 on, wait for its daemon, ready it: its VMs come back (timed apart)."""
        started = time.time()
        self.cluster.power_on(VICTIM)
        self.cluster.wait_nodes_running(120.0)
        figures.rejoin.add(time.time() - started)
        started = time.time()
        output = run_pvc(self.cluster, "node", "ready", VICTIM, "--wait", "--wait-timeout", "600")
        figures.ready.add(time.time() - started)
        if f"ready of {VICTIM} done" not in output:
            raise BenchmarkError(f"pvc node ready {VICTIM} --wait did not finish:\n{output}")
        self.wait_home()
        record = next(n for n in load_nodes(self.store) if n.name == VICTIM).maintenance
        figures.ready_work.add(float(record["finished"]) - float(record["started"]))

    def wait_home(self) -> None:
        """Every VM runs on hv3 again (ZooKeeper, and libvirtd with QEMU), guests ticking."""
        wait_until(
            lambda: all_running_on(self.store, self.uuids, VICTIM),
            120.0,
            f"the VMs are not all running on {VICTIM}",
        )
        if self.cluster.mode != "qemu":
            return
        with self.cluster.hosts[VICTIM].connection() as conn:
            wait_until(
                lambda: all(domain_running(conn, uuid) for uuid in self.uuids),
                60.0,
                f"{VICTIM}'s libvirtd does not run every VM",
            )
        wait_ticking(self.cluster, list(self.vms))


def measure_power_loss(
    label: str,
    settings: dict[str, dict[str, Any]],
    runs: int,
    keep: bool,
    *,
    mode: Mode = "qemu",
    vm_count: int = 3,
) -> dict[str, Any]:
    """Part (b) at one setting, on a new cluster with a BMC per node."""
    figures = FenceFigures()
    with (
        bench_cluster(mode, settings, bmcs=True, keep=keep) as cluster,
        cluster.store() as store,
    ):
        names = [f"pw{index}" for index in range(1, vm_count + 1)]
        log(f"(b) {label}: defining and starting {vm_count} VMs on {VICTIM}")
        bench = PowerLossBench(cluster, store, define_running(cluster, store, names, VICTIM, 128))
        bench.wait_home()
        for index in range(1, runs + 1):
            bench.time_power_loss(figures)
            log(
                f"(b) {label} run {index}/{runs}: all VMs running elsewhere "
                f"{figures.total.seconds[-1]:.2f} s after the power-off (detection "
                f"{figures.detection.seconds[-1]:.2f} s, fence {figures.fence.seconds[-1]:.2f} s, "
                f"recovery {figures.recovery.seconds[-1]:.2f} s)"
            )
            if index < runs:  # after the last run the cluster is stopped: nothing to compare
                log(f"(b) {label}: powering {VICTIM} on, readying it, its VMs moving back")
                bench.restore(figures)
        config = bench.config
        facts = part_facts(cluster, None)
    phases = {
        key: getattr(figures, key).as_dict()
        for key in (
            "total",
            "detection",
            "session_gone",
            "keepalive_stale",
            "first_dead_check",
            "rechecks",
            "fence",
            "fence_confirmed",
            "recovery",
            "intents",
            "zookeeper_done",
            "ipmitool_off",
            "rejoin",
            "ready",
            "ready_work",
        )
    }
    return {
        "label": label,
        "driver": mode,
        "vms": vm_count,
        "runs": runs,
        "keepalive_interval_s": config.daemon.keepalive_interval,
        "fence_intervals": config.fencing.intervals,
        "rechecks": config.fencing.rechecks,
        "zookeeper_timeout_s": config.zookeeper.timeout,
        "phases": phases,
        "fenced_by": dict(figures.fenced_by),
        "recovered_to": dict(figures.targets),
        "software": facts,
    }


# --------------------------------------------------------------------------- the run


def part_facts(cluster: LocalCluster, conn: libvirt.virConnect | None) -> dict[str, str]:
    """The versions a part ran on (libvirt and QEMU only with QEMU guests)."""
    facts = {"zookeeper": zookeeper_version(cluster.zk_hosts)}
    if conn is None and cluster.mode == "qemu":
        with cluster.hosts[HOME].connection() as own:
            return part_facts(cluster, own)
    if conn is not None:
        facts |= {
            "libvirt": version_text(conn.getLibVersion()),
            "qemu": version_text(conn.getVersion()),
        }
    return facts


#: Width of the label column of the tables.
LABEL_WIDTH = 52


def row(label: str, entry: dict[str, Any]) -> str:
    """One table line: label, then min / median / max in seconds."""
    return timing_row(label, entry, LABEL_WIDTH, digits=2)


def header() -> str:
    """The min / median / max header of the tables."""
    return column_header(LABEL_WIDTH)


def report_flush(part: dict[str, Any], default: int) -> list[str]:
    """The table of one flush cluster."""
    driver = (
        "libvirt's test driver (orchestration only; moves are shutdown and start)"
        if part["driver"] == "test"
        else "real QEMU guests (TCG), moves are live migrations"
    )
    lines = [
        f"(a) flush of {HOME} with {part['vms']} running VMs of {part['memory_mib']} MiB, all on "
        f"{HOME}, no limits: {driver}",
        f"    launch of 'pvc node flush {HOME}' -> domainstate 'flushed' in ZooKeeper; daemons' "
        f"reconcile_interval {part['reconcile_interval_s']:g} s, keepalive "
        f"{part['keepalive_interval_s']:g} s; order of runs {part['order']}",
        header(),
    ]
    settings = part["settings"]
    for entry in settings:
        runs = len(entry["flush_total"].get("runs_s", []))
        mark = " (default)" if entry["concurrency"] == default else ""
        outcomes = ", ".join(f"{n} {kind}" for kind, n in sorted(entry["outcomes"].items()))
        lines += [
            f"  maintenance.concurrency {entry['concurrency']}{mark}: {runs} run(s); "
            f"outcomes {outcomes}",
            row("  flush total (launch -> flushed)", entry["flush_total"]),
            row("    pickup (launch -> runner started)", entry["pickup"]),
            row("    work (runner started -> flushed)", entry["work"]),
            row("    (pvc process exited)", entry["cli_exited"]),
            row("  ready --wait before it (not in the total)", entry["ready_wait_total"]),
            row("    its runner's work (started -> finished)", entry["ready_work"]),
        ]
    base = settings[0]
    for entry in settings[1:]:
        lines.append(
            f"  speed-up of concurrency {entry['concurrency']} over {base['concurrency']} "
            f"(ratio of medians): flush total {ratio(base['flush_total'], entry['flush_total'])}, "
            f"work {ratio(base['work'], entry['work'])}, ready's work "
            f"{ratio(base['ready_work'], entry['ready_work'])}"
        )
    return lines


def report_power_loss(part: dict[str, Any]) -> list[str]:
    """The table of one power-loss setting."""
    phases = part["phases"]
    limit = part["keepalive_interval_s"] * part["fence_intervals"]
    driver = "QEMU guests" if part["driver"] == "qemu" else "test-driver VMs"
    end = "ZooKeeper and libvirtd" if part["driver"] == "qemu" else "ZooKeeper"
    fenced_by = ", ".join(f"{name} {n}x" for name, n in sorted(part["fenced_by"].items()))
    targets = ", ".join(f"{name} {n}" for name, n in sorted(part["recovered_to"].items()))
    return [
        f"(b) {part['label']}: keepalive_interval {part['keepalive_interval_s']:g} s, "
        f"fencing.intervals {part['fence_intervals']} (limit {limit:g} s), rechecks "
        f"{part['rechecks']}, zookeeper.timeout {part['zookeeper_timeout_s']:g} s",
        f"    power-off of {VICTIM} (BMC) with {part['vms']} {driver} -> all running elsewhere "
        f"({end}); {part['runs']} run(s); fenced by {fenced_by}; VMs went to {targets}",
        header(),
        row("total (power lost -> all running elsewhere)", phases["total"]),
        row("detection (-> 'fencing it through its BMC')", phases["detection"]),
        row("  power lost -> its session seen gone", phases["session_gone"]),
        row("  power lost -> its keepalive older than limit", phases["keepalive_stale"]),
        row("  power lost -> first 'looks dead' check", phases["first_dead_check"]),
        row("  first 'looks dead' -> fencing (rechecks)", phases["rechecks"]),
        row("fence ('fencing it' -> 'fenced')", phases["fence"]),
        row("  of which off -> confirmed off (fencer's figure)", phases["fence_confirmed"]),
        row("recovery ('fenced' -> all running elsewhere)", phases["recovery"]),
        row("  'fenced' -> 'recovery done' (intents written)", phases["intents"]),
        row("  'fenced' -> done in ZooKeeper", phases["zookeeper_done"]),
        row("(our ipmitool launched -> power lost)", phases["ipmitool_off"]),
        row("(restore: power on -> every daemon 'run')", phases["rejoin"]),
        row(f"(restore: pvc node ready {VICTIM} --wait)", phases["ready"]),
        row("(  its runner's work: started -> finished)", phases["ready_work"]),
    ]


def report(figures: dict[str, Any]) -> str:
    """The figures block printed at the end."""
    machine = figures["machine"]
    load = ", ".join(f"{value:.2f}" for value in machine["load_average_at_end"])
    software: dict[str, str] = {}
    for part in figures["flush"] + figures["power_loss"]:
        software |= part["software"]
    versions = ", ".join(f"{name} {value}" for name, value in sorted(software.items()))
    lines = [
        *banner(
            "HA benchmark: flush concurrency, and power loss to recovery, on local clusters",
            width=90,
        ),
        f"machine     {machine['cpu_model']}, {machine['cores']} cores, kernel "
        f"{machine['kernel']}, load average at the end {load}",
        f"software    Python {machine['python']}, {versions}",
        "cluster     ZooKeeper + hv1..hv3 (a pvcnoded each; libvirtd + QEMU or libvirt's test "
        "driver), BMC simulators in (b), all on this machine",
        f"timing      wall clock; ZooKeeper (and libvirtd) polled every "
        f"{POLL_INTERVAL * 1000:.0f} ms; daemon log lines to the millisecond",
        f"total time  {figures['elapsed_s']:.0f} s",
    ]
    for part in figures["flush"]:
        lines += ["", *report_flush(part, figures["default_concurrency"])]
    for part in figures["power_loss"]:
        lines += ["", *report_power_loss(part)]
    lines += ["", *interpretation(figures)]
    return "\n".join(lines)


def median_text(entry: dict[str, Any]) -> str:
    return f"{entry['median_s']:.2f} s" if entry.get("runs_s") else "n/a"


def flush_paragraph(figures: dict[str, Any]) -> str:
    """What part (a)'s figures are made of."""
    parts = {part["driver"]: part for part in figures["flush"]}
    text = (
        "Flush: 'pickup' is the pvc process and its write, then hv1's daemon noticing the "
        "request: it watches its own node's row, so the runner starts within a watch "
        "round trip, whenever the request lands. So the speed-up that concurrency buys is "
        "read on "
        "'work' (the totals' speed-up also carries the pickup's noise). 'work' is the "
        "runner moving the VMs: it issues at most 'concurrency' moves, looks at them every "
        "0.25 s (its poll), and issues the next one as soon as one has ended."
    )
    test = parts.get("test")
    if test is not None:
        waves = [
            entry["work"]["median_s"] / math.ceil(test["vms"] / entry["concurrency"])
            for entry in test["settings"]
            if entry["work"].get("runs_s")
        ]
        text += (
            " On the test driver a move (shutdown, then start on the target) takes tens of "
            "milliseconds, so each wave of 'concurrency' moves costs about one runner poll "
            f"plus the daemons' reactions (here {min(waves):.2f}-{max(waves):.2f} s per "
            "wave): the work shrinks almost in proportion to the concurrency, and these "
            "figures are the orchestration's own cost."
        )
    qemu = parts.get("qemu")
    if qemu is not None:
        text += (
            " With QEMU guests each move is a live migration that copies the guest's memory "
            "while it runs; concurrent migrations share this machine's CPUs with the guests "
            "and with each other. A live migration counts as ended once the target lists "
            "the VM (at once, on its arrival) and its daemon has confirmed the request with "
            "the VM running there: a watch round trip and one write after libvirt's job."
        )
    return text


def power_loss_paragraph(part: dict[str, Any]) -> str:
    """What one setting's power-loss figures are made of, with the model's range."""
    phases = part["phases"]
    interval = part["keepalive_interval_s"]
    limit = interval * part["fence_intervals"]
    session = part["zookeeper_timeout_s"]
    rechecks = part["rechecks"]
    # Each sign can come up to one keepalive interval early (the last keepalive, or the
    # last heartbeat, was that long before the power-off; keepalives also count in whole
    # seconds) and the session a little late (the server expires sessions in ticks).
    low = max(limit - interval - 1, session - interval) + (rechecks - 1) * interval
    high = max(limit, session + 0.5) + interval + (rechecks - 1) * interval
    session_gone, stale = phases["session_gone"], phases["keepalive_stale"]
    later = "the keepalive limit"
    if session_gone.get("runs_s") and stale.get("runs_s"):
        if session_gone["median_s"] > stale["median_s"]:
            later = "the session's expiry"
    return (
        f"Power loss, {part['label']}: every keepalive_interval ({interval:g} s) each "
        "coordinator (hv1 and hv2) judges the other nodes; a node is dead only when BOTH its "
        f"last keepalive is older than keepalive_interval x fencing.intervals ({limit:g} s) "
        f"AND its ZooKeeper session is gone (zookeeper.timeout {session:g} s after its last "
        f"heartbeat), and it is fenced when it looked dead on fencing.rechecks ({rechecks}) "
        "consecutive checks. Detection is therefore the later of the two signs (the "
        "keepalive's age at the power-off counts against the limit, and keepalives are "
        "stored in whole seconds, so that sign can come up to a second earlier still) + "
        "the wait for the next "
        f"check + {rechecks - 1} more check(s) x {interval:g} s: roughly {low:g} to "
        f"{high:g} s here; measured median {median_text(phases['detection'])} (session "
        f"seen gone after {median_text(session_gone)}, keepalive stale after "
        f"{median_text(stale)}; the later sign was {later}). Requiring both signs is what "
        "keeps a live node from being powered off under its VMs: a stale keepalive with "
        "a live session is a slow or stuck daemon whose VMs may run fine, and a lost "
        "session with fresh keepalives is a ZooKeeper hiccup or a pause the node comes "
        "back from; the price is waiting for the slower sign, and the rechecks add "
        "whole check intervals against a single unlucky reading. The fence "
        f"({median_text(phases['fence'])}) is ipmitool over IPMI-LAN: power off, read the "
        "power state until it says off (only a confirmed off lets the VMs start elsewhere: "
        "none may run twice), then power on. Recovery "
        f"({median_text(phases['recovery'])}) is the coordinator writing each VM's new node "
        f"and state ({median_text(phases['intents'])}), then each target daemon, woken by "
        "its watch on the VM, listing and starting it."
    )


def interpretation(figures: dict[str, Any]) -> list[str]:
    """Paragraphs on what the figures are made of, with this run's medians filled in."""
    paragraphs = [flush_paragraph(figures)] if figures["flush"] else []
    paragraphs += [power_loss_paragraph(part) for part in figures["power_loss"]]
    paragraphs.append(
        "Everything runs on this one machine (ZooKeeper, daemons, libvirtds, emulated "
        "guests, BMC simulators), so absolute times are this machine's at its load: compare "
        "figures of the same run, not across machines."
    )
    lines = ["What the figures mean:"]
    for text in paragraphs:
        lines += [*textwrap.wrap(text, 90), ""]
    return lines[:-1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Time a node flush at several maintenance concurrencies, and a node's "
        "power loss to its VMs running elsewhere, on local clusters."
    )
    parser.add_argument(
        "--runs",
        type=int,
        help="measured flushes at concurrency 1 and 2, per cluster (default 3, 1 with "
        "--quick; concurrency 4 gets a third of them, at least one)",
    )
    parser.add_argument(
        "--fence-runs",
        type=int,
        help="power losses per setting (default 2, 1 with --quick)",
    )
    parser.add_argument(
        "--vms", type=int, default=24, help="VMs flushed on the test-driver cluster (default 24)"
    )
    parser.add_argument(
        "--qemu-vms", type=int, default=4, help="VMs flushed with QEMU guests (default 4)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one run of everything, concurrency 1 and 2 only, unless --runs or --fence-runs "
        "say otherwise (about half the time)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the clusters' work directories (daemon, libvirtd and BMC logs) in /tmp",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="also write the figures as JSON to FILE; --json alone prints them after the table",
    )
    args = parser.parse_args(argv)
    # Explicit counts win over --quick's.
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.fence_runs is None:
        args.fence_runs = 1 if args.quick else 2
    for name in ("runs", "fence_runs", "vms", "qemu_vms"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 if measured, 1 if it failed."""
    args = parse_args(argv)
    if not PVC.is_file():
        print(f"error: no pvc console script at {PVC}", file=sys.stderr)
        return 1
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.harness.bmc import BmcError
    from tests.harness.cluster import ClusterError
    from tests.harness.hypervisor import LibvirtHostError

    # Failed lookups of domains that are gone are expected here: no stderr noise.
    libvirt.registerErrorHandler(lambda *unused: None, None)
    concurrencies = [1, default_concurrency()] + ([] if args.quick else [4])
    concurrencies = sorted(set(concurrencies))
    runs = {c: args.runs for c in concurrencies}
    if 4 in runs and 4 != default_concurrency():
        runs[4] = max(1, args.runs // 3)  # 'cheaply': a check of the trend, not a series
    started = time.time()
    try:
        flush = [
            measure_flush("test", args.vms, concurrencies, runs, args.keep),
            measure_flush("qemu", args.qemu_vms, concurrencies, runs, args.keep),
        ]
        power_loss = [
            measure_power_loss(
                "fast test-like settings", FAST_SETTINGS, args.fence_runs, args.keep
            ),
            measure_power_loss("PVC defaults", pvc_defaults(), args.fence_runs, args.keep),
        ]
    except (
        BenchmarkError,
        BmcError,
        ClusterError,
        LibvirtHostError,
        PvcError,
        TimeoutError,
        libvirt.libvirtError,
        subprocess.SubprocessError,
        OSError,
    ) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    figures = {
        "machine": machine_facts(),
        "elapsed_s": time.time() - started,
        "poll_interval_s": POLL_INTERVAL,
        "default_concurrency": default_concurrency(),
        "nodes": {"flushed": HOME, "powered_off": VICTIM},
        "flush": flush,
        "power_loss": power_loss,
    }
    print(report(figures))
    if args.json == "-":
        print(json.dumps(figures, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
