"""Console logs on the real local cluster: `pvc vm log` across live migrations and fencing.

Every node daemon feeds the serial log file of the VMs it runs (or receives) into the
VM's buffer of numbered lines in ZooKeeper. All hosts here share one console directory
and the guests log with ``append='on'``, so one file carries a guest's whole history: a
live migration target appends to it, and so does the node that restarts a fenced VM.
These tests check what `pvc vm log` shows against that file, line for line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pvc_common.console import ConsoleBuffer
from pvc_common.console_store import read_console
from tests.cluster.driver import PVC, ClusterDriver
from tests.harness.cluster import LocalCluster
from tests.harness.guest import BOOT_LINE_PREFIX, TICK_LINE_PREFIX
from tests.harness.zookeeper import wait_until

pytestmark = pytest.mark.cluster

TICK_RE = re.compile(re.escape(TICK_LINE_PREFIX) + r"(\d+)")


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def console_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three nodes with BMCs and fast fencing (as in test_fencing.py), for this module."""
    cluster = LocalCluster(
        tmp_path_factory.mktemp("cc"),
        bmcs=True,
        daemon_settings={
            "fencing": {"intervals": 3, "rechecks": 2, "timeout": 5},
            "vm": {"shutdown_timeout": 10},
        },
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def driver(console_cluster: LocalCluster) -> Iterator[ClusterDriver]:
    """A driver; at teardown every node powered off is back and ready, and the VMs gone."""
    driver = ClusterDriver(console_cluster)
    yield driver
    for name in console_cluster.node_names:
        node = json.loads(driver.pvc("node", "info", name, "-o", "json"))
        if node["daemonstate"] == "fenced" or not console_cluster.daemons[name].is_alive():
            console_cluster.power_on(name)
    console_cluster.wait_nodes_running()
    for name in console_cluster.node_names:
        if json.loads(driver.pvc("node", "info", name, "-o", "json"))["domainstate"] != "ready":
            driver.pvc("node", "ready", name, "--wait", "--wait-timeout", "120", expect=None)
    driver.remove_all()


# ------------------------------------------------------------------------------ helpers


def tick_of(line: str) -> int | None:
    match = TICK_RE.search(line)
    return int(match.group(1)) if match else None


def ticks_of(lines: list[str]) -> list[int]:
    return [tick for tick in map(tick_of, lines) if tick is not None]


def is_boot(line: str) -> bool:
    return BOOT_LINE_PREFIX in line


def file_lines(path: Path) -> list[str]:
    """The complete lines of a console log file, as the watcher makes them (CR dropped)."""
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    return [line.removesuffix("\r") for line in data.decode(errors="replace").split("\n")[:-1]]


def find_run(haystack: list[str], needle: list[str]) -> int | None:
    """Index where ``needle`` occurs in ``haystack`` as a contiguous run, or None."""
    if not needle:
        return 0
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start : start + len(needle)] == needle:
            return start
    return None


def complete_lines(output: str) -> list[str]:
    """The complete lines of a command's output (an unfinished last line is left out)."""
    return output.split("\n")[:-1]


def assert_consecutive(ticks: list[int], what: str) -> None:
    gaps = [(a, b) for a, b in zip(ticks, ticks[1:], strict=False) if b != a + 1]
    assert not gaps, f"{what}: ticks not consecutive at {gaps[:5]} (ticks {ticks})"


