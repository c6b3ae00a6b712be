"""The node daemon's configuration: one YAML file, read and checked before anything starts.

Every key has a type and, except ``node.name`` and ``zookeeper.hosts``, a default, so the
smallest useful file names the node and its ZooKeeper ensemble. Checking is strict on
purpose: a misspelt key, a key given twice or a quoted number is reported instead of
silently leaving a default in force, and every problem of the file is reported at once so
an operator fixes them all in one pass.

The dataclasses below are the single description of the file: each field's metadata holds
the reader that checks and converts its value, and a field without a default is required.
"""

from __future__ import annotations

import difflib
import math
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, get_type_hints

import yaml

from pvc_common import schema
from pvc_common.console import DEFAULT_LOG_DIRECTORY
from pvc_common.errors import InvalidInput

from .logging_setup import LEVELS

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DEFAULT_CONFIG_PATH: Final = Path("/etc/pvc/pvcnoded.yaml")

#: Placeholders the URI templates may use, filled from the ``node`` section.
TEMPLATE_PLACEHOLDERS: Final = ("address", "name")


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
_READER: Final = "pvc_reader"

Reader = Callable[[object], object]


class _Problem(Exception):
    """What is wrong with one value; the caller prefixes the key path."""


def _show(value: object) -> str:
    """A value as the operator wrote it in YAML, shortened so the message stays readable."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reads(reader: Reader) -> dict[str, Reader]:
    return {_READER: reader}


def _text(value: object) -> str:
    # Values end up in URIs and paths, where blanks are never meant.
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise _Problem(f"must be a non-empty string without blanks, not {_show(value)}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Problem(f"must be true or false, not {_show(value)}")
    return value


def _integer(minimum: int) -> Reader:
    def read(value: object) -> int:
        # bool is a subclass of int, but 'true' for a count is a mistake, not a 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Problem(f"must be an integer >= {minimum}, not {_show(value)}")
        return value

    return read


def _seconds(value: object) -> float:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number <= 0:
        raise _Problem(f"must be a number of seconds > 0, not {_show(value)}")
    return float(number)


def _choice(options: Sequence[str], *, fold_case: bool = False, nullable: bool = False) -> Reader:
    def read(value: object) -> str | None:
        if value is None and nullable:
            return None
        if isinstance(value, str):
            chosen = value.lower() if fold_case else value
            if chosen in options:
                return chosen
        allowed = ", ".join(options) + (" or null" if nullable else "")
        raise _Problem(f"must be one of {allowed}, not {_show(value)}")

    return read


def _fraction(value: object) -> float:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not 0 < number <= 1:
        raise _Problem(f"must be a number > 0 and <= 1, not {_show(value)}")
    return float(number)


def _string(value: object) -> str:
    """Any string, blanks allowed (passwords); '' means unset."""
    if not isinstance(value, str):
        raise _Problem(f"must be a string, not {_show(value)}")
    return value


def _command(*, nullable: bool) -> Reader:
    """A command as a list of arguments (no shell), or null when ``nullable``."""

    def read(value: object) -> tuple[str, ...] | None:
        if value is None and nullable:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            also = " or null" if nullable else ""
            raise _Problem(f"must be a non-empty list of strings{also}, not {_show(value)}")
        return tuple(value)

    return read


def _node_name(value: object) -> str:
    if not isinstance(value, str):
        raise _Problem(f"must be a string, not {_show(value)}")
    try:
        return schema.validate_node_name(value)
    except InvalidInput as error:
        raise _Problem(error.message) from None


def _absolute_path(value: object) -> str:
    if not isinstance(value, str) or not PurePosixPath(value).is_absolute():
        raise _Problem(f"must be an absolute path, not {_show(value)}")
    return value


def _template(value: object) -> str:
    template = _text(value)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        raise _Problem(f"malformed template {template!r}: {error}") from None
    allowed = " or ".join("{" + name + "}" for name in TEMPLATE_PLACEHOLDERS)
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        # Conversions and format specs are refused too: a URI has no use for them, and a
        # spec of a known placeholder could still fail when the daemon renders it.
        if name not in TEMPLATE_PLACEHOLDERS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            raise _Problem(f"unknown placeholder {shown} in {template!r} (use {allowed})")
    return template


def _host_port(entry: str) -> bool:
    """Whether ``entry`` is ``host:port`` with a port in 1..65535."""
    host, colon, port = entry.rpartition(":")
    if not colon or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        return False
    if host.startswith("["):
        # An IPv6 address is bracketed so that its colons are not taken for the port's.
        return host.endswith("]") and len(host) > 2 and "]" not in host[1:-1]
    return bool(host) and not any(c in ":[]" or c.isspace() for c in host)


def _zookeeper_hosts(value: object) -> str:
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    if not isinstance(value, str) or not value.strip():
        raise _Problem(
            "must be a 'host:port,host:port' string or a list of 'host:port' strings, "
            f"not {_show(value)}"
        )
    # A connect string may end with a chroot ('/pvc'), as kazoo and ZooKeeper accept; the
    # test harness gives every test its own.
    ensemble, slash, chroot = value.strip().partition("/")
    entries = [entry.strip() for entry in ensemble.split(",")]
    bad = [entry for entry in entries if not _host_port(entry)]
    if bad:
        listed = ", ".join(repr(entry) for entry in bad)
        raise _Problem(f"each entry must be host:port with port 1..65535, not {listed}")
    if slash and any(not part or any(c in ", " for c in part) for part in chroot.split("/")):
        raise _Problem(f"invalid chroot {'/' + chroot!r} after the hosts")
    return ",".join(entries) + slash + chroot


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class NodeSection:
    """This node's identity."""

    #: Node name, as registered in ZooKeeper and shown by ``pvc node list``.
    name: str = field(metadata=_reads(_node_name))
    #: Whether this node may become the primary coordinator.
    coordinator: bool = field(default=False, metadata=_reads(_boolean))
    #: How peer nodes reach this host; rendered into the URI templates.
    address: str = field(default="127.0.0.1", metadata=_reads(_text))


