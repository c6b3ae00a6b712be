"""``pvc vm log`` (and the console line of ``pvc vm info``) on the real ZooKeeper.

Buffers are written with ``write_console`` as a node daemon would; ``pvc`` runs as a real
process, so what a pipe reader sees, exit codes and signals are the real ones.
"""

from __future__ import annotations

import json
import os
import pty
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from pvc_common import vm_ops
from pvc_common.console import ConsoleBuffer
from pvc_common.console_store import read_console, write_console
from pvc_common.store import ZkStore
from tests.integration.conftest import (
    PVC_EXECUTABLE,
    PvcRunner,
    domain_xml,
    parse_fields,
    vm_uuid,
)

Run = Callable[..., subprocess.CompletedProcess[str]]

WEB1 = vm_uuid(1)
QUIET = vm_uuid(2)
#: Every wait in this module is bounded by this (the CLI itself wakes on a watch).
DEADLINE = 15.0
HINT = (
    "VM 'quiet' has no serial console log: add "
    "<log file='/var/log/pvc/console/quiet.log' append='on'/> inside its <serial> device"
)
BOOT = ConsoleBuffer(
    first=0,
    lines=("boot", "", "same", "same", "", "login ok"),
    partial="login: ",
)


@pytest.fixture
def vms(pvc: PvcRunner) -> None:
    """'web1' with a serial log, 'quiet' without one; both stopped, buffers empty."""
    pvc.define(domain_xml("web1", WEB1))
    no_log = domain_xml("quiet", QUIET).replace(
        "<log file='/var/log/pvc/console/quiet.log' append='on'/>", ""
    )
    pvc.define(no_log)


def put(store: ZkStore, uuid: str, buffer: ConsoleBuffer) -> None:
    """Write ``buffer`` as the VM's console, as its node would."""
    _, version = read_console(store, uuid)
    write_console(store, uuid, buffer, version)


# --------------------------------------------------------------------------- plain output


def test_log_prints_the_buffer_as_it_is(cluster: ZkStore, vms: None, pvc_process: Run) -> None:
    put(cluster, WEB1, BOOT)
    result = pvc_process("vm", "log", "web1")
    assert (result.returncode, result.stderr) == (0, "")
    # Repeated and blank lines kept, the partial last line shown without a newline.
    assert result.stdout == "boot\n\nsame\nsame\n\nlogin ok\nlogin: "
    assert pvc_process("vm", "log", WEB1).stdout == result.stdout  # by UUID too


def test_log_lines_limits_to_the_last_lines(cluster: ZkStore, vms: None, pvc_process: Run) -> None:
    # Positions far from 0 (older lines already left the buffer) change nothing.
    put(cluster, WEB1, ConsoleBuffer(first=5000, lines=BOOT.lines, partial=BOOT.partial))
    assert pvc_process("vm", "log", "web1", "-l", "2").stdout == "\nlogin ok\nlogin: "
    assert pvc_process("vm", "log", "web1", "--lines", "3").stdout == "same\n\nlogin ok\nlogin: "
    assert pvc_process("vm", "log", "web1", "-l", "0").stdout == "login: "
    assert pvc_process("vm", "log", "web1", "-l", "99").stdout == (
        "boot\n\nsame\nsame\n\nlogin ok\nlogin: "
    )
    refused = pvc_process("vm", "log", "web1", "-l", "-1")
    assert refused.returncode == 2 and "-1" in refused.stderr


def test_log_of_an_unknown_vm_is_a_one_line_error(cluster: ZkStore, pvc_process: Run) -> None:
    result = pvc_process("vm", "log", "ghost")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == ["Error: no VM named 'ghost'"]


def test_log_without_serial_log_says_how_to_enable_it(
    cluster: ZkStore, vms: None, pvc_process: Run
) -> None:
    for args in ((), ("-f",), ("-l", "5")):
        result = pvc_process("vm", "log", "quiet", *args, timeout=DEADLINE)
        assert (result.returncode, result.stdout) == (0, ""), args
        assert result.stderr.splitlines() == [HINT], args
    # A VM with a log but no output yet: no advice, nothing printed.
    empty = pvc_process("vm", "log", "web1")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "")
    # What was buffered before the log was taken out of the XML is still shown.
    put(cluster, QUIET, ConsoleBuffer(first=0, lines=("old",)))
    kept = pvc_process("vm", "log", "quiet")
    assert (kept.returncode, kept.stdout, kept.stderr) == (0, "old\n", "")


