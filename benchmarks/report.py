"""Run every benchmark and write their figures to ``docs/benchmarks.md``.

What it does
============

Runs the benchmark scripts one after another, always in the same order (``vm_list``,
``api``, ``console``, ``lifecycle``, ``ha``), each as its own process with ``--json FILE``
into a directory of JSON files (a temporary one unless ``--json-dir`` names one to keep).
Their output goes straight to the terminal as they run, so the progress and the printed
tables stay visible; this script records each one's exit code and wall time. It never
stops at a failed benchmark: the next one runs, and the document says which failed.

Then it writes the document (``--output``, default ``docs/benchmarks.md``): when it was
generated (UTC) and at which commit (``git rev-parse --short HEAD``, "with uncommitted
changes" when ``git status --porcelain`` lists anything but the document itself), the
machine (CPU model, cores, memory, kernel, Python from :mod:`machine_facts` and this
interpreter; ZooKeeper, libvirt and QEMU from the benchmarks' JSON), the command, then
a section per benchmark with what it measures and its figures as Markdown tables, each
comparison side by side. Every figure comes from the JSON a script wrote: a script that
failed, or wrote no JSON, gets a section saying so with its exit code and no figures.

The run's own facts (time, commit, machine, command, exit codes, wall times) are kept in
``run.json`` beside the benchmarks' JSON files, so the document is a pure function of
that directory: ``--from-json DIR`` renders it again without running anything (the unit
test does the same with small fixtures), and renders it identically every time.

Run it from the repository root (``make bench`` runs it with no option)::

    .venv/bin/python benchmarks/report.py [--only NAME[,NAME]] [--quick]
                                          [--output PATH] [--json-dir DIR]
    .venv/bin/python benchmarks/report.py --from-json DIR [--output PATH]

``--quick`` passes ``--quick`` to the scripts that have such a mode (``console`` and
``ha``). The exit code is 0 when every benchmark run exited 0, 1 when any did not (the
document is written either way), 2 for a bad command line and 130 when interrupted (the
running benchmark is waited for, so it stops its own processes, and no document is
written).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = Path(__file__).resolve().parent

#: Every benchmark script, in the order they run and appear in the document.
SCRIPTS = ("vm_list", "api", "console", "lifecycle", "ha")
#: The options ``--quick`` passes on, for the scripts that have a quick mode.
QUICK_OPTIONS = {"console": ("--quick",), "ha": ("--quick",)}
#: The run's own record, beside the benchmarks' JSON files.
RUN_RECORD = "run.json"
DEFAULT_OUTPUT = Path("docs/benchmarks.md")

#: What each script's exit codes other than 0 mean, when it still wrote its figures.
NONZERO_WITH_FIGURES = {
    "api": "some requests got an unexpected answer or none (see the errors column)",
    "lifecycle": "at least one migration was NOT live: those runs measure a shutdown and a "
    "start, not a live migration",
}


def log(message: str) -> None:
    """Progress on stderr, like the benchmarks'."""
    print(f"[report] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the run


def display_path(path: Path | str) -> str:
    """``path`` relative to the repository root when it is inside it (as ``make`` shows it)."""
    try:
        return str(Path(path).relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def git(*args: str) -> str | None:
    """The standard output of a git command in the repository, or None if it failed."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(output: Path) -> dict[str, Any]:
    """The commit checked out, and whether the working tree differs from it.

    The document itself is left out of the comparison: writing it must not make the next
    run "with uncommitted changes".
    """
    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain")
    own = display_path(output.resolve())
    changes = None
    if status is not None:
        changes = any(line[3:].strip() != own for line in status.splitlines() if line.strip())
    return {"commit": commit.strip() if commit else None, "uncommitted_changes": changes}


def machine() -> dict[str, Any]:
    """The machine the benchmarks ran on, as far as this process can tell."""
    from machine_facts import cpu_model, memory_bytes

    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def own_command(argv: Sequence[str]) -> str:
    """How this run was started, for the document."""
    # make runs this script for the bench target only (MAKELEVEL is set in its recipes).
    if os.environ.get("MAKELEVEL") and not argv:
        return "make bench"
    return " ".join([display_path(sys.executable), "benchmarks/report.py", *argv])


def script_command(name: str, json_file: Path, quick: bool) -> list[str]:
    """The command line of one benchmark, writing its figures to ``json_file``."""
    extra = QUICK_OPTIONS.get(name, ()) if quick else ()
    return [sys.executable, str(BENCHMARKS / f"{name}.py"), *extra, "--json", str(json_file)]


def run_script(command: list[str]) -> tuple[int, float]:
    """Run one benchmark with its output on this terminal; (exit code, wall seconds).

    On Ctrl-C the benchmark got the signal too (same process group): it is waited for so
    that it stops the processes it started, then the interrupt goes on.
    """
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        log(f"interrupted: waiting for {display_path(command[1])} (PID {process.pid}) to stop")
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            process.wait()
        raise
    return code, time.monotonic() - started


def run_all(
    names: Sequence[str], json_dir: Path, args: argparse.Namespace, argv: Sequence[str]
) -> dict[str, Any]:
    """Run ``names`` in order; write and return the run record (``run.json``)."""
    record: dict[str, Any] = {
        "started_at": utc_now(),
        **git_state(args.output),
        "command": own_command(argv),
        "quick": args.quick,
        "machine": machine(),
        "scripts": {},
    }
    for index, name in enumerate(names, 1):
        json_file = json_dir / f"{name}.json"
        json_file.unlink(missing_ok=True)  # a kept directory must not show an old run's
        command = script_command(name, json_file, args.quick)
        shown = " ".join(
            [display_path(command[0]), f"benchmarks/{name}.py", *command[2:-1], json_file.name]
        )
        log(f"({index}/{len(names)}) {shown}")
        code, wall = run_script(command)
        log(f"({index}/{len(names)}) {name}.py exited {code} after {duration(wall)}")
        record["scripts"][name] = {"command": shown, "exit_code": code, "wall_s": round(wall, 1)}
    record["generated_at"] = utc_now()
    (json_dir / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


# --------------------------------------------------------------------------- loading


def load_directory(
    json_dir: Path, only: Sequence[str] | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The run record and each benchmark's figures (or why there are none) from a directory.

    Without a ``run.json`` (JSON files written by hand, say) the record says so, and only
    the benchmarks with a JSON file get a section.
    """
    record_path = json_dir / RUN_RECORD
    if record_path.is_file():
        record = json.loads(record_path.read_text())
    else:
        names = [name for name in SCRIPTS if (json_dir / f"{name}.json").is_file()]
        record = {"scripts": {name: {} for name in names}, "no_record": True}
    if only:
        record["scripts"] = {k: v for k, v in record["scripts"].items() if k in only}
    results: dict[str, dict[str, Any]] = {}
    for name in record["scripts"]:
        path = json_dir / f"{name}.json"
        if not path.is_file():
            results[name] = {"figures": None, "problem": "it wrote no JSON file"}
            continue
        try:
            results[name] = {"figures": json.loads(path.read_text()), "problem": None}
        except (OSError, ValueError) as error:
            results[name] = {"figures": None, "problem": f"its JSON is unreadable ({error})"}
    return record, results


# --------------------------------------------------------------------------- formatting


def cell(value: Any) -> str:
    """A table cell: pipes escaped, nothing else touched."""
    return str(value).replace("|", "\\|")


#: A cell that is a figure (right-aligned when the whole column is figures).
FIGURE = re.compile(r"^[-+]?[0-9]")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table: the first column and columns of text left-aligned, figures right."""
    texts = [[cell(value) for value in row] for row in rows]

    def align(column: int) -> str:
        values = [row[column] for row in texts if row[column] not in ("", "n/a", "not run")]
        numeric = column > 0 and values and all(FIGURE.match(value) for value in values)
        return "---:" if numeric else ":---"

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join(align(column) for column in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in texts]
    return lines


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def spread(entry: dict[str, Any] | None, digits: int = 3) -> str:
    """``median s (min..max)`` of a timing entry in seconds; ``n/a`` when it has none."""
    median = stat(entry)
    if median is None:
        return "n/a"
    text = f"{number(median, digits)} s"
    low, high = stat(entry, "min_s"), stat(entry, "max_s")
    if low is not None and high is not None:
        low_text, high_text = number(low, digits), number(high, digits)
        if low_text != high_text:
            text += f" ({low_text}..{high_text})"
    elif low is not None:
        text += f" (min {number(low, digits)})"
    return text


def pick(entry: dict[str, Any] | None, key: str, digits: int = 3) -> str:
    """One statistic of a timing entry (``min_s``, ``median_s``...) in seconds, or n/a."""
    value = stat(entry, key)
    return "n/a" if value is None else f"{number(value, digits)} s"


def ratio(numerator: float | None, denominator: float | None, digits: int = 1) -> str:
    if numerator is None or denominator is None or denominator <= 0:
        return "n/a"
    return f"{numerator / denominator:.{digits}f}x"


def stat(entry: dict[str, Any] | None, key: str = "median_s") -> float | None:
    """One statistic of a timing entry, or None."""
    if entry is None or entry.get(key) is None:
        return None
    return float(entry[key])


def ms(seconds: float | None, digits: int = 1) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:.{digits}f} ms"


def duration(seconds: float | None) -> str:
    """Wall time as ``42 s`` or ``6 min 40 s``."""
    if seconds is None:
        return "n/a"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def yes_no(flag: Any) -> str:
    return "yes" if flag else "**no**"


def met(flag: bool) -> str:
    return "met" if flag else "**NOT met**"


def memory_text(value: Any) -> str:
    return "unknown" if not value else f"{value / 2**30:.1f} GiB"


def counts_text(counts: dict[str, Any], suffix: str = "") -> str:
    return ", ".join(f"{key} {value}{suffix}" for key, value in sorted(counts.items())) or "none"


def exit_text(code: Any) -> str:
    """An exit code as the document shows it (a negative one is a signal)."""
    if code is None:
        return "not recorded"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return str(code)


# --------------------------------------------------------------------------- the sections


def vm_list_section(figures: dict[str, Any]) -> list[str]:
    whole, inproc = figures["whole_process"], figures["in_process"]
    pvc, base = whole["pvc_vm_list"], whole["baseline"]
    load, per_key = inproc["load_vms"], inproc["per_key_reads"]
    intro = (
        f"`pvc vm list` as a whole process (interpreter start, imports, batched ZooKeeper "
        f"reads, XML parsing, the table) on a cluster of {figures['vms']} VMs in a real "
        f"ZooKeeper, against a baseline process that prints the same table but reads each of "
        f"the {figures['keys_read_per_vm']} keys of every VM with its own round trip; "
        f"{plural(figures['runs'], 'run')} of each, alternating. The read phase alone is also "
        "timed in-process, on an already connected client."
    )
    lines = [intro, ""]
    lines += table(
        ["", "`pvc vm list`", "baseline: one `get()` per key", "baseline / pvc"],
        [
            [
                "whole process, median",
                pick(pvc, "median_s"),
                pick(base, "median_s"),
                ratio(stat(base), stat(pvc)),
            ],
            [
                "whole process, min",
                pick(pvc, "min_s"),
                pick(base, "min_s"),
                ratio(stat(base, "min_s"), stat(pvc, "min_s")),
            ],
            [
                "read phase in-process, median",
                pick(load, "median_s"),
                pick(per_key, "median_s"),
                ratio(stat(per_key), stat(load)),
            ],
            [
                "read phase in-process, min",
                pick(load, "min_s"),
                pick(per_key, "min_s"),
                ratio(stat(per_key, "min_s"), stat(load, "min_s")),
            ],
        ],
    )
    lines += [
        "",
        f"Target: the baseline at least {figures['target_ratio']:g}x slower at the median: "
        f"{met(figures['target_met'])} ({whole['ratio_median']:.1f}x). Both printed "
        f"byte-for-byte the same table: {yes_no(figures['outputs_identical'])}.",
        "",
        "Where the time of the whole process goes (median, min):",
        "",
    ]

    def both(entry: dict[str, Any]) -> list[str]:
        return [pick(entry, "median_s"), pick(entry, "min_s")]

    lines += table(
        ["step", "median", "min"],
        [
            ["`python -c pass` (interpreter start-up)", *both(whole["python_c_pass"])],
            ["`pvc --version` (CLI start-up)", *both(whole["pvc_version"])],
            ["connect (`ZkStore`, once)", f"{inproc['connect_s']:.3f} s", ""],
            ["`vm_ops.list_vms` (reads + parse)", *both(inproc["list_vms"])],
            ["parse the XML + render the table", *both(inproc["parse_and_render"])],
        ],
    )
    return lines


def api_section(figures: dict[str, Any]) -> list[str]:
    setup, runs = figures["setup"], figures["runs"]
    few = 100  # api.py's FEW_REQUESTS: below it a run's p99 is (nearly) its max
    lines = [
        f"A real `pvcapid` (gunicorn {setup['gunicorn']}, {setup['server_workers']} worker "
        f"processes of {setup['server_threads']} threads) over HTTP on loopback with "
        f"{setup['vms']} VMs in a real ZooKeeper: requests/s and latency of `GET /api/v1/vm` "
        f"(every VM, {setup['get_vm_list_bytes']:,} bytes per answer) and of "
        "`POST /api/v1/vm/<vm>` (a metadata update; each client updates VMs of its own), by "
        "closed-loop clients in separate processes, "
        f"{setup['warmup_s']:g} s of warm-up then {setup['duration_s']:g} s measured per "
        f"level; then every client updating the same VM for {setup['hot_duration_s']:g} s.",
        "",
    ]
    by_endpoint: dict[str, dict[int, dict[str, Any]]] = {}
    for run in runs:
        by_endpoint.setdefault(run["endpoint"], {})[run["clients"]] = run
    gets, posts = by_endpoint.get("GET /vm", {}), by_endpoint.get("POST /vm/<vm>", {})

    def figures_of(run: dict[str, Any] | None) -> list[str]:
        if run is None:
            return ["n/a", "n/a", "n/a"]
        mark = "*" if run["requests"] < few else ""
        return [
            f"{run['requests_per_s']:.1f}{mark}",
            f"{run['p50_ms']:.1f} ms",
            f"{run['p99_ms']:.1f} ms",
        ]

    levels = sorted(set(gets) | set(posts))
    lines += table(
        [
            "clients",
            "GET /vm req/s",
            "GET p50",
            "GET p99",
            "POST meta req/s",
            "POST p50",
            "POST p99",
        ],
        [[level, *figures_of(gets.get(level)), *figures_of(posts.get(level))] for level in levels],
    )
    if any(run["requests"] < few for run in runs):
        lines += ["", f"\\* fewer than {few} requests in the window: its p99 is (nearly) its max."]
    hot = by_endpoint.get("POST hot VM", {})
    for clients, run in sorted(hot.items()):
        statuses = {int(status): count for status, count in run["statuses"].items()}
        answered = sum(statuses.values())
        ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
        conflicts = statuses.get(409, 0)
        share = f"{100 * conflicts / answered:.1f} %" if answered else "n/a"
        through = run["requests_per_s"] * ok / answered if answered else 0.0
        lines += [
            "",
            f"Hot VM: {plural(clients, 'client')} updating one VM (`{setup['hot_vm']}`); a "
            "conflict is retried on a fresh read a few times before the API answers 409:",
            "",
        ]
        lines += table(
            [
                "clients",
                "answers",
                "2xx",
                "409",
                "other",
                "409 share",
                "updates/s through",
                "p50",
                "p99",
            ],
            [
                [
                    clients,
                    answered,
                    ok,
                    conflicts,
                    answered - ok - conflicts,
                    share,
                    f"{through:.1f}",
                    f"{run['p50_ms']:.1f} ms",
                    f"{run['p99_ms']:.1f} ms",
                ]
            ],
        )
    lines += [
        "",
        "Every run, with its errors and the CPU used during its window (% of one core):",
        "",
    ]

    def percent(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f} %"

    rows = []
    for run in runs:
        cpu = run["cpu_percent_of_one_core"]
        rows.append(
            [
                f"`{run['endpoint']}`",
                run["clients"],
                run["requests"],
                f"{run['requests_per_s']:.1f}",
                f"{run['max_ms']:.1f} ms",
                run["errors"],
                percent(cpu["pvcapid"]),
                percent(cpu["zookeeper"]),
                percent(cpu["clients"]),
                percent(cpu["others"]),
            ]
        )
    lines += table(
        [
            "run",
            "clients",
            "requests",
            "req/s",
            "max",
            "errors",
            "pvcapid CPU",
            "ZooKeeper CPU",
            "clients CPU",
            "others CPU",
        ],
        rows,
    )
    errors = sum(run["errors"] for run in runs)
    logged = len(figures["server_log_errors"])
    lines += [
        "",
        f"Unexpected answers: {errors}; error lines in pvcapid's log: {logged}.",
    ]
    return lines


def console_section(figures: dict[str, Any]) -> list[str]:
    latency, fast, slow = figures["latency"], figures["exactness"], figures["exactness_slow"]
    baseline = figures["baseline"]
    ours_lat, base_lat = latency["ours"]["latency"], latency["baseline"]["latency"]
    lines = [
        "A VM's serial log file followed through its node daemon and ZooKeeper to a real "
        "`pvc vm log --follow`, beside a baseline in the style of PVC's design on the same "
        f"file (a poller rewriting the last {baseline['lines']} lines into a znode every "
        f"{baseline['poll_s']:g} s, a reader of it every {baseline['read_s']:g} s): (a) the "
        "latency from a line appended to it printed, (b) lines lost and duplicated under load "
        "with many repeated and blank lines, (c) the daemons' CPU time for idle watched VMs"
        + (" (`--quick`)." if figures["quick"] else "."),
        "",
        f"(a) Latency of {latency['lines']} unique lines, appended at "
        f"{latency['lines'] / latency['sending_s']:.1f} lines/s:",
        "",
    ]
    targets = figures.get("targets", {})
    p99_target, p50_target = targets.get("p99_s"), targets.get("p50_ratio")
    ours50, base50 = stat(ours_lat), stat(base_lat)
    ours99, base99 = stat(ours_lat, "p99_s"), stat(base_lat, "p99_s")
    p50_verdict = p99_verdict = ""
    if p50_target is not None and ours50 is not None and base50 is not None:
        p50_verdict = f"baseline >= {p50_target:g}x ours: {met(base50 / ours50 >= p50_target)}"
    if p99_target is not None and ours99 is not None:
        p99_verdict = f"ours < {ms(p99_target, 0)}: {met(ours99 < p99_target)}"
    ours_out, base_out = latency["ours"], latency["baseline"]
    lines += table(
        ["", "ours: `pvc vm log --follow`", "baseline: polling", "baseline / ours", "target"],
        [
            ["p50", ms(ours50), ms(base50), ratio(base50, ours50), p50_verdict],
            [
                "p90",
                ms(stat(ours_lat, "p90_s")),
                ms(stat(base_lat, "p90_s")),
                ratio(stat(base_lat, "p90_s"), stat(ours_lat, "p90_s")),
                "",
            ],
            ["p99", ms(ours99), ms(base99), ratio(base99, ours99), p99_verdict],
            ["min", ms(stat(ours_lat, "min_s")), ms(stat(base_lat, "min_s")), "", ""],
            ["max", ms(stat(ours_lat, "max_s")), ms(stat(base_lat, "max_s")), "", ""],
            ["lines lost", ours_out["lost"], base_out["lost"], "", ""],
            ["lines duplicated", ours_out["duplicated"], base_out["duplicated"], "", ""],
        ],
    )

    def load_text(part: dict[str, Any]) -> str:
        return (
            f"{part['rate_lines_per_s']:g} lines/s for {part['sending_s']:.1f} s: "
            f"{part['lines']} lines, {100 * part['repeated_share']:.0f} % the same text, "
            f"{100 * part['blank_share']:.0f} % blank"
        )

    lines += [
        "",
        f"(b) Exactness: at {load_text(fast)}; and at {load_text(slow)} (within the "
        "baseline's window, where only its matching by content can go wrong):",
        "",
    ]
    parts = [(fast, "ours"), (fast, "baseline"), (slow, "ours"), (slow, "baseline")]
    headers = [""] + [f"{who}, {part['rate_lines_per_s']:g}/s" for part, who in parts]

    def row(label: str, value: Callable[[dict[str, Any], dict[str, Any]], Any]) -> list[Any]:
        return [label, *(value(part, part[who]) for part, who in parts)]

    lines += table(
        headers,
        [
            row("lines lost", lambda part, entry: entry["lost"]),
            row("lines duplicated", lambda part, entry: entry["duplicated"]),
            row(
                "lines printed / written",
                lambda part, entry: f"{entry['printed']} / {part['lines']}",
            ),
            row("printed exactly what was written", lambda part, entry: yes_no(entry["identical"])),
            row("end marker seen", lambda part, entry: yes_no(entry["end_seen"])),
            row(
                "lag of the numbered lines, p50",
                lambda part, entry: ms(stat(entry["lag_numbered"])),
            ),
            row(
                "lag of the numbered lines, p99",
                lambda part, entry: ms(stat(entry["lag_numbered"], "p99_s")),
            ),
        ],
    )
    skipped = fast["ours"]["skipped_reports"]
    lines += [
        "",
        f"ZooKeeper writes at {fast['rate_lines_per_s']:g} lines/s: ours "
        f"{fast['console_writes_per_s']:.1f}/s of the console buffer (at most one per "
        f"`console.coalesce` = {figures['settings']['coalesce_s']:g} s), the baseline "
        f"{fast['baseline_znode_writes_per_s']:.1f}/s of its znode. Ours reported skipped "
        f"lines: {'; '.join(skipped) if skipped else 'no'}.",
    ]
    idle = figures["idle"]
    empty, busy = idle["empty"]["daemons"], idle["busy"]["daemons"]
    nodes = figures["nodes"]
    vms = idle["busy"]["vms"]
    roles = {
        nodes["feed"]: "the VMs of (a) and (b), idle",
        nodes["watched"]: f"{vms} VMs with a log file each (watched)",
        nodes["unwatched"]: f"{vms} VMs without a log file",
    }
    lines += [
        "",
        f"(c) Each daemon's CPU time over {idle['busy']['window_s']:g} s windows, % of one core: "
        "right after the start with no VM, and with idle VMs:",
        "",
    ]
    lines += table(
        ["daemon", "no VM", "idle VMs", "its VMs in the second window"],
        [
            [
                node,
                f"{empty[node]['percent_of_core']:.2f} %",
                f"{busy[node]['percent_of_core']:.2f} %",
                roles.get(node, ""),
            ]
            for node in sorted(busy)
        ],
    )
    watched, unwatched = busy[nodes["watched"]], busy[nodes["unwatched"]]
    lines += [
        "",
        f"Console watching of {vms} idle VMs: {nodes['watched']} - {nodes['unwatched']} = "
        f"{watched['percent_of_core'] - unwatched['percent_of_core']:+.2f} % of a core; "
        f"console buffer writes during that window: {idle['busy']['buffer_writes_in_window']}.",
    ]
    return lines


def lifecycle_section(figures: dict[str, Any]) -> list[str]:
    start, migration = figures["start"], figures["migration"]
    phases, direct = start["phases_from_launch"], start["direct_phases"]
    lines = [
        "On a real local cluster (ZooKeeper, libvirtd hosts and a `pvcnoded` each, QEMU "
        "guests in software emulation): `pvc vm start` to the guest's first console line "
        "against libvirt's `createXML` of the same guest alone, and a live migration "
        "(`pvc vm migrate`, then `unmigrate`) to done in ZooKeeper against a direct "
        f"`migrateToURI3` of an unmanaged guest; {plural(figures['runs'], 'run')} of each, "
        "alternating with the baselines.",
        "",
        "Start (median (min..max); the difference is paired run by run):",
        "",
    ]
    lines += table(
        ["", "`pvc vm start`", "libvirt `createXML` alone", "overhead"],
        [
            [
                "launch -> the guest's first console line",
                spread(start["pvc_vm_start"]),
                spread(start["direct_createxml"]),
                spread(start["difference"]),
            ],
            [
                "without the boot: launch -> `createXML` returned (daemon's log) / the bare call",
                spread(start["launch_to_createxml_returned"]),
                spread(direct["createxml_call"]),
                spread(start["software_share"]),
            ],
            [
                "`createXML` returned -> first console line",
                spread(phases["createxml_returned_to_boot_line"]),
                spread(direct["createxml_returned_to_boot_line"]),
                "",
            ],
        ],
    )
    lines += [
        "",
        f"Phases of `pvc vm start`: the pvc process exited after {spread(phases['cli_exited'])}, "
        f"the daemon began the start after {spread(phases['daemon_began'])}, then wrote "
        f"runningdomains and called `createXML` in {spread(phases['daemon_start_path'])}.",
        "",
        "Live migration (launch -> done in ZooKeeper; libvirt's share from the source "
        "daemon's log, the overhead is the rest):",
        "",
    ]
    directions = [(key, value) for key, value in migration.items() if "->" in key]
    rows = []
    for key, entry in directions:
        rows.append(
            [
                f"{key.replace('->', ' -> ')}: `{entry['command']}`",
                spread(entry["total"]),
                spread(entry["libvirt_share"]),
                spread(entry["overhead"]),
                spread(entry["direct_libvirt"]),
                spread(entry["libvirt_share_minus_direct"]),
            ]
        )
    lines += table(
        [
            "direction",
            "total",
            "libvirt's share",
            "overhead",
            "direct `migrateToURI3`",
            "libvirt's share - direct",
        ],
        rows,
    )
    lines += ["", "Phases of each migration, from launch:", ""]
    labels = [
        ("cli_exited", "pvc process exited"),
        ("daemon_began", "source daemon began"),
        ("libvirt_called", "`migrateToURI3` called"),
        ("libvirt_returned_to_done", "`migrateToURI3` returned -> done in ZooKeeper"),
    ]
    lines += table(
        ["phase", *(key.replace("->", " -> ") for key, _ in directions)],
        [
            [label, *(spread(entry["phases_from_launch"][key]) for _, entry in directions)]
            for key, label in labels
        ],
    )
    notes = [
        f"{key.replace('->', ' -> ')}: the daemon retried {entry['retried_live_attempts']} "
        "failed live attempt(s), counted in the totals"
        for key, entry in directions
        if entry["retried_live_attempts"]
    ]
    checks = figures["liveness"]
    lines.append("")
    if figures["all_migrations_live"]:
        lines.append(
            f"All {len(checks)} migrations (warm-ups included, managed and direct) were live. "
            f"Both ask for a maximum downtime of {migration['max_downtime_ms']} ms."
        )
    else:
        failed = [check for check in checks if not check["live"]]
        lines.append(
            f"**{len(failed)} of {len(checks)} migrations were NOT live**: their times measure "
            "a shutdown and a start."
        )
        lines += [f"- {check['migration']}: {'; '.join(check['problems'])}" for check in failed]
    lines += [f"- {note}" for note in notes]
    return lines


def ha_section(figures: dict[str, Any]) -> list[str]:
    nodes = figures.get("nodes", {})
    flushed, victim = nodes.get("flushed", "a node"), nodes.get("powered_off", "a node")
    default = figures["default_concurrency"]
    lines = [
        f"On local clusters: `pvc node flush {flushed}` with all the VMs on it at several "
        "`maintenance.concurrency` values, on libvirt's test driver (the orchestration alone, "
        "moves are shutdown and start) and with QEMU guests (live migrations); and "
        f"{victim}'s power-off through its simulated BMC until all its VMs run elsewhere, "
        "split into detection, fence and recovery, at fast test-like settings and at the "
        "defaults.",
    ]
    flush = figures["flush"]
    if flush:
        drivers = {"test": "test driver", "qemu": "QEMU"}
        lines += [
            "",
            "Flush, launch -> `flushed` in ZooKeeper (median (min..max)); 'work' is the "
            "runner moving the VMs, which is what the concurrency governs; speed-ups are "
            "ratios of the medians of the work against the lowest concurrency:",
            "",
        ]
        levels = sorted({entry["concurrency"] for part in flush for entry in part["settings"]})
        headers = ["concurrency"]
        for part in flush:
            name = f"{drivers.get(part['driver'], part['driver'])} ({part['vms']} VMs)"
            headers += [f"{name}: flush", f"{name}: work", f"{name}: speed-up"]
        rows = []
        for level in levels:
            row: list[Any] = [f"{level} (default)" if level == default else level]
            for part in flush:
                by_level = {entry["concurrency"]: entry for entry in part["settings"]}
                entry, base = by_level.get(level), part["settings"][0]
                if entry is None:
                    row += ["not run", "", ""]
                    continue
                row += [
                    spread(entry["flush_total"], 2),
                    spread(entry["work"], 2),
                    ratio(stat(base["work"]), stat(entry["work"]), 2),
                ]
            rows.append(row)
        lines += table(headers, rows)
        for part in flush:
            name = drivers.get(part["driver"], part["driver"])
            lines += [
                "",
                f"Flush details, {name}: {part['vms']} VMs of {part['memory_mib']} MiB, "
                f"reconcile_interval {part['reconcile_interval_s']:g} s; `pvc node ready "
                "--wait` between flushes is timed apart:",
                "",
            ]
            lines += table(
                [
                    "concurrency",
                    "runs",
                    "pickup",
                    "work",
                    "pvc exited",
                    "ready --wait",
                    "ready's work",
                    "outcomes",
                ],
                [
                    [
                        entry["concurrency"],
                        len(entry["flush_total"].get("runs_s", [])),
                        spread(entry["pickup"], 2),
                        spread(entry["work"], 2),
                        spread(entry["cli_exited"], 2),
                        spread(entry["ready_wait_total"], 2),
                        spread(entry["ready_work"], 2),
                        counts_text(entry["outcomes"]),
                    ]
                    for entry in part["settings"]
                ],
            )
    parts = figures["power_loss"]
    if parts:
        lines += [
            "",
            f"Power loss of {victim} with its VMs -> all of them running elsewhere "
            "(median (min..max)):",
            "",
        ]

        def settings(part: dict[str, Any]) -> str:
            return (
                f"keepalive {part['keepalive_interval_s']:g} s, fencing.intervals "
                f"{part['fence_intervals']}, rechecks {part['rechecks']}, zookeeper.timeout "
                f"{part['zookeeper_timeout_s']:g} s"
            )

        phases = [
            ("total: power lost -> all running elsewhere", "total"),
            ("detection: -> 'fencing it through its BMC'", "detection"),
            ("- its ZooKeeper session seen gone", "session_gone"),
            ("- its keepalive older than the limit", "keepalive_stale"),
            ("- first 'looks dead' check", "first_dead_check"),
            ("fence: 'fencing it' -> 'fenced'", "fence"),
            ("recovery: 'fenced' -> all running elsewhere", "recovery"),
            ("- 'fenced' -> intents written", "intents"),
            ("restore afterwards (not in the total): `pvc node ready --wait`", "ready"),
        ]
        rows = [
            ["settings", *(settings(part) for part in parts)],
            ["runs, VMs", *(f"{part['runs']}, {part['vms']}" for part in parts)],
        ]
        rows += [
            [label, *(spread(part["phases"][key], 2) for part in parts)] for label, key in phases
        ]
        rows += [
            ["fenced by", *(counts_text(part["fenced_by"], "x") for part in parts)],
            ["VMs went to", *(counts_text(part["recovered_to"]) for part in parts)],
        ]
        lines += table(["", *(part["label"] for part in parts)], rows)
    return lines


#: Each benchmark's section: its title and its renderer.
SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "vm_list": ("`pvc vm list` against one round trip per key", vm_list_section),
    "api": ("The API daemon: `GET /vm` and metadata updates, 1 to 16 clients", api_section),
    "console": ("The console feed against a polling baseline", console_section),
    "lifecycle": ("VM start and live migration against libvirt alone", lifecycle_section),
    "ha": ("Flush concurrency, and power loss to recovery", ha_section),
}


# --------------------------------------------------------------------------- the document


def zookeeper_versions(results: dict[str, dict[str, Any]]) -> list[str]:
    """The ZooKeeper versions the benchmarks report (normally all the same one)."""
    found = []
    for name, result in results.items():
        figures = result["figures"] or {}
        try:
            if name == "vm_list":
                found.append(figures["machine"]["zookeeper_version"])
            elif name == "api":
                found.append(figures["zookeeper"]["version"])
            elif name == "console":
                found.append(figures["zookeeper"])
            elif name == "lifecycle":
                found.append(figures["machine"]["zookeeper"])
            elif name == "ha":
                found += [part["software"]["zookeeper"] for part in figures["flush"]]
                found += [part["software"]["zookeeper"] for part in figures["power_loss"]]
        except (KeyError, TypeError):
            continue
    # vm_list.py gives the whole 'srvr' line: the version, Debian's unexpanded Maven
    # placeholder, and the build date.
    cleaned = {version.split(",")[0].split("-${")[0].strip() for version in found if version}
    return sorted(cleaned)


def software_versions(results: dict[str, dict[str, Any]], key: str) -> list[str]:
    """libvirt or QEMU versions from the benchmarks that started them."""
    found = set()
    lifecycle = results.get("lifecycle", {}).get("figures") or {}
    if isinstance(lifecycle.get("machine"), dict) and lifecycle["machine"].get(key):
        found.add(lifecycle["machine"][key])
    ha = results.get("ha", {}).get("figures") or {}
    for part in ha.get("flush", []) + ha.get("power_loss", []):
        if isinstance(part, dict) and part.get("software", {}).get(key):
            found.add(part["software"][key])
    return sorted(found)


def header(record: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[str]:
    machine_facts = record.get("machine") or {}
    if record.get("no_record"):
        # Hand-written JSON without a run record: the machine as the benchmarks saw it.
        for result in results.values():
            seen = (result["figures"] or {}).get("machine")
            if isinstance(seen, dict):
                machine_facts = {**seen, **machine_facts}
    commit = f"`{record['commit']}`" if record.get("commit") else "unknown"
    if record.get("uncommitted_changes"):
        commit += " with uncommitted changes"
    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by benchmarks/report.py (make bench): do not edit by hand. -->",
        "",
    ]
    if record.get("no_record"):
        lines += [
            "Rendered from benchmark JSON files without their run record: when, at which "
            "commit and by which command they were measured is not known.",
        ]
    else:
        total = sum(entry.get("wall_s") or 0 for entry in record["scripts"].values())
        quick = [f"`{name}.py`" for name in record["scripts"] if name in QUICK_OPTIONS]
        lines += [
            f"Generated {record.get('generated_at', 'at an unknown time')} at commit "
            f"{commit} by `{record.get('command', 'an unknown command')}`: the benchmarks "
            f"ran from {record.get('started_at', 'an unknown time')}, {duration(total)} in all"
            + (
                f", {' and '.join(quick)} in their quick mode (`--quick`)."
                if record.get("quick") and quick
                else "."
            ),
        ]
    lines += [
        "",
        "Every figure below comes from the JSON the benchmark scripts wrote in that run "
        "(`benchmarks/README.md` describes each). Everything runs on this one machine, "
        "ZooKeeper, daemons and emulated guests included: compare figures of the same run, "
        "not across machines. Timings are shown as median (min..max) over the runs.",
        "",
        "## Machine",
        "",
    ]
    load = machine_facts.get("load_average_at_start")
    rows = [
        ["CPU", machine_facts.get("cpu_model", "unknown")],
        ["cores", machine_facts.get("cores", "unknown")],
        ["memory", memory_text(machine_facts.get("memory_bytes"))],
        ["kernel", machine_facts.get("kernel", "unknown")],
        ["Python", machine_facts.get("python", "unknown")],
        ["ZooKeeper", ", ".join(zookeeper_versions(results)) or "unknown (no benchmark said)"],
    ]
    for key, label in (("libvirt", "libvirt"), ("qemu", "QEMU")):
        versions = software_versions(results, key)
        if versions:
            rows.append([label, ", ".join(versions)])
    if load:
        rows.append(["load average before the run", ", ".join(f"{value:.2f}" for value in load)])
    lines += table(["", ""], rows)
    lines += ["", "## Summary", ""]
    summary = []
    for name in (name for name in SCRIPTS if name in record["scripts"]):
        entry, result = record["scripts"][name], results[name]
        code = entry.get("exit_code")
        if result["figures"] is None:
            state = f"**failed**: {result['problem']}"
        elif code not in (0, None):
            state = "figures written, but **it exited non-zero**"
        else:
            state = "figures written"
        summary.append(
            [
                f"[`{name}.py`](#{name.replace('_', '-')})",
                exit_text(code),
                duration(entry.get("wall_s")),
                state,
            ]
        )
    lines += table(["benchmark", "exit code", "wall time", "result"], summary)
    skipped = [name for name in SCRIPTS if name not in record["scripts"]]
    if skipped and not record.get("no_record"):
        lines += ["", "Not run this time: " + ", ".join(f"`{name}.py`" for name in skipped) + "."]
    return lines


def section(name: str, entry: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """One benchmark's section: its status, then its figures or why there are none."""
    title, render_figures = SECTIONS[name]
    code = entry.get("exit_code")
    lines = [f'<a id="{name.replace("_", "-")}"></a>', "", f"## {title} (`{name}.py`)", ""]
    ran = f"`{entry['command']}`" if entry.get("command") else f"`{name}.py`"
    if code is not None:
        lines += [f"{ran} exited {exit_text(code)} after {duration(entry.get('wall_s'))}.", ""]
    if result["figures"] is None:
        lines.append(
            f"**This benchmark failed: {result['problem']}** (exit code {exit_text(code)}). "
            "It has no figures in this document; its output in the terminal during the run "
            "says why."
        )
        return lines
    if code not in (0, None):
        meaning = NONZERO_WITH_FIGURES.get(name, "see its output in the run")
        lines += [f"**It exited {exit_text(code)}: {meaning}.** Its figures as it wrote them:", ""]
    try:
        lines += render_figures(result["figures"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        lines.append(
            f"**Its JSON could not be rendered** ({type(error).__name__}: {error}): it is not "
            "shaped as this report expects, so no figures are shown."
        )
    return lines


def render(record: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    """The whole document, from the run record and each benchmark's figures."""
    lines = header(record, results)
    for name in SCRIPTS:
        if name in record["scripts"]:
            lines += ["", *section(name, record["scripts"][name], results[name])]
    return "\n".join(lines) + "\n"


def render_directory(json_dir: Path, only: Sequence[str] | None = None) -> str:
    """The document from a directory of JSON files (``run.json`` and one per benchmark)."""
    return render(*load_directory(json_dir, only))


def write_document(path: Path, text: str) -> None:
    """Write the document whole (a new file renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


# --------------------------------------------------------------------------- the command


def benchmark_names(text: str) -> list[str]:
    names = [part.strip().removesuffix(".py") for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in SCRIPTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {', '.join(unknown) or text!r}: choose from {', '.join(SCRIPTS)}"
        )
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run every benchmark (vm_list, api, console, lifecycle, ha) and write "
        "their figures to docs/benchmarks.md."
    )
    parser.add_argument(
        "--only",
        type=benchmark_names,
        metavar="NAME[,NAME]",
        help=f"run (or render) only these, in the fixed order ({','.join(SCRIPTS)})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="PATH",
        help=f"the document to write ({DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="DIR",
        help="render the document from the JSON files in DIR (a --json-dir of an earlier "
        "run), running nothing",
    )
    parser.add_argument(
        "--json-dir",
        type=Path,
        metavar="DIR",
        help="write the benchmarks' JSON and run.json here and keep them (default: a "
        "temporary directory, removed afterwards)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="pass --quick to the scripts that have it (console, ha)",
    )
    args = parser.parse_args(argv)
    if args.from_json is not None:
        if args.json_dir is not None or args.quick:
            parser.error("--from-json runs nothing: --json-dir and --quick do not apply")
        if not args.from_json.is_dir():
            parser.error(f"--from-json: no directory {args.from_json}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    names = [name for name in SCRIPTS if args.only is None or name in args.only]
    if args.from_json is not None:
        write_document(args.output, render_directory(args.from_json, args.only))
        log(f"rendered {args.output} from {args.from_json}")
        return 0
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    try:
        if args.json_dir is not None:
            args.json_dir.mkdir(parents=True, exist_ok=True)
            record = run_all(names, args.json_dir, args, argv)
            text = render_directory(args.json_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="pvc-bench-report-") as directory:
                record = run_all(names, Path(directory), args, argv)
                text = render_directory(Path(directory))
    except KeyboardInterrupt:
        log(f"interrupted: {args.output} not written")
        return 130
    write_document(args.output, text)
    failed = [name for name, entry in record["scripts"].items() if entry["exit_code"] != 0]
    log(
        f"wrote {args.output}"
        + (f"; exited non-zero: {', '.join(failed)}" if failed else "; every benchmark exited 0")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