@dataclass(frozen=True)
class ZooKeeperSection:
    """The ensemble the daemon coordinates through."""

    #: Connect string, ``host:port,host:port`` with an optional ``/chroot``.
    hosts: str = field(metadata=_reads(_zookeeper_hosts))
    #: Seconds to connect, and before a lost connection counts as such.
    timeout: float = field(default=10.0, metadata=_reads(_seconds))


@dataclass(frozen=True)
class LibvirtSection:
    """How to reach libvirtd: this node's own, and this node's as seen from peers."""

    #: URI of the local libvirtd.
    uri: str = field(default="qemu:///system", metadata=_reads(_text))
    #: Template of the URI other daemons reach this node's libvirtd with.
    peer_uri: str = field(default="qemu+tcp://{address}/system", metadata=_reads(_template))


@dataclass(frozen=True)
class MigrationSection:
    """Live migration of VMs to this node."""

    #: Template of the QEMU migration data URI toward this node.
    uri: str = field(default="tcp://{address}", metadata=_reads(_template))
    #: Longest pause of the guest at the switch-over, in milliseconds.
    max_downtime_ms: int = field(default=300, metadata=_reads(_integer(1)))
    #: Live attempts before falling back to shutdown and start.
    attempts: int = field(default=3, metadata=_reads(_integer(1)))
    #: Seconds each live attempt may take.
    timeout: float = field(default=120.0, metadata=_reads(_seconds))


@dataclass(frozen=True)
class VmSection:
    """How the daemon treats the VMs it runs."""

    #: Seconds of ACPI shutdown before the VM is destroyed.
    shutdown_timeout: float = field(default=90.0, metadata=_reads(_seconds))
    #: Crash restarts allowed within ``restart_window``.
    restart_budget: int = field(default=3, metadata=_reads(_integer(0)))
    #: Seconds over which crash restarts are counted.
    restart_window: float = field(default=300.0, metadata=_reads(_seconds))
    #: Most per-VM actions carried out at the same time.
    workers: int = field(default=8, metadata=_reads(_integer(1)))


