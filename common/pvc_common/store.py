"""The ZooKeeper adapter: the only module of the project that imports kazoo.

It offers what the operations need and nothing more:

* plain reads, and :meth:`ZkStore.read_many`, which reads thousands of znodes in a few
  round trips (ZooKeeper's multi-read, pipelined; pipelined single reads on servers older
  than 3.6);
* :meth:`ZkStore.commit`, which applies a list of :class:`Op` atomically in one
  transaction, with version checks;
* typed errors from :mod:`pvc_common.errors` instead of kazoo's exceptions;
* for the daemons: watches that only *wake* a caller, connection-state callbacks and an
  ephemeral znode that lives as long as the session.
"""

from __future__ import annotations

import logging
import struct
import warnings
from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import EXCEPTIONS as KAZOO_ERRORS_BY_CODE
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    SessionExpiredError,
    UnimplementedError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.serialization import (
    GetData,
    MultiHeader,
    ZnodeStat,
    int_struct,
    multiheader_struct,
    read_buffer,
    stat_struct,
)
from kazoo.recipe.watchers import ChildrenWatch, DataWatch
from kazoo.retry import RetryFailedError

from .errors import Conflict, NotFound, PvcError, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Paths per multi-read request: large enough to amortise the round trip, small enough
#: that a reply of big XML documents stays a few MiB.
READ_BATCH = 400


@dataclass(frozen=True)
class Read:
    """The data and version of one znode."""

    data: bytes
    version: int


# --------------------------------------------------------------------------- write ops


@dataclass(frozen=True)
class Create:
    """Create ``path`` with ``data`` (its parent must exist or be created earlier in the list)."""

    path: str
    data: bytes = b""


@dataclass(frozen=True)
class SetData:
    """Set ``path`` to ``data`` if its version is ``version`` (-1: any version)."""

    path: str
    data: bytes
    version: int = -1


@dataclass(frozen=True)
class Check:
    """Fail the whole commit unless ``path`` is at ``version``."""

    path: str
    version: int


@dataclass(frozen=True)
class Delete:
    """Delete the (childless) znode ``path`` if its version is ``version`` (-1: any)."""

    path: str
    version: int = -1


Op = Create | SetData | Check | Delete


# --------------------------------------------------------------------------- multi-read


class _MultiRead(namedtuple("_MultiRead", "paths")):
    """ZooKeeper's multi-read request (opcode 22, servers 3.6+) of getData operations.

    kazoo has no public call for it, so it is expressed with kazoo's own serialisation
    helpers; the connection treats it like any request with ``serialize``/``deserialize``.
    """

    type = 22
    _GET_DATA = 4
    _ERROR = -1

    def serialize(self) -> bytearray:
        buffer = bytearray()
        for path in self.paths:
            buffer.extend(MultiHeader(self._GET_DATA, False, -1).serialize())
            buffer.extend(GetData(path, False).serialize())
        buffer.extend(multiheader_struct.pack(-1, True, -1))
        return buffer

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> list[Read | None]:
        results: list[Read | None] = []
        header, offset = MultiHeader.deserialize(buffer, offset)
        while not header.done:
            if header.type == cls._GET_DATA:
                data, offset = read_buffer(buffer, offset)
                stat = ZnodeStat._make(stat_struct.unpack_from(buffer, offset))
                offset += stat_struct.size
                results.append(Read(data or b"", stat.version))
            elif header.type == cls._ERROR:
                code = int_struct.unpack_from(buffer, offset)[0]
                offset += int_struct.size
                if KAZOO_ERRORS_BY_CODE[code] is not NoNodeError:
                    raise KAZOO_ERRORS_BY_CODE[code]()
                results.append(None)
            else:
                raise struct.error(f"unexpected multi-read result type {header.type}")
            header, offset = MultiHeader.deserialize(buffer, offset)
        return results


# --------------------------------------------------------------------------- the store


