"""A guided tour of pvc on the local cluster: ``make demo``.

It brings the local cluster of ``make cluster`` up if it is not running (or uses the
running one), then walks through the product with the real ``pvc`` CLI, printing every
command before it runs it and what to notice after it:

1. define VMs with node limits, selectors and autostart (guest XML from the harness,
   written into the cluster's work directory so the printed commands are real);
2. list, inspect and start them;
3. follow a console while a VM boots;
4. flush hv1: VMs move live within their limits, the one limited to hv1 stops with
   autostart;
5. ready hv1: they come back, the autostart VM starts;
6. cut hv1's power through its simulated BMC (``ipmitool ... chassis power off``) and
   watch a coordinator fence it and restart its VMs elsewhere, within their limits;
7. boot hv1 again and ready it: the cluster is whole again;

and ends with how to look around and how to stop the cluster. Every step checks its
outcome (in ZooKeeper and in the hosts' libvirtd): if something is not what the demo
says, it exits 1 with a one-line message. The cluster is left running.

Between steps it waits for Enter when stdin is a terminal, unless ``--no-pause``.

``python -m tests.harness.demo [--workdir DIR] [--api-port PORT] [--no-pause]``

This module must not import pytest (tests/cluster/test_demo.py runs it as a program).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid as uuid_module
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from pvc_common.errors import NotFound
from pvc_common.models import NodeRecord, VmRecord
from pvc_common.node_ops import live_nodes
from pvc_common.snapshot import find_vm, load_node, load_nodes
from pvc_common.store import ZkStore
from tests.harness.bmc import IPMITOOL_OPTIONS, BmcError
from tests.harness.cluster import (
    DEFAULT_WORKDIR,
    DEMO_VM,
    STATE_FILE,
    ClusterError,
    LocalCluster,
    up,
)
from tests.harness.guest import parse_console, read_console
from tests.harness.hypervisor import LibvirtHostError

PVC = str(Path(sys.executable).with_name("pvc"))

#: The demo's VMs: name -> `pvc vm define` options (all but db1 placed on hv1 explicitly).
DEMO_VMS: dict[str, tuple[str, ...]] = {
    "web1": ("--target", "hv1", "--limit", "hv1,hv2", "--selector", "mem"),
    "db1": ("--limit", "hv1", "--autostart"),
    "app1": ("--target", "hv1", "--selector", "vms"),
}

#: The node the demo flushes, readies and powers off.
NODE = "hv1"

#: Longest wait for an outcome the demo checks (a guest boots in a few seconds).
CHECK_TIMEOUT = 90.0

#: Longest wait for the power-off to be detected, fenced and its VMs restarted.
FENCE_TIMEOUT = 120.0

#: Longest `pvc vm log --follow` runs before it is interrupted.
FOLLOW_TIMEOUT = 45.0

STEPS = 7


class DemoFailed(Exception):
    """An outcome was not what the demo said it would be (the message is one line)."""


class Demo:
    """The tour on one running cluster."""

    def __init__(self, cluster: LocalCluster, store: ZkStore, *, pause: bool) -> None:
        self.cluster = cluster
        self.store = store
        self.pause = pause
        self.step = 0
        self.title = "preparation"
        self.xml_dir = cluster.workdir / "demo"
        self.env = {**os.environ, "PVC_ZOOKEEPER": cluster.zk_hosts}
        if sys.stdout.isatty() and "NO_COLOR" not in os.environ:
            self.env["CLICOLOR_FORCE"] = "1"  # output is captured, but shown on a terminal
        else:
            self.env["NO_COLOR"] = "1"

    # ----------------------------------------------------------------- output

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def heading(self, title: str) -> None:
        if self.step and self.pause:
            with contextlib.suppress(EOFError):
                input("\n-- press Enter to continue (Ctrl-C stops the demo) --")
        self.step += 1
        self.title = title
        self.say()
        self.say(f"=== Step {self.step}/{STEPS}: {title} ===")

    def notice(self, text: str) -> None:
        self.say(f"  -> notice: {text}")

    def fail(self, what: str) -> NoReturn:
        raise DemoFailed(f"step {self.step} ({self.title}): {what}")

    @staticmethod
    def shown_path(path: Path) -> str:
        """``path`` relative to the current directory when it lies below it."""
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    # ----------------------------------------------------------------- commands

    def pvc(self, *args: str, timeout: float = 300.0) -> str:
        """Print ``$ pvc ARGS``, run the real pvc, print its output; fail unless it exits 0."""
        self.say(f"\n$ pvc {shlex.join(args)}")
        try:
            result = subprocess.run(
                [PVC, *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            self.fail(f"'pvc {shlex.join(args)}' did not finish within {timeout:.0f} s")
        if result.stdout:
            self.say(result.stdout.rstrip("\n"))
        if result.returncode != 0:
            self.fail(f"'pvc {shlex.join(args)}' exited {result.returncode}")
        return result.stdout

    def ipmitool(self, node: str, *args: str) -> str:
        """Print and run ipmitool against ``node``'s simulated BMC (IPMI over LAN)."""
        bmc = self.cluster.bmcs[node]
        command = [
            "ipmitool",
            *IPMITOOL_OPTIONS[:4],  # -I lanplus -C 3 (see tests/harness/bmc.py)
            "-H",
            bmc.host,
            "-p",
            str(bmc.port),
            "-U",
            bmc.username,
            "-P",
            bmc.password,
            *args,
        ]
        self.say(f"\n$ {shlex.join(command)}")
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=30,
        )
        if result.stdout:
            self.say(result.stdout.rstrip("\n"))
        if result.returncode != 0:
            self.fail(f"'ipmitool ... {' '.join(args)}' exited {result.returncode}")
        return result.stdout

    # ----------------------------------------------------------------- facts

    def vm(self, name: str) -> VmRecord:
        return find_vm(self.store, name)

    def node(self, name: str) -> NodeRecord:
        return load_node(self.store, name)

    def running_on(self, uuid: str) -> list[str]:
        """Hosts whose own libvirtd reports the VM active (a powered-off host: none)."""
        hosts = []
        for name, host in self.cluster.hosts.items():
            with contextlib.suppress(Exception):  # a dead host runs nothing
                if uuid in host.running_domains():
                    hosts.append(name)
        return hosts

    def runs_on(self, name: str, nodes: tuple[str, ...]) -> str | None:
        """None if VM ``name`` runs on one of ``nodes`` (its record and libvirtd agree),
        else what is wrong."""
        record = self.vm(name)
        hosts = self.running_on(record.uuid)
        if record.state == "start" and record.node in nodes and hosts == [record.node]:
            return None
        return f"state {record.state!r} on {record.node}, libvirtd runs it on {hosts or 'none'}"

    def check(
        self, claim: str, problem: Callable[[], str | None], timeout: float = CHECK_TIMEOUT
    ) -> None:
        """Wait until ``problem()`` is None (the claim holds); print it, or fail saying why."""
        deadline = time.monotonic() + timeout
        while (why := problem()) is not None:
            if time.monotonic() >= deadline:
                self.fail(f"expected {claim}, but {why} (after {timeout:.0f} s)")
            time.sleep(0.25)
        self.say(f"  ok: {claim}")

    def check_runs_on(self, name: str, *nodes: str) -> None:
        where = nodes[0] if len(nodes) == 1 else " or ".join(nodes)
        self.check(f"{name} runs on {where}", lambda: self.runs_on(name, nodes))

    def check_stopped_autostart(self, name: str) -> None:
        def problem() -> str | None:
            record = self.vm(name)
            hosts = self.running_on(record.uuid)
            if record.state == "stop" and record.node_autostart and not hosts:
                return None
            return (
                f"state {record.state!r}, autostart {record.node_autostart}, "
                f"libvirtd runs it on {hosts or 'none'}"
            )

        self.check(f"{name} is stopped and marked autostart (it waits for {NODE})", problem)

    def check_node(self, name: str, daemonstate: str, domainstate: str) -> None:
        def problem() -> str | None:
            node = self.node(name)
            if (node.daemonstate, node.domainstate) == (daemonstate, domainstate):
                return None
            return f"it is {node.daemonstate}/{node.domainstate}"

        self.check(f"{name} is {daemonstate}/{domainstate} (daemon/domain state)", problem)

    def boots(self, name: str) -> int:
        return len(read_console(self.cluster.console_log(name)).boots)

    # ----------------------------------------------------------------- the tour

    def run(self) -> None:
        started = time.monotonic()
        self.introduction()
        self.tidy()
        self.define()
        self.start()
        self.console()
        self.flush()
        self.ready()
        self.power_off()
        self.power_on()
        self.ending(time.monotonic() - started)

    def introduction(self) -> None:
        cluster = self.cluster
        self.say("pvc demo: a guided tour on the local cluster")
        self.say(f"  cluster     {self.shown_path(cluster.workdir)} ({cluster.mode} mode)")
        self.say(f"  nodes       {', '.join(cluster.node_names)}, each a libvirtd with QEMU")
        self.say("              guests, a pvcnoded and a simulated BMC (IPMI over LAN)")
        self.say(f"  ZooKeeper   {cluster.zk_hosts}")
        self.say(
            f"Every command below really runs; 'pvc' is {self.shown_path(Path(PVC))} with "
            f"PVC_ZOOKEEPER={cluster.zk_hosts}."
        )

    def tidy(self) -> None:
        """Leave every node ready and no VM of an earlier demo run behind."""
        for node in load_nodes(self.store):
            if node.name in self.cluster.node_names and node.domainstate != "ready":
                self.say(f"\n{node.name} is {node.domainstate} (an earlier run?): readying it")
                self.pvc("node", "ready", node.name, "--wait")
        leftovers = [name for name in DEMO_VMS if self.exists(name)]
        if leftovers:
            self.say(f"\nRemoving the VMs of an earlier demo run ({', '.join(leftovers)}):")
        for name in leftovers:
            record = self.vm(name)
            if record.state != "stop":
                self.pvc("vm", "stop", name, "--yes", "--wait")
            self.pvc("vm", "undefine", name, "--yes")
        for name in DEMO_VMS:
            self.cluster.console_log(name).unlink(missing_ok=True)

    def define(self) -> None:
        self.heading("define VMs with node limits, selectors and autostart")
        self.xml_dir.mkdir(exist_ok=True)
        paths = {}
        for name in DEMO_VMS:
            paths[name] = self.xml_dir / f"{name}.xml"
            paths[name].write_text(self.cluster.vm_xml(name, str(uuid_module.uuid4())))
        self.say(
            f"Guest XML written to {self.shown_path(self.xml_dir)}/: a tiny QEMU guest that "
            "boots in seconds and prints a tick line every 0.5 s on its serial console."
        )
        for name, options in DEMO_VMS.items():
            self.pvc("vm", "define", *options, self.shown_path(paths[name]))
        self.notice(
            "VMs are defined stopped. web1 may only run on hv1 or hv2; db1 only on hv1 (so "
            "it landed there without --target) and restarts by itself after maintenance; "
            "app1 goes wherever the fewest VMs run when it has to move."
        )
        expected = {
            "web1": (("hv1", "hv2"), "mem", False),
            "db1": (("hv1",), "none", True),
            "app1": ((), "vms", False),
        }
        for name, (limit, selector, autostart) in expected.items():
            wanted = ("stop", NODE, limit, selector, autostart)

            def problem(name: str = name, wanted: tuple[object, ...] = wanted) -> str | None:
                vm = self.vm(name)
                facts = (vm.state, vm.node, vm.node_limit, vm.node_selector, vm.node_autostart)
                return None if facts == wanted else f"state/node/limit/selector/autostart {facts}"

            shown = ",".join(limit) or "none"
            self.check(
                f"{name} is defined stopped on {NODE}, limit {shown}, selector {selector}, "
                f"autostart {'on' if autostart else 'off'}",
                problem,
            )

    def start(self) -> None:
        self.heading("list, inspect and start VMs")
        self.pvc("vm", "list")
        self.pvc("vm", "info", "web1")
        self.pvc("vm", "start", "web1", "--wait")
        self.pvc("vm", "start", "db1", "--wait")
        self.pvc("vm", "list")
        self.notice(
            "'pvc vm start' only writes the wish into ZooKeeper; hv1's pvcnoded starts the "
            "guest, and --wait follows it to the outcome (exit 1 if it fails)."
        )
        self.check_runs_on("web1", NODE)
        self.check_runs_on("db1", NODE)

    def console(self) -> None:
        self.heading("follow a console while a VM boots")
        self.pvc("vm", "start", "app1")
        command = ("vm", "log", "app1", "--follow")
        self.say(f"\n$ pvc {shlex.join(command)}")
        lines = self.follow(command)
        self.notice(
            "each node daemon copies its VMs' serial consoles into ZooKeeper, so 'pvc vm log' "
            "works from anywhere and keeps following a VM when it moves."
        )
        text = "\n".join(lines)
        if "pvc-guest: booted app1" not in text:
            self.fail("the boot line 'pvc-guest: booted app1' never appeared in 'pvc vm log'")
        self.say("  ok: app1's boot line and its first ticks appeared in 'pvc vm log --follow'")
        self.check_runs_on("app1", NODE)

    def follow(self, command: tuple[str, ...]) -> list[str]:
        """Run ``pvc COMMAND`` (a --follow), showing its lines as they come, until the
        boot line and three ticks after it were seen; then Ctrl-C it."""
        lines: list[str] = []
        process = subprocess.Popen(
            [PVC, *command],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line.rstrip("\r\n"))
                self.say(lines[-1])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        started = time.monotonic()

        def seen_enough() -> bool:
            shown = parse_console("\n".join(lines))
            return bool(shown.boots) and len(shown.ticks_since_last_boot()) >= 3

        while not seen_enough() and time.monotonic() - started < FOLLOW_TIMEOUT:
            if process.poll() is not None:
                break
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        self.say(f"^C  (interrupted after {time.monotonic() - started:.1f} s)")
        if process.returncode not in (0, -signal.SIGINT, 130):
            self.fail(f"'pvc {shlex.join(command)}' exited {process.returncode}")
        return lines

    def flush(self) -> None:
        self.heading(f"flush {NODE} for maintenance")
        self.pvc("node", "flush", NODE, "--dry-run")
        boots_before = self.boots("web1")
        self.pvc("node", "flush", NODE, "--wait")
        self.pvc("vm", "list")
        self.notice(
            f"web1 moved live to hv2, the only other node its limit allows; app1 went to the "
            f"node with the fewest VMs; db1 had nowhere to go, so it was shut down and marked "
            f"autostart. {NODE} is 'flushed': nothing will be placed on it."
        )
        self.check_node(NODE, "run", "flushed")
        self.check_runs_on("web1", "hv2")
        self.check(
            "web1 moved live (its console shows no new boot: the guest kept counting)",
            lambda: (
                None
                if self.boots("web1") == boots_before
                else f"it booted {self.boots('web1') - boots_before} more time(s)"
            ),
        )
        self.check_runs_on("app1", "hv2", "hv3")
        self.check_stopped_autostart("db1")
        self.check(
            f"{NODE}'s libvirtd runs no VM any more",
            lambda: (
                None
                if not (running := self.cluster.hosts[NODE].running_domains())
                else f"it runs {sorted(running)}"
            ),
        )

    def ready(self) -> None:
        self.heading(f"make {NODE} ready again")
        self.pvc("node", "ready", NODE, "--wait")
        self.pvc("vm", "list")
        self.notice(
            f"the VMs the flush moved came back to {NODE} (live), and db1, stopped with "
            "autostart, was started again; its autostart mark is cleared."
        )
        self.check_node(NODE, "run", "ready")
        for name in DEMO_VMS:
            self.check_runs_on(name, NODE)
        self.check(
            "db1's autostart mark is cleared",
            lambda: None if not self.vm("db1").node_autostart else "it is still set",
        )

    def power_off(self) -> None:
        self.heading(f"cut {NODE}'s power through its BMC, and watch the fence")
        self.say(
            f"Each node has a simulated BMC (OpenIPMI's ipmi_sim) on 127.0.0.1; powering "
            f"{NODE} off kills its pvcnoded, its libvirtd and every guest on it at once."
        )
        boots_before = {name: self.boots(name) for name in ("web1", "app1")}
        self.ipmitool(NODE, "chassis", "power", "status")
        self.ipmitool(NODE, "chassis", "power", "off")
        cut = time.monotonic()
        self.say(
            f"\nWatching {NODE} and the VMs in ZooKeeper (what pvc node info / pvc vm list "
            f"show), every second, for up to {FENCE_TIMEOUT:.0f} s:"
        )
        watched = [*DEMO_VMS, *([DEMO_VM] if self.exists(DEMO_VM) else [])]
        last = ""
        fenced_after = 0.0
        while True:
            node = self.node(NODE)
            session = "alive" if NODE in live_nodes(self.store) else "gone"
            age = max(int(time.time()) - node.keepalive, 0)
            vms = {name: self.vm(name) for name in watched}
            line = (
                f"{NODE} {node.daemonstate}/{node.domainstate} (keepalive {age} s ago, "
                f"session {session}) | "
                + "  ".join(f"{name}: {vm.state} on {vm.node}" for name, vm in vms.items())
            )
            elapsed = time.monotonic() - cut
            if line != last:
                self.say(f"  [{elapsed:5.1f} s] {line}")
                last = line
            if node.daemonstate == "fenced" and not fenced_after:
                fenced_after = elapsed
            if (
                fenced_after
                and node.domainstate == "flushed"
                and self.runs_on("web1", ("hv2",)) is None
                and self.runs_on("app1", ("hv2", "hv3")) is None
            ):
                break
            if elapsed > FENCE_TIMEOUT:
                self.fail(
                    f"{NODE} was not fenced with web1 and app1 running elsewhere within "
                    f"{FENCE_TIMEOUT:.0f} s (last seen: {line})"
                )
            time.sleep(1.0)
        self.say(f"  ({NODE} was fenced {fenced_after:.1f} s after its power was cut)")
        self.pvc("node", "list")
        self.pvc("vm", "list")
        self.notice(
            f"a coordinator saw {NODE}'s keepalives and ZooKeeper session stop, powered it "
            f"off through its BMC and only once the BMC confirmed 'off' restarted its VMs "
            f"elsewhere within their limits: web1 on hv2, app1 on the emptiest node. They "
            f"booted again (a dead node's VMs cannot move live). db1, limited to {NODE}, "
            f"waits stopped with autostart."
        )
        self.check_node(NODE, "fenced", "flushed")
        self.check_runs_on("web1", "hv2")
        self.check_runs_on("app1", "hv2", "hv3")
        for name, before in boots_before.items():

            def no_new_boot(name: str = name, before: int = before) -> str | None:
                return None if self.boots(name) > before else "its console shows no new boot"

            self.check(f"{name} booted again after the fence", no_new_boot)
        self.check_stopped_autostart("db1")

    def exists(self, name: str) -> bool:
        try:
            self.vm(name)
        except NotFound:
            return False
        return True

    def power_on(self) -> None:
        self.heading(f"boot {NODE} again and make it ready")
        self.ipmitool(NODE, "chassis", "power", "on")
        self.say(
            f"\n# The fence already powered {NODE} back on once it was confirmed off (so a node "
            "can rejoin after a reboot); 'on' again is harmless. The simulated machine has "
            f"nothing to boot, so the harness starts its libvirtd and pvcnoded now, as its "
            "boot would (LocalCluster.power_on)."
        )
        self.cluster.power_on(NODE)
        self.cluster.wait_nodes_running(CHECK_TIMEOUT)
        self.pvc("node", "list")
        self.notice(
            f"{NODE}'s daemon runs again, but the node stays 'flushed' until an administrator "
            "says it is ready."
        )
        self.check_node(NODE, "run", "flushed")
        self.pvc("node", "ready", NODE, "--wait")
        self.pvc("vm", "list")
        self.notice(f"everything is back on {NODE}, db1 included.")
        self.check_node(NODE, "run", "ready")
        for name in DEMO_VMS:
            self.check_runs_on(name, NODE)

    def ending(self, seconds: float) -> None:
        cluster = self.cluster
        pvc = self.shown_path(Path(PVC))
        self.say()
        self.say(f"=== The end (the demo took {seconds:.0f} s) ===")
        self.say("The cluster keeps running, with the demo's VMs. To look around:")
        self.say()
        if cluster.api is not None:
            self.say(f"  export PVC_API_URL={cluster.api_url}")
            self.say(f"  export PVC_API_KEY={cluster.api_key}")
        self.say(f"  export PVC_ZOOKEEPER={cluster.zk_hosts}")
        self.say(f"  {pvc} node list")
        self.say(f"  {pvc} vm info web1 --long")
        self.say(f"  {pvc} vm log web1 --follow")
        self.say(f"  {pvc} vm migrate web1 --target hv2 --wait")
        if cluster.api is not None:
            self.say('  curl -s -H "X-Api-Key: $PVC_API_KEY" "$PVC_API_URL/vm"')
        self.say()
        if cluster.workdir == DEFAULT_WORKDIR:
            self.say("Stop it all with: make cluster-down")
        else:
            self.say(
                "Stop it all with: .venv/bin/python -m tests.harness.cluster down --workdir "
                f"{cluster.workdir}"
            )


