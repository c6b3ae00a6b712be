"""RBD lock handling (pvc_common.storage.RbdLocks) against a fake ``rbd`` executable.

The fake is a small script written by each test: it answers from a table of expected
command lines (exit code, stdout, stderr, optional delay) and records every call, so the
tests check both how output is parsed and exactly what would be run. The JSON shapes and
error texts are the ones Ceph 16.2's ``rbd`` prints (recorded from a real cluster;
tests/cluster/test_rbd_locks.py runs the same code against one).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pvc_common.errors import NotFound, PreconditionFailed, PvcError
from pvc_common.storage import (
    LockOutcome,
    RbdCommand,
    RbdLock,
    RbdLocks,
    parse_lock_list,
)

EXCLUSIVE = {"id": "auto 139974661917008", "locker": "client.4155", "address": "10.0.0.2:0/13787"}
MANUAL = {"id": "pvc", "locker": "client.4117", "address": "10.0.0.1:0/1349001072"}
ENOENT_IMAGE = "rbd: error opening image missing: (2) No such file or directory\n"
ENOENT_POOL = "rbd: error opening pool 'nopool': (2) No such file or directory\n"
ENOENT_LOCK = "rbd: releasing lock failed: (2) No such file or directory\n"

FAKE_RBD = """\
#!{python}
import json, os, sys, time
from pathlib import Path

here = Path(__file__)
argv = sys.argv[1:]
with open(here.with_suffix(".log"), "a") as log:
    log.write(json.dumps({{"argv": argv, "conf": os.environ.get("CEPH_CONF")}}) + "\\n")
for expected, answer in json.loads(here.with_suffix(".json").read_text()):
    if expected == argv:
        time.sleep(answer.get("sleep", 0))
        sys.stdout.write(answer.get("stdout", ""))
        sys.stderr.write(answer.get("stderr", ""))
        sys.exit(answer.get("rc", 0))
