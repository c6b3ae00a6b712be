"""Benchmark the API daemon ``pvcapid`` over real HTTP: listing and updating VMs, 1 to 16 clients.

What is measured
================

The throughput (answers per second) and the latency (p50, p99 and max) of a real
``pvcapid`` process, the venv's console script as operators run it (gunicorn,
``--workers`` worker processes of ``--threads`` threads each, ``gthread``, access log
on), answering concurrent clients over plain HTTP on loopback, with a cluster of
``--vms`` VMs (default 1,000) in a real ZooKeeper:

(a) ``GET /api/v1/vm``: every VM (``vm_ops.list_vms``: batched ZooKeeper reads of every
    VM's listing keys, parsing every XML, one JSON answer of about 0.4 MB for 1,000 VMs).
(b) ``POST /api/v1/vm/<name>`` with the JSON body ``{"autostart": true}``, then
    ``{"autostart": false}`` the next time the same client updates that VM, and so on:
    ``vm_ops.set_vm_meta`` finds the VM by name (which reads every VM's name), writes its
    own znode (version-checked) and ``node_autostart`` in one transaction, then answers
    with ``vm_info``. Client ``c`` of ``n`` updates only every ``n``-th VM from the
    ``c``-th on, in turn, so no two clients write the same VM: the figures measure
    throughput, not conflicts.
(c) A short "hot VM" variant of (b): ``--hot-clients`` clients (default the highest level)
    update the *same* VM for ``--hot-duration`` seconds. ``set_vm_meta`` reads the VM and
    writes it at the version it read (``mutations.update_vm``); when another writer came
    in between, ZooKeeper refuses the transaction and ``set_vm_meta`` reads the VM again
    and re-checks the change, up to ``vm_ops.META_CONFLICT_RETRIES`` times; only then does
    the API answer 409. The run counts answers 2xx, 409 and other; only "other" counts as
    an error there.

(a) and (b) run at each level of ``--clients`` (default 1, 4 and 16 concurrent clients).
At every level the clients start together, run ``--warmup`` seconds (default 2) not
recorded, then ``--duration`` seconds (default 10) measured, with no pause in between.

Method
======

The cluster is written the way ``benchmarks/vm_list.py`` writes it (its ``plan_vms`` and
``populate``: ``init_cluster``, ready nodes hv1..hv3 registered with ``register_node``,
three networks, VMs with realistic 2-3 KB libvirt XML in varied states, written with
batched ``Create`` ops of the same keys ``define_vm`` writes). ``pvcapid`` reads a YAML
configuration written by the integration tests' ``write_config`` (ZooKeeper hosts, a free
port on 127.0.0.1, an API key, ``workers``, ``threads``) and runs in its own session; it
is stopped by its PID (its process group: the gunicorn master and its workers) at the end.

The clients are separate processes (``multiprocessing``, spawned), so their Python does
not share the server's GIL: up to ``--client-processes`` (default 4) processes, the
clients spread over them as threads (16 clients: 4 processes of 4 threads). Each client
is a closed loop on its own persistent keep-alive connection (``http.client``): it sends
the next request as soon as it has read the whole previous answer, with the
``X-Api-Key`` header. Every request's latency is taken from just before sending it to
the last byte of the answer read (``time.monotonic``, one clock for every process).

* latency: over every request *sent* within the measured window, by all clients of the
  level together (merged, then p50 and p99 by nearest rank, and the max); the last ones
  finish a little after the window. A run of fewer than 100 requests is flagged: its p99
  is (nearly) its max;
* req/s: the requests done within the window, each counted for the share of its time
  (send to answer) that falls inside the window, divided by the window's length. A plain
  count of the answers received within it would depend on the phase of the clients when
  a request takes seconds: 16 clients listing 1,000 VMs start together, are served
  together by the worker's threads and answer in bursts a few seconds apart, so one
  burst more or less in the window would change the figure by a third;
* errors: every answer whose status is not 200 (in the hot variant: neither 2xx nor 409)
  and every request without an answer, warm-up included. A run with errors is reported
  in capitals after the table and the exit code is 1.

During each window the script also reads the CPU time of ``pvcapid`` (master and worker,
``/proc/<pid>/stat``), of ZooKeeper (when it started it) and of the client processes,
and the whole machine's busy time (``/proc/stat``: user, nice, system, irq, softirq; not
steal), in % of one core; "others" is the machine's minus all of these (other work on the
machine, which is flagged above 20 %). The clients do not share the server's interpreter,
but they do share the machine's cores with it and with ZooKeeper: when the machine is
close to every core busy, the figures are those of the machine, not of the server alone.

Run it from the repository root::

    .venv/bin/python benchmarks/api.py [--vms 1000] [--clients 1,4,16] [--duration 10]
                                       [--threads 8] [--zookeeper HOSTS] [--json FILE]

By default a throwaway ZooKeeper is started with ``tests/harness/zookeeper.py`` in a
temporary directory and stopped at the end. With ``--zookeeper HOSTS`` an existing server
is used, inside a fresh uniquely named chroot that is deleted afterwards. Figures go to
stdout, progress to stderr. The exit code is 0 when every answer was as expected, 1 when
any was not or the benchmark itself failed, 130 when interrupted. A full run with the
defaults takes about a minute and a half.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import os
import platform
import queue
import shutil
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from machine_facts import cpu_model, zookeeper_version
from timing_table import banner, rule

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
PREFIX = "/api/v1"
#: How long a client waits for one answer before it counts as none.
REQUEST_TIMEOUT = 120.0
#: Status 0 in the counts: the request got no answer (connection error or timeout).
NO_ANSWER = 0
#: Error examples kept per client process.
ERROR_SAMPLES = 3

#: The table's width.
WIDTH = 78
#: Runs with fewer requests than this are flagged: their p99 is (nearly) their max.
FEW_REQUESTS = 100
#: CPU of other processes (% of one core) above which a window is flagged as disturbed.
BUSY_OTHERS = 20.0


class BenchmarkError(RuntimeError):
    """The benchmark itself failed: the figures would not mean what they claim."""


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the figures."""
    print(f"[api] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the clients


@dataclass(frozen=True)
class Workload:
    """What the clients of one run send."""

    #: The table's label, e.g. ``GET /vm``.
    label: str
    method: str
    #: Per client: the VM names it updates in turn (empty for GET /vm).
    vms_per_client: tuple[tuple[str, ...], ...]
    #: Statuses that are expected answers (anything else is an error).
    expected: tuple[int, ...] = (200,)

    @property
    def clients(self) -> int:
        return len(self.vms_per_client)


@dataclass(frozen=True)
class Schedule:
    """The moments of a run on ``time.monotonic``'s clock, shared by every process."""

    go: float
    measure_from: float
    measure_until: float


@dataclass
class ClientFigures:
    """What the clients of one process (or, merged, of a whole run) measured."""

    latencies: list[float] = field(default_factory=list)
    #: Requests done within the window, each counted for the share of its time inside it.
    done_in_window: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    warmup_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0

    def merge(self, other: ClientFigures) -> None:
        self.latencies.extend(other.latencies)
        self.done_in_window += other.done_in_window
        self.statuses.update(other.statuses)
        self.errors += other.errors
        self.warmup_errors += other.warmup_errors
        self.error_samples.extend(other.error_samples[:ERROR_SAMPLES])
        self.cpu_seconds += other.cpu_seconds


def request_target(workload: Workload, client: int, sent: int) -> tuple[str, bytes | None]:
    """The path and body of the ``sent``-th request of ``client``."""
    vms = workload.vms_per_client[client]
    if not vms:
        return f"{PREFIX}/vm", None
    vm = vms[sent % len(vms)]
    autostart = (sent // len(vms)) % 2 == 0  # each VM alternates true, false, true...
    body = json.dumps({"autostart": autostart}).encode()
    return f"{PREFIX}/vm/{urllib.parse.quote(vm, safe='')}", body


def run_client(
    port: int,
    key: str,
    workload: Workload,
    client: int,
    schedule: Schedule,
    figures: ClientFigures,
    lock: threading.Lock,
) -> None:
    """One closed-loop client on its own keep-alive connection, until the window ends."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT)
    headers = {"X-Api-Key": key, "Accept": "application/json"}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    done_in_window = 0.0
    errors = warmup_errors = 0
    samples: list[str] = []
    sent = 0
    try:
        while True:
            path, body = request_target(workload, client, sent)
            sent += 1
            began = time.monotonic()
            if began >= schedule.measure_until:
                break
            try:
                if body is None:
                    connection.request(workload.method, path, headers=headers)
                else:
                    connection.request(
                        workload.method,
                        path,
                        body=body,
                        headers={**headers, "Content-Type": "application/json"},
                    )
                answer = connection.getresponse()
                payload = answer.read()
                status = answer.status
            except (OSError, http.client.HTTPException) as error:
                status, payload = NO_ANSWER, f"{type(error).__name__}: {error}".encode()
                connection.close()  # reconnects on the next request
            finished = time.monotonic()
            measured = began >= schedule.measure_from
            failed = status not in workload.expected
            if measured:
                latencies.append(finished - began)
                statuses[status] += 1
                errors += int(failed)
            else:
                warmup_errors += int(failed)
            inside = min(finished, schedule.measure_until) - max(began, schedule.measure_from)
            if inside > 0:
                done_in_window += inside / (finished - began)
            if failed and len(samples) < ERROR_SAMPLES:
                text = payload[:300].decode("utf-8", "replace")
                samples.append(f"{workload.method} {path} -> {status or 'no answer'}: {text}")
    finally:
        connection.close()
        with lock:
            figures.latencies.extend(latencies)
            figures.statuses.update(statuses)
            figures.done_in_window += done_in_window
            figures.errors += errors
            figures.warmup_errors += warmup_errors
            figures.error_samples.extend(samples[: ERROR_SAMPLES - len(figures.error_samples)])


def client_process(
    index: int,
    port: int,
    key: str,
    workload: Workload,
    clients: Sequence[int],
    go: Any,
    go_at: Any,
    warmup: float,
    duration: float,
    results: Any,
) -> None:
    """A client process: its clients as threads, started together when ``go`` is set."""
    try:
        results.put(("ready", index, None))
        if not go.wait(timeout=300):
            raise BenchmarkError("the run never started")
        start = go_at.value
        schedule = Schedule(start, start + warmup, start + warmup + duration)
        figures = ClientFigures()
        lock = threading.Lock()
        threads = [
            threading.Thread(
                target=run_client,
                args=(port, key, workload, client, schedule, figures, lock),
                name=f"client-{client}",
                daemon=True,
            )
            for client in clients
        ]
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, schedule.measure_from - time.monotonic()))
        cpu_before = time.process_time()  # every thread of this process
        time.sleep(max(0.0, schedule.measure_until - time.monotonic()))
        figures.cpu_seconds = time.process_time() - cpu_before
        for thread in threads:
            thread.join()
        results.put(("done", index, figures))
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches every process: the main one stops the run and says so
    except BaseException:
        results.put(("failed", index, traceback.format_exc()))
        sys.exit(1)


# --------------------------------------------------------------------------- one run


@dataclass
class CpuSample:
    """CPU seconds of the processes of interest and the machine, at one moment."""

    server: float
    zookeeper: float | None
    #: This script's main process (it mostly sleeps during a window).
    script: float
    machine_busy: float


def process_tree_cpu(pid: int) -> float:
    """utime + stime of ``pid`` and its direct children (gunicorn's master and workers)."""
    from console import cpu_seconds

    total = cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        try:
            total += cpu_seconds(int(child))
        except OSError:  # exited meanwhile
            pass
    return total


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot, all cores together.

    user, nice, system, irq and softirq (guest time is inside user); not idle, iowait, or
    steal (time the hypervisor gave to someone else).
    """
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = values[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def cpu_sample(server_pid: int, zookeeper_pid: int | None) -> CpuSample:
    from console import cpu_seconds

    return CpuSample(
        server=process_tree_cpu(server_pid),
        zookeeper=cpu_seconds(zookeeper_pid) if zookeeper_pid else None,
        script=cpu_seconds(os.getpid()),
        machine_busy=machine_busy_seconds(),
    )


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def process_layout(clients: int, max_processes: int) -> list[list[int]]:
    """The clients of each process: client ``c`` runs in process ``c % processes``."""
    processes = min(clients, max_processes)
    return [list(range(first, clients, processes)) for first in range(processes)]


@contextmanager
def client_processes(
    port: int, key: str, workload: Workload, layout: list[list[int]], warmup: float, duration: float
) -> Iterator[tuple[list[BaseProcess], Any, Any, Any]]:
    """Started client processes, waiting for ``go``; always stopped and joined."""
    context = multiprocessing.get_context("spawn")
    go, go_at, results = context.Event(), context.Value("d", 0.0), context.Queue()
    processes: list[BaseProcess] = []
    try:
        for index, clients in enumerate(layout):
            process = context.Process(
                target=client_process,
                args=(index, port, key, workload, clients, go, go_at, warmup, duration, results),
                name=f"api-bench-clients-{index}",
            )
            process.start()
            processes.append(process)
        yield processes, go, go_at, results
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()  # SIGTERM to its own PID
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        results.close()


def next_message(results: Any, processes: Sequence[BaseProcess], deadline: float) -> Any:
    """The next message of a client process; fails if one died or none came in time."""
    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            dead = [p for p in processes if p.exitcode not in (None, 0)]
            if dead:
                name, code = dead[0].name, dead[0].exitcode
                raise BenchmarkError(f"client process {name} exited {code}") from None
            if time.monotonic() > deadline:
                raise BenchmarkError("the client processes did not answer in time") from None


def measure(
    port: int,
    key: str,
    workload: Workload,
    args: argparse.Namespace,
    duration: float,
    pids: tuple[int, int | None],
) -> dict[str, Any]:
    """Run ``workload`` once: warm-up, then ``duration`` seconds measured; its figures."""
    layout = process_layout(workload.clients, args.client_processes)
    log(
        f"{workload.label}: {workload.clients} clients in {len(layout)} processes, "
        f"{args.warmup:g} s warm-up + {duration:g} s"
    )
    merged = ClientFigures()
    with client_processes(port, key, workload, layout, args.warmup, duration) as (
        processes,
        go,
        go_at,
        results,
    ):
        deadline = time.monotonic() + 120
        ready = 0
        while ready < len(processes):
            kind, index, payload = next_message(results, processes, deadline)
            if kind == "failed":
                raise BenchmarkError(f"client process {index} failed:\n{payload}")
            ready += kind == "ready"
        start = time.monotonic() + 0.2
        go_at.value = start
        go.set()
        measure_from, measure_until = start + args.warmup, start + args.warmup + duration
        time.sleep(max(0.0, measure_from - time.monotonic()))
        before = cpu_sample(*pids)
        time.sleep(max(0.0, measure_until - time.monotonic()))
        after = cpu_sample(*pids)
        deadline = time.monotonic() + REQUEST_TIMEOUT + 60
        done = 0
        while done < len(processes):
            kind, index, payload = next_message(results, processes, deadline)
            if kind == "failed":
                raise BenchmarkError(f"client process {index} failed:\n{payload}")
            merged.merge(payload)
            done += 1

    ordered = sorted(merged.latencies)
    if not ordered:
        raise BenchmarkError(f"{workload.label}: no request was sent within the window")

    def share(seconds: float | None) -> float | None:
        return None if seconds is None else 100.0 * seconds / duration

    zookeeper_cpu = (
        after.zookeeper - before.zookeeper
        if after.zookeeper is not None and before.zookeeper is not None
        else None
    )
    server_cpu = after.server - before.server
    machine_cpu = after.machine_busy - before.machine_busy
    ours = server_cpu + (zookeeper_cpu or 0.0) + merged.cpu_seconds + after.script - before.script
    return {
        "endpoint": workload.label,
        "method": workload.method,
        "clients": workload.clients,
        "client_processes": len(layout),
        "duration_s": duration,
        "requests": len(ordered),
        "done_in_window": merged.done_in_window,
        "requests_per_s": merged.done_in_window / duration,
        "p50_ms": 1000 * percentile(ordered, 0.50),
        "p99_ms": 1000 * percentile(ordered, 0.99),
        "max_ms": 1000 * ordered[-1],
        "statuses": {str(status): count for status, count in sorted(merged.statuses.items())},
        "errors": merged.errors + merged.warmup_errors,
        "warmup_errors": merged.warmup_errors,
        "error_samples": merged.error_samples,
        "cpu_percent_of_one_core": {
            "pvcapid": share(after.server - before.server),
            "zookeeper": share(zookeeper_cpu),
            "clients": share(merged.cpu_seconds),
            "machine": share(machine_cpu),
            # Everything else on the machine (the kernel's share of loopback traffic not
            # accounted to a process, other work); with --zookeeper, ZooKeeper too.
            "others": share(max(0.0, machine_cpu - ours)),
        },
    }


# --------------------------------------------------------------------------- pvcapid


def get_vm_list(port: int, key: str, vm_count: int) -> int:
    """GET /api/v1/vm once, checked (200, a JSON list of every VM); its size in bytes."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", f"{PREFIX}/vm", headers={"X-Api-Key": key})
        answer = connection.getresponse()
        payload = answer.read()
    finally:
        connection.close()
    if answer.status != 200:
        raise BenchmarkError(f"GET {PREFIX}/vm answered {answer.status}: {payload[:500]!r}")
    listed = json.loads(payload)
    if not isinstance(listed, list) or len(listed) != vm_count:
        raise BenchmarkError(f"GET {PREFIX}/vm listed {len(listed)} VMs, expected {vm_count}")
    return len(payload)


def server_errors(log_path: Path) -> list[str]:
    """The daemon's log lines about unexpected errors (a 500 or worse)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    markers = ("unexpected error", "Traceback", "[CRITICAL]", "WORKER TIMEOUT", "[ERROR]")
    return [line for line in text.splitlines() if any(m in line for m in markers)]


# --------------------------------------------------------------------------- the run


def workloads(args: argparse.Namespace, names: Sequence[str]) -> list[tuple[Workload, float]]:
    """Every run in order, with its measured duration."""
    runs: list[tuple[Workload, float]] = []
    for clients in args.clients:
        runs.append((Workload("GET /vm", "GET", ((),) * clients), args.duration))
    for clients in args.clients:
        own = tuple(tuple(names[c::clients]) for c in range(clients))
        runs.append((Workload("POST /vm/<vm>", "POST", own), args.duration))
    hot = ((names[0],),) * args.hot_clients
    runs.append((Workload("POST hot VM", "POST", hot, expected=(200, 409)), args.hot_duration))
    return runs


def benchmark(hosts: str, args: argparse.Namespace, zookeeper_pid: int | None) -> dict[str, Any]:
    """Populate the cluster at ``hosts``, start pvcapid, run every workload."""
    from vm_list import plan_vms, populate

    from pvc_common.store import ZkStore
    from tests.harness.zookeeper import find_free_port
    from tests.integration.api_process import KEY, start_api, stop_api, write_config

    started = time.monotonic()
    load_before = list(os.getloadavg())
    server_version = zookeeper_version(hosts)
    specs = plan_vms(args.vms, define_sample=0)
    log(f"populating {args.vms} VMs at {hosts}")
    with ZkStore(hosts, timeout=30.0) as store:
        population = populate(store, specs, define_sample=0)
    populate_seconds = population.cluster_seconds + population.batched_seconds
    names = sorted(spec.name for spec in specs)

    workdir = Path(tempfile.mkdtemp(prefix="pvc-bench-api-"))
    port = find_free_port()
    config = write_config(
        workdir / "pvcapid.yaml", hosts, port, workers=args.workers, threads=args.threads
    )
    succeeded = False
    # Its log (access log included) goes to pvcapid.log beside the configuration.
    process = start_api(config, f"http://{LOOPBACK}:{port}", None)
    try:
        log(
            f"pvcapid pid {process.pid} answers on {LOOPBACK}:{port} "
            f"({args.workers} workers of {args.threads} threads)"
        )
        list_bytes = get_vm_list(port, KEY, args.vms)
        pids = (process.pid, zookeeper_pid)
        runs = [
            measure(port, KEY, workload, args, duration, pids)
            for workload, duration in workloads(args, names)
        ]
        succeeded = True
    finally:
        stop_api(process)
        log(f"stopped pvcapid pid {process.pid} (exit {process.returncode})")
        logged_errors = server_errors(workdir / "pvcapid.log")
        if succeeded and not logged_errors:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept pvcapid's configuration and logs in {workdir}")
    return {
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "load_average_at_start": load_before,
            "load_average_at_end": list(os.getloadavg()),
        },
        "zookeeper": {"version": server_version, "hosts": hosts},
        "setup": {
            "vms": args.vms,
            "nodes": 3,
            "populate_s": populate_seconds,
            "xml_bytes_mean": population.xml_bytes_mean,
            "server_threads": args.threads,
            "server_workers": args.workers,
            "gunicorn": "gthread",
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "hot_duration_s": args.hot_duration,
            "hot_vm": names[0],
            "max_client_processes": args.client_processes,
            "get_vm_list_bytes": list_bytes,
        },
        "runs": runs,
        "server_log_errors": logged_errors,
        "server_log_dir": None if succeeded and not logged_errors else str(workdir),
        "elapsed_s": time.monotonic() - started,
    }


# --------------------------------------------------------------------------- the report


def percent(value: float | None) -> str:
    return "     n/a" if value is None else f"{value:7.0f}%"


def report(figures: dict[str, Any]) -> tuple[str, int]:
    """The printed figures, and the number of failed requests."""
    machine, setup, runs = figures["machine"], figures["setup"], figures["runs"]
    load = ", ".join(f"{value:.2f}" for value in machine["load_average_at_start"])
    load_end = ", ".join(f"{value:.2f}" for value in machine["load_average_at_end"])
    lines = [
        *banner("pvcapid benchmark: GET /api/v1/vm and POST /api/v1/vm/<vm> over HTTP", WIDTH),
        f"machine     {machine['cpu_model']}, {machine['cores']} cores, kernel {machine['kernel']}",
        f"load        average {load} at the start, {load_end} at the end",
        f"software    Python {machine['python']}, ZooKeeper {figures['zookeeper']['version']}",
        f"cluster     {setup['vms']} VMs (XML {setup['xml_bytes_mean']:.0f} bytes on average), "
        f"{setup['nodes']} nodes, written in {setup['populate_s']:.1f} s",
        f"server      pvcapid, gunicorn {setup['gunicorn']}, {setup['server_workers']} worker "
        f"process(es) of {setup['server_threads']} threads, on {LOOPBACK}",
        f"GET /vm     {setup['get_vm_list_bytes']:,} bytes per answer",
        f"clients     closed loops on keep-alive connections, in up to "
        f"{setup['max_client_processes']} processes",
        f"runs        {setup['warmup_s']:g} s warm-up, then {setup['duration_s']:g} s measured "
        f"(hot VM: {setup['hot_duration_s']:g} s, all on {setup['hot_vm']!r})",
        "",
        f"  {'endpoint':<16}{'clients':>8}{'requests':>9}{'req/s':>8}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}{'errors':>8}",
    ]
    for run in runs:
        few = "*" if run["requests"] < FEW_REQUESTS else " "
        lines.append(
            f"  {run['endpoint']:<16}{run['clients']:>8}{run['requests']:>8}{few}"
            f"{run['requests_per_s']:>8.1f}{run['p50_ms']:>9.1f}{run['p99_ms']:>9.1f}"
            f"{run['max_ms']:>9.1f}{run['errors']:>8}"
        )
    if any(run["requests"] < FEW_REQUESTS for run in runs):
        lines.append(
            f"  * fewer than {FEW_REQUESTS} requests sent within the window: their p99 is "
            "(nearly) their max"
        )
    hot = runs[-1]
    statuses = Counter({int(status): count for status, count in hot["statuses"].items()})
    ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
    conflicts = statuses[409]
    other = sum(statuses.values()) - ok - conflicts
    updates_per_s = hot["requests_per_s"] * ok / max(1, sum(statuses.values()))
    lines += [
        "",
        f"hot VM      {hot['clients']} clients on one VM: {ok} answers 2xx, {conflicts} 409 "
        f"(conflict), {other} other;",
        f"            {updates_per_s:.1f} updates/s went through (a conflict is retried on",
        "            a fresh read a few times before a 409).",
        "",
        "CPU during each window, % of one core "
        f"({machine['cores']} cores = {100 * machine['cores']}%)",
        f"  {'endpoint':<16}{'clients':>8}{'pvcapid':>9}{'zookeeper':>10}{'clients':>9}"
        f"{'others':>9}{'machine':>9}",
    ]
    for run in runs:
        cpu = run["cpu_percent_of_one_core"]
        lines.append(
            f"  {run['endpoint']:<16}{run['clients']:>8} {percent(cpu['pvcapid'])}  "
            f"{percent(cpu['zookeeper'])} {percent(cpu['clients'])} {percent(cpu['others'])} "
            f"{percent(cpu['machine'])}"
        )
    busy = [run for run in runs if (run["cpu_percent_of_one_core"]["others"] or 0) > BUSY_OTHERS]
    if busy:
        lines.append(
            f"  others above {BUSY_OTHERS:g}% in {len(busy)} of {len(runs)} windows: other work "
            "shared the machine, compare with care"
        )
    failed = sum(run["errors"] for run in runs)
    lines += ["", f"total time  {figures['elapsed_s']:.0f} s", rule(WIDTH)]
    if failed or figures["server_log_errors"]:
        lines += [
            "",
            "!" * WIDTH,
            f"ERRORS: {failed} REQUESTS FAILED (unexpected status or no answer)",
            f"        {len(figures['server_log_errors'])} error lines in pvcapid's log",
            "!" * WIDTH,
        ]
        for run in runs:
            if run["errors"]:
                lines.append(
                    f"  {run['endpoint']} with {run['clients']} clients: {run['errors']} errors "
                    f"({run['warmup_errors']} in the warm-up), statuses {run['statuses']}"
                )
                lines += [f"    {sample}" for sample in run["error_samples"]]
        lines += [f"  pvcapid: {line}" for line in figures["server_log_errors"][:20]]
        if figures["server_log_dir"]:
            lines.append(f"  pvcapid's logs are kept in {figures['server_log_dir']}")
        failed = max(failed, 1)
    else:
        lines.append("RESULT: every answer as expected (no errors)")
    return "\n".join(lines), failed


# --------------------------------------------------------------------------- the command


def client_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("client levels must be at least 1")
    return levels


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure pvcapid's requests/s and latency for GET /api/v1/vm and "
        "POST /api/v1/vm/<vm> with concurrent clients over HTTP."
    )
    parser.add_argument("--vms", type=int, default=1000, help="VMs in the cluster (1000)")
    parser.add_argument(
        "--clients",
        type=client_levels,
        default=[1, 4, 16],
        metavar="N,N,...",
        help="concurrent client levels (1,4,16)",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds measured per run (10)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds before each run's window (2)"
    )
    parser.add_argument("--threads", type=int, default=8, help="pvcapid's api.threads (8)")
    parser.add_argument("--workers", type=int, default=2, help="pvcapid's api.workers (2)")
    parser.add_argument(
        "--hot-clients", type=int, help="clients of the hot-VM run (the highest level)"
    )
    parser.add_argument(
        "--hot-duration", type=float, default=5.0, help="seconds measured of the hot-VM run (5)"
    )
    parser.add_argument(
        "--client-processes", type=int, default=4, help="client processes at most (4)"
    )
    parser.add_argument(
        "--zookeeper",
        metavar="HOSTS",
        help="use this ZooKeeper (in a fresh chroot, deleted afterwards) instead of starting one",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.hot_clients is None:
        args.hot_clients = max(args.clients)
    if min(args.vms, args.threads, args.workers, args.hot_clients, args.client_processes) < 1:
        parser.error(
            "--vms, --threads, --workers, --hot-clients and --client-processes must be at least 1"
        )
    if max(args.clients) > args.vms:
        parser.error("every client needs a VM of its own: --vms must be >= the highest level")
    if min(args.duration, args.hot_duration) <= 0 or args.warmup < 0:
        parser.error("durations must be positive, the warm-up at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from kazoo.exceptions import KazooException
    from kazoo.handlers.threading import KazooTimeoutError
    from vm_list import delete_tree

    from pvc_common.errors import PvcError
    from tests.harness.zookeeper import ZooKeeperError, ZooKeeperServer, create_chroot

    try:
        if args.zookeeper:
            hosts = create_chroot(args.zookeeper, prefix="bench-api-")
            try:
                figures = benchmark(hosts, args, None)
            finally:
                log(f"deleting {hosts}")
                delete_tree(hosts)
        else:
            workdir = Path(tempfile.mkdtemp(prefix="pvc-bench-zookeeper-"))
            try:
                with ZooKeeperServer(workdir) as server:
                    log(f"started ZooKeeper pid {server.pid} at {server.hosts} in {workdir}")
                    figures = benchmark(server.hosts, args, server.pid)
                log(f"stopped ZooKeeper pid {server.pid} (exit {server.returncode})")
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    except KeyboardInterrupt:
        print("interrupted: every process started was stopped", file=sys.stderr)
        return 130
    except (
        BenchmarkError,
        ZooKeeperError,
        PvcError,
        KazooException,
        KazooTimeoutError,
        TimeoutError,
        OSError,
    ) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    text, failed = report(figures)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"figures written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
