"""The ZooKeeper adapter (pvc_common.store.ZkStore) against a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pvc_common.errors import Conflict, NotFound, StoreUnavailable
from pvc_common.store import Check, Create, Delete, Op, Read, SetData, ZkStore
from tests.harness.zookeeper import ZooKeeperServer, find_free_port, wait_until

# --------------------------------------------------------------------------- helpers


def tree(store: ZkStore) -> dict[str, tuple[bytes, int]]:
    """Every znode of the store's tree with its data and version."""
    paths = store.descendants("/")
    reads = store.read_many(paths)
    return {
        path: (read.data, read.version) for path, read in zip(paths, reads, strict=True) if read
    }


def create_many(store: ZkStore, ops: list[Op], batch: int = 500) -> None:
    for start in range(0, len(ops), batch):
        store.commit(ops[start : start + batch])


class Outcome:
    """What a call made in a background thread did: returned, raised, or is still blocked."""

    def __init__(self, name: str, call: Callable[[], Any]) -> None:
        self.name = name
        self.result: Any = None
        self.error: BaseException | None = None
        self.elapsed: float | None = None
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as error:
            self.error = error
        finally:
            self.elapsed = time.monotonic() - self._started

    def join(self, deadline: float) -> None:
        self._thread.join(max(deadline - time.monotonic(), 0.0))

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    """A standalone server of this test alone (it gets paused, so never the shared one)."""
    server = ZooKeeperServer(tmp_path / "zk")
    try:
        server.start()
        server.wait_serving()
        yield server
    finally:
        server.stop()  # also continues a paused server before stopping it
    assert not server.is_alive()


# --------------------------------------------------------------------------- read_many


@pytest.mark.parametrize("multi_read", [True, False], ids=["multi-read", "pipelined-gets"])
def test_read_many_of_1500_paths_matches_single_gets(store: ZkStore, multi_read: bool) -> None:
    # The pipelined-gets variant is the fallback for servers older than ZooKeeper 3.6.
    store._multi_read_supported = multi_read
    store.commit([Create("/many")])
    paths = [f"/many/k{i:04d}" for i in range(1500)]
    missing = {path for i, path in enumerate(paths) if i % 7 == 3}
    creates: list[Op] = [
        Create(path, b"" if i % 11 == 0 else f"value-{i}".encode())
        for i, path in enumerate(paths)
        if path not in missing
    ]
    create_many(store, creates)
    # Give some znodes versions above 0 (each SetData in a transaction bumps the version).
    bumped = [path for i, path in enumerate(paths) if i % 13 == 0 and path not in missing]
    store.commit([SetData(path, b"v1") for path in bumped] + [SetData(bumped[0], b"v2")])

    reads = store.read_many(paths)

    assert len(reads) == len(paths)
    for path, read in zip(paths, reads, strict=True):
        if path in missing:
            assert read is None, path
            with pytest.raises(NotFound):
                store.get(path)
        else:
            assert read == store.get(path), path
    assert reads[0] == Read(b"v2", 2)
    assert reads[13] == Read(b"v1", 1)
    assert reads[11] == Read(b"", 0)
    assert reads[1] == Read(b"value-1", 0)
    assert sum(read is None for read in reads) == len(missing) > 200


def test_read_many_returns_a_large_value_intact(store: ZkStore) -> None:
    big = bytes(range(256)) * 800  # 204,800 bytes: above 100 KB, below ZooKeeper's 1 MiB
    store.commit([Create("/big", big), Create("/small", b"s")])

    before, value, after = store.read_many(["/small", "/big", "/nothing"])

    assert value == Read(big, 0) == store.get("/big")
    assert before == Read(b"s", 0)
    assert after is None


def test_read_many_of_nothing_is_an_empty_list(store: ZkStore) -> None:
    assert store.read_many([]) == []


# --------------------------------------------------------------------------- commit


def test_commit_applies_every_op(store: ZkStore) -> None:
    store.commit([Create("/a", b"a0"), Create("/gone", b"x")])

    store.commit(
        [
            Create("/p", b"parent"),
            Create("/p/c", b"child"),
            SetData("/a", b"a1", 0),
            Check("/a", 1),
            Delete("/gone", 0),
        ]
    )

    assert tree(store) == {
        "/a": (b"a1", 1),
        "/p": (b"parent", 0),
        "/p/c": (b"child", 0),
    }


def test_commit_is_all_or_nothing(store: ZkStore) -> None:
    store.commit([Create("/a", b"a0"), Create("/b", b"b0"), Create("/c", b"c0")])
    store.commit([SetData("/c", b"c1")])  # /c is at version 1 now
    before = tree(store)

    with pytest.raises(Conflict) as excinfo:
        store.commit(
            [
                Create("/new1", b"n1"),
                SetData("/a", b"a1", 0),
                Delete("/b"),
                Create("/new1/child", b"n2"),
                SetData("/c", b"c2", 0),  # stale version: fails last
            ]
        )

    assert str(excinfo.value) == "/c was changed by another writer"
    assert tree(store) == before
    assert not store.exists("/new1")
    assert store.get("/a") == Read(b"a0", 0)
    assert store.get("/b") == Read(b"b0", 0)


