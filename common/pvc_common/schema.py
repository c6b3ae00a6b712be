"""The ZooKeeper tree: every path and every value codec, defined once.

Nothing else in the project builds a path string or encodes a value. The layout and the
string formats follow the classic PVC tree (see ``docs/schema.md``) so that operators'
existing tools keep reading it; values are UTF-8 strings.

::

    /schema/version                   integer, the layout version of this tree
    /config/<key>                     cluster-wide settings
    /primary_node                     name of the primary coordinator ('' when none)
    /domains/<uuid>                   data: the VM's name; one child per DOMAIN_FIELDS key
    /nodes/<name>                     data: the node type; one child per NODE_FIELDS key
    /networks/<vni>                   data: description; one child per NETWORK_FIELDS key
    /liveness/<name>                  ephemeral, while the node's daemon holds a session
    /locks/fence-<name>               ephemeral, held by the coordinator fencing that node

The data of an entity's own znode (``/domains/<uuid>``, ``/nodes/<name>``) is rewritten
with a version check by every change of that entity, so its version is the entity's row
version: two writers that read the same version cannot both commit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from .errors import InvalidInput

#: Layout version this code reads and writes. History (each step is in schema_upgrade):
#: 1 the classic layout; 2 adds ``migration_method`` and ``lockflush`` to VMs, ``libvirturi``,
#: ``migrationuri`` and ``maintenance`` to nodes, and the ``/liveness`` and ``/locks`` roots;
#: 3 adds ``request``, ``confirmed`` and ``console`` to VMs; 4 adds ``history`` to VMs and
#: ``stats`` to nodes.
SCHEMA_VERSION: Final = 4

ROOT_PATHS: Final = (
    "/schema",
    "/config",
    "/domains",
    "/nodes",
    "/networks",
    "/liveness",
    "/locks",
)
SCHEMA_VERSION_PATH: Final = "/schema/version"
PRIMARY_NODE_PATH: Final = "/primary_node"
DOMAINS_PATH: Final = "/domains"
NODES_PATH: Final = "/nodes"
NETWORKS_PATH: Final = "/networks"
CONFIG_PATH: Final = "/config"
#: One ephemeral child per running node daemon: its ZooKeeper session is visibly alive.
LIVENESS_PATH: Final = "/liveness"
#: Ephemeral locks held by daemons, e.g. the one coordinator fencing a node.
LOCKS_PATH: Final = "/locks"

T = TypeVar("T")


# --------------------------------------------------------------------------- codecs


@dataclass(frozen=True)
class Codec(Generic[T]):
    """Turns a typed value into the stored string and back."""

    name: str
    encode_text: Callable[[T], str]
    decode_text: Callable[[str], T]

    def encode(self, value: T) -> bytes:
        """Encode ``value`` into the bytes stored in a znode."""
        return self.encode_text(value).encode("utf-8")

    def decode(self, raw: bytes | None) -> T:
        """Decode the bytes of a znode (``None`` or empty = the codec's empty value)."""
        text = raw.decode("utf-8", errors="replace") if raw else ""
        return self.decode_text(text)


def _decode_bool(text: str) -> bool:
    # PVC wrote Python's str(bool); accept the lower-case spellings other tools use.
    return text.strip().lower() in ("true", "1", "yes")


def _decode_int(text: str) -> int:
    try:
        return int(float(text)) if text.strip() else 0
    except ValueError:
        return 0


def _decode_float(text: str) -> float:
    try:
        return float(text) if text.strip() else 0.0
    except ValueError:
        return 0.0


def _split(separator: str | None) -> Callable[[str], tuple[str, ...]]:
    def decode(text: str) -> tuple[str, ...]:
        return tuple(item for item in (part.strip() for part in text.split(separator)) if item)

    return decode


TEXT: Final = Codec[str]("text", str, str)
BOOL: Final = Codec[bool]("bool", lambda value: "True" if value else "False", _decode_bool)
INT: Final = Codec[int]("int", lambda value: str(int(value)), _decode_int)
FLOAT: Final = Codec[float]("float", lambda value: f"{value:.2f}", _decode_float)
COMMA_LIST: Final = Codec[tuple[str, ...]]("comma-list", ",".join, _split(","))
SPACE_LIST: Final = Codec[tuple[str, ...]]("space-list", " ".join, _split(None))


def _decode_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


JSON_OBJECT: Final = Codec[dict[str, Any]](
    "json", lambda value: json.dumps(value, sort_keys=True, separators=(",", ":")), _decode_json
)


@dataclass(frozen=True)
class Field(Generic[T]):
    """One child key of an entity znode, with its codec and the value of a missing key."""

    key: str
    codec: Codec[T]
    default: T
    doc: str

    def encode(self, value: T) -> bytes:
        """Encode a value of this field."""
        return self.codec.encode(value)

    def decode(self, raw: bytes | None) -> T:
        """Decode this field; a missing or empty key gives :attr:`default`."""
        if not raw:
            return self.default
        return self.codec.decode(raw)


# --------------------------------------------------------------------------- values

VM_STATES: Final = ("start", "restart", "shutdown", "stop", "migrate", "disable", "fail", "delete")
NODE_DAEMON_STATES: Final = ("init", "run", "shutdown", "stop", "dead", "fenced")
NODE_DOMAIN_STATES: Final = ("ready", "flush", "flushed", "unflush", "fence-flush")
NODE_TYPES: Final = ("coordinator", "hypervisor")
NETWORK_TYPES: Final = ("bridged", "managed")
#: Selectors an operator may store on a VM; ``none`` defers to the cluster default.
SELECTORS: Final = ("mem", "memprov", "load", "vcpus", "vms", "none")
#: Selectors that may be the cluster default (``none`` cannot defer to itself).
DEFAULT_SELECTORS: Final = ("mem", "memprov", "load", "vcpus", "vms")
DEFAULT_SELECTOR: Final = "mem"
#: How a running VM changes node: ``live`` only (never shut down for a migration),
#: ``shutdown`` only, or ``none`` (live, falling back to shutdown-and-start).
MIGRATION_METHODS: Final = ("live", "shutdown", "none")


# --------------------------------------------------------------------------- fields

DOMAIN_FIELDS: Final[tuple[Field[Any], ...]] = (
    Field("xml", TEXT, "", "The full libvirt domain XML."),
    Field("state", TEXT, "stop", "Desired or current state: " + ", ".join(VM_STATES) + "."),
    Field("node", TEXT, "", "Node the VM runs on, or is going to."),
    Field("lastnode", TEXT, "", "Previous node of a temporary migration; '' when none."),
    Field("failedreason", TEXT, "", "Why the last action failed; '' when none."),
    Field("node_limit", COMMA_LIST, (), "Comma-separated node names the VM may run on; '' = any."),
    Field("node_selector", TEXT, "none", "Target selector: " + ", ".join(SELECTORS) + "."),
    Field(
        "node_autostart", BOOL, False, "'True'/'False': start the VM when its node is next ready."
    ),
    Field(
        "rbdlist", COMMA_LIST, (), "Comma-separated pool/volume names of the VM's Ceph RBD disks."
    ),
    Field("consolelog", TEXT, "", "The last lines of the VM's serial console log."),
    Field(
        "migration_method",
        TEXT,
        "none",
        "How the VM migrates: 'live' only, 'shutdown' only, or 'none' (live, else shutdown).",
    ),
    Field(
        "lockflush",
        TEXT,
        "",
        "'requested' asks the VM's node daemon to clear its RBD locks; then the outcome.",
    ),
    Field(
        "console",
        JSON_OBJECT,
        {},
        "The console buffer: numbered last lines, the partial line, and the file it was "
        "read from (see pvc_common.console); written by the VM's node, apart from the row.",
    ),
    Field(
        "request",
        INT,
        0,
        "Number of the last state or placement request (clients add one to it with each).",
    ),
    Field(
        "confirmed",
        INT,
        0,
        "The request number its node daemon last confirmed running on its node.",
    ),
    Field(
        "history",
        JSON_OBJECT,
        {},
        "JSON: the last changes of the VM (when, what, who or which daemon, why), written "
        "with each change; bounded (see pvc_common.history).",
    ),
)

NODE_FIELDS: Final[tuple[Field[Any], ...]] = (
    Field("daemonstate", TEXT, "stop", "Node daemon state: " + ", ".join(NODE_DAEMON_STATES) + "."),
    Field("domainstate", TEXT, "ready", "VM hosting state: " + ", ".join(NODE_DOMAIN_STATES) + "."),
    Field("routerstate", TEXT, "client", "Router role: primary, secondary or client."),
    Field("staticdata", SPACE_LIST, (), "Space-separated: CPU count, kernel, OS, architecture."),
    Field("memtotal", INT, 0, "Host memory in MiB."),
    Field("memused", INT, 0, "Host memory in use, MiB."),
    Field("memfree", INT, 0, "Host memory free, MiB."),
    Field("memalloc", INT, 0, "MiB allocated to running VMs."),
    Field("memprov", INT, 0, "MiB provisioned to all VMs assigned to the node."),
    Field("vcpualloc", INT, 0, "vCPUs allocated to running VMs."),
    Field("cpuload", FLOAT, 0.0, "1-minute load average."),
    Field("domainscount", INT, 0, "Number of running VMs."),
    Field("runningdomains", SPACE_LIST, (), "Space-separated UUIDs of the running VMs."),
    Field("keepalive", INT, 0, "Unix time (seconds) of the daemon's last keepalive."),
    Field("ipmihostname", TEXT, "", "BMC address used for fencing."),
    Field("ipmiusername", TEXT, "", "BMC user name."),
    Field("ipmipassword", TEXT, "", "BMC password."),
    Field("libvirturi", TEXT, "", "URI at which peer daemons reach this node's libvirtd."),
    Field("migrationuri", TEXT, "", "QEMU migration data URI toward this node."),
    Field(
        "maintenance",
        JSON_OBJECT,
        {},
        "JSON record of the node's current or last flush or ready: per-VM plan and outcome.",
    ),
    Field(
        "stats",
        JSON_OBJECT,
        {},
        "JSON counters kept by the node's daemon: migrations it sent and fences it made, "
        "with their total seconds (exported by the API daemon's /metrics).",
    ),
)

NETWORK_FIELDS: Final[tuple[Field[Any], ...]] = (
    Field("nettype", TEXT, "bridged", "Network type: " + ", ".join(NETWORK_TYPES) + "."),
)

CONFIG_FIELDS: Final[tuple[Field[Any], ...]] = (
    Field(
        "migration_target_selector",
        TEXT,
        DEFAULT_SELECTOR,
        "Cluster default selector used when a VM's selector is 'none'.",
    ),
)


def _index(fields: tuple[Field[Any], ...]) -> Mapping[str, Field[Any]]:
    return {field.key: field for field in fields}


DOMAIN_FIELD: Final = _index(DOMAIN_FIELDS)
NODE_FIELD: Final = _index(NODE_FIELDS)
NETWORK_FIELD: Final = _index(NETWORK_FIELDS)
CONFIG_FIELD: Final = _index(CONFIG_FIELDS)

#: Domain keys a listing needs; the console and history keys are left out: they can be large.
DOMAIN_LIST_KEYS: Final = tuple(
    f.key for f in DOMAIN_FIELDS if f.key not in ("consolelog", "console", "history")
)


# --------------------------------------------------------------------------- names and paths

_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def validate_node_name(name: str) -> str:
    """Return ``name`` if it is a valid node name, else raise :class:`InvalidInput`."""
    if not _NODE_NAME.match(name):
        raise InvalidInput(f"invalid node name {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def validate_uuid(uuid: str) -> str:
    """Return ``uuid`` in canonical lower-case form, or raise :class:`InvalidInput`."""
    canonical = uuid.strip().lower()
    if not _UUID.match(canonical):
        raise InvalidInput(f"invalid UUID {uuid!r}")
    return canonical


def is_uuid(text: str) -> bool:
    """Whether ``text`` is a canonical UUID string (any case)."""
    return bool(_UUID.match(text.strip().lower()))


def validate_vni(vni: int | str) -> int:
    """Return the VNI as an int if it is within 1..16777215, else raise :class:`InvalidInput`."""
    try:
        number = int(str(vni).strip())
    except ValueError:
        raise InvalidInput(f"invalid VNI {vni!r}: expected an integer") from None
    if not 1 <= number <= 16_777_215:
        raise InvalidInput(f"invalid VNI {number}: must be between 1 and 16777215")
    return number


def domain_path(uuid: str) -> str:
    """Path of a VM's own znode (data: its name)."""
    return f"{DOMAINS_PATH}/{uuid}"


def domain_key_path(uuid: str, key: str) -> str:
    """Path of one key of a VM; ``key`` must be one of :data:`DOMAIN_FIELDS`."""
    _check_key(DOMAIN_FIELD, key, "VM")
    return f"{DOMAINS_PATH}/{uuid}/{key}"


def node_path(name: str) -> str:
    """Path of a node's own znode (data: its type)."""
    return f"{NODES_PATH}/{name}"


def node_key_path(name: str, key: str) -> str:
    """Path of one key of a node; ``key`` must be one of :data:`NODE_FIELDS`."""
    _check_key(NODE_FIELD, key, "node")
    return f"{NODES_PATH}/{name}/{key}"


def network_path(vni: int) -> str:
    """Path of a network's own znode (data: its description)."""
    return f"{NETWORKS_PATH}/{vni}"


def network_key_path(vni: int, key: str) -> str:
    """Path of one key of a network; ``key`` must be one of :data:`NETWORK_FIELDS`."""
    _check_key(NETWORK_FIELD, key, "network")
    return f"{NETWORKS_PATH}/{vni}/{key}"


def liveness_path(name: str) -> str:
    """Path of a node daemon's ephemeral liveness znode."""
    return f"{LIVENESS_PATH}/{name}"


def fence_lock_path(name: str) -> str:
    """Path of the lock a coordinator holds while it fences node ``name``."""
    return f"{LOCKS_PATH}/fence-{name}"


def config_key_path(key: str) -> str:
    """Path of one cluster setting; ``key`` must be one of :data:`CONFIG_FIELDS`."""
    _check_key(CONFIG_FIELD, key, "config")
    return f"{CONFIG_PATH}/{key}"


def _check_key(fields: Mapping[str, Field[Any]], key: str, what: str) -> None:
    if key not in fields:
        # A programming error, not user input: the schema is the only place keys exist.
        raise KeyError(f"{key!r} is not a {what} key of schema version {SCHEMA_VERSION}")


def encode_schema_version(version: int = SCHEMA_VERSION) -> bytes:
    """Encode the value of ``/schema/version``."""
    return INT.encode(version)


def decode_schema_version(raw: bytes | None) -> int:
    """Decode ``/schema/version`` (0 when missing)."""
    return INT.decode(raw)