class ZkStore:
    """A connection to the cluster's ZooKeeper tree.

    ``hosts`` is a ZooKeeper connect string (``host:port,host:port[/chroot]``). Calls retry
    through a lost connection (another ensemble member takes over) until ``timeout``
    seconds have passed, then raise :class:`StoreUnavailable`.
    """

    def __init__(self, hosts: str, *, timeout: float = 10.0) -> None:
        self.hosts = hosts
        self.timeout = timeout
        self._client = KazooClient(
            hosts=hosts,
            timeout=timeout,
            connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 1.0},
            command_retry={"max_tries": -1, "delay": 0.05, "max_delay": 1.0, "deadline": timeout},
        )
        self._multi_read_supported = True

    # ----------------------------------------------------------------- lifecycle

    def connect(self) -> ZkStore:
        """Open the session; raise :class:`StoreUnavailable` when no server answers in time."""
        try:
            with warnings.catch_warnings():
                # kazoo warns when the chroot does not exist yet: every command but
                # 'pvc cluster init' (which creates it) says the cluster is not initialised.
                warnings.filterwarnings("ignore", message="No chroot path exists")
                self._client.start(timeout=self.timeout)
        except (KazooTimeoutError, KazooException, OSError) as error:
            self._client.stop()
            self._client.close()
            raise StoreUnavailable(
                f"ZooKeeper at {self.hosts} is unreachable ({error or type(error).__name__})"
            ) from None
        return self

    def ensure_chroot(self) -> None:
        """Create the chroot of the connect string (``host:2181/pvc``) if it is missing.

        A chrooted session cannot create its own root, so a short session without the
        chroot does it. Nothing to do without a chroot.
        """
        chroot = self._client.chroot
        if not chroot or self.exists("/"):
            return
        servers = self.hosts[: len(self.hosts) - len(chroot)]
        plain = KazooClient(hosts=servers, timeout=self.timeout)
        try:
            plain.start(timeout=self.timeout)
            plain.ensure_path(chroot)
        except (KazooTimeoutError, KazooException, OSError) as error:
            reason = error or type(error).__name__
            raise StoreUnavailable(
                f"could not create the chroot {chroot} at {servers} ({reason})"
            ) from None
        finally:
            plain.stop()
            plain.close()

    def close(self) -> None:
        """End the session and release the connection."""
        try:
            self._client.stop()
        finally:
            self._client.close()

    def __enter__(self) -> ZkStore:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- reads

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        return self._retry(lambda: self._wait(self._client.exists_async(path))) is not None

    def get(self, path: str) -> Read:
        """Data and version of ``path``; :class:`NotFound` when it does not exist."""
        try:
            data, stat = self._retry(lambda: self._wait(self._client.get_async(path)))
        except NoNodeError:
            raise NotFound(f"{path} does not exist") from None
        return Read(data or b"", stat.version)

    def children(self, path: str) -> list[str]:
        """Sorted names of the children of ``path``; :class:`NotFound` when it does not exist."""
        try:
            return sorted(self._retry(lambda: self._wait(self._client.get_children_async(path))))
        except NoNodeError:
            raise NotFound(f"{path} does not exist") from None

    def read_many(self, paths: Sequence[str]) -> list[Read | None]:
        """Read many znodes at once; each result is a :class:`Read`, or None if missing.

        All requests are sent before any answer is awaited, so the cost is a few round
        trips whatever the number of paths.
        """
        if not paths:
            return []
        return self._retry(lambda: self._read_many_once(paths))

    def _read_many_once(self, paths: Sequence[str]) -> list[Read | None]:
        if self._multi_read_supported:
            try:
                return self._multi_read(paths)
            except UnimplementedError:
                log.info("ZooKeeper at %s has no multi-read; using pipelined reads", self.hosts)
                self._multi_read_supported = False
        return self._pipelined_reads(paths)

    def _multi_read(self, paths: Sequence[str]) -> list[Read | None]:
        chroot = self._client.chroot or ""
        pending = []
        for start in range(0, len(paths), READ_BATCH):
            batch = [chroot + path for path in paths[start : start + READ_BATCH]]
            result = self._client.handler.async_result()
            self._client._call(_MultiRead(batch), result)
            pending.append(result)
        results: list[Read | None] = []
        for result in pending:
            results.extend(result.get(timeout=self.timeout))
        return results

    def _pipelined_reads(self, paths: Sequence[str]) -> list[Read | None]:
        pending = [self._client.get_async(path) for path in paths]
        results: list[Read | None] = []
        for result in pending:
            try:
                data, stat = result.get(timeout=self.timeout)
            except NoNodeError:
                results.append(None)
            else:
                results.append(Read(data or b"", stat.version))
        return results

    def sizes_many(self, paths: Sequence[str]) -> list[int | None]:
        """The data size in bytes of many znodes at once (pipelined, without their data);
        None for a missing znode."""

        def once() -> list[int | None]:
            pending = [self._client.exists_async(path) for path in paths]
            return [
                None if stat is None else int(stat.data_length)
                for stat in (result.get(timeout=self.timeout) for result in pending)
            ]

        return self._retry(once) if paths else []

    def children_many(self, paths: Sequence[str]) -> list[list[str] | None]:
        """Sorted children of many znodes at once (pipelined); None for a missing znode."""

        def once() -> list[list[str] | None]:
            pending = [self._client.get_children_async(path) for path in paths]
            results: list[list[str] | None] = []
            for result in pending:
                try:
                    results.append(sorted(result.get(timeout=self.timeout)))
                except NoNodeError:
                    results.append(None)
            return results

        return self._retry(once)

    def descendants(self, path: str) -> list[str]:
        """Every path below ``path`` (not ``path`` itself), parents before children."""
        found: list[str] = []
        level = [path]
        while level:
            next_level: list[str] = []
            for parent, names in zip(level, self.children_many(level), strict=True):
                for name in names or ():
                    child = f"{parent.rstrip('/')}/{name}"
                    found.append(child)
                    next_level.append(child)
            level = next_level
        return found

    # ----------------------------------------------------------------- writes

    def commit(self, ops: Iterable[Op]) -> None:
        """Apply ``ops`` atomically: all of them or none.

        A version check that fails, a create of an existing znode or a delete of a
        missing one raise :class:`Conflict`; nothing is written then.
        """
        op_list = list(ops)
        if not op_list:
            return
        attempts = {"count": 0}

        def once() -> list[Any]:
            attempts["count"] += 1
            transaction = self._client.transaction()
            for op in op_list:
                if isinstance(op, Create):
                    transaction.create(op.path, op.data)
                elif isinstance(op, SetData):
                    transaction.set_data(op.path, op.data, op.version)
                elif isinstance(op, Check):
                    transaction.check(op.path, op.version)
                else:
                    transaction.delete(op.path, op.version)
            return list(self._wait(transaction.commit_async()))

        results = self._retry(once, writing=True)
        failure = next((r for r in results if isinstance(r, Exception)), None)
        if failure is None:
            return
        # The first failing op is reported; the others only say "rolled back".
        index = next(
            i
            for i, r in enumerate(results)
            if isinstance(r, Exception) and type(r).__name__ != "RolledBackError"
        )
        cause = results[index]
        where = op_list[index].path
        retried = (
            " (the connection dropped during the write and it was retried: re-read to check)"
            if attempts["count"] > 1
            else ""
        )
        if isinstance(cause, BadVersionError):
            raise Conflict(f"{where} was changed by another writer{retried}")
        if isinstance(cause, NodeExistsError):
            raise Conflict(f"{where} already exists{retried}")
        if isinstance(cause, NoNodeError):
            raise Conflict(f"{where} does not exist (removed by another writer?){retried}")
        if isinstance(cause, NotEmptyError):
            raise Conflict(f"{where} gained children from another writer{retried}")
        raise PvcError(f"ZooKeeper refused the change at {where}: {type(cause).__name__}")

    # ----------------------------------------------------------------- daemons: watches

    @property
    def connected(self) -> bool:
        """Whether the session is connected right now (reads would be fresh)."""
        return bool(self._client.connected)

    def on_connection_change(self, callback: Callable[[str], None]) -> None:
        """Call ``callback`` with ``connected``, ``suspended`` or ``lost`` on every change.

        It runs on kazoo's connection thread: it must only record or signal, never block.
        ``lost`` means the session expired: ephemeral znodes are gone.
        """
        names = {
            KazooState.CONNECTED: "connected",
            KazooState.SUSPENDED: "suspended",
            KazooState.LOST: "lost",
        }

        def listener(state: Any) -> None:
            callback(names.get(state, str(state).lower()))

        self._client.add_listener(listener)

    def watch_children(self, path: str, wake: Callable[[], None]) -> None:
        """Call ``wake()`` now and whenever the children of ``path`` change (for ever)."""

        def changed(children: list[str]) -> None:
            wake()

        ChildrenWatch(self._client, path, changed)

    def watch_data(self, path: str, wake: Callable[[], None]) -> None:
        """Call ``wake()`` whenever the data of ``path`` changes, until ``path`` is deleted."""

        def changed(data: bytes | None, stat: Any) -> bool:
            wake()
            return data is not None or stat is not None

        DataWatch(self._client, path, changed)

    def ensure_path(self, path: str) -> None:
        """Create ``path`` (and its parents) if missing."""
        self._retry(lambda: self._client.ensure_path(path), writing=True)

    def claim_ephemeral(self, path: str, data: bytes) -> None:
        """Create ``path`` as an ephemeral znode of this session, replacing a stale one.

        A znode left by a previous session of the same owner (a daemon killed and
        restarted before ZooKeeper expired its session) is deleted first.
        """
        session_id = self._client.client_id[0] if self._client.client_id else None

        def once() -> None:
            try:
                self._client.create(path, data, ephemeral=True, makepath=True)
            except NodeExistsError:
                try:
                    _, stat = self._client.get(path)
                except NoNodeError:
                    raise ConnectionLoss("retry: the stale znode went away") from None
                if stat.ephemeralOwner == session_id:
                    self._client.set(path, data)
                    return
                self._client.delete(path, version=stat.version)
                self._client.create(path, data, ephemeral=True, makepath=True)

        self._retry(once, writing=True)

    def try_lock(self, path: str, data: bytes = b"") -> bool:
        """Create ``path`` as an ephemeral znode of this session; False if anyone holds it.

        A lock dies with its holder's session, so a crashed holder never blocks others
        for longer than the session timeout.
        """

        def once() -> bool:
            try:
                self._client.create(path, data, ephemeral=True, makepath=True)
            except NodeExistsError:
                return False
            return True

        return self._retry(once, writing=True)

    def release_ephemeral(self, path: str) -> None:
        """Delete ``path`` if it exists (an ephemeral znode this session owns)."""
        try:
            self._retry(lambda: self._client.delete(path), writing=True)
        except NoNodeError:
            pass

    # ----------------------------------------------------------------- plumbing

    def _wait(self, result: Any) -> Any:
        # Every call waits at most `timeout`: kazoo's blocking calls would wait for ever on a
        # paused server or one without quorum, since a request made while disconnected queues.
        return result.get(timeout=self.timeout)

    def _retry(self, call: Callable[[], T], *, writing: bool = False) -> T:
        """Run ``call``, retrying through lost connections, mapping failures to StoreUnavailable."""
        try:
            return self._client.retry(call)  # type: ignore[no-any-return]
        except (
            RetryFailedError,
            ConnectionLoss,
            ConnectionClosedError,
            SessionExpiredError,
            OperationTimeoutError,
            KazooTimeoutError,
        ) as error:
            # A request already queued may still reach the server once it answers again.
            maybe = "; the change may still be applied when it answers: re-read to check"
            raise StoreUnavailable(
                f"ZooKeeper at {self.hosts} did not answer in {self.timeout:g} s "
                f"({type(error).__name__}){maybe if writing else ''}"
            ) from None