@dataclass(frozen=True)
class MaintenanceSection:
    """Flushing and readying this node."""

    #: VMs migrated away (or back) at the same time during a flush or ready.
    concurrency: int = field(default=2, metadata=_reads(_integer(1)))
    #: Seconds one VM's move may take before it is recorded as failed (nothing waits
    #: forever); it should exceed migration attempts x timeout + vm.shutdown_timeout.
    vm_timeout: float = field(default=600.0, metadata=_reads(_seconds))


@dataclass(frozen=True)
class FencingSection:
    """Detecting dead nodes and fencing them (coordinators), and this node's own BMC."""

    #: Whether a coordinator fences dead nodes automatically.
    enabled: bool = field(default=True, metadata=_reads(_boolean))
    #: Keepalive intervals without a keepalive (and without a session) before a node is dead.
    intervals: int = field(default=6, metadata=_reads(_integer(1)))
    #: Consecutive checks a node must look dead on before it is fenced.
    rechecks: int = field(default=2, metadata=_reads(_integer(1)))
    #: Refuse automatic fencing when more than this fraction of the nodes look dead at once.
    max_dead_fraction: float = field(default=0.34, metadata=_reads(_fraction))
    #: ``ipmitool`` (lanplus) or ``command`` (a fence agent, see ``command``).
    method: str = field(default="ipmitool", metadata=_reads(_choice(("ipmitool", "command"))))
    #: The fence agent for method ``command``: {host} {port} {username} {password} {action}.
    command: tuple[str, ...] | None = field(default=None, metadata=_reads(_command(nullable=True)))
    #: Seconds to wait for a confirmed power-off.
    timeout: float = field(default=10.0, metadata=_reads(_seconds))
    #: Recover a node's VMs even when its power-off could not be confirmed (dangerous).
    recover_after_failed_fence: bool = field(default=False, metadata=_reads(_boolean))
    #: The rbd command (with e.g. --conf/--id) used to clear a fenced VM's RBD locks.
    rbd_command: tuple[str, ...] = field(
        default=("rbd",), metadata=_reads(_command(nullable=False))
    )
    #: This node's BMC, published for the coordinators: host or host:port ('' = none).
    bmc_address: str = field(default="", metadata=_reads(_string))
    #: This node's BMC user name.
    bmc_username: str = field(default="", metadata=_reads(_string))
    #: This node's BMC password (never printed by --validate-config).
    bmc_password: str = field(default="", metadata=_reads(_string))


@dataclass(frozen=True)
class ConsoleSection:
    """Serial console logs of the VMs."""

    #: Directory of the console log files (absolute); files elsewhere are never read.
    log_directory: str = field(default=DEFAULT_LOG_DIRECTORY, metadata=_reads(_absolute_path))
    #: Lines kept in each VM's buffer in ZooKeeper.
    lines: int = field(default=1000, metadata=_reads(_integer(1)))
    #: Bytes of text kept in each VM's buffer (ZooKeeper refuses znodes over 1 MiB).
    max_bytes: int = field(default=262144, metadata=_reads(_integer(1024)))
    #: Seconds between two writes of one VM's buffer at most (a burst is one write).
    coalesce: float = field(default=0.05, metadata=_reads(_seconds))
    #: Seconds between two looks at every log file when inotify gives no news (or is
    #: unavailable: then this is how fast lines arrive).
    poll_interval: float = field(default=1.0, metadata=_reads(_seconds))


@dataclass(frozen=True)
class DaemonSection:
    """Timing of the daemon's own loops."""

    #: Seconds between keepalive writes.
    keepalive_interval: float = field(default=5.0, metadata=_reads(_seconds))
    #: Seconds between periodic full reconciliation passes.
    reconcile_interval: float = field(default=10.0, metadata=_reads(_seconds))
    #: Cluster default selector a coordinator publishes; ``None`` publishes nothing.
    default_selector: str | None = field(
        default=None,
        metadata=_reads(_choice(schema.DEFAULT_SELECTORS, nullable=True)),
    )


