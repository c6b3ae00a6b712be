"""The node daemon's logging: journald priority prefixes or UTC timestamps, one record each."""

from __future__ import annotations

import io
import logging
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pvc_common.errors import InvalidInput
from pvc_noded import logging_setup
from pvc_noded.logging_setup import configure_logging

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Start outside journald; leave the environment and the loggers as they were."""
    journal = os.environ.pop("JOURNAL_STREAM", None)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    kazoo_level = logging.getLogger("kazoo").level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("kazoo").setLevel(kazoo_level)
    os.environ.pop("JOURNAL_STREAM", None)
    if journal is not None:
        os.environ["JOURNAL_STREAM"] = journal


def configured(level: str = "info", *, journald: bool = False) -> io.StringIO:
    if journald:
        os.environ["JOURNAL_STREAM"] = "8:12345"  # removed again by restore_logging
    stream = io.StringIO()
    configure_logging(level, node="hv1", stream=stream)
    return stream


def record(created: float, level: int = logging.INFO, message: str = "hello") -> logging.LogRecord:
    entry = logging.LogRecord("pvc_noded.x", level, __file__, 1, message, None, None)
    entry.created = created
    return entry


def raise_and_log(logger: logging.Logger) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("action failed")


# --------------------------------------------------------------------------- plain format


def test_plain_lines_start_with_a_utc_timestamp_and_the_level() -> None:
    stream = configured()
    logging.getLogger("pvc_noded.test").info("hello %s", "world")
    logging.getLogger("kazoo.client").error("lost")
    assert re.fullmatch(
        rf"{TIMESTAMP} INFO pvc_noded\.test: hello world\n{TIMESTAMP} ERROR kazoo\.client: lost\n",
        stream.getvalue(),
    )


def test_timestamp_is_utc_with_milliseconds_whatever_the_local_zone() -> None:
    zone = os.environ.get("TZ")
    # A POSIX zone three hours east of UTC: needs no time zone database.
    os.environ["TZ"] = "PVC-3"
    time.tzset()
    try:
        moment = datetime(2026, 11, 26, 6, 30, 1, 123456, tzinfo=UTC).timestamp()
        formatter = logging_setup.DaemonFormatter(journald=False)
        assert formatter.format(record(moment, logging.WARNING)) == (
            "2026-11-26T06:30:01.123Z WARNING pvc_noded.x: hello"
        )
        assert formatter.format(record(0.0)) == "1970-01-01T00:00:00.000Z INFO pvc_noded.x: hello"
    finally:
        if zone is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = zone
        time.tzset()


def test_plain_traceback_stays_one_record_with_indented_lines() -> None:
    stream = configured()
    raise_and_log(logging.getLogger("pvc_noded.test"))
    first, *rest = stream.getvalue().splitlines()
    assert re.fullmatch(rf"{TIMESTAMP} ERROR pvc_noded\.test: action failed", first)
    assert rest[0] == "  Traceback (most recent call last):"
    assert rest[-1] == "  ValueError: boom"
    assert all(line.startswith("  ") for line in rest)


# --------------------------------------------------------------------------- journald


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.DEBUG, "<7>"),
        (logging.INFO, "<6>"),
        (logging.WARNING, "<4>"),
        (logging.ERROR, "<3>"),
        (logging.CRITICAL, "<2>"),
    ],
)
def test_journald_lines_carry_the_syslog_priority_and_no_timestamp(level: int, prefix: str) -> None:
    stream = configured("debug", journald=True)
    logging.getLogger("pvc_noded.test").log(level, "state is %s", "run")
    assert stream.getvalue() == f"{prefix}pvc_noded.test: state is run\n"


@pytest.mark.parametrize(
    ("levelno", "priority"),
    [(5, 7), (15, 7), (25, 6), (35, 4), (45, 3), (60, 2)],
)
def test_levels_between_standard_ones_take_the_priority_of_the_one_below(
    levelno: int, priority: int
) -> None:
    assert logging_setup.syslog_priority(levelno) == priority


def test_journald_traceback_keeps_its_priority_on_every_line() -> None:
    stream = configured(journald=True)
    raise_and_log(logging.getLogger("pvc_noded.test"))
    first, *rest = stream.getvalue().splitlines()
    assert first == "<3>pvc_noded.test: action failed"
    assert rest[0] == "<3>  Traceback (most recent call last):"
    assert rest[-1] == "<3>  ValueError: boom"
    assert len(rest) >= 3
    assert all(line.startswith("<3>  ") for line in rest)


def test_journald_multi_line_message_and_stack() -> None:
    stream = configured(journald=True)
    logger = logging.getLogger("pvc_noded.test")
    logger.warning("first\nsecond\n\nfourth\n")
    logger.info("where", stack_info=True)
    lines = stream.getvalue().splitlines()
    assert lines[:4] == ["<4>pvc_noded.test: first", "<4>  second", "<4>", "<4>  fourth"]
    assert lines[4] == "<6>pvc_noded.test: where"
    assert lines[5] == "<6>  Stack (most recent call last):"
    assert all(line.startswith("<6>") for line in lines[4:])


def test_empty_message_is_still_one_line() -> None:
    stream = configured(journald=True)
    logging.getLogger("pvc_noded.test").info("")
    assert stream.getvalue() == "<6>pvc_noded.test: \n"


def test_journal_stream_must_be_the_stream_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child of a service inherits JOURNAL_STREAM even when its stderr goes elsewhere."""
    with open(tmp_path / "log", "w", encoding="utf-8") as stream:
        status = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        assert logging_setup.stream_is_journald(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino + 1}")
        assert not logging_setup.stream_is_journald(stream)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not logging_setup.stream_is_journald(stream)
    # A stream without a descriptor cannot be compared: the variable decides.
    monkeypatch.setenv("JOURNAL_STREAM", "8:1")
    assert logging_setup.stream_is_journald(io.StringIO())
    monkeypatch.setenv("JOURNAL_STREAM", "")
    assert not logging_setup.stream_is_journald(io.StringIO())


