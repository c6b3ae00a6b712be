"""What the benchmarks report about the machine and software they ran on."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_bytes() -> int | None:
    """The machine's total memory (``MemTotal`` of /proc/meminfo), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "MemTotal":
                amount, _, unit = value.strip().partition(" ")
                return int(amount) * (1024 if unit.strip().lower() == "kb" else 1)
    except (OSError, ValueError):
        pass
    return None


def zookeeper_version(hosts: str) -> str:
    """The version the cluster's ZooKeeper server reports (four-letter word ``srvr``).

    ``hosts`` is a connect string: its first server is asked; a chroot is ignored.
    """
    from tests.harness.zookeeper import four_letter_word

    first_server = hosts.partition("/")[0].split(",")[0]
    host, _, port = first_server.rpartition(":")
    try:
        reply = four_letter_word(int(port), "srvr", host=host, timeout=2.0)
    except OSError as error:
        return f"unknown ({error})"
    for line in reply.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "zookeeper version":
            # Debian's build leaves an unexpanded Maven placeholder in the version.
            return re.sub(r"-\$\{[^}]*\}", "", value.strip().split(",")[0])
    return "unknown"


def machine_facts() -> dict[str, Any]:
    """What the figures were measured on: CPU, kernel, load, Python."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "load_average_at_end": list(os.getloadavg()),
        "python": platform.python_version(),
    }