@dataclass(frozen=True)
class LoggingSection:
    """What the daemon logs."""

    #: Lowest level logged: debug, info, warning or error (stored in lower case).
    level: str = field(default="info", metadata=_reads(_choice(tuple(LEVELS), fold_case=True)))


@dataclass(frozen=True)
class NodeConfig:
    """The whole configuration, plus where it was read from."""

    node: NodeSection
    zookeeper: ZooKeeperSection
    libvirt: LibvirtSection
    migration: MigrationSection
    vm: VmSection
    maintenance: MaintenanceSection
    fencing: FencingSection
    console: ConsoleSection
    daemon: DaemonSection
    logging: LoggingSection
    #: The file (or other origin) the configuration was read from, for messages.
    source: str

    def peer_libvirt_uri(self) -> str:
        """The URI other daemons reach this node's libvirtd with."""
        return self._render(self.libvirt.peer_uri)

    def migration_uri(self) -> str:
        """The QEMU migration data URI toward this node."""
        return self._render(self.migration.uri)

    def _render(self, template: str) -> str:
        return template.format(address=self.node.address, name=self.node.name)


#: The sections of the file, in the order they are checked and rendered.
SECTIONS: Final[dict[str, type[Any]]] = {
    name: hint for name, hint in get_type_hints(NodeConfig).items() if name != "source"
}


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
        problems.append(f"{name}: must be a mapping of keys, not {_show(raw)}")
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
            values[spec.name] = spec.metadata[_READER](raw[spec.name])
        except _Problem as problem:
            problems.append(f"{path}: {problem}")
    for key in raw:
        if key not in known:
            problems.append(_unknown(f"{name}.{key}", key, known, "key"))
    return cls(**values) if len(problems) == found else None


def parse_config(data: object, source: str = "<config>") -> NodeConfig:
    """Check an already parsed YAML document and build the configuration from it.

    Raises :class:`ConfigError` naming every problem. ``source`` names the origin in the
    message and is kept as :attr:`NodeConfig.source`.
    """
    if data is None:
        # An empty file: report the required keys rather than the emptiness.
        data = {}
    if not isinstance(data, Mapping):
        names = ", ".join(SECTIONS)
        raise ConfigError(
            source, [f"top level: must be a mapping of sections ({names}), not {_show(data)}"]
        )
    problems: list[str] = []
    for key in data:
        if key not in SECTIONS:
            problems.append(_unknown(str(key), key, list(SECTIONS), "section"))
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        sections[name] = _parse_section(cls, name, data.get(name), problems)
    if problems:
        raise ConfigError(source, problems)
    return NodeConfig(**sections, source=source)


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


def load_config(path: Path) -> NodeConfig:
    """Read, parse and check the configuration file at ``path``.

    Raises :class:`ConfigError` for a missing or unreadable file, invalid YAML (with its
    line) and every problem :func:`parse_config` finds.
    """
    source = str(path)
    try:
        # Bytes, so that PyYAML detects the encoding and reports bad UTF-8 as a YAML error.
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
    return parse_config(data, source)


def render_config(config: NodeConfig) -> str:
    """The effective configuration as YAML, every key spelt out, defaults included.

    The result loads back into an equal configuration.
    """
    data = {name: asdict(getattr(config, name)) for name in SECTIONS}
    for section in data.values():
        for key, value in section.items():
            if isinstance(value, tuple):
                section[key] = list(value)  # YAML lists, which load back the same
            if "password" in key and value:
                section[key] = "********"  # secrets are never printed
    header = (
        f"# Effective pvcnoded configuration, read from {config.source}\n"
        f"# libvirt.peer_uri renders to: {config.peer_libvirt_uri()}\n"
        f"# migration.uri renders to:    {config.migration_uri()}\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
