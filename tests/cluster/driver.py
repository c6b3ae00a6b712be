"""What a cluster test does: run the real `pvc`, ask libvirtd directly, read consoles.

Every check of a behaviour asks the hypervisors themselves (never only our own records)
and every wait is a deadline poll.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid as uuid_module
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import libvirt

from tests.harness.cluster import LocalCluster
from tests.harness.guest import ConsoleLog, read_console
from tests.harness.zookeeper import wait_until

PVC = str(Path(sys.executable).with_name("pvc"))

#: A guest boots (first console line) in ~3 s alone; allow for two cores shared.
BOOT_TIMEOUT = 60.0


class HostWatcher:
    """Polls every host's libvirtd meanwhile and records where each VM's CPUs ran."""

    def __init__(self, driver: ClusterDriver, uuids: list[str]) -> None:
        self.driver = driver
        self.samples: dict[str, list[list[str]]] = {uuid: [] for uuid in uuids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for uuid, samples in self.samples.items():
                hosts = self.driver.running_on(uuid)
                if len(hosts) > 1:
                    # Hosts are read one after another, so a live migration's switch can
                    # fall between two reads: the source read just before it paused, the
                    # target just after it resumed. Read again in the opposite order: a
                    # host still running after another was seen running is a real second
                    # copy, while the switch cannot be straddled this way round.
                    hosts = self.driver.running_on(uuid, order=reversed(hosts))
                samples.append(hosts)

    def __enter__(self) -> HostWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check_never_twice(self) -> None:
        """Fail if any sample saw a VM running on two hosts at once."""
        for uuid, samples in self.samples.items():
            assert len(samples) > 10, f"too few samples of {uuid}"
            twice = [hosts for hosts in samples if len(hosts) > 1]
            assert not twice, f"{uuid} ran on two hosts at once: {twice[:3]}"


class ClusterDriver:
    """One test's handle on the shared local cluster."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.vms: dict[str, str] = {}  # name -> UUID, for clean-up

    # ----------------------------------------------------------------- pvc

    def pvc(self, *args: str, expect: int | None = 0, timeout: float = 120.0) -> str:
        """Run the real `pvc` against the cluster; return stdout+stderr."""
        env = {**os.environ, "PVC_ZOOKEEPER": self.cluster.zk_hosts, "NO_COLOR": "1"}
        result = subprocess.run(
            [PVC, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = result.stdout + result.stderr
        if expect is not None and result.returncode != expect:
            raise AssertionError(
                f"pvc {' '.join(args)} exited {result.returncode}, expected {expect}:\n{output}"
            )
        return output

    def info(self, name: str) -> dict[str, Any]:
        """``pvc vm info -o json``."""
        data: dict[str, Any] = json.loads(self.pvc("vm", "info", name, "-o", "json"))
        return data

    def define(self, name: str, node: str = "hv1", *meta: str) -> str:
        """Define a tiny guest on ``node``; ``meta`` are extra `pvc vm define` options."""
        uuid = str(uuid_module.uuid4())
        xml_path = self.cluster.workdir / f"{name}.xml"
        xml_path.write_text(self.cluster.vm_xml(name, uuid))
        self.console_path(name).unlink(missing_ok=True)
        self.pvc("vm", "define", "--target", node, *meta, str(xml_path))
        self.vms[name] = uuid
        return uuid

    def start_running(self, name: str, node: str = "hv1", *meta: str) -> str:
        """Define and start a guest, and wait for its first console tick."""
        uuid = self.define(name, node, *meta)
        self.pvc("vm", "start", name, "--wait", "--wait-timeout", "60")
        self.wait_ticks(name, after=0)
        return uuid

    def remove_all(self) -> None:
        """Stop and undefine the VMs this test defined."""
        for name, uuid in self.vms.items():
            self.pvc("vm", "stop", name, "--yes", "--wait", "--wait-timeout", "30", expect=None)
            try:
                wait_until(lambda u=uuid: not self.active_on(u), 30, f"{name} still runs")
            finally:
                self.pvc("vm", "undefine", name, "--yes", expect=None)

    # ----------------------------------------------------------------- hypervisors

    def _domain_states(self, uuid: str, order: Iterable[str] | None = None) -> dict[str, int]:
        states: dict[str, int] = {}
        for name in self.cluster.hosts if order is None else order:
            host = self.cluster.hosts[name]
            try:
                with host.connection() as conn:
                    states[name] = conn.lookupByUUIDString(uuid).state()[0]
            except libvirt.libvirtError:
                # No such domain there, or the host is down (powered off): nothing runs.
                continue
        return states

    def active_on(self, uuid: str) -> list[str]:
        """Hosts whose libvirtd has the VM active (running, paused or arriving)."""
        return sorted(
            name
            for name, state in self._domain_states(uuid).items()
            if state != libvirt.VIR_DOMAIN_SHUTOFF
        )

    def running_on(self, uuid: str, order: Iterable[str] | None = None) -> list[str]:
        """Hosts where the VM's CPUs actually run (libvirt state RUNNING), reading the
        hosts in ``order`` (default: all of them, by name)."""
        return sorted(
            name
            for name, state in self._domain_states(uuid, order).items()
            if state == libvirt.VIR_DOMAIN_RUNNING
        )

    def wait_running_on(self, uuid: str, node: str, timeout: float = BOOT_TIMEOUT) -> None:
        wait_until(
            lambda: self.running_on(uuid) == [node],
            timeout,
            f"VM {uuid} not running on {node} alone (running on {self.running_on(uuid)})",
        )

    def qemu_pid(self, name: str, node: str) -> int | None:
        return self.cluster.hosts[node].qemu_pids().get(name)

    # ----------------------------------------------------------------- consoles

    def console_path(self, name: str) -> Path:
        return self.cluster.console_log(name)

    def console(self, name: str) -> ConsoleLog:
        return read_console(self.console_path(name))

    def wait_ticks(self, name: str, after: int, timeout: float = BOOT_TIMEOUT) -> int:
        """Wait for a tick counter above ``after`` (in the current boot); return it."""

        def tick() -> int | None:
            ticks = self.console(name).ticks_since_last_boot()
            return ticks[-1] if ticks and ticks[-1] > after else None

        return wait_until(tick, timeout, f"{name}: no console tick above {after}")

    def wait_boots(self, name: str, count: int, timeout: float = BOOT_TIMEOUT) -> None:
        wait_until(
            lambda: len(self.console(name).boots) >= count,
            timeout,
            f"{name}: fewer than {count} boot line(s) on its console",
        )