def test_info_has_a_console_line(cluster: ZkStore, vms: None, pvc: PvcRunner) -> None:
    fields = parse_fields(pvc("vm", "info", "web1").output)
    assert fields["Console log"] == "0 lines buffered (pvc vm log web1)"
    put(cluster, WEB1, BOOT)
    # Six complete lines and the partial one.
    fields = parse_fields(pvc("vm", "info", "web1").output)
    assert fields["Console log"] == "7 lines buffered (pvc vm log web1)"
    put(cluster, WEB1, ConsoleBuffer(first=9, lines=("one",)))
    assert parse_fields(pvc("vm", "info", WEB1).output)["Console log"] == (
        "1 line buffered (pvc vm log web1)"
    )
    data = pvc.info("web1")
    assert (data["console_lines"], data["console_log"], "console_hint" in data) == (1, True, False)
    assert parse_fields(pvc("vm", "info", "quiet").output)["Console log"] == (
        "none: add <log file='/var/log/pvc/console/quiet.log' append='on'/> "
        "inside its <serial> device"
    )
    data = pvc.info("quiet")
    assert (data["console_hint"], data["console_log"], data["console_lines"]) == (HINT, False, 0)
    listed = json.loads(pvc("vm", "list", "-o", "json").output)
    assert all("console_lines" not in row for row in listed)  # a listing reads no buffers


def test_log_help_has_an_example(pvc: PvcRunner) -> None:
    text = pvc("vm", "log", "--help").output
    assert "pvc vm log web1 -f" in text and "--follow" in text and "less -R" in text


# --------------------------------------------------------------------------- the pager


def _fake_less(directory: Path) -> Path:
    """A ``less`` that records its arguments and what it was given, in ``directory``."""
    script = directory / "less"
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {directory}/args\ncat > {directory}/paged\n'
    )
    script.chmod(0o755)
    return script


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``pvc ARGS`` with standard output on a pseudo-terminal; exit code and output."""
    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(
            [PVC_EXECUTABLE, *args], stdout=terminal, stderr=subprocess.PIPE, env=env
        ) as process:
            os.close(terminal)
            terminal = -1
            chunks = []
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                try:
                    chunk = os.read(controller, 65536) if _readable(controller, 0.2) else b""
                except OSError:  # the terminal closed: the process ended
                    break
                chunks.append(chunk)
                if not chunk and process.poll() is not None:
                    break
            code = process.wait(timeout=DEADLINE)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    return code, b"".join(chunks).decode()


def _readable(fd: int, timeout: float) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        return bool(selector.select(timeout))


def test_log_on_a_terminal_uses_less_r(
    cluster: ZkStore, vms: None, zk_hosts: str, tmp_path: Path
) -> None:
    put(cluster, WEB1, BOOT)
    _fake_less(tmp_path)
    env = {**os.environ, "PVC_ZOOKEEPER": zk_hosts, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    code, shown = _run_on_a_terminal(["vm", "log", "web1"], env)
    assert code == 0
    assert (tmp_path / "args").read_text() == "-R\n"
    assert (tmp_path / "paged").read_text() == "boot\n\nsame\nsame\n\nlogin ok\nlogin: "
    assert "login ok" not in shown  # given to the pager, not printed past it


def test_log_on_a_terminal_without_less_prints(
    cluster: ZkStore, vms: None, zk_hosts: str, tmp_path: Path
) -> None:
    put(cluster, WEB1, BOOT)
    env = {**os.environ, "PVC_ZOOKEEPER": zk_hosts, "PATH": str(tmp_path)}  # no less here
    code, shown = _run_on_a_terminal(["vm", "log", "web1", "-l", "1"], env)
    assert code == 0
    assert shown.replace("\r\n", "\n") == "login ok\nlogin: "


# --------------------------------------------------------------------------- --follow


def _buffered_environment() -> dict[str, str]:
    """This environment without ``PYTHONUNBUFFERED``, so that only the command's own
    flushing can get its output through a pipe at once."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}


class Follower:
    """``pvc vm log VM --follow`` as a real process, its standard output read as it comes."""

    def __init__(self, hosts: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [PVC_EXECUTABLE, "vm", "log", *args, "--follow"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**_buffered_environment(), "PVC_ZOOKEEPER": hosts},
        )
        assert self.process.stdout is not None
        self.stdout: IO[bytes] = self.process.stdout
        os.set_blocking(self.stdout.fileno(), False)
        self.received = b""

    def read_until(self, expected: str) -> str:
        """Everything printed so far, once it is at least as long as ``expected`` (or the
        deadline passed, or the output ended)."""
        wanted = len(expected.encode())
        deadline = time.monotonic() + DEADLINE
        while len(self.received) < wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _readable(self.stdout.fileno(), remaining):
                break
            chunk = os.read(self.stdout.fileno(), 65536)
            if not chunk:
                break
            self.received += chunk
        return self.received.decode()

    def finish(self) -> tuple[int, str, str]:
        """Wait for the end (bounded); exit code, all of standard output, standard error."""
        os.set_blocking(self.stdout.fileno(), True)
        rest, errors = self.process.communicate(timeout=DEADLINE)
        return self.process.returncode, (self.received + rest).decode(), errors.decode()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=DEADLINE)


