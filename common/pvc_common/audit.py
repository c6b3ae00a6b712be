"""A strict check of the stored tree: every value as this program's writers write it.

The readers in :mod:`pvc_common.snapshot` decode leniently (a bad number reads as 0, a
missing key as its default), so that one damaged key never stops a listing. This audit
is the opposite: it reports every key a writer of this program would never have written
(a state outside the schema's list, a limit naming an unknown node, XML that does not
parse or names another UUID, a missing or unknown key, two VMs with one name). It is
what ``pvc cluster check`` runs, and what the API's fuzz test asserts after every request.

:func:`audit_tree` is pure: it takes every znode's path and data, so the rules are tested
without ZooKeeper; :func:`audit_cluster` reads the tree and calls it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import schema
from .domain_xml import parse_domain_xml
from .errors import InvalidInput
from .store import ZkStore


@dataclass(frozen=True)
class Problem:
    """One malformed znode: where it is and what is wrong, in one line."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class AuditReport:
    """What was checked and what was found wrong."""

    vms: int
    nodes: int
    networks: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """Whether nothing was found wrong."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (for JSON output)."""
        return {
            "ok": self.ok,
            "checked": {"vms": self.vms, "nodes": self.nodes, "networks": self.networks},
            "problems": [{"path": p.path, "message": p.message} for p in self.problems],
        }


# A value check returns None when the text is fine, else what is wrong with it.
Check = Callable[[str], str | None]


def _one_of(allowed: tuple[str, ...]) -> Check:
    return lambda text: None if text in allowed else f"{text!r} is not one of {', '.join(allowed)}"


def _integer(minimum: int = 0) -> Check:
    def check(text: str) -> str | None:
        try:
            value = int(text)
        except ValueError:
            return f"{text!r} is not an integer"
        return None if value >= minimum else f"{value} is below {minimum}"

    return check


def _number(text: str) -> str | None:
    try:
        float(text)
    except ValueError:
        return f"{text!r} is not a number"
    return None


def _json_object(text: str) -> str | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return "is not valid JSON"
    return None if isinstance(value, dict) else "is JSON but not an object"


def _uuids(text: str) -> str | None:
    bad = [item for item in text.split() if not schema.is_uuid(item)]
    return f"not UUIDs: {', '.join(bad)}" if bad else None


def _any(text: str) -> str | None:
    return None


_BOOL = _one_of(("True", "False"))

#: How each key's text must look, beyond decoding as UTF-8. Keys that name nodes or
#: depend on other keys are checked separately, with the tree in hand.
_DOMAIN_CHECKS: Mapping[str, Check] = {
    "state": _one_of(schema.VM_STATES),
    "node_selector": _one_of(schema.SELECTORS),
    "node_autostart": _BOOL,
    "migration_method": _one_of(schema.MIGRATION_METHODS),
    "request": _integer(),
    "confirmed": _integer(),
    "console": _json_object,
    "history": _json_object,
}
_NODE_CHECKS: Mapping[str, Check] = {
    "daemonstate": _one_of(schema.NODE_DAEMON_STATES),
    "domainstate": _one_of(schema.NODE_DOMAIN_STATES),
    **{field.key: _integer() for field in schema.NODE_FIELDS if field.codec is schema.INT},
    "cpuload": _number,
    "runningdomains": _uuids,
    "maintenance": _json_object,
    "stats": _json_object,
}
_NETWORK_CHECKS: Mapping[str, Check] = {"nettype": _one_of(schema.NETWORK_TYPES)}
_CONFIG_CHECKS: Mapping[str, Check] = {
    "migration_target_selector": _one_of(schema.DEFAULT_SELECTORS),
}


