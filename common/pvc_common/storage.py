"""Storage adapter: the one module that runs Ceph's ``rbd`` command-line tool.

Two jobs:

* deleting a VM's RBD volumes (``rbd rm``) for ``pvc vm remove``: :class:`RbdCommand`;
* listing and breaking RBD locks for fence recovery and ``pvc vm flush-locks``, and
  checking them before a normal start: :class:`RbdLocks`.

Every call is a subprocess bounded by a timeout, and every failure becomes a
:class:`~pvc_common.errors.PvcError` with a one-line message. Image specs are passed after
``--`` so a name starting with ``-`` can never be taken for an option.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from .errors import NotFound, PreconditionFailed, PvcError

#: What rbd prints (in its last stderr line) when the image or its pool does not exist,
#: or when a lock to release is no longer held; the exit code is then 2 (ENOENT).
_ENOENT_TEXT = "No such file or directory"
_ENOENT_EXIT = 2


def _last_error_line(stderr: str) -> str:
    """The most telling single line of rbd's stderr.

    librbd may log timestamped lines before the tool's own verdict, which starts with
    ``rbd:``; prefer the last such line, else the last non-empty line.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    verdicts = [line for line in lines if line.startswith("rbd:")]
    if verdicts:
        return verdicts[-1]
    return lines[-1] if lines else "no error output"


