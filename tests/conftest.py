"""Shared pytest fixtures: real ZooKeeper servers run by tests/harness/zookeeper.py.

The logic lives in the harness module (reusable from scripts); this file only maps it
onto pytest scopes and teardown.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The venv's pytest script does not put the repository root on sys.path (and tests/ has
# no __init__.py), so make `tests.harness` importable however pytest was launched.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.harness.zookeeper import (  # noqa: E402
    ZooKeeperEnsemble,
    ZooKeeperServer,
    create_chroot,
    delete_chroot,
)


@pytest.fixture(scope="session")
def zookeeper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """One standalone ZooKeeper server shared by the whole session.

    Besides this teardown, the harness stops leftover servers from an atexit handler and
    starts them with a parent-death signal, so an aborted run leaves no JVM behind.
    """
    with ZooKeeperServer(tmp_path_factory.mktemp("zookeeper")) as server:
        yield server


@pytest.fixture
def zk_hosts_factory(zookeeper_server: ZooKeeperServer) -> Iterator[Callable[[], str]]:
    """Make connect strings for fresh, isolated trees (chroots) on the shared server."""
    created: list[str] = []

    def make() -> str:
        hosts = create_chroot(zookeeper_server.hosts)
        created.append(hosts)
        return hosts

    yield make
    for hosts in created:
        delete_chroot(hosts)


@pytest.fixture
def zk_hosts(zk_hosts_factory: Callable[[], str]) -> str:
    """Connect string ``127.0.0.1:PORT/t-<hex>`` whose tree is private to this test."""
    return zk_hosts_factory()


@pytest.fixture
def zookeeper_ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    """A fresh 3-member ensemble, serving, for one test; stopped afterwards."""
    with ZooKeeperEnsemble(tmp_path_factory.mktemp("ensemble")) as ensemble:
        yield ensemble
