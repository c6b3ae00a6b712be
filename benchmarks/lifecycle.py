"""Benchmark a VM's start and its live migration on the real local cluster, beside libvirt alone.

What is measured
================

The script starts its own local cluster (``tests/harness/cluster.py`` in ``qemu`` mode: a
ZooKeeper server, libvirtd hosts hv1..hv3 and a ``pvcnoded`` for each) in a short
temporary directory, measures, and always stops it again. The guests are the harness's
tiny QEMU guests (software emulation), which print ``pvc-guest: booted <name>`` on their
serial console and then ``pvc-guest: tick N`` every 0.5 s.

(a) Start to the guest's first console line.
    Managed: from just before launching ``pvc vm start NAME`` (the real console script, as
    an operator runs it) until the VM's console log file holds one more boot line than
    before (polled every 10 ms). Then ``pvc vm stop NAME --yes --wait`` and a wait until
    hv1's libvirtd reports the domain inactive. Direct, in the same run and alternating
    with it: ``createXML`` of a second, unmanaged guest on the same libvirtd (hv1, over an
    already open connection), timed the same way to its first boot line, then destroyed.
    The difference (paired per run) is the share of our software (the CLI process,
    ZooKeeper, the daemon noticing the request and starting the domain) plus the noise
    of a software-emulated boot, which varies by some tenths of a second from one boot
    to the next. The daemon's log lines, timestamped to the millisecond, also give the
    share without the boot: from launch to ``vm 'NAME': started on hv1`` (logged when
    the daemon's ``createXML`` returned) minus the baseline's bare ``createXML`` call;
    and ``vm 'NAME': start: ...`` (logged when the daemon begins) splits it into "until
    the daemon acts" and "after it acts".

(b) A live migration's total time and the daemon's share of it.
    With a managed guest running on hv1: from just before launching
    ``pvc vm migrate NAME --target hv2`` (without ``--wait``) until ZooKeeper shows the
    migration done (polled every 10 ms on an open connection: ``state`` is ``start``,
    ``node`` is the target and only the target's ``runningdomains`` lists the VM). The
    libvirt share is read from the source daemon's log, which records
    ``<uuid>: libvirt live migration took X.XXX s`` around its ``migrateToURI3`` call:
    the newest such line written since the run began. Overhead = total - libvirt share.
    Then ``pvc vm unmigrate NAME`` brings it back, measured the same way. In the same
    run, alternating with it, an unmanaged guest is live-migrated directly with
    ``migrateToURI3`` (the daemon's flags, URI parameters and maximum downtime) from hv1
    to hv2 and back: the libvirt baseline for each direction. The source daemon's log
    also times its phases from launch: when it began (``vm 'NAME': migrate-out: ...``),
    when it called ``migrateToURI3`` (the libvirt line's time minus the seconds it
    gives) and how long after that call returned ZooKeeper showed the migration done.
    An unmanaged guest runs beside the managed one throughout (b), so both kinds of
    migration happen with the same two guests on the machine.

    Every migration (warm-ups included) is checked to have been live: the source
    daemon logged a libvirt migration, the guest printed no new boot line, its tick
    counter went on from where it was, libvirt runs it on the target only and
    ZooKeeper records no failure reason. A migration that fell back to shutdown and
    start is reported loudly and the script exits non-zero: its times would measure
    something else.

Each variant gets one unmeasured warm-up (first QEMU start, first connection between two
libvirtds); then ``--runs`` measured runs, managed and direct alternating and swapping
order every run so that drift of the machine affects both alike. Figures are min /
median / max; the differences are paired (run i of one minus run i of the other).

Run it from the repository root::

    .venv/bin/python benchmarks/lifecycle.py [--runs 5] [--json [FILE]]

It needs what ``make cluster`` needs (libvirtd, QEMU, ZooKeeper, busybox-static; ``make
system-deps``). Figures go to stdout, progress to stderr; ``--json FILE`` also writes the
figures as JSON to FILE (``--json`` alone prints them after the table). The exit code is
0 when the measurements were made, 1 when the benchmark itself failed and 2 when a
migration turned out not to be live. The work directory is removed afterwards unless
something failed (its daemon and libvirtd logs are then kept for inspection and its path
is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import libvirt
from machine_facts import cpu_model, zookeeper_version
from timing_table import banner, column_header, timing_row

from pvc_common.errors import PvcError
from pvc_common.snapshot import load_nodes, load_vms
from pvc_common.store import ZkStore

if TYPE_CHECKING:  # imported at run time only after the repository root is on sys.path
    from tests.harness.cluster import LocalCluster
    from tests.harness.guest import ConsoleLog

REPO_ROOT = Path(__file__).resolve().parent.parent
PVC = Path(sys.executable).parent / "pvc"

#: Where the managed VMs are defined, and where they migrate to.
HOME, TARGET = "hv1", "hv2"

#: The four guests: two managed by the cluster, two driven through libvirt directly.
START_VM = ("bench-start", "b0000000-0000-4000-8000-00000000a001")
DIRECT_START_VM = ("bench-direct-start", "b0000000-0000-4000-8000-00000000a002")
MIGRATE_VM = ("bench-migrate", "b0000000-0000-4000-8000-00000000b001")
DIRECT_MIGRATE_VM = ("bench-direct-migrate", "b0000000-0000-4000-8000-00000000b002")

#: How often the console log, ZooKeeper or a process are looked at while timing.
POLL_INTERVAL = 0.01
#: Deadlines (generous: on a loaded 2-core machine a TCG guest boots in a few seconds).
BOOT_TIMEOUT = 120.0
MIGRATION_TIMEOUT = 180.0
TICK_TIMEOUT = 30.0
#: How long the source daemon may take to write its libvirt line after ZooKeeper shows
#: the migration done (it writes it before publishing, so normally it is already there).
LOG_LINE_GRACE = 5.0

#: The daemon's live-migration call (see pvc_noded.hypervisor.Hypervisor.migrate).
MIGRATE_FLAGS = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
MIGRATE_PARAMS = {
    libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1",
    libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "127.0.0.1",
}

#: A daemon log line (not journald): ISO 8601 UTC with milliseconds, level, text.
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\w+) (.*)$")
LIBVIRT_TOOK = re.compile(r"(\S+): libvirt live migration took ([0-9.]+) s")


class BenchmarkError(RuntimeError):
    """A step of the benchmark failed: its figures would not mean what they claim."""


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the figures."""
    print(f"[lifecycle] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- figures


@dataclass
class Series:
    """Seconds measured over the runs of one variant."""

    seconds: list[float] = field(default_factory=list)

    @property
    def minimum(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def maximum(self) -> float:
        return max(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        if not self.seconds:
            return {"runs_s": []}
        return {
            "min_s": self.minimum,
            "median_s": self.median,
            "max_s": self.maximum,
            "runs_s": self.seconds,
        }


def paired(left: Series, right: Series) -> Series:
    """Run-by-run difference ``left - right`` (both measured in the same rounds).

    Empty (shown as n/a) when a run lacks one of the two, as when a migration was not
    live and its daemon logged no libvirt time: runs must not be paired with others.
    """
    if len(left.seconds) != len(right.seconds):
        return Series()
    return Series([a - b for a, b in zip(left.seconds, right.seconds, strict=True)])


@dataclass
class Liveness:
    """The evidence that one migration was live, and what it showed."""

    what: str
    live: bool
    ticks: tuple[int | None, int]  # last tick before, first tick seen after
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- small helpers


def pvc_env(cluster: LocalCluster) -> dict[str, str]:
    """The environment the real ``pvc`` runs in: the cluster's ZooKeeper, no colours."""
    return {**os.environ, "PVC_ZOOKEEPER": cluster.zk_hosts, "NO_COLOR": "1"}


def run_pvc(cluster: LocalCluster, *args: str, timeout: float = 180.0) -> str:
    """Run ``pvc`` to completion (not timed); fail the benchmark if it fails."""
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
    """Start ``pvc`` without waiting for it (its output is a line or two: a pipe is fine)."""
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


def boot_count(console_log: Path) -> int:
    """Boot lines in a guest's console log so far (the file is appended to, never cut)."""
    from tests.harness.guest import read_console

    return len(read_console(console_log).boots)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every :data:`POLL_INTERVAL` until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{what} (waited {timeout:g} s)")
        time.sleep(POLL_INTERVAL)


def domain_state(conn: libvirt.virConnect, uuid: str) -> int:
    """libvirt's state of a domain on one host.

    A domain the host does not know counts as shut off: transient domains vanish when
    they stop or leave by migration.
    """
    try:
        return int(conn.lookupByUUIDString(uuid).state()[0])
    except libvirt.libvirtError:
        return int(libvirt.VIR_DOMAIN_SHUTOFF)


def wait_inactive(conn: libvirt.virConnect, uuid: str, what: str) -> None:
    """Wait until the host's libvirtd no longer runs the domain (its QEMU is gone)."""
    wait_until(
        lambda: domain_state(conn, uuid) == libvirt.VIR_DOMAIN_SHUTOFF,
        60.0,
        f"{what} still active on its libvirtd",
    )


def file_size(path: Path) -> int:
    """Bytes in a log file so far: where the lines of the next run will begin."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_lines_since(path: Path, offset: int) -> list[tuple[float, str]]:
    """(time since the epoch, text) of each daemon log line written after byte ``offset``."""
    with path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", "replace")
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


def version_text(number: int) -> str:
    """libvirt's packed version number (major * 1,000,000 + minor * 1,000 + micro)."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


# --------------------------------------------------------------------------- (a) start


@dataclass
class StartFigures:
    """Part (a): launch (or createXML) to the first boot line, and pvc's phases."""

    pvc: Series = field(default_factory=Series)
    direct: Series = field(default_factory=Series)
    cli_exit: Series = field(default_factory=Series)  # launch -> the pvc process exited
    daemon_acts: Series = field(default_factory=Series)  # launch -> daemon's start line
    # daemon's start line -> its 'started on' line (runningdomains write + createXML)
    daemon_start_path: Series = field(default_factory=Series)
    to_created: Series = field(default_factory=Series)  # launch -> 'started on' line
    created_to_boot: Series = field(default_factory=Series)  # 'started on' line -> boot
    direct_create: Series = field(default_factory=Series)  # the createXML call alone
    direct_created_to_boot: Series = field(default_factory=Series)  # createXML returned -> boot


def time_pvc_start(
    cluster: LocalCluster, conn: libvirt.virConnect, figures: StartFigures | None
) -> None:
    """``pvc vm start`` to the first boot line, then stop it; record into ``figures``."""
    name, uuid = START_VM
    console = cluster.console_log(name)
    daemon_log = cluster.daemons[HOME].log_path
    boots_before = boot_count(console)
    offset = file_size(daemon_log)
    wall = time.time()
    started = time.perf_counter()
    process = launch_pvc(cluster, "vm", "start", name)
    cli_exit: float | None = None
    deadline = started + BOOT_TIMEOUT
    while True:
        # The clock is read after each look, so a hit is timed when it is known for sure.
        seen = boot_count(console) > boots_before
        now = time.perf_counter()
        if seen:
            booted = now - started
            break
        if cli_exit is None and process.poll() is not None:
            cli_exit = now - started
        if now > deadline:
            process.kill()
            raise BenchmarkError(f"{name}: no new boot line {BOOT_TIMEOUT:g} s after pvc vm start")
        time.sleep(POLL_INTERVAL)
    finish_pvc(process, f"vm start {name}")
    if cli_exit is None:  # still running when the guest booted: it ended just now
        cli_exit = time.perf_counter() - started
    lines = log_lines_since(daemon_log, offset)
    acted = first_line_with(lines, f"vm {name!r}: start:")
    # Logged right after createXML returned (pvc_noded.vm_actions._start).
    created = first_line_with(lines, f"vm {name!r}: started on {HOME}")

    run_pvc(cluster, "vm", "stop", name, "--yes", "--wait", "--wait-timeout", "60")
    wait_inactive(conn, uuid, name)
    if figures is None:
        return
    figures.pvc.seconds.append(booted)
    figures.cli_exit.seconds.append(cli_exit)
    if acted is None or created is None:
        raise BenchmarkError(f"{HOME}'s daemon logged no start of {name} ({daemon_log})")
    figures.daemon_acts.seconds.append(acted[0] - wall)
    figures.daemon_start_path.seconds.append(created[0] - acted[0])
    figures.to_created.seconds.append(created[0] - wall)
    figures.created_to_boot.seconds.append(booted - (created[0] - wall))


def time_direct_start(
    cluster: LocalCluster, conn: libvirt.virConnect, figures: StartFigures | None
) -> None:
    """libvirt ``createXML`` to the first boot line, then destroy it."""
    name, uuid = DIRECT_START_VM
    console = cluster.console_log(name)
    xml = cluster.vm_xml(name, uuid)
    boots_before = boot_count(console)
    started = time.perf_counter()
    domain = conn.createXML(xml, 0)
    created = time.perf_counter() - started
    wait_until(lambda: boot_count(console) > boots_before, BOOT_TIMEOUT, f"{name}: no boot line")
    booted = time.perf_counter() - started
    domain.destroy()
    wait_inactive(conn, uuid, name)
    if figures is not None:
        figures.direct.seconds.append(booted)
        figures.direct_create.seconds.append(created)
        figures.direct_created_to_boot.seconds.append(booted - created)


def measure_start(cluster: LocalCluster, conn: libvirt.virConnect, runs: int) -> StartFigures:
    """Part (a): both variants, one warm-up each, then ``runs`` alternating rounds."""
    name, uuid = START_VM
    xml_path = cluster.workdir / f"{name}.xml"
    xml_path.write_text(cluster.vm_xml(name, uuid))
    run_pvc(cluster, "vm", "define", "--target", HOME, str(xml_path))
    figures = StartFigures()
    variants = (time_pvc_start, time_direct_start)
    log("(a) warm-up start of each variant")
    for variant in variants:
        variant(cluster, conn, None)
    for round_index in range(runs):
        order = variants if round_index % 2 == 0 else tuple(reversed(variants))
        for variant in order:
            variant(cluster, conn, figures)
        log(
            f"(a) run {round_index + 1}/{runs}: pvc {figures.pvc.seconds[-1]:.3f} s, "
            f"createXML {figures.direct.seconds[-1]:.3f} s"
        )
    return figures


# --------------------------------------------------------------------------- (b) migration


@dataclass
class DirectionFigures:
    """Part (b), one direction: pvc's migration, its libvirt share, and the baseline."""

    command: str
    source: str
    target: str
    total: Series = field(default_factory=Series)
    libvirt: Series = field(default_factory=Series)
    overhead: Series = field(default_factory=Series)  # total - libvirt, per run
    direct: Series = field(default_factory=Series)
    cli_exit: Series = field(default_factory=Series)  # launch -> the pvc process exited
    daemon_acts: Series = field(default_factory=Series)  # launch -> source's migrate-out line
    libvirt_start: Series = field(default_factory=Series)  # launch -> migrateToURI3 called
    after_libvirt: Series = field(default_factory=Series)  # migrateToURI3 returned -> done
    retries: int = 0  # failed live attempts the daemon retried (they count in the total)

    @property
    def label(self) -> str:
        return f"{self.source} -> {self.target}"


class Migrations:
    """The migration half: a managed and an unmanaged guest, moved back and forth."""

    def __init__(
        self, cluster: LocalCluster, store: ZkStore, conns: dict[str, libvirt.virConnect]
    ) -> None:
        self.cluster = cluster
        self.store = store
        self.conns = conns
        self.checks: list[Liveness] = []
        from pvc_noded.config import load_config

        # The baseline uses the daemon's own maximum downtime, so both ask QEMU the same.
        config = load_config(cluster.daemons[HOME].config_path)
        self.max_downtime_ms = config.migration.max_downtime_ms
        self.forward = DirectionFigures(f"pvc vm migrate --target {TARGET}", HOME, TARGET)
        self.back = DirectionFigures("pvc vm unmigrate", TARGET, HOME)

    # -- set-up

    def start_guests(self) -> None:
        """Define and start the managed guest, create the unmanaged one; both on hv1."""
        name, uuid = MIGRATE_VM
        xml_path = self.cluster.workdir / f"{name}.xml"
        xml_path.write_text(self.cluster.vm_xml(name, uuid))
        run_pvc(self.cluster, "vm", "define", "--target", HOME, str(xml_path))
        run_pvc(self.cluster, "vm", "start", name, "--wait", "--wait-timeout", "120")
        direct_name, direct_uuid = DIRECT_MIGRATE_VM
        self.conns[HOME].createXML(self.cluster.vm_xml(direct_name, direct_uuid), 0)
        # Migrate only guests that run their tick loop: a guest still booting proves little.
        for vm_name in (name, direct_name):
            self.wait_tick(vm_name, after=1)

    def wait_tick(self, name: str, after: int | None) -> int:
        """Wait for a tick above ``after`` in the current boot; return it."""
        from tests.harness.guest import read_console

        found: list[int] = []

        def ticked() -> bool:
            ticks = read_console(self.cluster.console_log(name)).ticks_since_last_boot()
            if ticks and (after is None or ticks[-1] > after):
                found.append(ticks[-1])
                return True
            return False

        wait_until(ticked, TICK_TIMEOUT, f"{name}: no console tick above {after}")
        return found[-1]

    # -- the liveness check

    def check_live(
        self, name: str, uuid: str, what: str, before: ConsoleLog, target: str, problems: list[str]
    ) -> None:
        """Record whether the guest survived the migration ``what`` without restarting.

        ``before`` is its console read just before the migration began. A live guest
        prints its next tick (above the last one before) without a boot line in between.
        """
        from tests.harness.guest import read_console

        console = self.cluster.console_log(name)
        last_before = before.last_tick

        def moved_on() -> bool:
            after = read_console(console)
            if len(after.boots) != len(before.boots):
                return True  # booted again: no point waiting for the old counter
            ticks = after.ticks_since_last_boot()
            return bool(ticks) and (last_before is None or ticks[-1] > last_before)

        try:
            wait_until(moved_on, TICK_TIMEOUT, f"{name}: no console tick after the migration")
        except BenchmarkError as error:
            problems.append(str(error))
        after = read_console(console)
        if len(after.boots) != len(before.boots):
            problems.append(
                f"the guest booted again ({len(before.boots)} -> {len(after.boots)} boot lines)"
            )
        elif last_before is not None and last_before not in after.ticks_since_last_boot():
            problems.append(f"the tick counter lost its value {last_before}")
        where = [
            host
            for host, conn in self.conns.items()
            if domain_state(conn, uuid) != libvirt.VIR_DOMAIN_SHUTOFF
        ]
        if where != [target]:
            problems.append(f"libvirt has it active on {where or 'no host'}, not on {target} alone")
        first_after = next(
            (
                tick
                for tick in after.ticks_since_last_boot()
                if last_before is None or tick > last_before
            ),
            -1,
        )
        self.checks.append(Liveness(what, not problems, (last_before, first_after), problems))

    # -- one managed migration

    def time_pvc(self, direction: DirectionFigures, record: bool, what: str) -> None:
        """Launch ``direction.command``; time it to done in ZooKeeper; read the daemon's log."""
        from tests.harness.guest import read_console

        name, uuid = MIGRATE_VM
        source_log = self.cluster.daemons[direction.source].log_path
        before = read_console(self.cluster.console_log(name))
        offset = file_size(source_log)
        args = [*direction.command.split()[1:], name]
        wall = time.time()
        started = time.perf_counter()
        process = launch_pvc(self.cluster, *args)
        cli_exit: float | None = None
        deadline = started + MIGRATION_TIMEOUT
        while True:
            # The clock is read after each look (two ZooKeeper reads), so 'done' is timed
            # when it is known, never before.
            seen = self.done_in_zookeeper(uuid, direction.target)
            now = time.perf_counter()
            if seen:
                total = now - started
                break
            if cli_exit is None and process.poll() is not None:
                cli_exit = now - started
            if now > deadline:
                process.kill()
                raise BenchmarkError(f"{what}: not done in ZooKeeper after {MIGRATION_TIMEOUT:g} s")
            time.sleep(POLL_INTERVAL)
        finish_pvc(process, " ".join(args))
        if cli_exit is None:
            cli_exit = time.perf_counter() - started

        problems: list[str] = []
        took = self.libvirt_line(source_log, offset, uuid)
        lines = log_lines_since(source_log, offset)
        if took is None:
            problems.append(f"{direction.source}'s daemon logged no libvirt live migration")
        if first_line_with(lines, "shutdown-migrated") or first_line_with(lines, "falling back"):
            problems.append(f"{direction.source}'s daemon fell back to shutdown and start")
        (vm,) = load_vms(self.store, [uuid])
        if vm.failedreason:
            problems.append(f"failed reason recorded: {vm.failedreason}")
        retries = sum(1 for _, text in lines if "live migration to" in text and "attempt" in text)
        self.check_live(name, uuid, what, before, direction.target, problems)
        if not record:
            return
        direction.total.seconds.append(total)
        direction.cli_exit.seconds.append(cli_exit)
        direction.retries += retries
        acted = first_line_with(lines, f"vm {name!r}: migrate-out:")
        if acted is not None:
            direction.daemon_acts.seconds.append(acted[0] - wall)
        if took is not None:
            stamp, seconds = took
            direction.libvirt.seconds.append(seconds)
            direction.overhead.seconds.append(total - seconds)
            # The line is written when migrateToURI3 returns: its start is that minus took.
            direction.libvirt_start.seconds.append(stamp - seconds - wall)
            direction.after_libvirt.seconds.append(total - (stamp - wall))

    def done_in_zookeeper(self, uuid: str, target: str) -> bool:
        """Whether ZooKeeper shows the VM running on ``target``, and listed there only."""
        vms = load_vms(self.store, [uuid])
        if not vms or vms[0].state != "start" or vms[0].node != target:
            return False
        listing = [node.name for node in load_nodes(self.store) if uuid in node.runningdomains]
        return listing == [target]

    def libvirt_line(self, path: Path, offset: int, uuid: str) -> tuple[float, float] | None:
        """(time written, seconds) of the newest libvirt migration line for ``uuid``."""
        deadline = time.monotonic() + LOG_LINE_GRACE
        while True:
            found = None
            for stamp, text in log_lines_since(path, offset):
                match = LIBVIRT_TOOK.search(text)
                if match and match.group(1) == uuid:
                    found = (stamp, float(match.group(2)))
            if found is not None or time.monotonic() > deadline:
                return found
            time.sleep(POLL_INTERVAL)

    # -- one direct migration

    def time_direct(self, direction: DirectionFigures, record: bool, what: str) -> None:
        """``migrateToURI3`` of the unmanaged guest from the direction's source to its target."""
        from tests.harness.guest import read_console

        name, uuid = DIRECT_MIGRATE_VM
        before = read_console(self.cluster.console_log(name))
        domain = self.conns[direction.source].lookupByUUIDString(uuid)
        with contextlib.suppress(libvirt.libvirtError):  # as the daemon: best effort
            domain.migrateSetMaxDowntime(self.max_downtime_ms, 0)
        target_uri = self.cluster.hosts[direction.target].tcp_uri
        started = time.perf_counter()
        domain.migrateToURI3(target_uri, MIGRATE_PARAMS, MIGRATE_FLAGS)
        seconds = time.perf_counter() - started
        self.check_live(name, uuid, what, before, direction.target, [])
        if record:
            direction.direct.seconds.append(seconds)

    # -- the whole half

    def measure(self, runs: int) -> None:
        """One warm-up round trip of each guest, then ``runs`` alternating round trips."""
        variants = (self.time_pvc, self.time_direct)
        for round_index in range(-1, runs):  # -1: the warm-up
            record = round_index >= 0
            label = f"run {round_index + 1}" if record else "warm-up"
            order = variants if round_index % 2 == 0 else tuple(reversed(variants))
            for direction in (self.forward, self.back):
                for variant in order:
                    kind = "pvc" if variant == self.time_pvc else "direct"
                    variant(direction, record, f"{label} {kind} {direction.label}")
            if record:
                log(
                    f"(b) run {round_index + 1}/{runs}: "
                    + ", ".join(
                        f"{d.label} total {d.total.seconds[-1]:.3f} s, "
                        f"direct {d.direct.seconds[-1]:.3f} s"
                        for d in (self.forward, self.back)
                    )
                )
            else:
                log("(b) warm-up round trip of each guest done")


# --------------------------------------------------------------------------- the run


def machine_facts(cluster: LocalCluster, conn: libvirt.virConnect) -> dict[str, Any]:
    """What the figures were measured on: CPU, kernel, load and software versions."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "load_average_at_end": list(os.getloadavg()),
        "python": platform.python_version(),
        "libvirt": version_text(conn.getLibVersion()),
        "qemu": version_text(conn.getVersion()),
        "zookeeper": zookeeper_version(cluster.zk_hosts),
    }


def benchmark(cluster: LocalCluster, runs: int) -> tuple[dict[str, Any], list[Liveness]]:
    """Measure (a) and (b) on a started cluster; return the figures and liveness checks."""
    with contextlib.ExitStack() as stack:
        # Open once and kept: the daemons hold their connections open too.
        conns = {
            name: stack.enter_context(host.connection()) for name, host in cluster.hosts.items()
        }
        start = measure_start(cluster, conns[HOME], runs)
        store = stack.enter_context(cluster.store())
        migrations = Migrations(cluster, store, conns)
        log("(b) starting the managed and the unmanaged guest on hv1")
        migrations.start_guests()
        migrations.measure(runs)
        facts = machine_facts(cluster, conns[HOME])

    def direction(d: DirectionFigures) -> dict[str, Any]:
        return {
            "command": d.command,
            "total": d.total.as_dict(),
            "libvirt_share": d.libvirt.as_dict(),
            "overhead": d.overhead.as_dict(),
            "direct_libvirt": d.direct.as_dict(),
            "libvirt_share_minus_direct": paired(d.libvirt, d.direct).as_dict(),
            "phases_from_launch": {
                "cli_exited": d.cli_exit.as_dict(),
                "daemon_began": d.daemon_acts.as_dict(),
                "libvirt_called": d.libvirt_start.as_dict(),
                "libvirt_returned_to_done": d.after_libvirt.as_dict(),
            },
            "retried_live_attempts": d.retries,
        }

    figures = {
        "machine": facts,
        "runs": runs,
        "poll_interval_s": POLL_INTERVAL,
        "start": {
            "pvc_vm_start": start.pvc.as_dict(),
            "direct_createxml": start.direct.as_dict(),
            "difference": paired(start.pvc, start.direct).as_dict(),
            "launch_to_createxml_returned": start.to_created.as_dict(),
            "software_share": paired(start.to_created, start.direct_create).as_dict(),
            "phases_from_launch": {
                "cli_exited": start.cli_exit.as_dict(),
                "daemon_began": start.daemon_acts.as_dict(),
                "daemon_start_path": start.daemon_start_path.as_dict(),
                "createxml_returned_to_boot_line": start.created_to_boot.as_dict(),
            },
            "direct_phases": {
                "createxml_call": start.direct_create.as_dict(),
                "createxml_returned_to_boot_line": start.direct_created_to_boot.as_dict(),
            },
        },
        "migration": {
            "max_downtime_ms": migrations.max_downtime_ms,
            f"{HOME}->{TARGET}": direction(migrations.forward),
            f"{TARGET}->{HOME}": direction(migrations.back),
        },
        "liveness": [
            {"migration": c.what, "live": c.live, "ticks": list(c.ticks), "problems": c.problems}
            for c in migrations.checks
        ],
        "all_migrations_live": all(c.live for c in migrations.checks),
    }
    return figures, migrations.checks


#: Width of the label column of the tables.
LABEL_WIDTH = 46


def row(label: str, entry: dict[str, Any]) -> str:
    """One table line: label, then min / median / max in seconds."""
    return timing_row(label, entry, LABEL_WIDTH)


def report(figures: dict[str, Any], checks: list[Liveness]) -> str:
    """The figures block printed at the end."""
    machine, start, migration = figures["machine"], figures["start"], figures["migration"]
    start_phases, direct_phases = start["phases_from_launch"], start["direct_phases"]
    load = ", ".join(f"{value:.2f}" for value in machine["load_average_at_end"])
    header = column_header(LABEL_WIDTH)
    lines = [
        *banner("VM lifecycle benchmark: start and live migration on the real local cluster"),
        f"machine     {machine['cpu_model']}, {machine['cores']} cores, "
        f"kernel {machine['kernel']}, load average at the end {load}",
        f"software    Python {machine['python']}, libvirt {machine['libvirt']}, "
        f"QEMU {machine['qemu']} (TCG software emulation), ZooKeeper {machine['zookeeper']}",
        "cluster     ZooKeeper + libvirtd hv1..hv3 + a pvcnoded each, all on this machine",
        f"runs        {figures['runs']} of each variant, alternating with its baseline, after "
        "one unmeasured warm-up each",
        f"timing      wall clock; console log and ZooKeeper polled every "
        f"{figures['poll_interval_s'] * 1000:.0f} ms",
        "",
        "(a) start -> the guest's first console line (pvc-guest: booted ...), on hv1",
        header,
        row("pvc vm start (CLI + ZooKeeper + daemon)", start["pvc_vm_start"]),
        row("libvirt createXML alone (same libvirtd)", start["direct_createxml"]),
        row("difference, paired", start["difference"]),
        row("launch -> createXML returned (daemon's log)", start["launch_to_createxml_returned"]),
        row("  minus the bare createXML call, paired", start["software_share"]),
        "    = our software's share, without the boot's noise",
        "  pvc vm start, phases from launch:",
        row("  pvc process exited", start_phases["cli_exited"]),
        row("  daemon began the start (its log line)", start_phases["daemon_began"]),
        "  pvc vm start, phases after the daemon began:",
        row("  runningdomains write + createXML", start_phases["daemon_start_path"]),
        row(
            "  createXML returned -> first console line",
            start_phases["createxml_returned_to_boot_line"],
        ),
        "  createXML alone, phases:",
        row("  the createXML call", direct_phases["createxml_call"]),
        row(
            "  createXML returned -> first console line",
            direct_phases["createxml_returned_to_boot_line"],
        ),
    ]
    for key in (f"{HOME}->{TARGET}", f"{TARGET}->{HOME}"):
        entry = migration[key]
        phases = entry["phases_from_launch"]
        lines += [
            "",
            f"(b) live migration {key.replace('->', ' -> ')}: {entry['command']} "
            "(launch -> done in ZooKeeper)",
            header,
            row("total", entry["total"]),
            row("libvirt's share (source daemon's log)", entry["libvirt_share"]),
            row("overhead = total - libvirt's share", entry["overhead"]),
            row("direct migrateToURI3, unmanaged guest", entry["direct_libvirt"]),
            row("libvirt's share - direct, paired", entry["libvirt_share_minus_direct"]),
            "  phases from launch:",
            row("  pvc process exited", phases["cli_exited"]),
            row("  source daemon began (migrate-out line)", phases["daemon_began"]),
            row("  migrateToURI3 called", phases["libvirt_called"]),
            row(
                "  migrateToURI3 returned -> done in ZooKeeper", phases["libvirt_returned_to_done"]
            ),
        ]
        if entry["retried_live_attempts"]:
            lines.append(
                f"  NOTE: the daemon retried {entry['retried_live_attempts']} failed live "
                "attempt(s); they are part of the totals above"
            )
    lines += [
        f"  (the daemon and the baseline both ask for a maximum downtime of "
        f"{migration['max_downtime_ms']} ms)",
        "",
    ]
    failed = [check for check in checks if not check.live]
    if failed:
        lines += [
            "!" * 78,
            f"LIVENESS CHECK FAILED: {len(failed)} of {len(checks)} migrations were NOT live.",
            "Their times measure a shutdown and start, not a live migration:",
        ]
        lines += [f"  {check.what}: {'; '.join(check.problems)}" for check in failed]
        lines.append("!" * 78)
    else:
        spans = ", ".join(f"{a}->{b}" for a, b in (check.ticks for check in checks[:4]))
        lines.append(
            f"liveness    all {len(checks)} migrations (warm-ups included, managed and direct) "
            "were live: no new boot line, the tick counter went on "
            f"(last tick before -> first after: {spans}, ...), libvirt runs the guest on the "
            "target only, the source daemon logged a libvirt migration and no fallback"
        )
    lines += ["", *interpretation(figures)]
    return "\n".join(lines)


def interpretation(figures: dict[str, Any]) -> list[str]:
    """A paragraph on what the figures mean, with this run's medians filled in."""
    start = figures["start"]
    forward = figures["migration"][f"{HOME}->{TARGET}"]
    phases, direct = start["phases_from_launch"], start["direct_phases"]

    def median(entry: dict[str, Any]) -> str:
        return f"{entry['median_s']:.2f} s" if entry.get("runs_s") else "n/a"

    text = (
        "What the figures mean: (a) 'pvc vm start' is what an operator waits from pressing "
        "Enter until the guest prints its first line; 'createXML alone' is the same guest "
        "started by libvirt on the same host with no cluster software. Their paired "
        f"difference (median {median(start['difference'])}) is our software's share plus "
        "the run-to-run noise of a software-emulated boot (compare min and max of the "
        "phases after createXML), so the share is also measured without the boot: from "
        "launch to the daemon's line logged when its createXML returned, minus the bare "
        f"createXML call ({median(start['software_share'])}). The phases locate it: the "
        f"daemon logs the start {median(phases['daemon_began'])} after launch (the pvc "
        "process starting, its ZooKeeper write, the watch firing and a reconcile pass; "
        f"the pvc process itself exits after {median(phases['cli_exited'])}), then writes "
        f"runningdomains and calls createXML ({median(phases['daemon_start_path'])}, "
        f"against {median(direct['createxml_call'])} for the bare call). (b) 'total' is "
        "from launching 'pvc vm migrate' (or 'unmigrate') until ZooKeeper shows the VM "
        "running on the target and listed there only; 'libvirt's share' is the source "
        "daemon's own timing of its migrateToURI3 call and 'overhead' the rest (the CLI, "
        "ZooKeeper, the daemon reacting, publishing the result), measured in the same run "
        f"(hv1 -> hv2: median {median(forward['overhead'])} of {median(forward['total'])}; "
        f"the source daemon begins {median(forward['phases_from_launch']['daemon_began'])} "
        "after launch). The direct migrateToURI3 of an unmanaged guest is what libvirt "
        "alone needs for the same move: libvirt's share should match it within the noise, "
        "and a lasting gap would come from what else runs meanwhile (daemons and this "
        "script polling ZooKeeper compete with QEMU for the CPUs). All guests run under "
        "software emulation on this one machine, so absolute times are this machine's at "
        "its load: compare figures of the same run, not across machines."
    )
    return textwrap.wrap(text, 90)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: ``--runs N`` and ``--json``."""
    parser = argparse.ArgumentParser(
        description="Time 'pvc vm start' and a live migration on the real local cluster, "
        "beside libvirt alone."
    )
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each (default 5)")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="also write the figures as JSON to FILE; --json alone prints them after the table",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


@dataclass
class ClusterRun:
    """The benchmark's cluster, and whether its work directory is worth keeping."""

    cluster: LocalCluster
    keep_workdir: bool = False


@contextlib.contextmanager
def local_cluster() -> Iterator[ClusterRun]:
    """A started local cluster in a new short temporary directory, always stopped after.

    The directory is short on purpose (libvirtd's unix socket lives below it, and socket
    paths are limited to 107 bytes). It is removed afterwards unless the benchmark
    failed or asked to keep it, so that the daemon and libvirtd logs can be read.
    """
    from tests.harness.cluster import LocalCluster

    workdir = Path(tempfile.mkdtemp(prefix="pvcb-", dir="/tmp"))
    run = ClusterRun(LocalCluster(workdir, mode="qemu", die_with_parent=True))
    succeeded = False
    try:
        log(f"starting the local cluster in {workdir} (ZooKeeper, hv1..hv3, pvcnoded each)")
        run.cluster.start()
        log(f"cluster up: ZooKeeper {run.cluster.zk_hosts}")
        yield run
        succeeded = True
    finally:
        log("stopping the local cluster")
        run.cluster.stop()
        if succeeded and not run.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(
                f"kept {workdir} for inspection (daemon logs under nodes/, libvirtd's under hosts/)"
            )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 if measured, 1 if it failed, 2 if a migration was not live."""
    args = parse_args(argv)
    if not PVC.is_file():
        print(f"error: no pvc console script at {PVC}", file=sys.stderr)
        return 1
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.harness.cluster import ClusterError
    from tests.harness.hypervisor import LibvirtHostError

    # Failed lookups of domains that are gone are expected here: no stderr noise.
    libvirt.registerErrorHandler(lambda *unused: None, None)
    try:
        with local_cluster() as run:
            figures, checks = benchmark(run.cluster, args.runs)
            run.keep_workdir = not figures["all_migrations_live"]
    except (
        BenchmarkError,
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
    print(report(figures, checks))
    if args.json == "-":
        print(json.dumps(figures, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {args.json}")
    return 0 if figures["all_migrations_live"] else 2


if __name__ == "__main__":
    sys.exit(main())