sys.stderr.write("rbd: fake has no answer for " + " ".join(argv) + "\\n")
sys.exit(99)
"""

#: Arguments every call gets before the subcommand (like a real --conf/--id).
EXTRA = ["--conf", "/etc/pvc/ceph.conf", "--id", "pvc"]


@dataclass
class FakeRbd:
    """A fake ``rbd`` in a temporary directory, its answer table and its call log."""

    path: Path
    answers: list[tuple[list[str], dict[str, Any]]] = field(default_factory=list)

    def answer(self, argv: list[str], rc: int = 0, stdout: Any = "", **extra: Any) -> None:
        """Answer ``rbd EXTRA ARGV``; a non-string stdout is dumped as JSON."""
        text = stdout if isinstance(stdout, str) else json.dumps(stdout)
        self.answers.append(([*EXTRA, *argv], {"rc": rc, "stdout": text, **extra}))
        self.path.with_suffix(".json").write_text(json.dumps(self.answers))

    def lock_list(self, image: str, locks: list[dict[str, str]]) -> None:
        self.answer(["lock", "list", "--format", "json", "--", image], stdout=locks)

    def lock_remove(self, image: str, lock: dict[str, str], rc: int = 0, stderr: str = "") -> None:
        self.answer(
            ["lock", "remove", "--", image, lock["id"], lock["locker"]], rc=rc, stderr=stderr
        )

    def calls(self) -> list[list[str]]:
        """Argument lists of every call, without EXTRA (asserted to be there)."""
        log = self.path.with_suffix(".log")
        lines = log.read_text().splitlines() if log.exists() else []
        calls = [json.loads(line)["argv"] for line in lines]
        for call in calls:
            assert call[: len(EXTRA)] == EXTRA
        return [call[len(EXTRA) :] for call in calls]

    def locks(self, **kwargs: Any) -> RbdLocks:
        return RbdLocks(str(self.path), args=EXTRA, **kwargs)


@pytest.fixture
def fake(tmp_path: Path) -> FakeRbd:
    path = tmp_path / "rbd"
    path.write_text(FAKE_RBD.format(python=sys.executable))
    path.chmod(0o755)
    fake = FakeRbd(path)
    path.with_suffix(".json").write_text("[]")
    return fake


def one_line(text: str) -> bool:
    return "\n" not in text and text == text.strip() and text != ""


# --------------------------------------------------------------------------------------
# Parsing


def test_parse_built_in_exclusive_lock() -> None:
    [lock] = parse_lock_list("vms/web1_disk0", json.dumps([EXCLUSIVE]))
    assert lock == RbdLock(
        "vms/web1_disk0", "auto 139974661917008", "client.4155", EXCLUSIVE["address"]
    )
    assert lock.is_exclusive_lock
    assert lock.host == "10.0.0.2"
    assert lock.describe() == "client.4155 at 10.0.0.2:0/13787"


def test_parse_empty_and_several_locks() -> None:
    assert parse_lock_list("vms/a", "[]\n") == []
    shared = [MANUAL, {"id": "s2", "locker": "client.9", "address": "[fd00::1]:0/7"}]
    locks = parse_lock_list("vms/a", json.dumps(shared))
    assert [lock.lock_id for lock in locks] == ["pvc", "s2"]
    assert not locks[0].is_exclusive_lock
    assert [lock.host for lock in locks] == ["10.0.0.1", "fd00::1"]


@pytest.mark.parametrize(
    "output",
    [
        "",
        "There is 1 exclusive lock on this image.",
        '{"id": "x"}',
        '[{"id": "x", "locker": "client.1"}]',
        '[{"id": 5, "locker": "client.1", "address": "a"}]',
        '["client.1"]',
    ],
)
def test_parse_rejects_unexpected_output(output: str) -> None:
    with pytest.raises(PvcError) as raised:
        parse_lock_list("vms/a", output)
    assert raised.value.message.startswith("rbd lock list vms/a: unexpected output")
    assert one_line(raised.value.message)


# --------------------------------------------------------------------------------------
# list_locks


def test_list_locks_runs_rbd_with_extra_args_env_and_end_of_options(fake: FakeRbd) -> None:
    fake.lock_list("vms/-odd", [EXCLUSIVE])
    locks = fake.locks(env={"CEPH_CONF": "/from/env", "PATH": "/usr/bin:/bin"})
    assert [lock.locker for lock in locks.list_locks("vms/-odd")] == ["client.4155"]
    # "--" before the image: a name starting with "-" is never read as an option.
    assert fake.calls() == [["lock", "list", "--format", "json", "--", "vms/-odd"]]
    log = fake.path.with_suffix(".log").read_text()
    assert json.loads(log.splitlines()[0])["conf"] == "/from/env"


def test_list_locks_empty(fake: FakeRbd) -> None:
    fake.lock_list("vms/free", [])
    assert fake.locks().list_locks("vms/free") == []


@pytest.mark.parametrize(
    ("image", "stderr"), [("vms/missing", ENOENT_IMAGE), ("nopool/x", ENOENT_POOL)]
)
def test_list_locks_missing_image_or_pool_is_not_found(
    fake: FakeRbd, image: str, stderr: str
) -> None:
    # librbd may log a timestamped line before the tool's own "rbd:" verdict.
    noise = "2026-01-01T00:00:00.000+0000 7f00 -1 librbd::ImageCtx: open failed\n"
    fake.answer(["lock", "list", "--format", "json", "--", image], rc=2, stderr=noise + stderr)
    with pytest.raises(NotFound) as raised:
        fake.locks().list_locks(image)
    message = raised.value.message
    assert message == f"RBD image {image} does not exist ({stderr.strip()})"
    assert one_line(message)


def test_list_locks_other_failure_is_one_line(fake: FakeRbd) -> None:
    stderr = (
        "2026-01-01T00:00:00.000+0000 7f2e -1 monclient(hunting): handle_auth_bad_method\n"
        "\n"
        "rbd: couldn't connect to the cluster!\n"
    )
    fake.answer(["lock", "list", "--format", "json", "--", "vms/a"], rc=13, stderr=stderr)
    with pytest.raises(PvcError) as raised:
        fake.locks().list_locks("vms/a")
    assert not isinstance(raised.value, NotFound)
    assert (
        raised.value.message
        == "rbd lock list vms/a exited 13: rbd: couldn't connect to the cluster!"
    )


def test_list_locks_timeout_kills_rbd_and_says_so(fake: FakeRbd) -> None:
    fake.answer(["lock", "list", "--format", "json", "--", "vms/a"], stdout="[]", sleep=30)
    with pytest.raises(PvcError) as raised:
        fake.locks(timeout=0.5).list_locks("vms/a")
    assert raised.value.message == (
        "rbd lock list vms/a timed out after 0.5 s (is the Ceph cluster reachable?)"
    )


def test_missing_executable(tmp_path: Path) -> None:
    locks = RbdLocks(str(tmp_path / "no-rbd-here"))
    with pytest.raises(PreconditionFailed, match="cannot manage RBD locks: .* is not installed"):
        locks.check_available()
    with pytest.raises(PvcError) as raised:
        locks.list_locks("vms/a")
    assert raised.value.message.startswith("rbd lock list vms/a failed: [Errno 2]")


# --------------------------------------------------------------------------------------
# remove_lock


def test_remove_lock_keeps_rbds_blocklisting(fake: FakeRbd) -> None:
    fake.lock_remove("vms/a", EXCLUSIVE)
    lock = parse_lock_list("vms/a", json.dumps([EXCLUSIVE]))[0]
    assert fake.locks().remove_lock(lock) is True
    # The lock id "auto <cookie>" stays one argument, and nothing turns blocklisting off.
    assert fake.calls() == [
        ["lock", "remove", "--", "vms/a", "auto 139974661917008", "client.4155"]
    ]


def test_remove_lock_already_gone_is_fine(fake: FakeRbd) -> None:
    fake.lock_remove("vms/a", MANUAL, rc=2, stderr=ENOENT_LOCK)
    lock = parse_lock_list("vms/a", json.dumps([MANUAL]))[0]
    assert fake.locks().remove_lock(lock) is False


def test_remove_lock_failure(fake: FakeRbd) -> None:
    # E.g. a Ceph user without the right to blocklist: rbd then keeps the lock.
    stderr = "rbd: releasing lock failed: (13) Permission denied\n"
    fake.lock_remove("vms/a", MANUAL, rc=13, stderr=stderr)
    lock = parse_lock_list("vms/a", json.dumps([MANUAL]))[0]
    with pytest.raises(PvcError) as raised:
        fake.locks().remove_lock(lock)
    assert raised.value.message == (
        "rbd lock remove vms/a 'pvc' client.4117 exited 13: "
        "rbd: releasing lock failed: (13) Permission denied"
    )


# --------------------------------------------------------------------------------------
# clear_locks


def test_clear_locks_reports_each_image_and_never_stops_early(fake: FakeRbd) -> None:
    second = {"id": "other", "locker": "client.7", "address": "10.0.0.3:0/99"}
    fake.answer(
        ["lock", "list", "--format", "json", "--", "vms/missing"], rc=2, stderr=ENOENT_IMAGE
    )
    fake.lock_list("vms/locked", [EXCLUSIVE, second])
    fake.lock_remove("vms/locked", EXCLUSIVE)
    fake.lock_remove("vms/locked", second, rc=2, stderr=ENOENT_LOCK)  # released meanwhile
    fake.lock_list("vms/free", [])
    fake.lock_list("vms/stuck", [MANUAL, second])
    fake.lock_remove("vms/stuck", MANUAL)
    fake.lock_remove("vms/stuck", second, rc=1, stderr="rbd: releasing lock failed: (5) EIO\n")
    fake.lock_list("vms/gone-meanwhile", [MANUAL])
    fake.lock_remove("vms/gone-meanwhile", MANUAL, rc=2, stderr=ENOENT_LOCK)

    images = ["vms/missing", "vms/locked", "vms/free", "vms/stuck", "vms/gone-meanwhile"]
    outcomes = fake.locks().clear_locks([*images, "vms/free"])

    assert [outcome.image for outcome in outcomes] == images  # order kept, duplicate once
    missing, locked, free, stuck, gone = outcomes
    assert missing.status == "error" and not missing.ok
    assert missing.reason.startswith("RBD image vms/missing does not exist")
    assert locked == LockOutcome(
        "vms/locked", "cleared", (parse_lock_list("vms/locked", json.dumps([EXCLUSIVE]))[0],)
    )
    assert locked.message == "vms/locked: cleared 1 lock (client.4155 at 10.0.0.2:0/13787)"
    assert free == LockOutcome("vms/free", "none") and free.ok
    assert free.message == "vms/free: no lock held"
    assert stuck.status == "error" and [lock.lock_id for lock in stuck.cleared] == ["pvc"]
    assert stuck.message == (
        "vms/stuck: error after clearing 1 lock (client.4117 at 10.0.0.1:0/1349001072): "
        "rbd lock remove vms/stuck 'other' client.7 exited 1: rbd: releasing lock failed: (5) EIO"
    )
    assert gone.status == "none"
    assert all(one_line(outcome.message) for outcome in outcomes)


def test_clear_locks_of_nothing(fake: FakeRbd) -> None:
    assert fake.locks().clear_locks([]) == []
    assert fake.calls() == []


# --------------------------------------------------------------------------------------
# held_by_others


def test_held_by_others_lists_holders_without_breaking_anything(fake: FakeRbd) -> None:
    fake.lock_list("vms/a", [EXCLUSIVE])
    fake.lock_list("vms/b", [])
    fake.lock_list("vms/c", [MANUAL])
    locks = fake.locks()
    held = locks.held_by_others(["vms/a", "vms/b", "vms/c"])
    assert [(lock.image, lock.locker) for lock in held] == [
        ("vms/a", "client.4155"),
        ("vms/c", "client.4117"),
    ]
    assert all(call[:2] == ["lock", "list"] for call in fake.calls())
    # Locks taken from the starting node's own address can be left out.
    assert locks.held_by_others(["vms/a", "vms/c"], own_hosts={"10.0.0.1"}) == held[:1]


def test_held_by_others_never_reports_an_unknown_state_as_free(fake: FakeRbd) -> None:
    fake.answer(
        ["lock", "list", "--format", "json", "--", "vms/missing"], rc=2, stderr=ENOENT_IMAGE
    )
    fake.answer(["lock", "list", "--format", "json", "--", "vms/x"], rc=1, stderr="rbd: boom\n")
    with pytest.raises(NotFound):
        fake.locks().held_by_others(["vms/missing"])
    with pytest.raises(PvcError, match="exited 1: rbd: boom$"):
        fake.locks().held_by_others(["vms/x"])


# --------------------------------------------------------------------------------------
# RbdCommand (volume removal) shares the runner


def test_rbd_command_remove(fake: FakeRbd) -> None:
    fake.answer(["rm", "--no-progress", "--", "vms/a"])
    fake.answer(["rm", "--no-progress", "--", "vms/gone"], rc=2, stderr=ENOENT_IMAGE)
    fake.answer(
        ["rm", "--no-progress", "--", "vms/busy"],
        rc=16,
        stderr="rbd: error: image still has watchers\n",
    )
    remover = RbdCommand(str(fake.path), args=EXTRA)
    remover.remove("vms/a")
    remover.remove("vms/gone")
    with pytest.raises(
        PvcError, match=r"^rbd rm vms/busy exited 16: rbd: error: image still has watchers$"
    ):
        remover.remove("vms/busy")
