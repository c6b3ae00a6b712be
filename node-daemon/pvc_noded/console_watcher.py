"""Tails the serial console log of every VM on this node into its buffer in ZooKeeper.

One thread for all VMs: inotify on the console log directory wakes it when a file
changes (with a slow periodic look at every file as a safety net, and as the only way
where inotify is unavailable). A changed file is read from where the buffer stopped,
never from its start again; its complete lines (and the partial last one) are appended
to the VM's buffer (:mod:`pvc_common.console`) in one version-checked write, at most one
write per VM every ``coalesce`` seconds, so a burst of thousands of lines is a few
writes. Files outside the configured directory are never read: a VM's XML must not make
this daemon publish arbitrary files.
"""

from __future__ import annotations

import codecs
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvc_common.console import ConsoleBuffer, ConsoleSource, Limits, append_lines, resume_offset
from pvc_common.console_store import read_console, write_console
from pvc_common.errors import Conflict, NotFound, PvcError
from pvc_common.store import ZkStore

from .config import ConsoleSection

log = logging.getLogger(__name__)

#: Bytes read from one file per look, at most (the rest is read on the next look).
READ_CHUNK = 4 * 1024 * 1024


def machine_id() -> str:
    """This machine's identity (``/etc/machine-id``, else the host name): files on two
    machines are never the same file, even with equal device and inode numbers."""
    try:
        return Path("/etc/machine-id").read_text().strip() or socket.gethostname()
    except OSError:
        return socket.gethostname()


def inside(directory: str, path: str) -> bool:
    """Whether ``path`` is a file inside ``directory`` (after resolving links and ``..``)."""
    base = os.path.realpath(directory)
    return os.path.commonpath([base, os.path.realpath(path)]) == base


def split_complete(data: bytes) -> tuple[list[str], str, int]:
    """Bytes read from a log -> (complete lines, partial last line, bytes consumed by the
    complete lines). Invalid UTF-8 becomes U+FFFD; a multi-byte character not yet
    complete at the end is left out of the partial line until it is."""
    cut = data.rfind(b"\n") + 1
    lines = [
        line.removesuffix("\r") for line in data[:cut].decode(errors="replace").split("\n")[:-1]
    ]
    partial = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data[cut:])
    return lines, partial, cut


