"""Logging of the node daemon: one stderr handler, formatted for journald or for a terminal.

Under systemd, stderr is a journald stream. Each line then starts with its syslog priority
as ``<N>`` (journald strips it and files the entry under that priority, so
``journalctl -p err`` works) and has no timestamp, because journald stamps every entry
itself. Anywhere else a line starts with a UTC timestamp and the level name.

journald makes one entry per line, so a record of several lines (a traceback) keeps its
priority prefix on every line and indents the lines after the first: no line ever reaches
the journal bare, at the default priority, looking like a record of its own.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Final, TextIO

from pvc_common.errors import InvalidInput

#: The levels an operator may choose, by their configuration name.
LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

#: Libraries that report every connection step at INFO; they are held at WARNING unless
#: the daemon runs at debug level.
CHATTY_LOGGERS: Final = ("kazoo",)

#: Name of the handler this module installs on the root logger, so a second call can find
#: and replace it instead of adding another one.
HANDLER_NAME: Final = "pvcnoded"

#: What continuation lines of a multi-line record are indented with.
CONTINUATION_INDENT: Final = "  "


def syslog_priority(levelno: int) -> int:
    """The syslog priority journald files a record of level ``levelno`` under."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def utc_timestamp(created: float) -> str:
    """``created`` (seconds since the epoch) as ISO 8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(created, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def stream_is_journald(stream: TextIO) -> bool:
    """Whether ``stream`` writes to journald.

    systemd sets ``JOURNAL_STREAM`` to ``<device>:<inode>`` of the journal stream it
    connects a service's output to. Children inherit the variable even when their stderr
    is redirected elsewhere (a shell started from a service, a test harness), so when the
    stream has a file descriptor it must also be that very stream. A stream without one
    (an in-memory buffer) cannot be checked, and the variable alone decides.
    """
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        # io.UnsupportedOperation (no descriptor) is both an OSError and a ValueError.
        return True
    return expected.strip() == f"{status.st_dev}:{status.st_ino}"


class DaemonFormatter(logging.Formatter):
    """Formats a record as one line, or as one line plus indented continuation lines."""

    def __init__(self, *, journald: bool) -> None:
        super().__init__("%(name)s: %(message)s")
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        # The base class appends the traceback and stack, each after a newline.
        lines = super().format(record).splitlines() or [""]
        if self.journald:
            first = continuation = f"<{syslog_priority(record.levelno)}>"
        else:
            first = f"{utc_timestamp(record.created)} {record.levelname} "
            continuation = ""
        continuation += CONTINUATION_INDENT
        rest = [(continuation + line).rstrip() for line in lines[1:]]
        return "\n".join([first + lines[0], *rest])


class _NodeFilter(logging.Filter):
    """Stamps every record the daemon's handler emits with the node name (``%(node)s``)."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        return True


def configure_logging(level: str, *, node: str, stream: TextIO | None = None) -> None:
    """Send all logging at ``level`` and above to ``stream`` (default: standard error).

    ``level`` is one of :data:`LEVELS` in any case. ``node`` is this daemon's node name;
    records carry it as the attribute ``node``. Calling again replaces the handler of the
    previous call, so records are never written twice.
    """
    levelno = LEVELS.get(level.lower())
    if levelno is None:
        raise InvalidInput(f"unknown log level {level!r}: use {', '.join(LEVELS)}")
    target = stream if stream is not None else sys.stderr

    handler = logging.StreamHandler(target)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(DaemonFormatter(journald=stream_is_journald(target)))
    handler.addFilter(_NodeFilter(node))

    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(previous)
        previous.close()
    root.addHandler(handler)
    root.setLevel(levelno)

    # NOTSET hands the choice back to the root level, so a later call at debug level
    # undoes the quieting of an earlier one.
    chatty_level = logging.NOTSET if levelno <= logging.DEBUG else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty_level)
