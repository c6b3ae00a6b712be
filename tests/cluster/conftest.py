"""Fixtures for tests on real libvirtd hosts running the tiny QEMU guest.

The logic lives in tests/harness/hypervisor.py and tests/harness/guest.py (shared with
scripts); this file maps it onto pytest scopes and makes sure every host a test starts
is stopped, guests included, whatever the test's outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.harness.guest import DEFAULT_CACHE_DIR, GuestImage, build_guest_image
from tests.harness.hypervisor import DEFAULT_CAPABILITY_CACHE, LibvirtHost

#: Make a started, ready host: ``host_factory("hv1")`` (keyword arguments go to
#: LibvirtHost). Its files are under a short per-test directory (unix socket paths are
#: limited to 107 bytes).
HostFactory = Callable[..., LibvirtHost]


@pytest.fixture(scope="session", autouse=True)
def _quiet_libvirt() -> None:
    """libvirt-python prints every error to stderr by default; exceptions carry them."""
    libvirt.registerErrorHandler(lambda *args: None, None)


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The guest kernel and initramfs, built once (and cached across runs in .cache/)."""
    return build_guest_image(DEFAULT_CACHE_DIR)


@pytest.fixture(scope="session")
def capability_cache() -> Path:
    """QEMU capability cache shared by all hosts (and runs): only the first start probes."""
    return DEFAULT_CAPABILITY_CACHE


@pytest.fixture
def host_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short directory for one test's hosts and console logs."""
    return tmp_path_factory.mktemp("hv")


@pytest.fixture
def host_factory(host_workdir: Path, capability_cache: Path) -> Iterator[HostFactory]:
    """Start libvirtd hosts on demand; all of them are stopped (guests too) at teardown."""
    hosts: list[LibvirtHost] = []

    def make(name: str, **kwargs: Any) -> LibvirtHost:
        kwargs.setdefault("capability_cache", capability_cache)
        host = LibvirtHost(host_workdir, name, **kwargs)
        hosts.append(host)
        host.start()
        host.wait_ready()
        return host

    yield make
    errors: list[BaseException] = []
    for host in reversed(hosts):
        try:
            host.stop()
        except Exception as exc:  # stop the others anyway, then report
            errors.append(exc)
    if errors:
        raise errors[0]
