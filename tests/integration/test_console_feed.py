"""The node daemon feeds a VM's serial log file into its console buffer in ZooKeeper.

Fast mode (libvirt's test driver, real ZooKeeper and daemons): the test writes to the
VM's log file itself, as QEMU would, and reads the buffer the daemon keeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvc_common.console import ConsoleBuffer
from pvc_common.console_store import read_console
from tests.harness.cluster import LocalCluster
from tests.harness.zookeeper import wait_until

PVC = str(Path(sys.executable).with_name("pvc"))


@pytest.fixture(scope="module")
def console_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("cons"),
        mode="test",
        daemon_settings={"console": {"lines": 50, "max_bytes": 4096}},
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def pvc(cluster: LocalCluster, *args: str) -> str:
    env = {**os.environ, "PVC_ZOOKEEPER": cluster.zk_hosts, "NO_COLOR": "1"}
    result = subprocess.run([PVC, *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def start(cluster: LocalCluster, name: str, node: str = "hv1") -> str:
    path = cluster.workdir / f"{name}.xml"
    path.write_text(cluster.vm_xml(name))
    cluster.console_log(name).unlink(missing_ok=True)
    pvc(cluster, "vm", "define", "--target", node, str(path))
    pvc(cluster, "vm", "start", name, "--wait")
    uuid: str = json.loads(pvc(cluster, "vm", "info", name, "-o", "json"))["uuid"]
    return uuid


def buffer_of(cluster: LocalCluster, uuid: str) -> ConsoleBuffer:
    with cluster.store() as store:
        return read_console(store, uuid)[0]


def wait_lines(cluster: LocalCluster, uuid: str, expected: list[str]) -> ConsoleBuffer:
    wait_until(
        lambda: list(buffer_of(cluster, uuid).lines) == expected,
        10,
        f"console buffer is {buffer_of(cluster, uuid).lines!r}, not {expected!r}",
    )
    return buffer_of(cluster, uuid)


def test_appended_lines_reach_the_buffer_exactly(console_cluster: LocalCluster) -> None:
    c = console_cluster
    uuid = start(c, "con1")
    log = c.console_log("con1")
    with log.open("ab") as handle:
        handle.write(b"boot\n\nboot\nboot\n")
        handle.flush()
        wait_lines(c, uuid, ["boot", "", "boot", "boot"])
        handle.write(b"login: ")
        handle.flush()
        wait_until(lambda: buffer_of(c, uuid).partial == "login: ", 10, "partial line missing")
        handle.write(b"root\r\n\xff\xfebad bytes\n")
        handle.flush()
    buffer = wait_lines(
        c, uuid, ["boot", "", "boot", "boot", "login: root", "\ufffd\ufffdbad bytes"]
    )
    assert buffer.first == 0 and buffer.partial == ""
    with c.store() as store:
        plain = store.get(f"/domains/{uuid}/consolelog").data.decode()
    assert plain == "boot\n\nboot\nboot\nlogin: root\n\ufffd\ufffdbad bytes\n"


def test_the_buffer_stays_bounded_and_positions_go_on(console_cluster: LocalCluster) -> None:
    c = console_cluster
    uuid = start(c, "con2")
    with c.console_log("con2").open("a") as handle:
        for number in range(120):
            handle.write(f"line {number}\n")
    buffer = wait_lines(c, uuid, [f"line {n}" for n in range(70, 120)])
    assert (buffer.first, buffer.next) == (70, 120)  # 50 lines kept, numbered on
    with c.console_log("con2").open("a") as handle:
        handle.write("x" * 10_000 + "\nafter\n")  # a line longer than the byte budget
    wait_until(lambda: buffer_of(c, uuid).lines[-1:] == ("after",), 10, "no line after it")
    buffer = buffer_of(c, uuid)
    assert buffer.next == 122 and buffer.lines[-2].endswith(" [...]")
    assert buffer.encoded_size() < 4096 + 1024


def test_truncation_keeps_the_history(console_cluster: LocalCluster) -> None:
    c = console_cluster
    uuid = start(c, "con3")
    log = c.console_log("con3")
    log.write_text("first run 1\nfirst run 2\n")
    wait_lines(c, uuid, ["first run 1", "first run 2"])
    log.write_text("second\n")  # truncated, as QEMU does with append='off'
    wait_lines(c, uuid, ["first run 1", "first run 2", "second"])


def test_a_file_outside_the_console_directory_is_never_read(
    console_cluster: LocalCluster,
) -> None:
    c = console_cluster
    secret = c.workdir / "secret.log"
    secret.write_text("do not publish\n")
    xml = c.vm_xml("con4").replace(str(c.console_log("con4")), str(secret))
    path = c.workdir / "con4.xml"
    path.write_text(xml)
    pvc(c, "vm", "define", "--target", "hv1", str(path))
    pvc(c, "vm", "start", "con4", "--wait")
    uuid = json.loads(pvc(c, "vm", "info", "con4", "-o", "json"))["uuid"]
    with secret.open("a") as handle:
        handle.write("still secret\n")
    # The daemon warns once and leaves it; a VM next to it is fed meanwhile.
    neighbour = start(c, "con5")
    with c.console_log("con5").open("a") as handle:
        handle.write("fed\n")
    wait_lines(c, neighbour, ["fed"])
    assert buffer_of(c, uuid).lines == ()
    assert "outside" in c.daemons["hv1"].log_path.read_text()


def test_a_rotated_log_is_read_from_its_start(console_cluster: LocalCluster) -> None:
    c = console_cluster
    uuid = start(c, "con6")
    log = c.console_log("con6")
    log.write_text("old file\n")
    wait_lines(c, uuid, ["old file"])
    log.rename(log.with_suffix(".log.1"))  # logrotate's move, then a new file
    log.write_text("new file 1\nnew file 2\n")
    wait_lines(c, uuid, ["old file", "new file 1", "new file 2"])