def audit_tree(tree: Mapping[str, bytes]) -> AuditReport:
    """Check every znode of ``tree`` (path to data, relative to the cluster's root)."""
    problems: list[Problem] = []
    texts: dict[str, str] = {}
    for path, data in tree.items():
        try:
            texts[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(path, "is not UTF-8 text"))
            texts[path] = ""

    version = texts.get(schema.SCHEMA_VERSION_PATH)
    if version is None:
        problems.append(Problem(schema.SCHEMA_VERSION_PATH, "is missing"))
    elif version != str(schema.SCHEMA_VERSION):
        problems.append(
            Problem(
                schema.SCHEMA_VERSION_PATH,
                f"is {version!r}, not this program's {schema.SCHEMA_VERSION}",
            )
        )

    nodes = _entities(texts, schema.NODES_PATH)
    networks = _entities(texts, schema.NETWORKS_PATH)
    domains = _entities(texts, schema.DOMAINS_PATH)
    node_names = set(nodes)

    for name, keys in nodes.items():
        where = schema.node_path(name)
        if not _valid(schema.validate_node_name, name):
            problems.append(Problem(where, "is not a valid node name"))
        problems += _check_value(where, texts[where], _one_of(schema.NODE_TYPES))
        problems += _check_keys(where, keys, schema.NODE_FIELDS, _NODE_CHECKS)

    for vni, keys in networks.items():
        where = f"{schema.NETWORKS_PATH}/{vni}"
        if not _valid(schema.validate_vni, vni) or str(int(vni)) != vni:
            problems.append(Problem(where, "is not a valid VNI"))
        problems += _check_keys(where, keys, schema.NETWORK_FIELDS, _NETWORK_CHECKS)

    owners: dict[str, str] = {}
    for uuid, keys in domains.items():
        where = schema.domain_path(uuid)
        name = texts[where]
        if not _valid(schema.validate_uuid, uuid) or schema.validate_uuid(uuid) != uuid:
            problems.append(Problem(where, "is not a canonical UUID"))
        if not name:
            problems.append(Problem(where, "has no name"))
        elif name in owners:
            problems.append(Problem(where, f"has the name {name!r} of VM {owners[name]} too"))
        else:
            owners[name] = uuid
        problems += _check_keys(where, keys, schema.DOMAIN_FIELDS, _DOMAIN_CHECKS)
        problems += _check_domain_references(where, uuid, name, keys, node_names)

    for key in _children(texts, schema.CONFIG_PATH):
        where = f"{schema.CONFIG_PATH}/{key}"
        if key not in _CONFIG_CHECKS:
            problems.append(Problem(where, "is not a configuration key"))
        else:
            problems += _check_value(where, texts[where], _CONFIG_CHECKS[key])

    return AuditReport(
        vms=len(domains), nodes=len(nodes), networks=len(networks), problems=tuple(problems)
    )


def read_tree(store: ZkStore) -> dict[str, bytes]:
    """Every znode of the cluster's tree, path to data, in a few round trips."""
    paths = [
        path
        for root in (*schema.ROOT_PATHS, schema.PRIMARY_NODE_PATH)
        if store.exists(root)
        for path in (root, *store.descendants(root))
    ]
    reads = store.read_many(paths)
    return {path: read.data for path, read in zip(paths, reads, strict=True) if read}


def audit_cluster(store: ZkStore) -> AuditReport:
    """Read the whole tree and check it (see :func:`audit_tree`)."""
    return audit_tree(read_tree(store))


# --------------------------------------------------------------------------- helpers


def _valid(validate: Callable[[str], Any], text: str) -> bool:
    try:
        validate(text)
    except InvalidInput:
        return False
    return True


def _children(texts: Mapping[str, str], parent: str) -> list[str]:
    prefix = parent + "/"
    return sorted(
        path[len(prefix) :]
        for path in texts
        if path.startswith(prefix) and "/" not in path[len(prefix) :]
    )


def _entities(texts: Mapping[str, str], parent: str) -> dict[str, dict[str, str]]:
    """Each entity under ``parent`` with its keys' texts, in one pass over the paths."""
    prefix = parent + "/"
    found: dict[str, dict[str, str]] = {}
    for path, text in texts.items():
        if not path.startswith(prefix):
            continue
        name, _, key = path[len(prefix) :].partition("/")
        keys = found.setdefault(name, {})
        if key:
            keys[key] = text
    return dict(sorted(found.items()))


def _check_value(path: str, text: str, check: Check) -> list[Problem]:
    wrong = check(text)
    return [Problem(path, wrong)] if wrong else []


def _check_keys(
    where: str,
    keys: Mapping[str, str],
    fields: tuple[schema.Field[Any], ...],
    checks: Mapping[str, Check],
) -> list[Problem]:
    problems = [Problem(f"{where}/{f.key}", "is missing") for f in fields if f.key not in keys]
    known = {f.key for f in fields}
    problems += [
        Problem(f"{where}/{key}", "is not a key of the schema") for key in keys if key not in known
    ]
    for key, text in keys.items():
        problems += _check_value(f"{where}/{key}", text, checks.get(key, _any))
    return problems


def _check_domain_references(
    where: str, uuid: str, name: str, keys: Mapping[str, str], node_names: set[str]
) -> list[Problem]:
    """The keys of a VM that must agree with the rest of the tree or with its XML."""
    problems: list[Problem] = []
    for key in ("node", "lastnode"):
        value = keys.get(key, "")
        if value and value not in node_names:
            problems.append(Problem(f"{where}/{key}", f"names unknown node {value!r}"))
    limit = schema.COMMA_LIST.decode(keys.get("node_limit", "").encode())
    unknown = [node for node in limit if node not in node_names]
    if unknown:
        problems.append(
            Problem(f"{where}/node_limit", f"names unknown node(s) {', '.join(unknown)}")
        )
    if "xml" in keys:
        try:
            info = parse_domain_xml(keys["xml"])
        except InvalidInput as error:
            problems.append(Problem(f"{where}/xml", f"does not parse: {error}"))
        else:
            if info.uuid != uuid:
                problems.append(Problem(f"{where}/xml", f"is for UUID {info.uuid}"))
            if info.name != name:
                problems.append(
                    Problem(f"{where}/xml", f"names the VM {info.name!r}, not {name!r}")
                )
    return problems
