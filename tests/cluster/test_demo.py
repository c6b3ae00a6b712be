"""``make demo`` end to end: the guided tour on its own local cluster, non-interactively.

The demo runs as a program (as ``make demo`` runs it) in a temporary work directory with
its own API port, so it never touches a developer's ``make cluster``; it brings that
cluster up itself, and the test stops everything it recorded afterwards.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.cluster import REPO_ROOT, down
from tests.harness.zookeeper import find_free_port

pytestmark = pytest.mark.cluster

#: The demo takes about a minute here (cluster start included); allow for a busy machine.
DEMO_TIMEOUT = 330.0

#: What each step must print: the commands it runs and the checks it passed.
EXPECTED = [
    # 1: define
    "=== Step 1/7: define VMs with node limits, selectors and autostart ===",
    "$ pvc vm define --target hv1 --limit hv1,hv2 --selector mem ",
    "$ pvc vm define --limit hv1 --autostart ",
    "$ pvc vm define --target hv1 --selector vms ",
    "ok: web1 is defined stopped on hv1, limit hv1,hv2, selector mem, autostart off",
    "ok: db1 is defined stopped on hv1, limit hv1, selector none, autostart on",
    "ok: app1 is defined stopped on hv1, limit none, selector vms, autostart off",
    # 2: list, info, start
    "=== Step 2/7: list, inspect and start VMs ===",
    "$ pvc vm list\n",
    "$ pvc vm info web1\n",
    "$ pvc vm start web1 --wait\n",
    "$ pvc vm start db1 --wait\n",
    "ok: web1 runs on hv1",
    "ok: db1 runs on hv1",
    # 3: console
    "=== Step 3/7: follow a console while a VM boots ===",
    "$ pvc vm start app1\n",
    "$ pvc vm log app1 --follow\n",
    "pvc-guest: booted app1",
    "ok: app1's boot line and its first ticks appeared in 'pvc vm log --follow'",
    # 4: flush
    "=== Step 4/7: flush hv1 for maintenance ===",
    "$ pvc node flush hv1 --dry-run\n",
    "$ pvc node flush hv1 --wait\n",
    "flush of hv1 done",
    "ok: hv1 is run/flushed (daemon/domain state)",
    "ok: web1 runs on hv2",
    "ok: web1 moved live (its console shows no new boot: the guest kept counting)",
    "ok: app1 runs on hv2 or hv3",
    "ok: db1 is stopped and marked autostart (it waits for hv1)",
    "ok: hv1's libvirtd runs no VM any more",
    # 5: ready
    "=== Step 5/7: make hv1 ready again ===",
    "$ pvc node ready hv1 --wait\n",
    "ready of hv1 done",
    "ok: hv1 is run/ready (daemon/domain state)",
    "ok: db1 runs on hv1",
    "ok: db1's autostart mark is cleared",
    # 6: power off, fence, recovery
    "=== Step 6/7: cut hv1's power through its BMC, and watch the fence ===",
    "chassis power off\nChassis Power Control: Down/Off",
    "hv1 fenced/flushed",
    "ok: hv1 is fenced/flushed (daemon/domain state)",
    "ok: web1 booted again after the fence",
    "ok: app1 booted again after the fence",
    # 7: back again
    "=== Step 7/7: boot hv1 again and make it ready ===",
    "chassis power on\nChassis Power Control: Up/On",
    "ok: hv1 is run/flushed (daemon/domain state)",
    "ok: hv1 is run/ready (daemon/domain state)",
    "ok: app1 runs on hv1",
    # the end
    "=== The end (the demo took ",
    "export PVC_API_URL=http://127.0.0.1:",
    "export PVC_ZOOKEEPER=127.0.0.1:",
    "python -m tests.harness.cluster down --workdir ",
]


@pytest.mark.timeout(DEMO_TIMEOUT + 90)
def test_the_demo_runs_end_to_end(tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("demo")
    output_path = workdir / "demo-output.txt"
    command = [
        sys.executable,
        "-m",
        "tests.harness.demo",
        "--workdir",
        str(workdir),
        "--api-port",
        str(find_free_port()),
        "--no-pause",
    ]
    started = time.monotonic()
    try:
        # Output to a file, not a pipe: the daemons the demo starts outlive it.
        with output_path.open("w") as output:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                returncode = process.wait(timeout=DEMO_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGTERM)  # the demo stops a half-started cluster
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                pytest.fail(
                    f"the demo took over {DEMO_TIMEOUT:.0f} s; its output ends:\n"
                    + tail(output_path)
                )
    finally:
        down(workdir)  # whatever the demo started and recorded
    seconds = time.monotonic() - started
    text = output_path.read_text()
    assert returncode == 0, f"the demo exited {returncode}; its output ends:\n{tail(output_path)}"
    missing = [line for line in EXPECTED if line not in text]
    assert not missing, f"missing from the demo's output: {missing}\n{tail(output_path)}"
    assert "demo: FAILED" not in text
    print(f"the demo took {seconds:.0f} s")


def tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