# ----------------------------------------------------------------------------- entry


def get_cluster(workdir: Path, api_port: int) -> LocalCluster:
    """The running cluster of ``workdir``, or a new one (``up``); it must suit the demo."""
    if (workdir / STATE_FILE).exists():
        existing = LocalCluster.attach(workdir)
        if existing.is_running():
            if existing.mode != "qemu":
                raise ClusterError(
                    "the running cluster uses libvirt's test driver (MODE=test), which has no "
                    "consoles or live migration: run 'make cluster-down' first"
                )
            if not existing.bmcs:
                raise ClusterError(
                    "the running cluster has no BMCs (started before make cluster had them, "
                    "or without ipmi_sim): run 'make cluster-down' first"
                )
    cluster = up(workdir, "qemu", api_port, bmcs=True)
    if cluster.image is None:  # attached: vm_xml needs the guest image (cached, fast)
        from tests.harness.guest import build_guest_image

        cluster.image = build_guest_image()
    return cluster


@contextlib.contextmanager
def _terminated_is_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit, so a cluster half brought up is stopped cleanly."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.demo",
        description="A guided tour of pvc on the local cluster (make demo); it brings the "
        "cluster up if it is not running, and leaves it running.",
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(
        "--api-port", type=int, default=7370, help="API port of a cluster the demo starts"
    )
    parser.add_argument(
        "--no-pause",
        action="store_true",
        help="never wait for Enter between steps (the default when stdin is no terminal)",
    )
    args = parser.parse_args(argv)
    pause = not args.no_pause and sys.stdin.isatty()
    with _terminated_is_exit():
        try:
            cluster = get_cluster(args.workdir.resolve(), args.api_port)
            with cluster.store() as store:
                Demo(cluster, store, pause=pause).run()
        except DemoFailed as error:
            print(f"demo: FAILED at {error}", file=sys.stderr, flush=True)
            return 1
        except (ClusterError, BmcError, LibvirtHostError, TimeoutError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            print(f"demo: {first}", file=sys.stderr, flush=True)
            return 1
        except KeyboardInterrupt:
            print("\ndemo: interrupted; the cluster keeps running", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
