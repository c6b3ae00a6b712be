"""Fixtures for integration tests: an initialised cluster tree with three nodes, and ways
to run ``pvc`` against it (Click's runner in-process, or a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pvc_cli.main import cli
from pvc_common.cluster_ops import init_cluster
from pvc_common.node_ops import register_node
from pvc_common.store import ZkStore

PVC_EXECUTABLE = str(Path(sys.executable).with_name("pvc"))

#: Figures of the three nodes of the test cluster: hv2 has the most free memory, hv3 the
#: lowest load, hv1 the fewest VMs and vCPUs; hv3 has the most unprovisioned memory.
NODE_FIGURES = {
    "hv1": dict(
        memtotal=16384, memfree=6000, memprov=12000, cpuload=1.5, vcpualloc=2, domainscount=1
    ),
    "hv2": dict(
        memtotal=16384, memfree=9000, memprov=10000, cpuload=2.5, vcpualloc=6, domainscount=3
    ),
    "hv3": dict(
        memtotal=16384, memfree=3000, memprov=2000, cpuload=0.5, vcpualloc=4, domainscount=2
    ),
}


def domain_xml(
    name: str,
    uuid: str,
    *,
    memory_mib: int = 1024,
    vcpus: int = 2,
    bridges: tuple[str, ...] = ("vmbr100",),
    rbd: tuple[str, ...] = (),
) -> str:
    """A small but realistic libvirt domain document."""
    disks = "".join(
        f"<disk type='network' device='disk'><source protocol='rbd' name='{vol}'/>"
        f"<target dev='vd{chr(97 + i)}'/></disk>"
        for i, vol in enumerate(rbd)
    )
    nics = "".join(
        f"<interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/></interface>"
        for bridge in bridges
    )
    return (
        f"<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid>"
        f"<memory unit='MiB'>{memory_mib}</memory><vcpu>{vcpus}</vcpu>"
        f"<os><type>hvm</type></os><devices>{disks}{nics}"
        f"<serial type='pty'><log file='/var/log/pvc/console/{name}.log' append='on'/></serial>"
        f"</devices></domain>"
    )


def parse_fields(text: str) -> dict[str, str]:
    """``Label: value`` lines of a pretty info block as a dict."""
    result = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        assert sep, f"not a field line: {line!r}"
        result[label.strip()] = value.strip()
    return result


def vm_uuid(number: int) -> str:
    """A distinct, valid UUID per number."""
    return f"00000000-0000-4000-8000-{number:012d}"


@pytest.fixture
def store(zk_hosts: str) -> Iterator[ZkStore]:
    """A connected store on this test's private tree (not initialised)."""
    with ZkStore(zk_hosts, timeout=10) as connected:
        yield connected


@pytest.fixture
def cluster(store: ZkStore) -> ZkStore:
    """An initialised tree with ready nodes hv1, hv2, hv3 (see NODE_FIGURES)."""
    init_cluster(store)
    for name, figures in NODE_FIGURES.items():
        register_node(store, name, daemonstate="run", domainstate="ready", **figures)
    return store


@dataclass
class PvcRunner:
    """Runs ``pvc -z HOSTS ...`` through Click's runner and checks the outcome."""

    hosts: str

    def __call__(self, *args: str, input: str | None = None, expect: int = 0) -> Result:
        result = CliRunner().invoke(cli, ["-z", self.hosts, *args], input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == expect, (
            f"pvc {' '.join(args)} exited {result.exit_code}, expected {expect}:\n{result.output}"
        )
        return result

    def define(self, xml: str, *args: str, expect: int = 0) -> Result:
        """``pvc vm define [ARGS] -`` with the XML on standard input."""
        return self("vm", "define", *args, "-", input=xml, expect=expect)

    def info(self, vm: str) -> dict[str, Any]:
        """``pvc vm info VM -o json``, parsed."""
        data: dict[str, Any] = json.loads(self("vm", "info", vm, "-o", "json").output)
        return data


@pytest.fixture
def pvc(cluster: ZkStore, zk_hosts: str) -> PvcRunner:
    """``pvc`` in-process against the initialised test cluster."""
    return PvcRunner(zk_hosts)


@pytest.fixture
def pvc_process(zk_hosts: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``pvc`` as a real subprocess (the installed console script) against this test's tree."""

    def run(
        *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "PVC_ZOOKEEPER": zk_hosts, **(env or {})}
        return subprocess.run(
            [PVC_EXECUTABLE, *args],
            input=input,
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
            check=False,
        )

    return run
