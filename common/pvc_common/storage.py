"""Storage adapter: deleting a VM's Ceph RBD volumes with the ``rbd`` command."""

from __future__ import annotations

import shutil
import subprocess
from typing import Protocol

from .errors import PreconditionFailed, PvcError


class VolumeRemover(Protocol):
    """What :func:`pvc_common.vm_ops.remove_vm` needs of a storage backend."""

    def check_available(self) -> None:
        """Raise :class:`PreconditionFailed` when volumes cannot be deleted from here."""

    def remove(self, volume: str) -> None:
        """Delete ``pool/volume``; a volume that is already gone is not an error."""


class RbdCommand:
    """Deletes RBD volumes through the ``rbd`` command-line tool (Debian's ceph-common)."""

    def __init__(self, executable: str = "rbd", timeout: float = 300.0) -> None:
        self.executable = executable
        self.timeout = timeout

    def check_available(self) -> None:
        """Refuse early, before anything is written, when ``rbd`` is not installed."""
        if shutil.which(self.executable) is None:
            raise PreconditionFailed(
                f"cannot delete RBD volumes: {self.executable!r} is not installed here "
                "(install ceph-common, or use 'undefine' to keep the disks)"
            )

    def remove(self, volume: str) -> None:
        """Run ``rbd rm pool/volume``; exit code 2 with ENOENT means it was already gone."""
        try:
            result = subprocess.run(
                [self.executable, "rm", "--no-progress", volume],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PvcError(f"rbd rm {volume} failed: {error}") from None
        if result.returncode == 0:
            return
        if result.returncode == 2 and "No such file" in result.stderr:
            return
        last_line = (result.stderr.strip().splitlines() or ["no error output"])[-1]
        raise PvcError(f"rbd rm {volume} exited {result.returncode}: {last_line}")