@pytest.mark.parametrize(
    ("failing_op", "message"),
    [
        (SetData("/x", b"new", 3), "/x was changed by another writer"),
        (Check("/x", 7), "/x was changed by another writer"),
        (Create("/x", b"again"), "/x already exists"),
        (SetData("/missing", b"v"), "/missing does not exist (removed by another writer?)"),
        (Delete("/missing"), "/missing does not exist (removed by another writer?)"),
        (Check("/missing", 0), "/missing does not exist (removed by another writer?)"),
        (Delete("/x"), "/x gained children from another writer"),
    ],
    ids=[
        "bad-version",
        "check-bad-version",
        "node-exists",
        "set-missing",
        "delete-missing",
        "check-missing",
        "not-empty",
    ],
)
def test_commit_conflict_names_the_failing_op(store: ZkStore, failing_op: Op, message: str) -> None:
    store.commit([Create("/x", b"x"), Create("/x/child"), Create("/ok", b"ok")])
    before = tree(store)

    # A good op before and after the failing one: the message must name the failing path.
    with pytest.raises(Conflict) as excinfo:
        store.commit([SetData("/ok", b"changed"), failing_op, Create("/later", b"l")])

    assert type(excinfo.value) is Conflict
    assert str(excinfo.value) == message
    assert excinfo.value.exit_code == 4
    assert tree(store) == before


def test_commit_of_no_ops_writes_nothing(store: ZkStore) -> None:
    store.commit([Create("/a", b"a")])
    store.commit([])
    assert tree(store) == {"/a": (b"a", 0)}


# --------------------------------------------------------------------------- plain reads


def test_get_and_children_of_a_missing_path_raise_not_found(store: ZkStore) -> None:
    with pytest.raises(NotFound, match=r"^/nope does not exist$"):
        store.get("/nope")
    with pytest.raises(NotFound, match=r"^/nope/deeper does not exist$"):
        store.children("/nope/deeper")
    assert store.exists("/nope") is False
    assert store.children_many(["/nope"]) == [None]


def test_children_are_sorted(store: ZkStore) -> None:
    store.commit([Create("/r")] + [Create(f"/r/{name}") for name in ("b", "a", "c10", "c2")])
    assert store.children("/r") == ["a", "b", "c10", "c2"]


def test_descendants_lists_parents_before_children(store: ZkStore) -> None:
    paths = [
        "/t",
        "/t/z",
        "/t/a",
        "/t/a/b",
        "/t/a/b/c",
        "/t/a/b/c/d",
        "/t/m",
        "/t/m/n",
        "/t/z/y",
        "/u",
    ]
    store.commit([Create(path) for path in paths])

    found = store.descendants("/t")

    assert sorted(found) == sorted(p for p in paths if p.startswith("/t/"))
    assert len(found) == len(set(found))
    for index, path in enumerate(found):
        parent = path.rsplit("/", 1)[0]
        if parent != "/t":
            assert parent in found[:index], f"{parent} listed after its child {path}: {found}"
    assert store.descendants("/t/a/b/c/d") == []
    root = store.descendants("/")
    assert set(root) == set(paths)
    assert root.index("/t") < root.index("/t/a") < root.index("/t/a/b/c/d")


# --------------------------------------------------------------------------- unavailability


def test_connect_to_a_port_where_nothing_listens_raises_store_unavailable() -> None:
    hosts = f"127.0.0.1:{find_free_port()}"
    store = ZkStore(hosts, timeout=1)
    started = time.monotonic()

    with pytest.raises(StoreUnavailable) as excinfo:
        store.connect()

    elapsed = time.monotonic() - started
    assert elapsed < 10, f"connect took {elapsed:.1f} s with timeout=1"
    assert hosts in str(excinfo.value)
    assert excinfo.value.exit_code == 6
    with pytest.raises(StoreUnavailable), ZkStore(hosts, timeout=1):
        pass


def test_read_many_on_a_paused_server_times_out_then_recovers(
    private_server: ZooKeeperServer,
) -> None:
    timeout = 1.0
    with ZkStore(private_server.hosts, timeout=timeout) as store:
        store.commit([Create("/k", b"kept"), Create("/k/c", b"child")])
        private_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="did not answer in 1 s"):
                store.read_many(["/k", "/k/c"])
            elapsed = time.monotonic() - started
            with pytest.raises(StoreUnavailable):
                store.children_many(["/k"])
        finally:
            private_server.resume()
        assert timeout * 0.9 <= elapsed < timeout + 8, f"read_many gave up after {elapsed:.1f} s"

        def readable() -> list[Read | None] | None:
            try:
                return store.read_many(["/k", "/k/c"])
            except StoreUnavailable:
                return None

        reads = wait_until(readable, 20, "store did not recover after resume()")
        assert reads == [Read(b"kept", 0), Read(b"child", 0)]
        # Writes work again too, on the same store object.
        store.commit([SetData("/k", b"after", 0)])
        assert store.get("/k") == Read(b"after", 1)


def test_every_call_on_a_paused_server_gives_up_after_the_timeout(
    private_server: ZooKeeperServer,
) -> None:
    timeout = 1.0
    bound = timeout + 3.0
    with ZkStore(private_server.hosts, timeout=timeout) as store:
        store.commit([Create("/k", b"kept")])
        private_server.pause()
        try:
            calls: dict[str, Callable[[], Any]] = {
                "get": lambda: store.get("/k"),
                "exists": lambda: store.exists("/k"),
                "children": lambda: store.children("/k"),
                "commit": lambda: store.commit([Create("/written-while-paused")]),
            }
            outcomes = [Outcome(name, call) for name, call in calls.items()]
            deadline = time.monotonic() + bound
            for outcome in outcomes:
                outcome.join(deadline)
            blocked = [outcome.name for outcome in outcomes if not outcome.done]
        finally:
            private_server.resume()
            # Let the blocked calls finish before the store is closed.
            deadline = time.monotonic() + 30
            for outcome in outcomes:
                outcome.join(deadline)

    assert not blocked, f"still blocked {bound:.0f} s after the server was paused: {blocked}"
    for outcome in outcomes:
        assert isinstance(outcome.error, StoreUnavailable), (outcome.name, outcome.error)