@dataclass
class _Feed:
    """One VM's log file and how far its buffer has it."""

    uuid: str
    path: str
    buffer: ConsoleBuffer | None = None
    version: int = -1
    identity: tuple[int, int] | None = None
    #: File offset just after the last complete line in the buffer.
    committed: int = 0
    last_write: float = -1e9
    dirty: bool = True
    #: The file was missing when first looked for: once it appears, all of it is new.
    was_missing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class ConsoleWatchers:
    """The VMs' console feeds of this node, run by :meth:`run` on one thread."""

    def __init__(
        self,
        store: ZkStore,
        config: ConsoleSection,
        *,
        machine: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config
        self.machine = machine or machine_id()
        self.limits = Limits(config.lines, config.max_bytes)
        self.clock = clock
        self._lock = threading.Lock()
        self._feeds: dict[str, _Feed] = {}
        self._ending: list[_Feed] = []
        self._wake_r, self._wake_w = os.pipe()
        self._warned: set[str] = set()

    # ----------------------------------------------------------------- the daemon's side

    def sync(self, wanted: Mapping[str, str]) -> None:
        """Follow exactly the VMs in ``wanted`` (UUID -> log file); a VM no longer wanted
        gets a last read of its file, then its feed ends."""
        with self._lock:
            for uuid, path in wanted.items():
                if not inside(self.config.log_directory, path):
                    if path not in self._warned:
                        self._warned.add(path)
                        log.warning(
                            "vm %s: console log %s is outside %s: not followed",
                            uuid,
                            path,
                            self.config.log_directory,
                        )
                    continue
                feed = self._feeds.get(uuid)
                if feed is None or feed.path != path:
                    self._feeds[uuid] = _Feed(uuid, path)
            for uuid in list(self._feeds):
                if uuid not in wanted:
                    self._ending.append(self._feeds.pop(uuid))
        self._poke()

    def prime(self, uuid: str, path: str) -> None:
        """Take the starting offset of a VM's file now, before the VM starts here (its
        first lines must not be taken for an older run's)."""
        if not inside(self.config.log_directory, path):
            return
        with self._lock:
            feed = self._feeds.setdefault(uuid, _Feed(uuid, path))
        try:
            with feed.lock:
                self._open(feed)
        except (PvcError, OSError) as error:
            log.debug("vm %s: console feed not primed: %s", uuid, error)

    def _poke(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # ----------------------------------------------------------------- the thread

    def run(self, stopping: threading.Event) -> None:
        """Feed the buffers until ``stopping`` is set (then end every feed with a last read)."""
        notifier = self._notifier()
        next_poll = self.clock() + self.config.poll_interval
        try:
            while not stopping.is_set():
                timeout = max(0.0, min(next_poll, self._next_due()) - self.clock())
                names = self._wait(notifier, timeout)
                now = self.clock()
                with self._lock:
                    feeds = list(self._feeds.values())
                    ending, self._ending = self._ending, []
                poll = now >= next_poll
                if poll:
                    next_poll = now + self.config.poll_interval
                for feed in feeds:
                    if poll or os.path.basename(feed.path) in names:
                        feed.dirty = True
                    if feed.dirty and now - feed.last_write >= self.config.coalesce:
                        self._pump(feed)
                for feed in ending:
                    self._pump(feed)
        finally:
            with self._lock:
                last = list(self._feeds.values()) + self._ending
            for feed in last:
                self._pump(feed)
            if notifier is not None:
                notifier.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _next_due(self) -> float:
        with self._lock:
            due = [f.last_write + self.config.coalesce for f in self._feeds.values() if f.dirty]
        return min(due, default=float("inf"))

    def _notifier(self) -> Any:
        try:
            from inotify_simple import INotify, flags
        except ImportError:  # pragma: no cover - declared dependency
            log.warning("inotify_simple missing: console logs are polled")
            return None
        directory = self.config.log_directory
        try:
            os.makedirs(directory, exist_ok=True)
            notifier = INotify()
            notifier.add_watch(
                directory,
                flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.CLOSE_WRITE | flags.ATTRIB,
            )
        except OSError as error:
            log.warning("inotify on %s unavailable (%s): console logs are polled", directory, error)
            return None
        return notifier

    def _wait(self, notifier: Any, timeout: float) -> set[str]:
        """Wait for file events (names of the changed files) or a poke, up to ``timeout``."""
        fds = [self._wake_r] + ([notifier.fileno()] if notifier is not None else [])
        ready, _, _ = select.select(fds, [], [], timeout)
        names: set[str] = set()
        if self._wake_r in ready:
            os.read(self._wake_r, 4096)
        if notifier is not None and notifier.fileno() in ready:
            names = {event.name for event in notifier.read(timeout=0)}
        return names

    # ----------------------------------------------------------------- one feed

    def _open(self, feed: _Feed) -> os.stat_result | None:
        """Stat the file; on first sight (or a new file under the name) set the offset."""
        try:
            stat = os.stat(feed.path)
        except FileNotFoundError:
            if feed.identity is None:
                feed.was_missing = True
            return None
        if feed.buffer is None:
            feed.buffer, feed.version = read_console(self.store, feed.uuid)
        identity = (stat.st_dev, stat.st_ino)
        if feed.identity is None:
            feed.committed = resume_offset(
                feed.buffer.source, self.machine, stat.st_dev, stat.st_ino, stat.st_size
            )
            source = feed.buffer.source
            if feed.was_missing and not (source and source.same_file(self.machine, *identity)):
                feed.committed = 0  # created since this feed began: all of it is this run's
        elif feed.identity != identity:
            feed.committed = 0  # rotated, or a new file: all of it is new
        feed.identity = identity
        if stat.st_size < feed.committed:
            feed.committed = 0  # truncated (a cold start with append='off')
        return stat

    def _pump(self, feed: _Feed) -> None:
        """Read what the file gained and append it to the buffer (one write)."""
        with feed.lock:
            self._pump_locked(feed)

    def _pump_locked(self, feed: _Feed) -> None:
        try:
            stat = self._open(feed)
            if stat is None or feed.buffer is None or feed.identity is None:
                feed.dirty = False
                return
            # Not through a symbolic link (one made after the directory check, say).
            descriptor = os.open(feed.path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(descriptor, "rb") as handle:
                handle.seek(feed.committed)
                data = handle.read(READ_CHUNK)
            lines, partial, consumed = split_complete(data)
            source = ConsoleSource(
                self.machine, feed.identity[0], feed.identity[1], feed.committed + consumed
            )
            if not lines and partial == feed.buffer.partial:
                feed.dirty = False
                return
            updated = append_lines(feed.buffer, lines, partial, source, self.limits)
            write_console(self.store, feed.uuid, updated, feed.version)
        except Conflict:
            # Another writer (this VM's previous node finishing its last lines): append to
            # its buffer; if it read this very file, continue where it stopped.
            try:
                feed.buffer, feed.version = read_console(self.store, feed.uuid)
            except PvcError:
                feed.buffer = None
                return
            theirs, ours = feed.buffer.source, feed.identity
            if theirs is not None and ours is not None and theirs.same_file(self.machine, *ours):
                feed.committed = theirs.offset
            return
        except NotFound:
            feed.dirty = False  # the VM is gone
            return
        except (PvcError, OSError) as error:
            log.warning("vm %s: console log not fed: %s", feed.uuid, error)
            return
        feed.buffer, feed.version = updated, feed.version + 1
        feed.committed += consumed
        feed.last_write = self.clock()
        # More may be left (a read is bounded); the next look finds it.
        feed.dirty = len(data) == READ_CHUNK
