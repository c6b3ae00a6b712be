"""Fencing against real simulated BMCs: ipmi_sim and ipmitool speaking IPMI on loopback.

The "machine" behind each BMC is a set of processes the test starts (``sleep 600``, or a
real libvirtd host with a QEMU guest); powering it off SIGKILLs them. Processes are
checked through /proc (a zombie counts as dead), never with ``kill -0``. Timings are
printed (visible with ``pytest -s``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest

from pvc_noded.fencing import BmcAddress, CommandFencer, Fencer, FenceResult, IpmitoolFencer
from tests.harness.bmc import BmcError, BmcSimulator
from tests.harness.guest import GuestImage, guest_domain_xml
from tests.harness.hypervisor import LibvirtHost
from tests.harness.zookeeper import pid_is_running, wait_until

pytestmark = pytest.mark.cluster

BmcFactory = Callable[..., BmcSimulator]
HostFactory = Callable[..., LibvirtHost]

#: Generous bounds for shared CI machines; the measured values are far below (see the
#: printed timings): a fence takes ~0.2 s, a BMC that does not answer fails in ~4 s.
FENCE_BOUND = 5.0
DEAD_BMC_BOUND = 8.0


class Machine:
    """Processes "running on" a simulated node, all recorded and killed at teardown."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.grandchildren: list[int] = []

    def sleeper(self) -> int:
        """Start ``sleep 600``; return its PID."""
        process = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process.pid

    def tree(self) -> tuple[int, int]:
        """Start a shell with a ``sleep 600`` child; return (shell PID, child PID).

        Only the shell is listed on the BMC: its child must die with it, as a power cut
        takes down every process of a machine.
        """
        process = subprocess.Popen(
            ["sh", "-c", "sleep 600 & echo $!; wait"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        self.processes.append(process)
        assert process.stdout is not None
        child = int(process.stdout.readline())
        self.grandchildren.append(child)
        return process.pid, child

    def cleanup(self) -> None:
        for pid in self.grandchildren:
            # Only if it still is our sleep (a PID could have been reused since).
            with contextlib.suppress(OSError):
                if pid_is_running(pid) and Path(f"/proc/{pid}/comm").read_text().strip() == (
                    "sleep"
                ):
                    os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            process.kill()  # a no-op once reaped
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture
def machine() -> Iterator[Machine]:
    machine = Machine()
    try:
        yield machine
    finally:
        machine.cleanup()


def chassis_actions(bmc: BmcSimulator) -> list[str]:
    """The chassis_control runs that changed something (``set ...``), in order."""
    return [line.split(" ", 1)[1] for line in bmc.chassis_log() if " set " in f" {line}"]


def timed_fence(fencer: Fencer, bmc: BmcAddress, what: str) -> tuple[FenceResult, float]:
    started = time.monotonic()
    result = fencer.fence(bmc)
    elapsed = time.monotonic() - started
    print(f"\n{what}: {elapsed:.2f} s: {result.detail}")
    return result, elapsed


# --------------------------------------------------------------------------------------
# The simulator itself


def test_bmc_starts_fast_restarts_on_the_same_address_and_stops(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    workdir = tmp_path_factory.mktemp("bmc")
    bmc = BmcSimulator(workdir, "hv1")
    try:
        started = time.monotonic()
        bmc.start()
        waited = bmc.wait_ready()
        print(f"\nBMC start to first answer: {time.monotonic() - started:.3f} s")
        assert waited < 5.0
        first_pid = bmc.pid
        assert first_pid is not None and bmc.is_alive()
        bmc.set_power_state(False)

        bmc.stop()
        assert not pid_is_running(first_pid)
        assert not bmc.is_alive()
        bmc.start()
        bmc.wait_ready()
        assert bmc.pid != first_pid
        # Same port and password, and the machine's state survived the BMC restart.
        assert IpmitoolFencer().power_status(bmc.address()) == "off"
    finally:
        bmc.stop()
    bmc.stop()  # harmless twice


def test_detached_bmc_is_stopped_from_its_record(tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("bmc")
    bmc = BmcSimulator(workdir, "hv2", die_with_parent=False)
    bmc.start()
    try:
        bmc.wait_ready()
        attached = BmcSimulator.attach(workdir, "hv2")
        assert (attached.port, attached.password, attached.pid) == (bmc.port, bmc.password, bmc.pid)
        assert attached.is_alive()
        attached.stop()
        assert bmc.pid is not None
        wait_until(lambda: not pid_is_running(bmc.pid or 0), 5.0, "ipmi_sim survived stop")
    finally:
        bmc.stop()


def test_power_actions_are_idempotent(
    bmc_factory: BmcFactory, machine: Machine, tmp_path: Path
) -> None:
    """A retransmitted command (ipmitool resends after ~1 s) must not act twice."""
    bmc = bmc_factory("hv1")
    runs = tmp_path / "runs"
    bmc.set_power_on_hook(["sh", "-c", f"echo run >> {runs}"])
    bmc.set_power_pids([machine.sleeper()])
    for action in ("off", "off", "on", "on"):
        result = bmc.ipmitool("chassis", "power", action)
        assert result.returncode == 0, result.stderr
    wait_until(runs.exists, 5.0, "power-on hook did not run")
    time.sleep(0.3)  # give a (wrong) second hook run the time to show up
    assert runs.read_text() == "run\n"
    actions = chassis_actions(bmc)
    assert [line.split(":")[0] for line in actions] == [
        "set power 0",
        "set power 0",
        "set power 1",
        "set power 1",
    ]
    assert "killed []" in actions[1] and "already on" in actions[3]
    # Every run stays far below ipmitool's ~1 s retransmit time.
    for line in bmc.chassis_log():
        assert int(line.rsplit("(", 1)[1].split()[0]) < 300, line


def test_only_running_processes_can_be_listed(bmc_factory: BmcFactory) -> None:
    bmc = bmc_factory("hv1")
    process = subprocess.Popen(["true"])
    process.wait()
    with pytest.raises(BmcError, match="not running"):
        bmc.set_power_pids([process.pid])


# --------------------------------------------------------------------------------------
# IpmitoolFencer


def test_fence_confirms_off_kills_the_machine_and_powers_it_on(
    bmc_factory: BmcFactory, machine: Machine, tmp_path: Path
) -> None:
    bmc = bmc_factory("hv1")
    lone = machine.sleeper()
    shell, child = machine.tree()
    bmc.set_power_pids([lone, shell])
    marker = tmp_path / "powered-on"
    bmc.set_power_on_hook(["touch", str(marker)])
    # The address as the daemon builds it from the node's ZooKeeper keys.
    address = BmcAddress.parse(bmc.ipmihostname, bmc.username, bmc.password)

    result, elapsed = timed_fence(IpmitoolFencer(), address, "fence end to end")

    assert result.confirmed_off and result.powered_on, result.detail
    assert result.detail.startswith("power off confirmed after ")
    assert result.detail.endswith("; power on sent")
    assert elapsed < FENCE_BOUND
    for pid in (lone, shell, child):
        assert not pid_is_running(pid), f"pid {pid} survived the power off"
    wait_until(marker.exists, 5.0, "the power-on hook did not run")
    assert bmc.power_is_on()
    assert IpmitoolFencer().power_status(address) == "on"
    assert bmc.power_pids() == []  # the dead processes are not listed any more
    actions = chassis_actions(bmc)
    assert [line.split(":")[0] for line in actions] == ["set power 0", "set power 1"]


def test_paused_bmc_is_not_confirmed_within_a_bounded_time(
    bmc_factory: BmcFactory, machine: Machine
) -> None:
    bmc = bmc_factory("hv1")
    node_process = machine.sleeper()
    bmc.set_power_pids([node_process])
    fencer = IpmitoolFencer()
    bmc.pause()
    try:
        result, elapsed = timed_fence(fencer, bmc.address(), "fence with a paused BMC")
        started = time.monotonic()
        status = fencer.power_status(bmc.address())
        print(f"power status of a paused BMC: {time.monotonic() - started:.2f} s")
    finally:
        bmc.resume()
    assert not result.confirmed_off and not result.powered_on
    assert result.detail.startswith(f"BMC {bmc.ipmihostname} did not answer (ipmitool: ")
    assert elapsed < DEAD_BMC_BOUND
    assert status is None
    # The node kept running and nothing reached its chassis.
    assert pid_is_running(node_process)
    assert chassis_actions(bmc) == []
    assert fencer.power_status(bmc.address()) == "on"  # answers again once resumed


def test_wrong_password_is_not_confirmed(bmc_factory: BmcFactory, machine: Machine) -> None:
    bmc = bmc_factory("hv1")
    node_process = machine.sleeper()
    bmc.set_power_pids([node_process])
    wrong = BmcAddress(bmc.host, bmc.port, bmc.username, bmc.password + "x")

    result, elapsed = timed_fence(IpmitoolFencer(), wrong, "fence with a wrong password")

    assert not result.confirmed_off and not result.powered_on
    assert result.detail.startswith(
        f"BMC {bmc.ipmihostname} refused the credentials of user 'admin' (ipmitool: "
    )
    assert elapsed < FENCE_BOUND
    assert pid_is_running(node_process)
    assert chassis_actions(bmc) == []


def test_an_acknowledged_but_ignored_power_off_is_never_trusted(
    bmc_factory: BmcFactory, machine: Machine
) -> None:
    bmc = bmc_factory("hv1")
    node_process = machine.sleeper()
    bmc.set_power_pids([node_process])
    bmc.refuse_power_off()
    # The BMC claims success for power off ...
    direct = bmc.ipmitool("chassis", "power", "off")
    assert direct.returncode == 0 and "Down/Off" in direct.stdout
    # ... while the machine keeps running, and the fencer is not fooled.
    result, elapsed = timed_fence(
        IpmitoolFencer(timeout=1.5), bmc.address(), "fence with a BMC ignoring power off"
    )

    assert not result.confirmed_off and not result.powered_on
    assert result.detail.startswith(
        f"BMC {bmc.ipmihostname} accepted power off but still reports power on after "
    )
    assert 1.5 <= elapsed < 1.5 + FENCE_BOUND
    assert pid_is_running(node_process)
    assert not any("set power 1" in line for line in chassis_actions(bmc))


def test_a_power_off_answered_with_an_error_counts_once_status_reads_off(
    bmc_factory: BmcFactory, machine: Machine
) -> None:
    bmc = bmc_factory("hv1")
    node_process = machine.sleeper()
    bmc.set_power_pids([node_process])
    bmc.report_power_off_error()

    result, _ = timed_fence(IpmitoolFencer(), bmc.address(), "fence with an erroring off")

    assert result.confirmed_off and result.powered_on, result.detail
    assert "although power off reported: Set Chassis Power Control to Down/Off failed" in (
        result.detail
    )
    assert not pid_is_running(node_process)


def test_power_loss_takes_down_libvirtd_and_its_guests_at_once(
    bmc_factory: BmcFactory,
    host_factory: HostFactory,
    guest_image: GuestImage,
    host_workdir: Path,
) -> None:
    """The supervisor PID stands for the whole host: libvirtd and every QEMU guest."""
    host = host_factory("hvf")
    conn = libvirt.open(host.uri)
    try:
        xml = guest_domain_xml(
            "vmf",
            uuid=str(uuid.uuid4()),
            image=guest_image,
            console_log=host_workdir / "vmf.console.log",
        )
        conn.createXML(xml, 0)
    finally:
        conn.close()
    qemu_pid = host.qemu_pids()["vmf"]
    libvirtd_pid, supervisor_pid = host.pid, host.supervisor_pid
    assert libvirtd_pid is not None and supervisor_pid is not None
    bmc = bmc_factory("hvf")
    bmc.set_power_pids([supervisor_pid])

    result, elapsed = timed_fence(IpmitoolFencer(), bmc.address(), "fence of a libvirtd host")

    assert result.confirmed_off, result.detail
    assert elapsed < FENCE_BOUND
    # Dead at once: confirmed off means no guest can still write its disks.
    for pid in (qemu_pid, libvirtd_pid, supervisor_pid):
        assert not pid_is_running(pid), f"pid {pid} survived the power off"
    assert not host.is_alive()


# --------------------------------------------------------------------------------------
# CommandFencer with a fence agent that really talks to the BMC

#: A small fence agent speaking the fence-agents conventions (``-o off|on|status``;
#: ``status`` exits 0 when on, 2 when off, 1 on failure) through ipmitool. Unlike
#: fence_ipmilan it takes the password from the environment, off the command line.
FAKE_AGENT = """
import argparse, os, subprocess, sys

parser = argparse.ArgumentParser()
parser.add_argument("--ip", required=True)
parser.add_argument("--ipport", required=True)
parser.add_argument("--username", required=True)
parser.add_argument("-o", "--action", required=True, choices=["off", "on", "status"])
args = parser.parse_args()
command = [
    "ipmitool", "-I", "lanplus", "-C", "3", "-N", "1", "-R", "1", "-H", args.ip,
    "-p", args.ipport, "-U", args.username, "-E", "chassis", "power", args.action,
]
env = dict(os.environ, IPMI_PASSWORD=os.environ["PVC_FENCE_PASSWORD"])
done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=10)
if done.returncode != 0:
    print("Failed: " + (done.stderr or done.stdout).strip().splitlines()[-1], file=sys.stderr)
    sys.exit(1)
if args.action == "status":
    if "Chassis Power is off" in done.stdout:
        print("Status: OFF")
        sys.exit(2)
    if "Chassis Power is on" in done.stdout:
        print("Status: ON")
        sys.exit(0)
    print("Failed: unexpected status " + done.stdout.strip(), file=sys.stderr)
    sys.exit(1)
print("Success: Powered " + args.action.upper())
"""


@pytest.fixture
def fake_agent(tmp_path: Path) -> list[str]:
    """The command template of :data:`FAKE_AGENT`."""
    agent = tmp_path / "fence_fake"
    agent.write_text(f"#!{sys.executable}\n{FAKE_AGENT}")
    agent.chmod(0o755)
    return [str(agent), "--ip={host}", "--ipport={port}", "--username={username}", "-o", "{action}"]


def test_command_fencer_fences_through_a_fence_agent(
    bmc_factory: BmcFactory, machine: Machine, fake_agent: list[str], tmp_path: Path
) -> None:
    bmc = bmc_factory("hv1")
    shell, child = machine.tree()
    bmc.set_power_pids([shell])
    marker = tmp_path / "powered-on"
    bmc.set_power_on_hook(["touch", str(marker)])
    fencer = CommandFencer(fake_agent, timeout=10)
    assert fencer.power_status(bmc.address()) == "on"

    result, elapsed = timed_fence(fencer, bmc.address(), "fence through the fence agent")

    assert result.confirmed_off and result.powered_on, result.detail
    assert elapsed < FENCE_BOUND
    assert not pid_is_running(shell) and not pid_is_running(child)
    wait_until(marker.exists, 5.0, "the power-on hook did not run")
    assert fencer.power_status(bmc.address()) == "on"


def test_command_fencer_does_not_trust_the_agent_exit_code(
    bmc_factory: BmcFactory, machine: Machine, fake_agent: list[str]
) -> None:
    bmc = bmc_factory("hv1")
    node_process = machine.sleeper()
    bmc.set_power_pids([node_process])
    bmc.refuse_power_off()

    result, _ = timed_fence(
        CommandFencer(fake_agent, timeout=1.0, poll=0.2),
        bmc.address(),
        "fence agent against a BMC ignoring power off",
    )

    assert not result.confirmed_off
    assert "accepted power off but still reports power on" in result.detail
    assert pid_is_running(node_process)


def test_command_fencer_reports_the_agent_failure(
    bmc_factory: BmcFactory, machine: Machine, fake_agent: list[str]
) -> None:
    bmc = bmc_factory("hv1")
    node_process = machine.sleeper()
    bmc.set_power_pids([node_process])
    wrong = BmcAddress(bmc.host, bmc.port, bmc.username, "not-the-password")

    result, _ = timed_fence(CommandFencer(fake_agent), wrong, "fence agent, wrong password")

    assert not result.confirmed_off
    assert result.detail == (
        f"BMC {bmc.ipmihostname}: power off failed (fence agent: exit code 1: Failed: "
        "Error: Unable to establish IPMI v2 / RMCP+ session)"
    )
    assert pid_is_running(node_process)
