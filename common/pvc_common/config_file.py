"""Strict YAML configuration files, described by frozen dataclasses (one per section).

Shared by the daemons (``pvcnoded``, ``pvcapid``). Each field's metadata holds the reader
that checks and converts its value (:func:`reads`), and a field without a default is
required. Checking is strict on purpose: a misspelt key, a key given twice or a quoted
number is reported instead of silently leaving a default in force, and every problem of
the file is reported at once, each starting with its key path.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

import yaml

from .errors import InvalidInput

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class ConfigError(InvalidInput):
    """The configuration cannot be used; the message names every problem found.

    ``problems`` lists them one by one, each starting with the key path it is about (or
    with the line of a YAML syntax error); the message joins them with ``'; '`` because
    errors of the project are one line long.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems: list[str] = [" ".join(problem.split()) for problem in problems]
        super().__init__(f"{source}: {'; '.join(self.problems)}")


# --------------------------------------------------------------------------- value readers

#: Metadata key of a field's reader.
READER: Final = "pvc_reader"

Reader = Callable[[object], object]


class Problem(Exception):
    """What is wrong with one value; the caller prefixes the key path."""


def show(value: object) -> str:
    """A value as the operator wrote it in YAML, shortened so the message stays readable."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def reads(reader: Reader) -> dict[str, Reader]:
    return {READER: reader}


def text(value: object) -> str:
    # Values end up in URIs and paths, where blanks are never meant.
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise Problem(f"must be a non-empty string without blanks, not {show(value)}")
    return value


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise Problem(f"must be true or false, not {show(value)}")
    return value


def integer(minimum: int) -> Reader:
    def read(value: object) -> int:
        # bool is a subclass of int, but 'true' for a count is a mistake, not a 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise Problem(f"must be an integer >= {minimum}, not {show(value)}")
        return value

    return read


def seconds(value: object) -> float:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number <= 0:
        raise Problem(f"must be a number of seconds > 0, not {show(value)}")
    return float(number)


def choice(options: Sequence[str], *, fold_case: bool = False, nullable: bool = False) -> Reader:
    def read(value: object) -> str | None:
        if value is None and nullable:
            return None
        if isinstance(value, str):
            chosen = value.lower() if fold_case else value
            if chosen in options:
                return chosen
        allowed = ", ".join(options) + (" or null" if nullable else "")
        raise Problem(f"must be one of {allowed}, not {show(value)}")

    return read


def fraction(value: object) -> float:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not 0 < number <= 1:
        raise Problem(f"must be a number > 0 and <= 1, not {show(value)}")
    return float(number)


def string(value: object) -> str:
    """Any string, blanks allowed (passwords); '' means unset."""
    if not isinstance(value, str):
        raise Problem(f"must be a string, not {show(value)}")
    return value


def command(*, nullable: bool) -> Reader:
    """A command as a list of arguments (no shell), or null when ``nullable``."""

    def read(value: object) -> tuple[str, ...] | None:
        if value is None and nullable:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            also = " or null" if nullable else ""
            raise Problem(f"must be a non-empty list of strings{also}, not {show(value)}")
        return tuple(value)

    return read


def absolute_path(value: object) -> str:
    if not isinstance(value, str) or not PurePosixPath(value).is_absolute():
        raise Problem(f"must be an absolute path, not {show(value)}")
    return value


def host_port(entry: str) -> bool:
    """Whether ``entry`` is ``host:port`` with a port in 1..65535."""
    host, colon, port = entry.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        return False
    if host.startswith("["):
        # An IPv6 address is bracketed so that its colons are not taken for the port's.
        return host.endswith("]") and len(host) > 2 and "]" not in host[1:-1]
    return bool(host) and not any(c in ":[]" or c.isspace() for c in host)


def zookeeper_hosts(value: object) -> str:
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    if not isinstance(value, str) or not value.strip():
        raise Problem(
            "must be a 'host:port,host:port' string or a list of 'host:port' strings, "
            f"not {show(value)}"
        )
    # A connect string may end with a chroot ('/pvc'), as kazoo and ZooKeeper accept; the
    # test harness gives every test its own.
    ensemble, slash, chroot = value.strip().partition("/")
    entries = [entry.strip() for entry in ensemble.split(",")]
    bad = [entry for entry in entries if not host_port(entry)]
    if bad:
        listed = ", ".join(repr(entry) for entry in bad)
        raise Problem(f"each entry must be host:port with port 1..65535, not {listed}")
    if slash and any(not part or any(c in ", " for c in part) for part in chroot.split("/")):
        raise Problem(f"invalid chroot {'/' + chroot!r} after the hosts")
    return ",".join(entries) + slash + chroot


# --------------------------------------------------------------------------- parsing


def _unknown(path: str, key: object, known: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(key, known, n=1) if isinstance(key, str) else []
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    return f"{path}: unknown {what} ({hint})"


def _parse_section(
    cls: type[DataclassInstance], name: str, raw: object, problems: list[str]
) -> DataclassInstance | None:
    """Read one section, appending its problems; ``None`` when it has any."""
    if raw is None:
        # A section header whose keys are all commented out is an empty section.
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(f"{name}: must be a mapping of keys, not {show(raw)}")
        return None
    found = len(problems)
    known = [spec.name for spec in fields(cls)]
    values: dict[str, object] = {}
    for spec in fields(cls):
        path = f"{name}.{spec.name}"
        if spec.name not in raw:
            if spec.default is MISSING:
                problems.append(f"{path}: required")
            continue
        try:
            values[spec.name] = spec.metadata[READER](raw[spec.name])
        except Problem as problem:
            problems.append(f"{path}: {problem}")
    for key in raw:
        if key not in known:
            problems.append(_unknown(f"{name}.{key}", key, known, "key"))
    return cls(**values) if len(problems) == found else None


def _yaml_error(error: yaml.YAMLError) -> str:
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f"invalid YAML: {error}"
    mark = error.problem_mark
    text = f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {error.problem}"
    context = error.context_mark
    if error.context and context is not None and context.line != mark.line:
        # The scanner often notices a problem on the line after the one at fault.
        text += f" ({error.context} at line {context.line + 1})"
    return text


def _duplicate_keys(document: bytes) -> list[str]:
    """Keys given twice in one mapping: safe_load silently keeps the last one."""
    problems: list[str] = []

    def walk(node: yaml.Node | None, path: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        seen: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            key_path = f"{path}.{key.value}" if path else str(key.value)
            line = key.start_mark.line + 1
            first = seen.setdefault((key.tag, key.value), line)
            if first != line:
                problems.append(f"{key_path}: given twice (lines {first} and {line})")
            walk(value, key_path)

    walk(yaml.compose(document, Loader=yaml.SafeLoader), "")
    return problems


def load_yaml(path: Path) -> object:
    """Read the YAML document at ``path`` (bytes: PyYAML detects the encoding).

    Raises :class:`ConfigError` for a missing or unreadable file, invalid YAML (with its
    line) and keys given twice in one mapping.
    """
    source = str(path)
    try:
        document = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except OSError as error:
        raise ConfigError(source, [f"cannot read: {error.strerror or error}"]) from None
    try:
        data = yaml.safe_load(document)
        duplicates = _duplicate_keys(document)
    except yaml.YAMLError as error:
        raise ConfigError(source, [_yaml_error(error)]) from None
    if duplicates:
        raise ConfigError(source, duplicates)
    return data


def parse_sections(data: object, sections: Mapping[str, type[Any]], source: str) -> dict[str, Any]:
    """Check a parsed YAML document against ``sections`` (name -> section dataclass).

    Returns name -> section instance; raises :class:`ConfigError` naming every problem.
    """
    if data is None:
        # An empty file: report the required keys rather than the emptiness.
        data = {}
    if not isinstance(data, Mapping):
        names = ", ".join(sections)
        raise ConfigError(
            source, [f"top level: must be a mapping of sections ({names}), not {show(data)}"]
        )
    problems: list[str] = []
    for key in data:
        if key not in sections:
            problems.append(_unknown(str(key), key, list(sections), "section"))
    parsed = {
        name: _parse_section(cls, name, data.get(name), problems) for name, cls in sections.items()
    }
    if problems:
        raise ConfigError(source, problems)
    return parsed


# --------------------------------------------------------------------------- shared sections


@dataclass(frozen=True)
class ZooKeeperSection:
    """The ensemble a daemon coordinates through (the ``zookeeper`` section)."""

    #: Connect string, ``host:port,host:port`` (or a list) with an optional ``/chroot``.
    hosts: str = field(metadata=reads(zookeeper_hosts))
    #: Seconds to connect, and before a lost connection counts as such.
    timeout: float = field(default=10.0, metadata=reads(seconds))