@pytest.fixture
def follower(zk_hosts: str) -> Iterator[Callable[..., Follower]]:
    started: list[Follower] = []

    def start(*args: str) -> Follower:
        started.append(Follower(zk_hosts, *args))
        return started[-1]

    yield start
    for one in started:
        one.kill()


def test_follow_prints_each_line_once_in_order_until_the_vm_is_removed(
    cluster: ZkStore, vms: None, follower: Callable[..., Follower]
) -> None:
    put(cluster, WEB1, ConsoleBuffer(first=0, lines=("a", "b", "c", "d", "e")))
    run = follower("web1", "-l", "3")
    expected = "c\nd\ne\n"
    assert run.read_until(expected) == expected

    writes = [
        # Repeated identical lines, and a partial line...
        (("same", "same"), "log", "same\nsame\nlog"),
        # ... that grows ...
        ((), "login", "in"),
        # ... and is completed, followed by a blank line and the same line again.
        (("login: root", "", "same"), "", ": root\n\nsame\n"),
        (("same",), "$ ", "same\n$ "),
    ]
    lines = ["a", "b", "c", "d", "e"]
    for new_lines, partial, printed in writes:
        lines += new_lines
        put(cluster, WEB1, ConsoleBuffer(first=0, lines=tuple(lines), partial=partial))
        expected += printed
        assert run.read_until(expected) == expected  # flushed at once, nothing twice

    vm_ops.undefine_vm(cluster, "web1")
    code, stdout, stderr = run.finish()
    assert code == 1
    # The unfinished prompt is ended so that the message stands on its own line.
    assert stdout == expected + "\n"
    assert stderr.splitlines() == ["-- the VM was removed --"]


def test_follow_reports_lines_that_left_the_buffer_unread(
    cluster: ZkStore, vms: None, follower: Callable[..., Follower]
) -> None:
    put(cluster, WEB1, ConsoleBuffer(first=0, lines=("a", "b", "c"), partial="pro"))
    run = follower("web1", "-l", "2")
    expected = "b\nc\npro"
    assert run.read_until(expected) == expected
    # Between two reads the VM wrote so much that positions 3..9 are gone (the partial
    # line "pro" became line 3, gone too): 7 lines skipped, then k and l.
    put(cluster, WEB1, ConsoleBuffer(first=10, lines=("k", "l")))
    expected += "\nk\nl\n"
    assert run.read_until(expected) == expected
    run.process.send_signal(signal.SIGINT)
    code, stdout, stderr = run.finish()
    assert (code, stdout) == (0, expected)
    assert stderr.splitlines() == [
        "-- 7 line(s) skipped: they left the buffer before they were read --"
    ]


def test_follow_ends_cleanly_on_ctrl_c(
    cluster: ZkStore, vms: None, follower: Callable[..., Follower]
) -> None:
    put(cluster, WEB1, BOOT)
    run = follower("web1")  # default: the last 10 lines, so all six and the partial one
    expected = "boot\n\nsame\nsame\n\nlogin ok\nlogin: "
    assert run.read_until(expected) == expected
    run.process.send_signal(signal.SIGINT)
    code, stdout, stderr = run.finish()
    assert (code, stdout, stderr) == (0, expected + "\n", "")  # no traceback, no "Aborted!"


# --------------------------------------------------------------------------- for HTTP clients


def test_console_view_continues_exactly_from_a_position(cluster: ZkStore, vms: None) -> None:
    """The data ``GET /api/v1/vm/<vm>/console`` serves: ``since`` continues exactly."""
    put(cluster, WEB1, ConsoleBuffer(first=10, lines=("a", "b", "b", "")))
    view = vm_ops.console_view(cluster, "web1")
    assert (view["first"], view["next"], view["lines"], view["skipped"]) == (
        10,
        14,
        ["a", "b", "b", ""],
        0,
    )
    assert vm_ops.console_view(cluster, "web1", lines=2)["lines"] == ["b", ""]
    put(cluster, WEB1, ConsoleBuffer(first=12, lines=("b", "", "c", "c"), partial="d"))
    later = vm_ops.console_view(cluster, "web1", since=view["next"])
    assert (later["lines"], later["next"], later["skipped"], later["partial"]) == (
        ["c", "c"],
        16,
        0,
        "d",
    )
    behind = vm_ops.console_view(cluster, "web1", since=11)  # 11 left the buffer unread
    assert (behind["skipped"], behind["lines"][0]) == (1, "b")
    assert vm_ops.console_view(cluster, "quiet")["hint"] == HINT
    with pytest.raises(vm_ops.InvalidInput, match="since must be a position"):
        vm_ops.console_view(cluster, "web1", since=-1)
