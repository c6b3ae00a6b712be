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

import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, get_type_hints

import yaml

from pvc_common import schema
from pvc_common.config_file import (
    ConfigError,
    Problem,
    ZooKeeperSection,
    absolute_path,
    boolean,
    choice,
    fraction,
    integer,
    load_yaml,
    parse_sections,
    reads,
    seconds,
    show,
    text,
)
from pvc_common.config_file import command as command_line
from pvc_common.config_file import string as any_string

#: Re-exported: the error the daemon's callers catch.
__all__ = ["ConfigError", "NodeConfig", "load_config", "parse_config", "render_config"]
from pvc_common.console import DEFAULT_LOG_DIRECTORY
from pvc_common.errors import InvalidInput

from .logging_setup import LEVELS

if TYPE_CHECKING:
    pass

DEFAULT_CONFIG_PATH: Final = Path("/etc/pvc/pvcnoded.yaml")

#: Placeholders the URI templates may use, filled from the ``node`` section.
TEMPLATE_PLACEHOLDERS: Final = ("address", "name")


# --------------------------------------------------------------------------- value readers


def _node_name(value: object) -> str:
    if not isinstance(value, str):
        raise Problem(f"must be a string, not {show(value)}")
    try:
        return schema.validate_node_name(value)
    except InvalidInput as error:
        raise Problem(error.message) from None


def _template(value: object) -> str:
    template = text(value)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        raise Problem(f"malformed template {template!r}: {error}") from None
    allowed = " or ".join("{" + name + "}" for name in TEMPLATE_PLACEHOLDERS)
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        # Conversions and format specs are refused too: a URI has no use for them, and a
        # spec of a known placeholder could still fail when the daemon renders it.
        if name not in TEMPLATE_PLACEHOLDERS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            raise Problem(f"unknown placeholder {shown} in {template!r} (use {allowed})")
    return template


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class NodeSection:
    """This node's identity."""

    #: Node name, as registered in ZooKeeper and shown by ``pvc node list``.
    name: str = field(metadata=reads(_node_name))
    #: Whether this node may become the primary coordinator.
    coordinator: bool = field(default=False, metadata=reads(boolean))
    #: How peer nodes reach this host; rendered into the URI templates.
    address: str = field(default="127.0.0.1", metadata=reads(text))


@dataclass(frozen=True)
class LibvirtSection:
    """How to reach libvirtd: this node's own, and this node's as seen from peers."""

    #: URI of the local libvirtd.
    uri: str = field(default="qemu:///system", metadata=reads(text))
    #: Template of the URI other daemons reach this node's libvirtd with.
    peer_uri: str = field(default="qemu+tcp://{address}/system", metadata=reads(_template))


@dataclass(frozen=True)
class MigrationSection:
    """Live migration of VMs to this node."""

    #: Template of the QEMU migration data URI toward this node.
    uri: str = field(default="tcp://{address}", metadata=reads(_template))
    #: Longest pause of the guest at the switch-over, in milliseconds.
    max_downtime_ms: int = field(default=300, metadata=reads(integer(1)))
    #: Live attempts before falling back to shutdown and start.
    attempts: int = field(default=3, metadata=reads(integer(1)))
    #: Seconds each live attempt may take.
    timeout: float = field(default=120.0, metadata=reads(seconds))


@dataclass(frozen=True)
class VmSection:
    """How the daemon treats the VMs it runs."""

    #: Seconds of ACPI shutdown before the VM is destroyed.
    shutdown_timeout: float = field(default=90.0, metadata=reads(seconds))
    #: Crash restarts allowed within ``restart_window``.
    restart_budget: int = field(default=3, metadata=reads(integer(0)))
    #: Seconds over which crash restarts are counted.
    restart_window: float = field(default=300.0, metadata=reads(seconds))
    #: Most per-VM actions carried out at the same time.
    workers: int = field(default=8, metadata=reads(integer(1)))


@dataclass(frozen=True)
class MaintenanceSection:
    """Flushing and readying this node."""

    #: VMs migrated away (or back) at the same time during a flush or ready.
    concurrency: int = field(default=2, metadata=reads(integer(1)))
    #: Seconds one VM's move may take before it is recorded as failed (nothing waits
    #: forever); it should exceed migration attempts x timeout + vm.shutdown_timeout.
    vm_timeout: float = field(default=600.0, metadata=reads(seconds))


