"""``/metrics``: the cluster in Prometheus' text format, read from ZooKeeper at each scrape.

Nothing is kept in this process: every scrape reads the nodes, the VMs' listing keys and
the sizes of their console buffers (sizes only, not the buffers), so any pvcapid of the
cluster answers the same, and a restart loses nothing. Migration and fence counters are
those the node daemons keep in their nodes' ``stats`` key (:mod:`pvc_common.node_stats`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from pvc_common import schema
from pvc_common.node_stats import read_counter
from pvc_common.snapshot import load_nodes, load_vms
from pvc_common.store import ZkStore

#: The migration counters of a node's stats, by the method label they are exported with.
_MIGRATIONS = {"migration_live": "live", "migration_shutdown": "shutdown"}


class ClusterCollector(Collector):
    """Collects the whole cluster's figures from ``store`` when scraped."""

    def __init__(self, store: ZkStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        nodes = load_nodes(self.store)
        vms = load_vms(self.store)
        now = self.clock()

        daemon = GaugeMetricFamily(
            "pvc_node_daemon_state", "1 for the node daemon's state", labels=["node", "state"]
        )
        domain = GaugeMetricFamily(
            "pvc_node_domain_state", "1 for the node's VM hosting state", labels=["node", "state"]
        )
        memory = GaugeMetricFamily(
            "pvc_node_memory_mib",
            "Node memory in MiB: total, used, free, allocated (running VMs), provisioned",
            labels=["node", "kind"],
        )
        vcpus = GaugeMetricFamily(
            "pvc_node_vcpus_allocated", "vCPUs of the VMs running on the node", labels=["node"]
        )
        load = GaugeMetricFamily("pvc_node_load1", "1-minute load average", labels=["node"])
        running = GaugeMetricFamily(
            "pvc_node_vms_running", "VMs running on the node", labels=["node"]
        )
        keepalive = GaugeMetricFamily(
            "pvc_node_keepalive_age_seconds",
            "Seconds since the node daemon's last keepalive (by this daemon's clock)",
            labels=["node"],
        )
        migrations = CounterMetricFamily(
            "pvc_migrations",
            "VMs a node sent away, by method (counted by the sending daemon)",
            labels=["node", "method"],
        )
        migration_seconds = CounterMetricFamily(
            "pvc_migration_seconds",
            "Total seconds of those migrations, decision to hand-over",
            labels=["node", "method"],
        )
        fences = CounterMetricFamily(
            "pvc_fences",
            "Confirmed fences of the node (power-off through its BMC)",
            labels=["node"],
        )
        fence_seconds = CounterMetricFamily(
            "pvc_fence_seconds", "Total seconds of those fences' BMC exchanges", labels=["node"]
        )
        fences_failed = CounterMetricFamily(
            "pvc_fences_failed", "Fences of the node that were not confirmed", labels=["node"]
        )
        for node in nodes:
            for state in schema.NODE_DAEMON_STATES:
                daemon.add_metric([node.name, state], 1.0 if node.daemonstate == state else 0.0)
            for state in schema.NODE_DOMAIN_STATES:
                domain.add_metric([node.name, state], 1.0 if node.domainstate == state else 0.0)
            for kind, value in (
                ("total", node.memtotal),
                ("used", node.memused),
                ("free", node.memfree),
                ("allocated", node.memalloc),
                ("provisioned", node.memprov),
            ):
                memory.add_metric([node.name, kind], float(value))
            vcpus.add_metric([node.name], float(node.vcpualloc))
            load.add_metric([node.name], node.cpuload)
            running.add_metric([node.name], float(node.domainscount))
            if node.keepalive:
                keepalive.add_metric([node.name], max(0.0, now - node.keepalive))
            for counter, method in _MIGRATIONS.items():
                count, seconds = read_counter(node.stats, counter)
                migrations.add_metric([node.name, method], float(count))
                migration_seconds.add_metric([node.name, method], seconds)
            count, seconds = read_counter(node.stats, "fence")
            fences.add_metric([node.name], float(count))
            fence_seconds.add_metric([node.name], seconds)
            fences_failed.add_metric(
                [node.name], float(read_counter(node.stats, "fence_failed")[0])
            )
        yield from (daemon, domain, memory, vcpus, load, running, keepalive)
        yield from (migrations, migration_seconds, fences, fence_seconds, fences_failed)

        by_state = GaugeMetricFamily("pvc_vms", "VMs by state", labels=["state"])
        for state in schema.VM_STATES:
            by_state.add_metric([state], float(sum(1 for vm in vms if vm.state == state)))
        yield by_state

        console = GaugeMetricFamily(
            "pvc_vm_console_buffer_bytes",
            "Size of each VM's stored console buffer",
            labels=["vm", "uuid"],
        )
        sizes = self.store.sizes_many([schema.domain_key_path(vm.uuid, "console") for vm in vms])
        for vm, size in zip(vms, sizes, strict=True):
            if size is not None:
                console.add_metric([vm.name, vm.uuid], float(size))
        yield console


def cluster_registry(store: ZkStore) -> CollectorRegistry:
    """A registry holding only the cluster's figures (no process metrics of this daemon)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(store))
    return registry