def test_journald_format_on_a_real_journal_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "log", "w", encoding="utf-8") as stream:
        status = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        configure_logging("info", node="hv1", stream=stream)
        logging.getLogger("pvc_noded.test").info("to the journal")
    assert (tmp_path / "log").read_text(encoding="utf-8") == "<6>pvc_noded.test: to the journal\n"


# --------------------------------------------------------------------------- levels and setup


@pytest.mark.parametrize(
    ("level", "written"),
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("INFO", ["info", "warning", "error"]),
        ("Warning", ["warning", "error"]),
        ("error", ["error"]),
    ],
)
def test_level_filters_records(level: str, written: list[str]) -> None:
    stream = configured(level, journald=True)
    logger = logging.getLogger("pvc_noded.test")
    for name in ("debug", "info", "warning", "error"):
        getattr(logger, name)(name)
    assert [line.split(": ")[1] for line in stream.getvalue().splitlines()] == written


def test_unknown_level_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown log level 'verbose'"):
        configure_logging("verbose", node="hv1", stream=io.StringIO())


@pytest.mark.parametrize(
    ("level", "kazoo_info_written"),
    [("info", False), ("warning", False), ("debug", True)],
)
def test_kazoo_is_quiet_unless_debugging(level: str, kazoo_info_written: bool) -> None:
    stream = configured(level, journald=True)
    logging.getLogger("kazoo.client").info("Connecting to zk1:2181")
    logging.getLogger("kazoo.client").warning("Connection dropped")
    output = stream.getvalue()
    assert ("Connecting to zk1:2181" in output) is kazoo_info_written
    assert "<4>kazoo.client: Connection dropped" in output


def test_debug_after_info_lets_kazoo_speak_again() -> None:
    configured("info")
    stream = configured("debug", journald=True)
    logging.getLogger("kazoo.client").debug("ping")
    assert stream.getvalue() == "<7>kazoo.client: ping\n"


def test_configuring_twice_replaces_the_handler() -> None:
    root = logging.getLogger()
    others = [h for h in root.handlers if h.get_name() != logging_setup.HANDLER_NAME]
    first = configured("debug")
    second = configured("warning", journald=True)
    logger = logging.getLogger("pvc_noded.test")
    logger.info("dropped")
    logger.warning("once")
    assert first.getvalue() == ""
    assert second.getvalue() == "<4>pvc_noded.test: once\n"
    ours = [h for h in root.handlers if h.get_name() == logging_setup.HANDLER_NAME]
    assert len(ours) == 1
    # Handlers installed by others (pytest's own, here) are left in place.
    assert [h for h in root.handlers if h not in ours] == others


def test_default_stream_is_standard_error(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", node="hv1")
    logging.getLogger("pvc_noded.test").warning("to stderr")
    captured = capsys.readouterr()
    assert re.search(rf"^{TIMESTAMP} WARNING pvc_noded\.test: to stderr$", captured.err, re.M)
    assert "to stderr" not in captured.out


def test_records_carry_the_node_name() -> None:
    stream = configured()
    (handler,) = [
        h for h in logging.getLogger().handlers if h.get_name() == logging_setup.HANDLER_NAME
    ]
    handler.setFormatter(logging.Formatter("%(node)s %(message)s"))
    logging.getLogger("pvc_noded.test").info("hi")
    assert stream.getvalue() == "hv1 hi\n"
