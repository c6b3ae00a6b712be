"""benchmarks/report.py renders docs/benchmarks.md from the benchmarks' JSON, running nothing.

The fixtures are small hand-written figures shaped like the JSON each script writes (the
dicts built by ``benchmark()``/``main()`` of vm_list.py, api.py, console.py, lifecycle.py
and ha.py), with distinct values so that each table row can be checked whole.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_report() -> ModuleType:
    """Import ``benchmarks/report.py`` by path (``benchmarks`` is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REPORT = load_report()


# --------------------------------------------------------------------------- series shapes


def series(*values: float) -> dict[str, Any]:
    """lifecycle.py's and ha.py's ``Series.as_dict()``."""
    if not values:
        return {"runs_s": []}
    return {
        "min_s": min(values),
        "median_s": statistics.median(values),
        "max_s": max(values),
        "runs_s": list(values),
    }


def timing(*values: float) -> dict[str, Any]:
    """vm_list.py's ``Timing.as_dict()`` (no max)."""
    return {"median_s": statistics.median(values), "min_s": min(values), "runs_s": list(values)}


def spread(low: float, median: float, p90: float, p99: float, high: float) -> dict[str, Any]:
    """console.py's ``spread()`` after ``for_json`` (a long series keeps only its count)."""
    return {
        "min_s": low,
        "median_s": median,
        "p90_s": p90,
        "p99_s": p99,
        "max_s": high,
        "count": 1000,
    }


def summary(*values: float) -> dict[str, Any]:
    """console.py's ``summary()``."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "values": list(values),
    }


# --------------------------------------------------------------------------- the scripts' JSON


def vm_list_json() -> dict[str, Any]:
    return {
        "machine": {
            "cpu_model": "Test CPU 3000",
            "cores": 2,
            "load_average": [0.5, 0.4, 0.3],
            "python": "3.11.7",
            "platform": "Linux-6.1.0-test-x86_64-with-glibc2.36",
            "zookeeper_version": "3.8.0-${mvngit.commit.id}, built on 2023-01-01 00:00 UTC",
            "zookeeper_server": "started by the benchmark, pid 1, forceSync=no",
        },
        "vms": 1000,
        "nodes": 3,
        "networks": 3,
        "runs": 5,
        "keys_read_per_vm": 14,
        "domain_list_keys": ["xml", "state", "node"],
        "population": {
            "xml_bytes_mean": 2600.0,
            "cluster_s": 0.1,
            "batched_vms": 980,
            "batched_s": 2.0,
            "transactions": 20,
            "define_vm_count": 20,
            "define_vm_mean_s": 0.05,
            "define_vm_total_s": 1.0,
            "define_vm_extrapolated_s": 50.0,
        },
        "outputs_identical": True,
        "whole_process": {
            "pvc_vm_list": timing(0.5, 0.45, 0.55),
            "baseline": timing(6.0, 5.4, 6.6),
            "ratio_median": 12.0,
            "ratio_min": 12.0,
            "python_c_pass": timing(0.02, 0.02, 0.02),
            "pvc_version": timing(0.15, 0.14, 0.16),
        },
        "in_process": {
            "connect_s": 0.004,
            "load_vms": timing(0.1, 0.09, 0.11),
            "per_key_reads": timing(4.0, 3.6, 4.4),
            "read_ratio_median": 40.0,
            "list_vms": timing(0.3, 0.29, 0.31),
            "parse_and_render": timing(0.2, 0.19, 0.21),
        },
        "target_ratio": 10.0,
        "target_met": True,
    }


def api_run(
    endpoint: str, clients: int, rate: float, p50: float, p99: float, statuses: dict[str, int]
) -> dict[str, Any]:
    """One entry of api.py's ``runs`` (``measure()``)."""
    requests = sum(statuses.values())
    return {
        "endpoint": endpoint,
        "method": endpoint.split()[0],
        "clients": clients,
        "client_processes": min(clients, 4),
        "duration_s": 10.0,
        "requests": requests,
        "done_in_window": rate * 10,
        "requests_per_s": rate,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": p99 + 5,
        "statuses": statuses,
        "errors": 0,
        "warmup_errors": 0,
        "error_samples": [],
        "cpu_percent_of_one_core": {
            "pvcapid": 90.0,
            "zookeeper": 30.0,
            "clients": 10.0,
            "machine": 140.0,
            "others": 10.0,
        },
    }


def api_json() -> dict[str, Any]:
    return {
        "machine": {
            "cpu_model": "Test CPU 3000",
            "cores": 2,
            "kernel": "6.1.0-test",
            "python": "3.11.7",
            "load_average_at_start": [0.5, 0.4, 0.3],
            "load_average_at_end": [1.5, 1.4, 1.3],
        },
        "zookeeper": {"version": "3.8.0", "hosts": "127.0.0.1:2181"},
        "setup": {
            "vms": 1000,
            "nodes": 3,
            "populate_s": 2.5,
            "xml_bytes_mean": 2600.0,
            "server_threads": 8,
            "server_workers": 2,
            "gunicorn": "gthread",
            "warmup_s": 2.0,
            "duration_s": 10.0,
            "hot_duration_s": 5.0,
            "hot_vm": "app-0001",
            "max_client_processes": 4,
            "get_vm_list_bytes": 400000,
        },
        "runs": [
            api_run("GET /vm", 1, 11.5, 85.0, 120.0, {"200": 115}),
            api_run("GET /vm", 4, 21.0, 180.0, 260.0, {"200": 210}),
            api_run("GET /vm", 16, 22.5, 700.0, 1400.0, {"200": 225}),
            api_run("POST /vm/<vm>", 1, 60.0, 16.0, 30.0, {"200": 600}),
            api_run("POST /vm/<vm>", 4, 110.0, 35.0, 70.0, {"200": 1100}),
            api_run("POST /vm/<vm>", 16, 120.0, 130.0, 300.0, {"200": 1200}),
            api_run("POST hot VM", 16, 50.0, 300.0, 900.0, {"200": 150, "409": 50}),
        ],
        "server_log_errors": [],
        "server_log_dir": None,
        "elapsed_s": 95.0,
    }


def console_follower(lost: int, duplicated: int, printed: int, lag: dict[str, Any]) -> dict:
    """One follower of console.py's ``measure_exactness()``."""
    return {
        "lost": lost,
        "duplicated": duplicated,
        "foreign": 0,
        "printed": printed,
        "identical": lost == 0 and duplicated == 0,
        "end_seen": True,
        "skipped_reports": [],
        "lag_numbered": lag,
        "exit_code": 0,
    }


def console_exactness(rate: float, seconds: float, ours: dict, baseline: dict) -> dict:
    return {
        "rate_lines_per_s": rate,
        "lines": int(rate * seconds),
        "numbered": int(rate * seconds) // 2,
        "repeated_share": 0.44,
        "blank_share": 0.11,
        "sending_s": seconds,
        "drain_s": 1.2,
        "console_writes": int(18 * seconds),
        "console_writes_per_s": 18.0,
        "console_writes_each_second": summary(17.0, 18.0, 19.0),
        "baseline_znode_writes_per_s": 2.0,
        "daemon_cpu_s": {"hv1": 3.0, "hv2": 0.5, "hv3": 0.5},
        "ours": ours,
        "baseline": baseline,
    }


def cpu(percent: float) -> dict[str, Any]:
    """One daemon of console.py's ``cpu_window()``."""
    return {
        "cpu_s": percent * 0.6,
        "window_s": 60.0,
        "percent_of_core": percent,
        "slices_percent": summary(percent, percent, percent),
    }


def console_json() -> dict[str, Any]:
    def latency_follower(latency: dict[str, Any], lost: int) -> dict[str, Any]:
        return {
            "latency": latency,
            "lost": lost,
            "duplicated": 0,
            "end_seen": True,
            "skipped_reports": [],
            "exit_code": 0,
        }

    lag = spread(0.01, 0.03, 0.05, 0.06, 0.08)
    base_lag = spread(0.1, 0.6, 1.0, 1.2, 1.5)
    return {
        "machine": {
            "cpu_model": "Test CPU 3000",
            "cores": 2,
            "kernel": "6.1.0-test",
            "load_average_at_end": [1.0, 1.0, 1.0],
            "python": "3.11.7",
        },
        "zookeeper": "3.8.0",
        "quick": False,
        "elapsed_s": 300.0,
        "settings": {
            "coalesce_s": 0.05,
            "poll_interval_s": 1.0,
            "lines": 1000,
            "max_bytes": 262144,
            "keepalive_interval_s": 5.0,
            "reconcile_interval_s": 10.0,
        },
        "baseline": {"poll_s": 0.5, "read_s": 1.0, "lines": 1000},
        "targets": {"p99_s": 0.25, "p50_ratio": 5.0},
        "nodes": {"feed": "hv1", "watched": "hv2", "unwatched": "hv3"},
        "latency": {
            "lines": 300,
            "sending_s": 30.0,
            "console_writes": 301,
            "ours": latency_follower(spread(0.005, 0.02, 0.03, 0.045, 0.05), 0),
            "baseline": latency_follower(spread(0.1, 0.75, 1.2, 1.4, 1.5), 2),
        },
        "exactness": console_exactness(
            2000.0,
            60.0,
            console_follower(0, 0, 120000, lag),
            console_follower(61234, 17, 58783, base_lag),
        ),
        "exactness_slow": console_exactness(
            200.0,
            10.0,
            console_follower(0, 0, 2000, lag),
            console_follower(0, 345, 2345, base_lag),
        ),
        "idle": {
            "empty": {"daemons": {"hv1": cpu(0.8), "hv2": cpu(0.7), "hv3": cpu(0.75)}},
            "busy": {
                "vms": 50,
                "boot_lines": 20,
                "settle_s": 12.0,
                "buffer_writes_in_window": 0,
                "daemons": {"hv1": cpu(1.1), "hv2": cpu(2.35), "hv3": cpu(1.9)},
                "window_s": 60.0,
            },
        },
    }


def lifecycle_direction(command: str, total: tuple, libvirt: tuple, direct: tuple) -> dict:
    """One direction of lifecycle.py's ``benchmark()`` (its ``direction()``)."""
    overhead = tuple(t - v for t, v in zip(total, libvirt, strict=True))
    return {
        "command": command,
        "total": series(*total),
        "libvirt_share": series(*libvirt),
        "overhead": series(*overhead),
        "direct_libvirt": series(*direct),
        "libvirt_share_minus_direct": series(
            *(v - d for v, d in zip(libvirt, direct, strict=True))
        ),
        "phases_from_launch": {
            "cli_exited": series(0.2, 0.25, 0.3),
            "daemon_began": series(0.3, 0.35, 0.4),
            "libvirt_called": series(0.4, 0.45, 0.5),
            "libvirt_returned_to_done": series(0.05, 0.06, 0.07),
        },
        "retried_live_attempts": 0,
    }


def lifecycle_json(live: bool = True) -> dict[str, Any]:
    liveness = [
        {"migration": "warm-up pvc hv1 -> hv2", "live": True, "ticks": [10, 11], "problems": []},
        {
            "migration": "run 1 pvc hv1 -> hv2",
            "live": live,
            "ticks": [20, 21] if live else [20, 0],
            "problems": [] if live else ["a new boot line on the console"],
        },
    ]
    return {
        "machine": {
            "cpu_model": "Test CPU 3000",
            "cores": 2,
            "kernel": "6.1.0-test",
            "load_average_at_end": [1.0, 1.0, 1.0],
            "python": "3.11.7",
            "libvirt": "9.0.0",
            "qemu": "7.2.0",
            "zookeeper": "3.8.0",
        },
        "runs": 3,
        "poll_interval_s": 0.01,
        "start": {
            "pvc_vm_start": series(2.4, 2.5, 2.7),
            "direct_createxml": series(1.9, 2.0, 2.1),
            "difference": series(0.4, 0.5, 0.6),
            "launch_to_createxml_returned": series(0.6, 0.65, 0.7),
            "software_share": series(0.52, 0.55, 0.58),
            "phases_from_launch": {
                "cli_exited": series(0.2, 0.22, 0.24),
                "daemon_began": series(0.3, 0.32, 0.34),
                "daemon_start_path": series(0.25, 0.3, 0.35),
                "createxml_returned_to_boot_line": series(1.8, 1.85, 2.0),
            },
            "direct_phases": {
                "createxml_call": series(0.09, 0.1, 0.12),
                "createxml_returned_to_boot_line": series(1.8, 1.9, 2.0),
            },
        },
        "migration": {
            "max_downtime_ms": 300,
            "hv1->hv2": lifecycle_direction(
                "pvc vm migrate --target hv2", (1.3, 1.2, 1.4), (0.8, 0.75, 0.85), (0.7, 0.7, 0.8)
            ),
            "hv2->hv1": lifecycle_direction(
                "pvc vm unmigrate", (1.5, 1.4, 1.6), (0.9, 0.85, 0.95), (0.8, 0.75, 0.85)
            ),
        },
        "liveness": liveness,
        "all_migrations_live": live,
    }


def flush_setting(concurrency: int, total: tuple, work: tuple, outcome: str) -> dict:
    """ha.py's ``FlushFigures.as_dict()``."""
    pickup = tuple(t - w for t, w in zip(total, work, strict=True))
    return {
        "concurrency": concurrency,
        "flush_total": series(*total),
        "pickup": series(*pickup),
        "work": series(*work),
        "cli_exited": series(*(0.3 for _ in total)),
        "ready_wait_total": series(*(t + 1 for t in total)),
        "ready_work": series(*work),
        "outcomes": {outcome: 24 * len(total)},
    }


def ha_json() -> dict[str, Any]:
    def flush(driver: str, vms: int, outcome: str, scale: float, with_four: bool) -> dict:
        settings = [
            flush_setting(1, (8 * scale, 9 * scale), (7.5 * scale, 8.5 * scale), outcome),
            flush_setting(2, (4.5 * scale, 5 * scale), (4 * scale, 4.5 * scale), outcome),
        ]
        if with_four:
            settings.append(flush_setting(4, (2.5 * scale,), (2 * scale,), outcome))
        return {
            "driver": driver,
            "vms": vms,
            "memory_mib": 256 if driver == "test" else 128,
            "reconcile_interval_s": 10.0,
            "keepalive_interval_s": 5.0,
            "order": [4, 2, 2, 1, 1] if with_four else [2, 2, 1, 1],
            "settings": settings,
            "software": {"zookeeper": "3.8.0"}
            | ({"libvirt": "9.0.0", "qemu": "7.2.0"} if driver == "qemu" else {}),
        }

    def power_loss(label: str, keepalive: float, intervals: int, timeout: float, scale: float):
        phases = {
            key: series(value * scale, value * scale + 1)
            for key, value in (
                ("total", 9.0),
                ("detection", 4.0),
                ("session_gone", 3.0),
                ("keepalive_stale", 2.5),
                ("first_dead_check", 3.5),
                ("rechecks", 0.5),
                ("fence", 1.5),
                ("fence_confirmed", 1.0),
                ("recovery", 3.5),
                ("intents", 0.2),
                ("zookeeper_done", 2.0),
                ("ipmitool_off", 0.1),
                ("rejoin", 5.0),
                ("ready", 6.0),
                ("ready_work", 4.0),
            )
        }
        return {
            "label": label,
            "driver": "qemu",
            "vms": 3,
            "runs": 2,
            "keepalive_interval_s": keepalive,
            "fence_intervals": intervals,
            "rechecks": 2,
            "zookeeper_timeout_s": timeout,
            "phases": phases,
            "fenced_by": {"hv1": 2},
            "recovered_to": {"hv1": 3, "hv2": 3},
            "software": {"zookeeper": "3.8.0", "libvirt": "9.0.0", "qemu": "7.2.0"},
        }

    return {
        "machine": {
            "cpu_model": "Test CPU 3000",
            "cores": 2,
            "kernel": "6.1.0-test",
            "load_average_at_end": [1.0, 1.0, 1.0],
            "python": "3.11.7",
        },
        "elapsed_s": 400.0,
        "poll_interval_s": 0.02,
        "default_concurrency": 2,
        "nodes": {"flushed": "hv1", "powered_off": "hv3"},
        "flush": [
            flush("test", 24, "shutdown-migrated", 1.0, True),
            flush("qemu", 4, "live-migrated", 2.0, True),
        ],
        "power_loss": [
            power_loss("fast test-like settings", 1, 3, 3, 1.0),
            power_loss("PVC defaults", 5, 6, 10, 3.0),
        ],
    }


FIXTURES = {
    "vm_list": vm_list_json,
    "api": api_json,
    "console": console_json,
    "lifecycle": lifecycle_json,
    "ha": ha_json,
}


def run_record(exit_codes: dict[str, int]) -> dict[str, Any]:
    """The ``run.json`` report.py writes beside the JSON files (``run_all()``)."""
    return {
        "started_at": "2025-01-02 03:04:05 UTC",
        "commit": "abc1234",
        "uncommitted_changes": True,
        "command": "make bench",
        "quick": False,
        "machine": {
            "cpu_model": "Test CPU 3000",
            "cores": 2,
            "memory_bytes": 8 * 2**30,
            "kernel": "6.1.0-test",
            "python": "3.11.7",
            "load_average_at_start": [0.1, 0.2, 0.3],
        },
        "scripts": {
            name: {
                "command": f".venv/bin/python benchmarks/{name}.py --json {name}.json",
                "exit_code": code,
                "wall_s": 100.0 + index,
            }
            for index, (name, code) in enumerate(exit_codes.items())
        },
        "generated_at": "2025-01-02 03:20:00 UTC",
    }


def write_fixtures(
    directory: Path, exit_codes: dict[str, int] | None = None, without: tuple[str, ...] = ()
) -> Path:
    """A directory as report.py leaves it: run.json and each benchmark's JSON."""
    codes = exit_codes or dict.fromkeys(FIXTURES, 0)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run.json").write_text(json.dumps(run_record(codes), indent=2))
    for name, build in FIXTURES.items():
        if name not in without:
            (directory / f"{name}.json").write_text(json.dumps(build(), indent=2))
    return directory


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering must not run anything (no benchmark, not even git)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"rendering started a process: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)


@pytest.fixture
def document(tmp_path: Path, no_processes: None) -> str:
    return str(REPORT.render_directory(write_fixtures(tmp_path / "json")))


# --------------------------------------------------------------------------- the tests


def test_header_names_time_commit_machine_and_command(document: str) -> None:
    assert document.startswith("# Benchmarks\n")
    assert "Generated 2025-01-02 03:20:00 UTC" in document
    assert "at commit `abc1234` with uncommitted changes by `make bench`" in document
    for row in (
        "| CPU | Test CPU 3000 |",
        "| cores | 2 |",
        "| memory | 8.0 GiB |",
        "| kernel | 6.1.0-test |",
        "| Python | 3.11.7 |",
        "| ZooKeeper | 3.8.0 |",  # vm_list's raw 'srvr' text is cleaned to the same version
        "| libvirt | 9.0.0 |",
        "| QEMU | 7.2.0 |",
    ):
        assert row in document


def test_sections_in_fixed_order(document: str) -> None:
    positions = [document.index(f"(`{name}.py`)") for name in REPORT.SCRIPTS]
    assert positions == sorted(positions)
    assert "| [`vm_list.py`](#vm-list) | 0 | 1 min 40 s | figures written |" in document


def test_vm_list_side_by_side(document: str) -> None:
    assert "| whole process, median | 0.500 s | 6.000 s | 12.0x |" in document
    assert "| whole process, min | 0.450 s | 5.400 s | 12.0x |" in document
    assert "| read phase in-process, median | 0.100 s | 4.000 s | 40.0x |" in document
    assert "10x slower at the median: met (12.0x)" in document


def test_api_levels_side_by_side(document: str) -> None:
    header = (
        "| clients | GET /vm req/s | GET p50 | GET p99 | POST meta req/s | POST p50 | POST p99 |"
    )
    assert header in document
    assert "| 1 | 11.5 | 85.0 ms | 120.0 ms | 60.0 | 16.0 ms | 30.0 ms |" in document
    assert "| 4 | 21.0 | 180.0 ms | 260.0 ms | 110.0 | 35.0 ms | 70.0 ms |" in document
    assert "| 16 | 22.5 | 700.0 ms | 1400.0 ms | 120.0 | 130.0 ms | 300.0 ms |" in document
    # The hot VM: 150 2xx and 50 409 of 200 answers; 50 req/s x 150/200 went through.
    assert "| 16 | 200 | 150 | 50 | 0 | 25.0 % | 37.5 | 300.0 ms | 900.0 ms |" in document


def test_console_against_baseline_and_targets(document: str) -> None:
    assert "| p50 | 20.0 ms | 750.0 ms | 37.5x | baseline >= 5x ours: met |" in document
    assert "| p99 | 45.0 ms | 1400.0 ms | 31.1x | ours < 250 ms: met |" in document
    assert "| lines lost | 0 | 2 |  |  |" in document
    assert "| ours, 2000/s | baseline, 2000/s | ours, 200/s | baseline, 200/s |" in document
    assert "| lines lost | 0 | 61234 | 0 | 0 |" in document
    assert "| lines duplicated | 0 | 17 | 0 | 345 |" in document
    assert "| hv2 | 0.70 % | 2.35 % | 50 VMs with a log file each (watched) |" in document
    assert "hv2 - hv3 = +0.45 % of a core" in document


def test_lifecycle_against_libvirt_alone(document: str) -> None:
    assert (
        "| launch -> the guest's first console line | 2.500 s (2.400..2.700) "
        "| 2.000 s (1.900..2.100) | 0.500 s (0.400..0.600) |"
    ) in document
    assert (
        "| hv1 -> hv2: `pvc vm migrate --target hv2` | 1.300 s (1.200..1.400) "
        "| 0.800 s (0.750..0.850) | 0.500 s (0.450..0.550) | 0.700 s (0.700..0.800) "
        "| 0.050 s (0.050..0.100) |"
    ) in document
    assert "All 2 migrations (warm-ups included, managed and direct) were live." in document


def test_ha_concurrencies_and_settings_side_by_side(document: str) -> None:
    assert (
        "| concurrency | test driver (24 VMs): flush | test driver (24 VMs): work "
        "| test driver (24 VMs): speed-up | QEMU (4 VMs): flush | QEMU (4 VMs): work "
        "| QEMU (4 VMs): speed-up |"
    ) in document
    assert (
        "| 2 (default) | 4.75 s (4.50..5.00) | 4.25 s (4.00..4.50) | 1.88x "
        "| 9.50 s (9.00..10.00) | 8.50 s (8.00..9.00) | 1.88x |"
    ) in document
    assert "| 4 | 2.50 s | 2.00 s | 4.00x | 5.00 s | 4.00 s | 4.00x |" in document
    assert "|  | fast test-like settings | PVC defaults |" in document
    assert "| fenced by | hv1 2x | hv1 2x |" in document
    assert (
        "| detection: -> 'fencing it through its BMC' | 4.50 s (4.00..5.00) "
        "| 12.50 s (12.00..13.00) |"
    ) in document
    assert "| fence: 'fencing it' -> 'fenced' | 2.00 s (1.50..2.50) | 5.00 s (4.50..5.50) |" in (
        document
    )


def test_failed_benchmark_gets_no_figures(tmp_path: Path, no_processes: None) -> None:
    codes = {"vm_list": 0, "api": 0, "console": 0, "lifecycle": 0, "ha": 1}
    text = REPORT.render_directory(write_fixtures(tmp_path / "json", codes, without=("ha",)))
    ha = text[text.index("(`ha.py`)") :]
    assert "exited 1 after" in ha
    assert "**This benchmark failed: it wrote no JSON file** (exit code 1)" in ha
    assert "concurrency" not in ha and "fencing" not in ha
    assert "| [`ha.py`](#ha) | 1 | 1 min 44 s | **failed**: it wrote no JSON file |" in text


def test_nonzero_exit_with_figures_is_flagged(tmp_path: Path, no_processes: None) -> None:
    directory = write_fixtures(tmp_path / "json", {**dict.fromkeys(FIXTURES, 0), "lifecycle": 2})
    (directory / "lifecycle.json").write_text(json.dumps(lifecycle_json(live=False)))
    text = REPORT.render_directory(directory)
    section = text[text.index("(`lifecycle.py`)") : text.index("(`ha.py`)")]
    assert "**It exited 2: at least one migration was NOT live" in section
    assert "**1 of 2 migrations were NOT live**" in section
    assert "- run 1 pvc hv1 -> hv2: a new boot line on the console" in section


def test_json_of_another_shape_is_not_rendered(tmp_path: Path, no_processes: None) -> None:
    directory = write_fixtures(tmp_path / "json")
    (directory / "api.json").write_text(json.dumps({"runs": []}))
    text = REPORT.render_directory(directory)
    section = text[text.index("(`api.py`)") : text.index("(`console.py`)")]
    assert "**Its JSON could not be rendered** (KeyError: 'setup')" in section
    assert "req/s" not in section


def test_rendering_is_deterministic(tmp_path: Path, no_processes: None) -> None:
    first = write_fixtures(tmp_path / "one")
    second = tmp_path / "two"
    shutil.copytree(first, second)
    text = REPORT.render_directory(first)
    assert REPORT.render_directory(first) == text
    assert REPORT.render_directory(second) == text


def test_from_json_writes_the_document(tmp_path: Path, no_processes: None) -> None:
    directory = write_fixtures(tmp_path / "json")
    output = tmp_path / "docs" / "benchmarks.md"
    assert REPORT.main(["--from-json", str(directory), "--output", str(output)]) == 0
    assert output.read_text() == REPORT.render_directory(directory)
    assert (
        REPORT.main(["--from-json", str(directory), "--output", str(output), "--only", "api"]) == 0
    )
    only = output.read_text()
    assert "(`api.py`)" in only and "(`ha.py`)" not in only
    assert "Not run this time: `vm_list.py`, `console.py`, `lifecycle.py`, `ha.py`." in only


def load_script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A benchmark script as a module (its ``main`` is not run), under a name of its own."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_script_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixtures_are_shaped_like_the_scripts_json(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each script's own printed report reads its fixture: the shapes are the scripts'."""
    if name in ("lifecycle", "ha"):
        pytest.importorskip("libvirt")
    script = load_script(name, monkeypatch)
    figures = FIXTURES[name]()
    if name == "lifecycle":
        checks = [
            script.Liveness(c["migration"], c["live"], tuple(c["ticks"]), c["problems"])
            for c in figures["liveness"]
        ]
        text = script.report(figures, checks)
    elif name == "api":
        text, failed = script.report(figures)
        assert failed == 0
    else:
        text = script.report(figures)
    assert text.strip()
