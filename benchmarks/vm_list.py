"""Benchmark ``pvc vm list`` on a real ZooKeeper against a one-round-trip-per-key baseline.

What is measured
================

A cluster of ``--vms`` VMs (default 1,000) is written to a real ZooKeeper server: three
running nodes, three registered networks, and VMs with realistic libvirt XML (2-3 KB:
two Ceph RBD disks, two bridged interfaces on ``vmbrNNN``, a logged serial console and
the usual controllers and devices), spread over the nodes in varied states. Then, in the
same run and alternating the two so that drift of the machine affects both alike:

(a) ``pvc -z HOSTS vm list`` as a whole process, as an operator runs it: interpreter
    start, imports, connecting, reading the VMs (``snapshot.load_vms``: ZooKeeper
    multi-reads of many paths per round trip), parsing every XML, rendering the table;
(b) a baseline process doing the same job the naive way: a plain kazoo ``KazooClient``
    lists ``/domains`` and reads each VM's own znode and each key of
    ``schema.DOMAIN_LIST_KEYS`` with its own synchronous ``get()`` (one round trip per
    key), then parses the XML with the same ``parse_domain_xml`` and prints the same table
    with the CLI's own rendering helpers.

Why the comparison is fair
==========================

Both are whole processes on the same interpreter, against the same server and tree, run
the same number of times in alternating order after one unmeasured warm-up each. Both
check the schema version, read the registered networks (to flag unknown ones), read the
same znodes, decode them with the same schema codecs, parse the same XML with the same
parser and print the same table: the benchmark checks that both print N+1 lines and
reports whether the two outputs are byte-for-byte identical. The only intended difference
is how the znodes are read. The baseline imports less than the full CLI (no command
modules), which if anything favours it. Medians are the headline figures; minima are
given too.

The read phase alone is also timed in-process (``snapshot.load_vms(store)`` against the
same sequential per-key reads on an already-connected client), together with a breakdown
of the in-process phases of the listing and the cost of merely starting ``pvc``, to show
where the time of the whole process goes.

Population writes with ``ZkStore.commit`` of ``Create`` ops built from
``schema.DOMAIN_FIELDS`` (about 50 VMs per transaction): the same keys and encodings
``vm_ops.define_vm`` writes, which the benchmark verifies by defining the last
``--define-sample`` VMs with ``define_vm`` itself, timing it, and comparing every key.

Run it from the repository root::

    .venv/bin/python benchmarks/vm_list.py [--vms 1000] [--runs 5] [--zookeeper HOSTS]
                                           [--json FILE]

By default a throwaway ZooKeeper is started with ``tests/harness/zookeeper.py`` in a
temporary directory and stopped at the end. With ``--zookeeper HOSTS`` an existing server
is used, inside a fresh uniquely named chroot that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from machine_facts import cpu_model, zookeeper_version
from timing_table import banner, median_and_min, rule

from pvc_cli.output import Cell, render_table, state_cell
from pvc_common import schema
from pvc_common.domain_xml import parse_domain_xml
from pvc_common.errors import InvalidInput, PvcError
from pvc_common.models import DomainInfo, NetworkRecord, VmRecord
from pvc_common.store import Check, Create, Delete, Op, ZkStore

REPO_ROOT = Path(__file__).resolve().parent.parent
PVC = Path(sys.executable).parent / "pvc"

#: The table ``pvc vm list`` prints; the baseline prints the same one.
HEADERS = ("Name", "UUID", "State", "Networks", "RAM", "vCPUs", "Node", "Migrated")

NODE_NAMES = ("hv1", "hv2", "hv3")
#: Registered networks: (VNI, description, type).
NETWORKS = ((100, "public", "bridged"), (200, "storage", "bridged"), (300, "tenants", "managed"))
#: A bridge no network is registered for: a few VMs use it, as on real clusters.
UNREGISTERED_VNI = 4000
VMS_PER_TRANSACTION = 50
SEED = 20240601
TARGET_RATIO = 10.0


class BenchmarkError(RuntimeError):
    """A check of the benchmark failed: the figures would not mean what they claim."""


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the figures."""
    print(f"[vm_list] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- shared by both sides


def table_row(vm: VmRecord, domain: DomainInfo | None, known_networks: set[str]) -> list[Cell]:
    """One row of the VM table, as ``pvc vm list`` shows it."""
    networks = domain.networks if domain else ()
    unknown = any(network not in known_networks for network in networks)
    network_text = ",".join(networks) if domain else "?"
    return [
        Cell(vm.name),
        Cell(vm.uuid),
        state_cell(vm.state),
        Cell(network_text or "-", "red" if unknown else None),
        Cell(str(domain.memory_mib) if domain else "?"),
        Cell(str(domain.vcpus) if domain else "?"),
        Cell(vm.node),
        Cell(f"from {vm.lastnode}" if vm.lastnode else "no", "yellow" if vm.lastnode else None),
    ]


def render_vm_table(vms: Sequence[VmRecord], known_networks: set[str]) -> str:
    """Parse every VM's XML and render the table (the work after the reads)."""
    rows = []
    for vm in vms:
        try:
            domain: DomainInfo | None = parse_domain_xml(vm.xml)
        except InvalidInput:  # pvc shows '?' cells for an unusable XML
            domain = None
        rows.append(table_row(vm, domain, known_networks))
    return render_table(list(HEADERS), rows)


def _get_or_none(client: KazooClient, path: str) -> tuple[bytes | None, Any]:
    """Data and stat of ``path`` with one synchronous round trip; (None, None) if missing."""
    try:
        data, stat = client.get(path)
    except NoNodeError:
        return None, None
    return data, stat


def _data(client: KazooClient, path: str) -> bytes | None:
    return _get_or_none(client, path)[0]


def read_networks_one_by_one(client: KazooClient) -> list[NetworkRecord]:
    """Registered networks, each znode read with its own round trip."""
    vnis = sorted(int(n) for n in client.get_children(schema.NETWORKS_PATH) if n.isdigit())
    networks = []
    for vni in vnis:
        own, _ = _get_or_none(client, schema.network_path(vni))
        if own is None:
            continue
        values = {
            field.key: field.decode(_data(client, schema.network_key_path(vni, field.key)))
            for field in schema.NETWORK_FIELDS
        }
        networks.append(NetworkRecord(vni=vni, description=own.decode(), **values))
    return networks


def read_vms_one_by_one(client: KazooClient) -> list[VmRecord]:
    """Every VM, reading its own znode and each listing key with a separate ``get()``."""
    fields = [schema.DOMAIN_FIELD[key] for key in schema.DOMAIN_LIST_KEYS]
    records = []
    for uuid in sorted(client.get_children(schema.DOMAINS_PATH)):
        own, stat = _get_or_none(client, schema.domain_path(uuid))
        if own is None:
            continue
        values = {
            field.key: field.decode(_data(client, schema.domain_key_path(uuid, field.key)))
            for field in fields
        }
        name = own.decode("utf-8", "replace")
        records.append(VmRecord(uuid=uuid, name=name, version=stat.version, **values))
    return sorted(records, key=lambda vm: (vm.name, vm.uuid))


def baseline_worker(hosts: str) -> int:
    """The baseline process: ``pvc vm list``'s job with one round trip per key read."""
    client = KazooClient(hosts=hosts, timeout=10.0)
    client.start(timeout=10.0)
    try:
        version, _ = _get_or_none(client, schema.SCHEMA_VERSION_PATH)
        if version is None:
            print("Error: the cluster is not initialised", file=sys.stderr)
            return 1
        known = {str(network.vni) for network in read_networks_one_by_one(client)}
        vms = read_vms_one_by_one(client)
    finally:
        client.stop()
        client.close()
    click.echo(render_vm_table(vms, known))
    return 0


# --------------------------------------------------------------------------- the cluster's content


@dataclass(frozen=True)
class VmSpec:
    """One VM to create, with every value its keys will hold."""

    uuid: str
    name: str
    xml: str
    memory_mib: int
    vcpus: int
    state: str
    node: str
    lastnode: str
    failedreason: str
    node_limit: tuple[str, ...]
    node_selector: str
    autostart: bool


def domain_xml(
    rng: random.Random, name: str, uuid: str, memory_mib: int, vcpus: int, vnis: tuple[int, int]
) -> str:
    """A libvirt domain XML of the kind PVC clusters run (about 2.5 KB)."""
    monitors = "\n".join(
        f"        <host name='10.20.0.{i}' port='6789'/>" for i in range(1, 4)
    )  # the Ceph monitors

    def disk(index: int, target: str) -> str:
        return f"""    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='writeback' discard='unmap'/>
      <auth username='libvirt'>
        <secret type='ceph' uuid='9b0e5d1c-3c2f-4d1e-8a6b-2f4c7e9d1a30'/>
      </auth>
      <source protocol='rbd' name='vms/{name}_disk{index}'>
{monitors}
      </source>
      <target dev='{target}' bus='scsi'/>
    </disk>"""

    def interface(vni: int) -> str:
        mac = ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
        return f"""    <interface type='bridge'>
      <mac address='52:54:00:{mac}'/>
      <source bridge='vmbr{vni}'/>
      <model type='virtio'/>
    </interface>"""

    return f"""<domain type='kvm'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <description>{name}: benchmark VM</description>
  <memory unit='MiB'>{memory_mib}</memory>
  <currentMemory unit='MiB'>{memory_mib}</currentMemory>
  <vcpu placement='static'>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'>
    <topology sockets='1' dies='1' cores='{vcpus}' threads='1'/>
  </cpu>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>restart</on_crash>
  <devices>
    <emulator>/usr/bin/kvm</emulator>
{disk(0, "sda")}
{disk(1, "sdb")}
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <controller type='usb' index='0' model='qemu-xhci'/>
{interface(vnis[0])}
{interface(vnis[1])}
    <serial type='pty'>
      <log file='/var/log/libvirt/{name}.log' append='on'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <input type='tablet' bus='usb'/>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <video>
      <model type='virtio' heads='1' primary='yes'/>
    </video>
    <memballoon model='virtio'/>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
</domain>
"""


STATE_WEIGHTS = {
    "start": 70,
    "stop": 12,
    "disable": 5,
    "shutdown": 3,
    "migrate": 3,
    "fail": 3,
    "restart": 2,
}
ROLES = ("web", "db", "cache", "app", "build", "mail", "proxy", "ci")


def plan_vms(count: int, define_sample: int) -> list[VmSpec]:
    """The VMs to create (deterministic); the last ``define_sample`` are freshly defined."""
    rng = random.Random(SEED)
    states = list(STATE_WEIGHTS)
    weights = list(STATE_WEIGHTS.values())
    vnis = [vni for vni, _, _ in NETWORKS]
    specs = []
    for index in range(count):
        uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
        name = f"{ROLES[index % len(ROLES)]}-{index:04d}"
        memory_mib = rng.choice((1024, 2048, 4096, 8192, 16384))
        vcpus = rng.choice((1, 2, 4, 8))
        second = UNREGISTERED_VNI if index % 97 == 0 else vnis[(index + 1) % len(vnis)]
        xml = domain_xml(rng, name, uuid, memory_mib, vcpus, (vnis[index % len(vnis)], second))
        node = NODE_NAMES[index % len(NODE_NAMES)]
        others = [n for n in NODE_NAMES if n != node]
        state = rng.choices(states, weights)[0]
        lastnode = ""
        if state == "migrate" or (state == "start" and rng.random() < 0.05):
            lastnode = rng.choice(others)
        failedreason = ""
        if state == "fail":
            failedreason = "libvirt: internal error: process exited while connecting to monitor"
        node_limit: tuple[str, ...] = ()
        if rng.random() < 0.2:
            node_limit = tuple(sorted((node, rng.choice(others))))
        selector = rng.choices(("none", "mem", "load", "vcpus"), (80, 10, 5, 5))[0]
        autostart = rng.random() < 0.3
        if index >= count - define_sample:  # define_vm creates them stopped, not migrated
            state, lastnode, failedreason = "stop", "", ""
        specs.append(
            VmSpec(
                uuid=uuid,
                name=name,
                xml=xml,
                memory_mib=memory_mib,
                vcpus=vcpus,
                state=state,
                node=node,
                lastnode=lastnode,
                failedreason=failedreason,
                node_limit=node_limit,
                node_selector=selector,
                autostart=autostart,
            )
        )
    return specs


def vm_create_ops(spec: VmSpec) -> list[Create]:
    """The ``Create`` ops of one VM: its own znode (data: name) and every DOMAIN_FIELDS key.

    Its history holds the one entry ``define_vm`` records (see :func:`comparable`).
    """
    from pvc_common.history import HistoryEntry, appended, current_actor

    define = HistoryEntry(at=time.time(), by=current_actor(), what=f"define on {spec.node}")
    values: dict[str, Any] = {
        "xml": spec.xml,
        "state": spec.state,
        "node": spec.node,
        "lastnode": spec.lastnode,
        "failedreason": spec.failedreason,
        "node_limit": spec.node_limit,
        "node_selector": spec.node_selector,
        "node_autostart": spec.autostart,
        "rbdlist": parse_domain_xml(spec.xml).rbd_volumes,
        "history": appended({}, define),
    }
    ops = [Create(schema.domain_path(spec.uuid), spec.name.encode())]
    for field in schema.DOMAIN_FIELDS:
        value = values.get(field.key, field.default)
        ops.append(Create(schema.domain_key_path(spec.uuid, field.key), field.encode(value)))
    return ops


def node_figures(name: str, specs: Sequence[VmSpec]) -> dict[str, Any]:
    """Plausible node keys for ``name`` given the VMs placed on it."""
    running = [s for s in specs if s.node == name and s.state in ("start", "restart", "migrate")]
    assigned = [s for s in specs if s.node == name]
    memalloc = sum(s.memory_mib for s in running)
    # Whole 256 GiB steps with at least 64 GiB left free, so define_vm's checks pass.
    step = 256 * 1024
    memtotal = (memalloc + 64 * 1024 + 8192) // step * step + step
    return {
        "daemonstate": "run",
        "domainstate": "ready",
        "routerstate": "primary" if name == NODE_NAMES[0] else "secondary",
        "staticdata": ("64", "6.1.0-18-amd64", "Debian GNU/Linux 12 (bookworm)", "x86_64"),
        "memtotal": memtotal,
        "memused": memalloc + 8192,
        "memfree": memtotal - memalloc - 8192,
        "memalloc": memalloc,
        "memprov": sum(s.memory_mib for s in assigned),
        "vcpualloc": sum(s.vcpus for s in running),
        "cpuload": 3.5,
        "domainscount": len(running),
        "runningdomains": tuple(s.uuid for s in running),
        "keepalive": int(time.time()),
    }


@dataclass
class Population:
    """How long writing the cluster took."""

    cluster_seconds: float
    batched_vms: int
    batched_seconds: float
    transactions: int
    defined_vms: int
    define_seconds: list[float]
    xml_bytes_mean: float


def populate(store: ZkStore, specs: Sequence[VmSpec], define_sample: int) -> Population:
    """Initialise the cluster, register nodes and networks, write every VM."""
    from pvc_common.cluster_ops import init_cluster
    from pvc_common.network_ops import add_network
    from pvc_common.node_ops import register_node
    from pvc_common.vm_ops import define_vm

    started = time.perf_counter()
    init_cluster(store)
    for name in NODE_NAMES:
        register_node(store, name, node_type="hypervisor", **node_figures(name, specs))
    for vni, description, nettype in NETWORKS:
        add_network(store, vni, description=description, nettype=nettype)
    cluster_seconds = time.perf_counter() - started

    batched = specs[: len(specs) - define_sample]
    started = time.perf_counter()
    transactions = 0
    for first in range(0, len(batched), VMS_PER_TRANSACTION):
        ops: list[Op] = [Check(schema.SCHEMA_VERSION_PATH, -1)]
        for spec in batched[first : first + VMS_PER_TRANSACTION]:
            ops.extend(vm_create_ops(spec))
        store.commit(ops)
        transactions += 1
    batched_seconds = time.perf_counter() - started

    define_seconds = []
    for spec in specs[len(batched) :]:
        started = time.perf_counter()
        define_vm(
            store,
            spec.xml,
            target=spec.node,
            limit=spec.node_limit,
            selector=spec.node_selector,
            autostart=spec.autostart,
        )
        define_seconds.append(time.perf_counter() - started)
    verify_same_as_define(store, specs[len(batched) :])
    return Population(
        cluster_seconds=cluster_seconds,
        batched_vms=len(batched),
        batched_seconds=batched_seconds,
        transactions=transactions,
        defined_vms=len(specs) - len(batched),
        define_seconds=define_seconds,
        xml_bytes_mean=statistics.fmean(len(s.xml.encode()) for s in specs),
    )


def verify_same_as_define(store: ZkStore, defined: Sequence[VmSpec]) -> None:
    """Check that the batched writer produces exactly what ``define_vm`` wrote."""
    for spec in defined:
        expected = {op.path: op.data for op in vm_create_ops(spec)}
        own = schema.domain_path(spec.uuid)
        present = [own] + [f"{own}/{child}" for child in store.children(own)]
        if sorted(present) != sorted(expected):
            raise BenchmarkError(f"define_vm wrote keys {present}, the batch writer {expected}")
        for path, read in zip(present, store.read_many(present), strict=True):
            if read is None or comparable(path, read.data) != comparable(path, expected[path]):
                raise BenchmarkError(f"{path}: define_vm wrote {read}, batch writes differ")


def comparable(path: str, data: bytes | None) -> Any:
    """A key's data as the check compares it: a history without its entries' times."""
    if data is None or not path.endswith("/history"):
        return data
    stored = schema.DOMAIN_FIELD["history"].decode(data)
    entries = [{k: v for k, v in entry.items() if k != "at"} for entry in stored["entries"]]
    return {**stored, "entries": entries}


# --------------------------------------------------------------------------- measuring


@dataclass
class Timing:
    """Repeated wall-clock measurements of one variant."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def minimum(self) -> float:
        return min(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.minimum, "runs_s": self.seconds}


def run_process(command: Sequence[str], expected_lines: int | None) -> tuple[float, str]:
    """Run ``command``, check it (exit 0, line count), return (seconds, stdout)."""
    env = dict(os.environ, NO_COLOR="1")
    env.pop("CLICOLOR_FORCE", None)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchmarkError(
            f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-2000:]}"
        )
    output = done.stdout.decode()
    if expected_lines is not None and len(output.splitlines()) != expected_lines:
        raise BenchmarkError(
            f"{' '.join(command)} printed {len(output.splitlines())} lines, "
            f"expected {expected_lines}"
        )
    return elapsed, output


def alternate(
    variants: dict[str, Callable[[], float]], runs: int, warmup: bool = True
) -> dict[str, Timing]:
    """Run each variant ``runs`` times, alternating and reversing the order every round."""
    names = list(variants)
    if warmup:
        for name in names:
            variants[name]()
    timings = {name: Timing([]) for name in names}
    for round_index in range(runs):
        order = names if round_index % 2 == 0 else list(reversed(names))
        for name in order:
            timings[name].seconds.append(variants[name]())
    return timings


def first_difference(left: str, right: str) -> str:
    """A short description of the first line where two outputs differ."""
    for number, (a, b) in enumerate(zip(left.splitlines(), right.splitlines(), strict=False)):
        if a != b:
            return f"line {number + 1}: pvc {a!r} / baseline {b!r}"
    return "same lines, different line endings or trailing text"


def measure_in_process(hosts: str, runs: int, vm_count: int) -> dict[str, Any]:
    """The read phase alone, and the phases of the listing, in this process."""
    from pvc_common import snapshot, vm_ops

    started = time.perf_counter()
    store = ZkStore(hosts).connect()
    connect_seconds = time.perf_counter() - started
    client = KazooClient(hosts=hosts, timeout=10.0)
    client.start(timeout=10.0)
    try:
        fast = snapshot.load_vms(store)
        slow = read_vms_one_by_one(client)
        if fast != slow:
            raise BenchmarkError("load_vms and the per-key reads returned different VMs")
        if len(fast) != vm_count:
            raise BenchmarkError(f"read {len(fast)} VMs, expected {vm_count}")

        def timed(call: Callable[[], object]) -> Callable[[], float]:
            def run() -> float:
                begin = time.perf_counter()
                call()
                return time.perf_counter() - begin

            return run

        reads = alternate(
            {
                "load_vms": timed(lambda: snapshot.load_vms(store)),
                "per_key": timed(lambda: read_vms_one_by_one(client)),
            },
            runs,
        )
        known = {str(network.vni) for network in snapshot.load_networks(store)}
        phases = alternate(
            {
                "list_vms": timed(lambda: vm_ops.list_vms(store)),
                "parse_and_render": timed(lambda: render_vm_table(fast, known)),
            },
            runs,
        )
    finally:
        client.stop()
        client.close()
        store.close()
    return {
        "connect_s": connect_seconds,
        "load_vms": reads["load_vms"],
        "per_key": reads["per_key"],
        "list_vms": phases["list_vms"],
        "parse_and_render": phases["parse_and_render"],
    }


# --------------------------------------------------------------------------- the run


def benchmark(hosts: str, args: argparse.Namespace, server_note: str) -> dict[str, Any]:
    """Populate the tree at ``hosts`` and measure; return every figure."""
    vm_count: int = args.vms
    define_sample = min(args.define_sample, vm_count)
    specs = plan_vms(vm_count, define_sample)
    log(f"populating {vm_count} VMs at {hosts}")
    with ZkStore(hosts, timeout=30.0) as store:
        population = populate(store, specs, define_sample)
    define_mean = statistics.fmean(population.define_seconds) if population.define_seconds else 0
    log(
        f"populated in {population.cluster_seconds + population.batched_seconds:.2f} s "
        f"(+ {sum(population.define_seconds):.2f} s for {population.defined_vms} define_vm)"
    )

    expected_lines = vm_count + 1
    pvc_command = [str(PVC), "-z", hosts, "vm", "list"]
    baseline_command = [sys.executable, str(Path(__file__).resolve()), "--baseline-worker", hosts]
    pvc_output = run_process(pvc_command, expected_lines)[1]
    baseline_output = run_process(baseline_command, expected_lines)[1]
    identical = pvc_output == baseline_output
    if not identical:
        log(f"WARNING: outputs differ, {first_difference(pvc_output, baseline_output)}")

    log(f"measuring whole processes, {args.runs} runs each, alternating")
    whole = alternate(
        {
            "pvc": lambda: run_process(pvc_command, expected_lines)[0],
            "baseline": lambda: run_process(baseline_command, expected_lines)[0],
        },
        args.runs,
        warmup=False,  # the checked runs above were the warm-up
    )
    log("measuring process start-up floors")
    floors = alternate(
        {
            "python": lambda: run_process([sys.executable, "-c", "pass"], None)[0],
            "pvc_version": lambda: run_process([str(PVC), "--version"], None)[0],
        },
        args.runs,
    )
    log("measuring the read phase in-process")
    in_process = measure_in_process(hosts, args.runs, vm_count)

    pvc, baseline = whole["pvc"], whole["baseline"]
    ratio = baseline.median / pvc.median
    return {
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "zookeeper_version": zookeeper_version(hosts),
            "zookeeper_server": server_note,
        },
        "vms": vm_count,
        "nodes": len(NODE_NAMES),
        "networks": len(NETWORKS),
        "runs": args.runs,
        "keys_read_per_vm": 1 + len(schema.DOMAIN_LIST_KEYS),
        "domain_list_keys": list(schema.DOMAIN_LIST_KEYS),
        "population": {
            "xml_bytes_mean": population.xml_bytes_mean,
            "cluster_s": population.cluster_seconds,
            "batched_vms": population.batched_vms,
            "batched_s": population.batched_seconds,
            "transactions": population.transactions,
            "define_vm_count": population.defined_vms,
            "define_vm_mean_s": define_mean,
            "define_vm_total_s": sum(population.define_seconds),
            "define_vm_extrapolated_s": define_mean * vm_count,
        },
        "outputs_identical": identical,
        "whole_process": {
            "pvc_vm_list": pvc.as_dict(),
            "baseline": baseline.as_dict(),
            "ratio_median": ratio,
            "ratio_min": baseline.minimum / pvc.minimum,
            "python_c_pass": floors["python"].as_dict(),
            "pvc_version": floors["pvc_version"].as_dict(),
        },
        "in_process": {
            "connect_s": in_process["connect_s"],
            "load_vms": in_process["load_vms"].as_dict(),
            "per_key_reads": in_process["per_key"].as_dict(),
            "read_ratio_median": in_process["per_key"].median / in_process["load_vms"].median,
            "list_vms": in_process["list_vms"].as_dict(),
            "parse_and_render": in_process["parse_and_render"].as_dict(),
        },
        "target_ratio": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
    }


def report(figures: dict[str, Any]) -> str:
    """The figures block printed at the end."""
    machine, population = figures["machine"], figures["population"]
    whole, inproc = figures["whole_process"], figures["in_process"]
    n = figures["vms"]

    pair = median_and_min
    load = ", ".join(f"{value:.2f}" for value in machine["load_average"])
    lines = [
        *banner("pvc vm list benchmark"),
        f"machine          {machine['cpu_model']}, {machine['cores']} cores, load average {load}",
        f"python           {machine['python']} ({machine['platform']})",
        f"zookeeper        {machine['zookeeper_version']} ({machine['zookeeper_server']})",
        f"cluster          {n} VMs (XML {population['xml_bytes_mean']:.0f} bytes on average), "
        f"{figures['nodes']} nodes, {figures['networks']} networks",
        f"keys read per VM {figures['keys_read_per_vm']} (own znode + "
        f"{', '.join(figures['domain_list_keys'])})",
        f"runs             {figures['runs']} of each, alternating, after a checked warm-up",
        "",
        "population",
        f"  {'init + 3 nodes + 3 networks':30}{population['cluster_s']:8.3f} s",
        f"  {str(population['batched_vms']) + ' VMs, batched Create ops':30}"
        f"{population['batched_s']:8.3f} s   "
        f"({population['transactions']} transactions of <= {VMS_PER_TRANSACTION} VMs)",
        f"  {str(population['define_vm_count']) + ' VMs, vm_ops.define_vm':30}"
        f"{population['define_vm_total_s']:8.3f} s   "
        f"({population['define_vm_mean_s'] * 1000:.1f} ms/VM at ~{n} VMs, growing with the "
        f"cluster: <= ~{population['define_vm_extrapolated_s']:.0f} s for {n} one by one)",
        "  batched keys verified identical to define_vm's",
        "",
        "whole process (wall clock, stdout piped)",
        f"  pvc vm list                   {pair(whole['pvc_vm_list'])}",
        f"  baseline (1 get per key)      {pair(whole['baseline'])}",
        f"  ratio baseline / pvc          median {whole['ratio_median']:8.1f} x   "
        f"min {whole['ratio_min']:8.1f} x",
        f"  outputs byte-for-byte equal   {'yes' if figures['outputs_identical'] else 'NO'}",
        f"  floor: python -c pass         {pair(whole['python_c_pass'])}",
        f"  floor: pvc --version          {pair(whole['pvc_version'])}",
        "",
        "in-process (connected client, no start-up)",
        f"  connect (ZkStore, once)       once   {inproc['connect_s']:8.3f} s",
        f"  snapshot.load_vms(store)      {pair(inproc['load_vms'])}",
        f"  sequential per-key get()      {pair(inproc['per_key_reads'])}",
        f"  ratio per-key / load_vms      median {inproc['read_ratio_median']:8.1f} x",
        f"  vm_ops.list_vms (reads+parse) {pair(inproc['list_vms'])}",
        f"  parse XML + render table      {pair(inproc['parse_and_render'])}",
        rule(),
        f"RESULT: pvc vm list {whole['pvc_vm_list']['median_s']:.3f} s vs baseline "
        f"{whole['baseline']['median_s']:.3f} s: {whole['ratio_median']:.1f}x faster "
        f"(target {figures['target_ratio']:g}x: {'met' if figures['target_met'] else 'NOT met'})",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time 'pvc vm list' against a one-round-trip-per-key baseline."
    )
    parser.add_argument("--vms", type=int, default=1000, help="VMs to create (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each (default 5)")
    parser.add_argument(
        "--zookeeper",
        metavar="HOSTS",
        help="use this ZooKeeper (in a fresh chroot, deleted afterwards) instead of starting one",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    parser.add_argument(
        "--define-sample",
        type=int,
        default=20,
        metavar="K",
        help="define the last K VMs with define_vm, to time it and check the batch writer",
    )
    parser.add_argument("--baseline-worker", metavar="HOSTS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_worker is None:
        if args.vms < 1 or args.runs < 1 or args.define_sample < 0:
            parser.error("--vms and --runs must be at least 1, --define-sample at least 0")
    return args


def delete_tree(chrooted_hosts: str) -> None:
    """Delete a chroot's content in large transactions, then the chroot itself."""
    from tests.harness.zookeeper import delete_chroot

    with ZkStore(chrooted_hosts, timeout=30.0) as store:
        doomed = list(reversed(store.descendants("/")))
        for first in range(0, len(doomed), 2000):
            store.commit([Delete(path) for path in doomed[first : first + 2000]])
    delete_chroot(chrooted_hosts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_worker is not None:
        return baseline_worker(args.baseline_worker)
    if not PVC.is_file():
        print(f"error: no pvc console script at {PVC}", file=sys.stderr)
        return 1
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.harness.zookeeper import ZooKeeperError, ZooKeeperServer, create_chroot

    try:
        if args.zookeeper:
            hosts = create_chroot(args.zookeeper, prefix="bench-vm-list-")
            try:
                figures = benchmark(hosts, args, f"existing server {args.zookeeper}")
            finally:
                log(f"deleting {hosts}")
                delete_tree(hosts)
        else:
            workdir = Path(tempfile.mkdtemp(prefix="pvc-bench-zookeeper-"))
            server = ZooKeeperServer(workdir)
            try:
                server.start()
                server.wait_serving()
                log(f"started ZooKeeper pid {server.pid} at {server.hosts} in {workdir}")
                note = f"started by the benchmark, pid {server.pid}, forceSync=no"
                figures = benchmark(server.hosts, args, note)
            finally:
                server.stop()
                log(f"stopped ZooKeeper pid {server.pid} (exit {server.returncode})")
                shutil.rmtree(workdir, ignore_errors=True)
    except (BenchmarkError, ZooKeeperError, PvcError, KazooException, KazooTimeoutError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