@dataclass(frozen=True)
class FencingSection:
    """Detecting dead nodes and fencing them (coordinators), and this node's own BMC."""

    #: Whether a coordinator fences dead nodes automatically.
    enabled: bool = field(default=True, metadata=reads(boolean))
    #: Keepalive intervals without a keepalive (and without a session) before a node is dead.
    intervals: int = field(default=6, metadata=reads(integer(1)))
    #: Consecutive checks a node must look dead on before it is fenced.
    rechecks: int = field(default=2, metadata=reads(integer(1)))
    #: Refuse automatic fencing when more than this fraction of the nodes look dead at once.
    max_dead_fraction: float = field(default=0.34, metadata=reads(fraction))
    #: ``ipmitool`` (lanplus) or ``command`` (a fence agent, see ``command``).
    method: str = field(default="ipmitool", metadata=reads(choice(("ipmitool", "command"))))
    #: The fence agent for method ``command``: {host} {port} {username} {password} {action}.
    command: tuple[str, ...] | None = field(
        default=None, metadata=reads(command_line(nullable=True))
    )
    #: Seconds to wait for a confirmed power-off.
    timeout: float = field(default=10.0, metadata=reads(seconds))
    #: Recover a node's VMs even when its power-off could not be confirmed (dangerous).
    recover_after_failed_fence: bool = field(default=False, metadata=reads(boolean))
    #: The rbd command (with e.g. --conf/--id) used to clear a fenced VM's RBD locks.
    rbd_command: tuple[str, ...] = field(
        default=("rbd",), metadata=reads(command_line(nullable=False))
    )
    #: This node's BMC, published for the coordinators: host or host:port ('' = none).
    bmc_address: str = field(default="", metadata=reads(any_string))
    #: This node's BMC user name.
    bmc_username: str = field(default="", metadata=reads(any_string))
    #: This node's BMC password (never printed by --validate-config).
    bmc_password: str = field(default="", metadata=reads(any_string))


@dataclass(frozen=True)
class ConsoleSection:
    """Serial console logs of the VMs."""

    #: Directory of the console log files (absolute); files elsewhere are never read.
    log_directory: str = field(default=DEFAULT_LOG_DIRECTORY, metadata=reads(absolute_path))
    #: Lines kept in each VM's buffer in ZooKeeper.
    lines: int = field(default=1000, metadata=reads(integer(1)))
    #: Bytes of text kept in each VM's buffer (ZooKeeper refuses znodes over 1 MiB).
    max_bytes: int = field(default=262144, metadata=reads(integer(1024)))
    #: Seconds between two writes of one VM's buffer at most (a burst is one write).
    coalesce: float = field(default=0.05, metadata=reads(seconds))
    #: Seconds between two looks at every log file when inotify gives no news (or is
    #: unavailable: then this is how fast lines arrive).
    poll_interval: float = field(default=1.0, metadata=reads(seconds))


@dataclass(frozen=True)
class DaemonSection:
    """Timing of the daemon's own loops."""

    #: Seconds between keepalive writes.
    keepalive_interval: float = field(default=5.0, metadata=reads(seconds))
    #: Seconds between periodic full reconciliation passes.
    reconcile_interval: float = field(default=10.0, metadata=reads(seconds))
    #: Cluster default selector a coordinator publishes; ``None`` publishes nothing.
    default_selector: str | None = field(
        default=None,
        metadata=reads(choice(schema.DEFAULT_SELECTORS, nullable=True)),
    )


@dataclass(frozen=True)
class LoggingSection:
    """What the daemon logs."""

    #: Lowest level logged: debug, info, warning or error (stored in lower case).
    level: str = field(default="info", metadata=reads(choice(tuple(LEVELS), fold_case=True)))


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


def parse_config(data: object, source: str = "<config>") -> NodeConfig:
    """Check an already parsed YAML document and build the configuration from it.

    Raises :class:`ConfigError` naming every problem. ``source`` names the origin in the
    message and is kept as :attr:`NodeConfig.source`.
    """
    config = NodeConfig(**parse_sections(data, SECTIONS, source), source=source)
    problems = _fencing_problems(config.fencing)
    if problems:
        raise ConfigError(source, problems)
    return config


def _fencing_problems(fencing: FencingSection) -> list[str]:
    """What makes the fencing settings unusable: found now, not when a node dies."""
    # Imported here: fencing imports this module's types.
    from .fencing import check_command_template

    if fencing.method == "command" and not fencing.command:
        return ["fencing.command: required when fencing.method is command"]
    if fencing.command:
        try:
            check_command_template(fencing.command)
        except ValueError as error:
            return [f"fencing.command: {error}"]
    return []


def load_config(path: Path) -> NodeConfig:
    """Read, parse and check the configuration file at ``path``.

    Raises :class:`ConfigError` for a missing or unreadable file, invalid YAML (with its
    line) and every problem :func:`parse_config` finds.
    """
    return parse_config(load_yaml(path), str(path))


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