class _RbdTool:
    """Runs the ``rbd`` executable with fixed extra arguments, environment and timeout.

    ``args`` go before the subcommand, e.g. ``["--conf", "/etc/ceph/ceph.conf", "--id",
    "admin"]``; ``env`` replaces the environment of the child (None: inherit ours).
    """

    #: What the subclass does, for the "not installed" message.
    purpose = "use RBD"

    def __init__(
        self,
        executable: str = "rbd",
        timeout: float = 30.0,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.executable = executable
        self.timeout = timeout
        self.args = tuple(args)
        self.env = dict(env) if env is not None else None

    def check_available(self) -> None:
        """Refuse early, before anything is written, when ``rbd`` is not installed."""
        if shutil.which(self.executable) is None:
            raise PreconditionFailed(
                f"cannot {self.purpose}: {self.executable!r} is not installed here "
                "(install ceph-common)"
            )

    def _run(self, what: str, *command: str) -> subprocess.CompletedProcess[str]:
        """Run ``rbd ARGS COMMAND``; raise a one-line PvcError naming ``what`` if it cannot.

        Only failing to run at all (no executable, timeout) raises here; exit codes are
        for the caller to interpret. On timeout subprocess.run kills the child, so a
        wedged Ceph connection never outlives the call.
        """
        try:
            return subprocess.run(
                [self.executable, *self.args, *command],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=self.env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PvcError(
                f"{what} timed out after {self.timeout:g} s (is the Ceph cluster reachable?)"
            ) from None
        except OSError as error:
            raise PvcError(f"{what} failed: {error}") from None


class VolumeRemover(Protocol):
    """What :func:`pvc_common.vm_ops.remove_vm` needs of a storage backend."""

    def check_available(self) -> None:
        """Raise :class:`PreconditionFailed` when volumes cannot be deleted from here."""

    def remove(self, volume: str) -> None:
        """Delete ``pool/volume``; a volume that is already gone is not an error."""


class RbdCommand(_RbdTool):
    """Deletes RBD volumes through the ``rbd`` command-line tool (Debian's ceph-common)."""

    def __init__(
        self,
        executable: str = "rbd",
        timeout: float = 300.0,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        # Deleting a big volume removes every object: allow minutes, not seconds.
        super().__init__(executable, timeout, args=args, env=env)

    def check_available(self) -> None:
        """Refuse early, before anything is written, when ``rbd`` is not installed."""
        if shutil.which(self.executable) is None:
            raise PreconditionFailed(
                f"cannot delete RBD volumes: {self.executable!r} is not installed here "
                "(install ceph-common, or use 'undefine' to keep the disks)"
            )

    def remove(self, volume: str) -> None:
        """Run ``rbd rm pool/volume``; exit code 2 with ENOENT means it was already gone."""
        result = self._run(f"rbd rm {volume}", "rm", "--no-progress", "--", volume)
        if result.returncode == 0:
            return
        if result.returncode == _ENOENT_EXIT and "No such file" in result.stderr:
            return
        last_line = (result.stderr.strip().splitlines() or ["no error output"])[-1]
        raise PvcError(f"rbd rm {volume} exited {result.returncode}: {last_line}")


# --------------------------------------------------------------------------------------
# Locks


@dataclass(frozen=True)
class RbdLock:
    """One lock on an RBD image, as ``rbd lock list --format json`` reports it.

    ``lock_id`` is whatever the holder chose; librbd's own exclusive lock (taken by QEMU
    for images with the exclusive-lock feature) shows as ``auto <cookie>``. ``locker`` is
    the holder's client instance (``client.4123``) and ``address`` its client address
    ``IP:PORT/NONCE``: the nonce tells apart clients on the same host, and this address
    is what breaking the lock blocklists.
    """

    image: str
    lock_id: str
    locker: str
    address: str

    @property
    def host(self) -> str:
        """The IP part of :attr:`address` (``10.0.0.1`` of ``10.0.0.1:0/123``)."""
        return _address_host(self.address)

    @property
    def is_exclusive_lock(self) -> bool:
        """True for librbd's built-in exclusive lock (id ``auto <cookie>``)."""
        return self.lock_id.startswith("auto ")

    def describe(self) -> str:
        """``client.4123 at 10.0.0.1:0/123`` for messages."""
        return f"{self.locker} at {self.address}"


def _address_host(address: str) -> str:
    """Host part of a Ceph entity address: ``IP:PORT/NONCE`` or ``[v6]:PORT/NONCE``."""
    hostport = address.split("/", 1)[0]
    if hostport.startswith("["):
        return hostport[1:].split("]", 1)[0]
    return hostport.rsplit(":", 1)[0]


LockStatus = Literal["cleared", "none", "error"]


@dataclass(frozen=True)
class LockOutcome:
    """What clearing the locks of one image did.

    ``status`` is ``cleared`` (``cleared`` lists the locks broken), ``none`` (no lock was
    held, or it was released meanwhile) or ``error`` (``reason`` says why; ``cleared``
    lists any locks broken before the failure).
    """

    image: str
    status: LockStatus
    cleared: tuple[RbdLock, ...] = ()
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True unless clearing this image failed."""
        return self.status != "error"

    @property
    def message(self) -> str:
        """One line for logs and the CLI, e.g. ``rbd/vm1: cleared 1 lock (client.4 at ...)``."""
        holders = ", ".join(lock.describe() for lock in self.cleared)
        count = len(self.cleared)
        noun = "lock" if count == 1 else "locks"
        if self.status == "cleared":
            return f"{self.image}: cleared {count} {noun} ({holders})"
        if self.status == "none":
            return f"{self.image}: no lock held"
        done = f" after clearing {count} {noun} ({holders})" if count else ""
        return f"{self.image}: error{done}: {self.reason}"


def parse_lock_list(image: str, output: str) -> list[RbdLock]:
    """Parse ``rbd lock list --format json`` output for ``image``.

    The shape is ``[{"id": ..., "locker": "client.N", "address": "IP:0/NONCE"}, ...]``
    (``[]`` when unlocked). Raises :class:`PvcError` on anything else rather than guess:
    a misread lock list could let a start go ahead next to a live holder.
    """
    try:
        entries = json.loads(output)
        if not isinstance(entries, list):
            raise TypeError("not a list")
        return [
            RbdLock(
                image=image,
                lock_id=_text(entry, "id"),
                locker=_text(entry, "locker"),
                address=_text(entry, "address"),
            )
            for entry in entries
        ]
    except (ValueError, TypeError, KeyError) as error:
        raise PvcError(
            f"rbd lock list {image}: unexpected output ({error}): {output.strip()[:200]!r}"
        ) from None


def _text(entry: object, key: str) -> str:
    if not isinstance(entry, dict):
        raise TypeError(f"entry {entry!r} is not an object")
    value = entry[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} is not a string")
    return value


class RbdLocks(_RbdTool):
    """Lists and breaks RBD image locks with the ``rbd lock`` commands.

    One implementation serves fence recovery (clear the locks a fenced node's VMs held,
    then start them elsewhere), ``pvc vm flush-locks`` (the same, on request, for a VM
    that is not running) and the check before a normal start (:meth:`held_by_others`,
    which never breaks anything).

    Breaking a lock keeps rbd's default ``rbd_blocklist_on_break_lock = true``: rbd adds
    the holder's client address to the OSD blocklist (for
    ``mon_osd_blocklist_default_expire``, one hour by default) before it removes the lock.
    That is deliberate. Locks are only broken for holders believed dead; if one is not
    (a fenced node that still has a network path to Ceph, a QEMU that hung but wakes up),
    the blocklist guarantees its writes fail (errno 108) instead of interleaving with the
    writes of the VM started elsewhere, which would corrupt the disk. Without it, the old
    client could also take the lock back. The Ceph user therefore needs the mon
    permission to blocklist (``profile rbd`` includes it); if blocklisting fails, rbd
    leaves the lock in place and this class reports the error.
    """

    purpose = "manage RBD locks"

    def list_locks(self, image: str) -> list[RbdLock]:
        """The locks held on ``image`` (``pool/volume``); ``[]`` when none.

        Raises :class:`NotFound` when the image or its pool does not exist, and
        :class:`PvcError` for any other failure (unreachable cluster, timeout, ...).
        """
        what = f"rbd lock list {image}"
        result = self._run(what, "lock", "list", "--format", "json", "--", image)
        if result.returncode == 0:
            return parse_lock_list(image, result.stdout)
        detail = _last_error_line(result.stderr)
        if result.returncode == _ENOENT_EXIT and _ENOENT_TEXT in result.stderr:
            raise NotFound(f"RBD image {image} does not exist ({detail})")
        raise PvcError(f"{what} exited {result.returncode}: {detail}")

    def remove_lock(self, lock: RbdLock) -> bool:
        """Break ``lock`` (and blocklist its holder, see the class docstring).

        Returns True if this call removed it, False if it was already gone (released,
        broken by someone else, or the image was deleted: exit 2, ENOENT). Raises
        :class:`PvcError` for any other failure.
        """
        what = f"rbd lock remove {lock.image} {lock.lock_id!r} {lock.locker}"
        result = self._run(what, "lock", "remove", "--", lock.image, lock.lock_id, lock.locker)
        if result.returncode == 0:
            return True
        if result.returncode == _ENOENT_EXIT and _ENOENT_TEXT in result.stderr:
            return False
        raise PvcError(f"{what} exited {result.returncode}: {_last_error_line(result.stderr)}")

    def clear_image(self, image: str) -> LockOutcome:
        """Break every lock on one image; failures become an ``error`` outcome, not raises."""
        cleared: list[RbdLock] = []
        try:
            for lock in self.list_locks(image):
                if self.remove_lock(lock):
                    cleared.append(lock)
        except PvcError as error:
            return LockOutcome(image, "error", tuple(cleared), error.message)
        return LockOutcome(image, "cleared" if cleared else "none", tuple(cleared))

    def clear_locks(self, images: Sequence[str]) -> list[LockOutcome]:
        """Break every lock on each image, one outcome per image, in order.

        One image failing (missing, unreachable, a lock that cannot be broken) never
        stops the others: after a fence, every VM disk that can be freed should be.
        Duplicate specs are handled once.
        """
        return [self.clear_image(image) for image in dict.fromkeys(images)]

    def held_by_others(
        self, images: Sequence[str], *, own_hosts: Collection[str] = ()
    ) -> list[RbdLock]:
        """The locks on ``images`` that would make a normal start unsafe.

        Never breaks a lock: the caller refuses the start with a reason naming each
        holder (:meth:`RbdLock.describe`), and an operator who knows the holder is dead
        clears it with ``pvc vm flush-locks``. Locks from an address in ``own_hosts``
        (IPs of the starting node) are left out; by default every lock counts.

        Raises :class:`NotFound` for a missing image and :class:`PvcError` when locks
        cannot be listed: an unknown lock state is never reported as "free".
        """
        own = set(own_hosts)
        held: list[RbdLock] = []
        for image in dict.fromkeys(images):
            held.extend(lock for lock in self.list_locks(image) if lock.host not in own)
        return held