@dataclass
class Follower:
    """`pvc vm log NAME --follow` as a real process; its stdout lines with arrival times."""

    driver: ClusterDriver
    name: str
    lines: list[tuple[float, str]] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Follower:
        env = {**os.environ, "PVC_ZOOKEEPER": self.driver.cluster.zk_hosts, "NO_COLOR": "1"}
        # The CLI must flush each line itself: nothing here makes its stdout unbuffered.
        env.pop("PYTHONUNBUFFERED", None)
        self.process = subprocess.Popen(
            [PVC, "vm", "log", self.name, "--follow"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        # Binary: only "\n" ends a line (text mode would also split at a bare "\r").
        for raw in self.process.stdout:
            self.lines.append((time.monotonic(), raw.decode(errors="replace").removesuffix("\n")))

    def texts(self) -> list[str]:
        return [text for _, text in list(self.lines)]

    def ticks(self) -> list[int]:
        return ticks_of(self.texts())

    def last_tick(self) -> int:
        ticks = self.ticks()
        return ticks[-1] if ticks else 0

    def ticks_between(self, start: float, end: float = float("inf")) -> list[int]:
        return [
            tick
            for at, text in list(self.lines)
            if start <= at < end and (tick := tick_of(text)) is not None
        ]

    def wait_tick(self, above: int, timeout: float = 30.0) -> int:
        def reached() -> int | None:
            self.check_alive()
            last = self.last_tick()
            return last if last > above else None

        return wait_until(
            reached,
            timeout,
            f"the follower printed no tick above {above} (last {self.last_tick()})",
        )

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"the follower exited {self.process.returncode} early: {self.stderr()}"
            )

    def interrupt(self, timeout: float = 20.0) -> int:
        """Ctrl-C; the exit code (the reader has read everything by then)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def stderr(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def buffer_of(driver: ClusterDriver, uuid: str) -> ConsoleBuffer:
    with driver.cluster.store() as store:
        buffer, _ = read_console(store, uuid)
    return buffer


# ------------------------------------------------------------------------------ tests


def test_follow_goes_on_without_gap_or_duplicate_across_live_migrations(
    driver: ClusterDriver,
) -> None:
    name = "con1"
    uuid = driver.start_running(name, "hv1")
    # Past the follower's first 10 lines: it starts with a tail, not with the boot line.
    driver.wait_ticks(name, after=12)
    follower = Follower(driver, name).start()
    try:
        follower.wait_tick(above=0)
        # (target, when the move was asked for and done, last tick followed before it,
        # last tick in the console file when it was done)
        moves: list[tuple[str, float, float, int, int]] = []
        for target, command in (
            ("hv2", ("vm", "migrate", name, "--target", "hv2", "--wait")),
            ("hv1", ("vm", "unmigrate", name, "--wait")),
        ):
            # Some ticks on this host first, so the move happens mid-stream.
            follower.wait_tick(above=follower.last_tick() + 3)
            started = time.monotonic()
            output = driver.pvc(*command)
            assert f"running on {target}" in output, output
            driver.wait_running_on(uuid, target)
            done = time.monotonic()
            # Ticks the guest printed on its new host reach the follower.
            written = driver.console(name).last_tick
            assert written is not None
            follower.wait_tick(above=written + 3)
            moves.append((target, started, done, max(follower.ticks_between(0, started)), written))

        # The follower catches up with what `pvc vm log` shows now, then stops.
        plain = driver.pvc("vm", "log", name)
        plain_lines = complete_lines(plain)
        plain_ticks = ticks_of(plain_lines)
        assert plain_ticks, plain
        follower.wait_tick(above=plain_ticks[-1] - 1)
        code = follower.interrupt()
        stderr = follower.stderr()
    finally:
        follower.kill()
    assert code == 0, f"the follower exited {code} on SIGINT: {stderr}"
    assert "skipped" not in stderr, stderr

    texts = follower.texts()
    ticks = follower.ticks()
    assert len(ticks) > 10, f"too few ticks followed: {texts}"
    # Every tick exactly once, in order, across both moves.
    assert_consecutive(ticks, "follower")
    # The guest never rebooted: at most the boot line (if it was in the first 10 lines).
    assert sum(map(is_boot, texts)) <= 1, texts
    console = driver.console(name)
    assert len(console.boots) == 1, console.boots
    # The guest's own console has this very run of ticks.
    start = find_run(console.ticks, ticks)
    assert start is not None, (
        f"followed ticks {ticks} are not a run of the console's {console.ticks}"
    )
    # Line for line (all but the last line, which SIGINT may have ended early), the
    # follower printed a contiguous piece of the console file.
    lines = file_lines(driver.console_path(name))
    assert find_run(lines, texts[:-1]) is not None, (
        f"follower lines are not a contiguous run of the console file:\n{texts}\n---\n{lines[-80:]}"
    )
    # Lines kept coming after each move, with numbers above those before it.
    for target, _started, done, before, written in moves:
        after = follower.ticks_between(done)
        assert after and min(after) > before, (target, before, after)
        assert max(after) > written, (target, written, after)
    # `pvc vm log` (not a tty: printed as it is) shows the same ticks as the follower's tail.
    assert_consecutive(plain_ticks, "pvc vm log")
    overlap = [tick for tick in plain_ticks if tick >= ticks[0]]
    assert overlap and len(overlap) < len(plain_ticks), (plain_ticks, ticks)
    assert overlap == ticks[: len(overlap)], (overlap, ticks)
    assert plain_ticks[-1] <= ticks[-1]
    assert find_run(lines, plain_lines) is not None, "pvc vm log is not a run of the console file"


def test_lines_written_before_a_power_loss_stay_and_the_buffer_goes_on(
    driver: ClusterDriver,
) -> None:
    cluster = driver.cluster
    name = "con2"
    uuid = driver.start_running(name, "hv3")
    driver.wait_ticks(name, after=4)

    def last_buffered_tick() -> int | None:
        lines = complete_lines(driver.pvc("vm", "log", name, "-l", "1"))
        return tick_of(lines[-1]) if lines else None

    # hv3's daemon freezes first, so the guest's last lines before the power loss are in
    # its file but were never copied into the buffer: only the node that restarts the
    # VM, resuming the same file at the buffer's byte offset, can bring them in.
    daemon = cluster.daemons["hv3"]
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        noted = wait_until(last_buffered_tick, 30, f"{name}: no tick as the last buffered line")
        before = buffer_of(driver, uuid)
        driver.wait_ticks(name, after=noted + 3, timeout=15)
        assert last_buffered_tick() == noted, "hv3's frozen daemon still fed the buffer"
    finally:
        cluster.bmcs["hv3"].ipmitool("chassis", "power", "off")  # the plug is pulled
    power_off = time.monotonic()
    positions = [tick_of(line) for line in before.lines]
    assert noted in positions, (noted, before.lines[-5:])
    noted_position = before.first + positions.index(noted)

    # Fenced and recovered: it boots again on another node.
    new_node = wait_until(
        lambda: (lambda hosts: hosts[0] if hosts in (["hv1"], ["hv2"]) else None)(
            driver.running_on(uuid)
        ),
        120,
        f"{name} does not run on hv1 or hv2 after hv3's power loss",
    )
    recovered = time.monotonic()
    driver.wait_boots(name, 2)
    driver.wait_ticks(name, after=4)

    def buffered_new_ticks() -> list[str] | None:
        lines = complete_lines(driver.pvc("vm", "log", name))
        boots = [index for index, line in enumerate(lines) if is_boot(line)]
        if not boots or len(ticks_of(lines[boots[-1] :])) < 4:
            return None
        return lines

    lines = wait_until(
        buffered_new_ticks, 30, f"{name}: the buffer shows no ticks of the new boot on {new_node}"
    )
    after = buffer_of(driver, uuid)
    file = file_lines(driver.console_path(name))

    # What the buffer said before the power loss is all still there, in order.
    old_part = lines[: max(i for i, line in enumerate(lines) if is_boot(line))]
    old_ticks = ticks_of(old_part)
    assert noted in old_ticks, f"tick {noted} (last buffered before the power loss) is gone"
    assert_consecutive(old_ticks, "before the power loss")
    # Whatever the dying guest wrote to its file after the last buffer write (the new
    # node resumes that file at the exact byte), up to its last tick, is there too.
    boot_indexes = [i for i, line in enumerate(file) if is_boot(line)]
    assert len(boot_indexes) == 2, f"{name}: {len(boot_indexes)} boot lines in its console file"
    dying = ticks_of(file[: boot_indexes[1]])
    assert dying[-1] >= noted + 3, (noted, dying)
    assert old_ticks == dying[dying.index(old_ticks[0]) :], (
        f"buffer ticks before the new boot {old_ticks} differ from the file's {dying}"
    )
    # The new boot's ticks follow, from 1 on.
    new_ticks = ticks_of(lines[max(i for i, line in enumerate(lines) if is_boot(line)) :])
    assert new_ticks[:1] == [1], new_ticks
    assert_consecutive(new_ticks, "after the recovery")
    # The buffer is exactly a piece of the file: nothing lost, doubled or reordered.
    assert find_run(file, lines) is not None, (
        f"the buffer is not a contiguous run of the console file:\n{lines[-40:]}\n---\n{file[-40:]}"
    )
    # Positions only grew: the buffer went on, it was not started again.
    assert after.first >= before.first, (before.first, after.first)
    assert after.next > before.next, (before.next, after.next)
    boot_position = after.first + max(i for i, line in enumerate(after.lines) if is_boot(line))
    assert boot_position > noted_position, (noted_position, boot_position)
    assert noted_position >= after.first
    assert after.lines[noted_position - after.first] == before.lines[noted_position - before.first]
    assert recovered - power_off < 120
