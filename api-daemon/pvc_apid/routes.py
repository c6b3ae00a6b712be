"""The API's endpoints as data: path, method, parameters and the operation each calls.

The Flask application registers exactly these, and the OpenAPI document is generated from
them, so the two cannot drift. Handlers only translate between HTTP and the operations
of ``pvc_common`` (the same the CLI calls): no business logic lives here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pvc_common import cluster_ops, maintenance, network_ops, node_ops, schema, vm_ops, vm_rules
from pvc_common.errors import InvalidInput
from pvc_common.store import ZkStore
from pvc_common.vm_wait import wait_for_vm

#: The API's version prefix.
PREFIX = "/api/v1"


@dataclass(frozen=True)
class Param:
    """One parameter, from the query string, a form or a JSON body alike."""

    name: str
    kind: str  # "string", "integer" or "boolean"
    description: str
    required: bool = False
    #: The value a missing optional parameter takes (None: the operation's own default).
    default: Any = None
    #: The accepted values of a string parameter (empty: any string).
    choices: tuple[str, ...] = ()
    #: The bounds of an integer parameter.
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Route:
    """One endpoint."""

    method: str
    path: str  # Flask syntax: /vm/<vm>
    summary: str
    handler: Callable[..., Any]
    params: tuple[Param, ...] = ()
    #: Answered without an API key (version/health, and the API's own description).
    public: bool = False
    #: The status of a success (201 for a creation).
    status: int = 200


def read_params(route: Route, given: Mapping[str, Any]) -> dict[str, Any]:
    """The route's parameters from ``given``, converted; unknown or bad ones are refused."""
    known = {param.name: param for param in route.params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise InvalidInput(f"unknown parameter(s) {', '.join(unknown)} (allowed: {allowed})")
    values: dict[str, Any] = {}
    for name, param in known.items():
        if name not in given:
            if param.required:
                raise InvalidInput(f"parameter {name!r} is required")
            if param.default is not None:
                values[name] = param.default
            continue
        values[name] = _checked(param, _convert(param, given[name]))
    return values


def _checked(param: Param, value: Any) -> Any:
    """``value`` if it is among the parameter's choices and within its bounds."""
    if param.choices and value not in param.choices:
        raise InvalidInput(
            f"parameter {param.name!r} must be one of {', '.join(param.choices)}, not {value!r}"
        )
    if param.minimum is not None and value < param.minimum:
        raise InvalidInput(f"parameter {param.name!r} must be at least {param.minimum}")
    if param.maximum is not None and value > param.maximum:
        raise InvalidInput(f"parameter {param.name!r} must be at most {param.maximum}")
    return value


def _convert(param: Param, value: Any) -> Any:
    if param.kind == "integer":
        if isinstance(value, bool):
            raise InvalidInput(f"parameter {param.name!r} must be an integer, not {value!r}")
        try:
            return int(str(value).strip())
        except ValueError:
            raise InvalidInput(
                f"parameter {param.name!r} must be an integer, not {value!r}"
            ) from None
    if param.kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise InvalidInput(f"parameter {param.name!r} must be true or false, not {value!r}")
    if not isinstance(value, str):
        raise InvalidInput(f"parameter {param.name!r} must be a string, not {value!r}")
    return value


# --------------------------------------------------------------------------- handlers


def _version(store: ZkStore) -> dict[str, Any]:
    return {"name": "pvcapid", "api": PREFIX, "schema_version": schema.SCHEMA_VERSION}


def _status(store: ZkStore) -> dict[str, Any]:
    return cluster_ops.cluster_status(store).as_dict()


def _nodes(store: ZkStore) -> list[dict[str, Any]]:
    live = node_ops.live_nodes(store)
    return [node_ops.node_as_dict(node, live) for node in node_ops.list_nodes(store)]


def _node(store: ZkStore, node: str) -> dict[str, Any]:
    return node_ops.node_as_dict(node_ops.node_info(store, node), node_ops.live_nodes(store))


def _vms(
    store: ZkStore, node: str | None = None, state: str | None = None, limit: str | None = None
) -> list[dict[str, Any]]:
    views = vm_ops.list_vms(store, node=node, state=state, name_filter=limit)
    return [view.as_dict() for view in views]


def _vm(store: ZkStore, vm: str) -> dict[str, Any]:
    return vm_ops.vm_info(store, vm).as_dict(long=True)


def _console(
    store: ZkStore, vm: str, lines: int | None = None, since: int | None = None
) -> dict[str, Any]:
    return vm_ops.console_view(store, vm, lines=lines, since=since)


def _history(store: ZkStore, vm: str, last: int | None = None) -> dict[str, Any]:
    return vm_ops.vm_history(store, vm, last=last)


def _define(
    store: ZkStore,
    xml: str,
    node: str | None = None,
    limit: str | None = None,
    selector: str = "none",
    autostart: bool = False,
    migration_method: str = "none",
) -> dict[str, Any]:
    record = vm_ops.define_vm(
        store,
        xml,
        target=node,
        limit=limit,
        selector=selector,
        autostart=autostart,
        migration_method=migration_method,
    )
    return vm_ops.vm_info(store, record.uuid).as_dict()


def _meta(
    store: ZkStore,
    vm: str,
    limit: str | None = None,
    selector: str | None = None,
    autostart: bool | None = None,
    migration_method: str | None = None,
) -> dict[str, Any]:
    record = vm_ops.set_vm_meta(
        store,
        vm,
        limit=limit,
        selector=selector,
        autostart=autostart,
        migration_method=migration_method,
    )
    return vm_ops.vm_info(store, record.uuid).as_dict()


def _modify(store: ZkStore, vm: str, xml: str, restart: bool = False) -> dict[str, Any]:
    record = vm_ops.modify_vm(store, vm, xml, restart=restart)
    return vm_ops.vm_info(store, record.uuid).as_dict()


def _delete(store: ZkStore, vm: str, delete_disks: bool = False) -> dict[str, Any]:
    record = vm_ops.remove_vm(store, vm) if delete_disks else vm_ops.undefine_vm(store, vm)
    return {"message": f"VM {record.name!r} removed", "uuid": record.uuid}


def _followed(
    store: ZkStore, record: Any, action: str, wait: bool, wait_timeout: int
) -> dict[str, Any]:
    """The VM after a request; with ``wait``, the request's outcome too (as --wait)."""
    answer: dict[str, Any] = {"vm": vm_ops.vm_info(store, record.uuid).as_dict()}
    if wait:
        target = record.node if action in ("migrate", "move", "unmigrate") else ""
        outcome = wait_for_vm(
            store, record.uuid, action, target=target, request=record.request, timeout=wait_timeout
        )
        answer["outcome"] = {"ok": outcome.ok, "message": outcome.message}
        answer["vm"] = vm_ops.vm_info(store, record.uuid).as_dict()
    return answer


def _state_of(store: ZkStore, vm: str) -> dict[str, Any]:
    view = vm_ops.vm_info(store, vm).as_dict()
    return {"name": view["name"], "uuid": view["uuid"], "state": view["state"]}


def _set_state(
    store: ZkStore, vm: str, state: str, wait: bool = False, wait_timeout: int = 120
) -> dict[str, Any]:
    record = vm_ops.change_vm_state(store, vm, state)
    return _followed(store, record, state, wait, wait_timeout)


def _node_of(store: ZkStore, vm: str) -> dict[str, Any]:
    view = vm_ops.vm_info(store, vm).as_dict()
    return {key: view[key] for key in ("name", "uuid", "node", "lastnode", "migrated")}


def _move(
    store: ZkStore,
    vm: str,
    action: str,
    node: str | None = None,
    force: bool = False,
    wait: bool = False,
    wait_timeout: int = 120,
) -> dict[str, Any]:
    if action == "migrate":
        record = vm_ops.migrate_vm(store, vm, target=node, force=force)
    elif action == "move":
        record = vm_ops.move_vm(store, vm, target=node)
    elif action == "unmigrate":
        record = vm_ops.unmigrate_vm(store, vm)
    else:
        raise InvalidInput(f"invalid action {action!r}: use migrate, move or unmigrate")
    return _followed(store, record, action, wait, wait_timeout)


def _flush_locks(store: ZkStore, vm: str) -> dict[str, Any]:
    record = vm_ops.request_flush_locks(store, vm)
    return {"message": f"RBD lock flush of {record.name!r} requested", "uuid": record.uuid}


def _domain_state(store: ZkStore, node: str) -> dict[str, Any]:
    record = node_ops.node_info(store, node)
    return {"name": record.name, "domainstate": record.domainstate}


def _set_domain_state(
    store: ZkStore, node: str, state: str, wait: bool = False, wait_timeout: int = 1800
) -> dict[str, Any]:
    asked = time.time()
    record = node_ops.set_node_domain_state(store, node, state)
    answer: dict[str, Any] = {"name": record.name, "domainstate": record.domainstate}
    if wait:
        outcome = maintenance.wait_for_maintenance(
            store, node, state, started_after=asked, timeout=wait_timeout
        )
        answer["outcome"] = {"ok": outcome.ok, "message": outcome.message}
        answer["vms"] = maintenance.outcome_rows(outcome.record)
    return answer


def _networks(store: ZkStore) -> list[dict[str, Any]]:
    return [vars(network) for network in network_ops.list_networks(store)]


def _network(store: ZkStore, vni: str) -> dict[str, Any]:
    record = network_ops.network_info(store, vni)
    return {**vars(record), "vms": network_ops.network_users(store, record.vni)}


def _add_network(
    store: ZkStore, vni: int, description: str = "", nettype: str = "bridged"
) -> dict[str, Any]:
    return vars(network_ops.add_network(store, vni, description=description, nettype=nettype))


def _remove_network(store: ZkStore, vni: str, force: bool = False) -> dict[str, Any]:
    record = network_ops.remove_network(store, vni, force=force)
    return {"message": f"network {record.vni} removed"}


def _wait(default_timeout: int) -> tuple[Param, Param]:
    """``wait`` and ``wait_timeout``; the server caps the latter (``api.max_wait``)."""
    return (
        Param("wait", "boolean", "wait for the daemons to carry it out and give the outcome"),
        Param(
            "wait_timeout",
            "integer",
            "seconds to wait at most (the request stays in place); at most the server's "
            "max_wait, which is also the default when that is lower",
            default=default_timeout,
            minimum=0,
        ),
    )


#: The name of the parameter the server's ``max_wait`` bounds.
WAIT_TIMEOUT = "wait_timeout"
#: The longest a request may wait for the daemons unless the configuration says otherwise.
DEFAULT_MAX_WAIT = 3600


#: The metadata a definition and a metadata change both take (besides the limit).
PLACEMENT_METADATA = (
    Param("selector", "string", "how a target is chosen", choices=schema.SELECTORS),
    Param("autostart", "boolean", "start it when its node is next ready"),
    Param("migration_method", "string", "how it changes node", choices=schema.MIGRATION_METHODS),
)


ROUTES: tuple[Route, ...] = (
    Route("GET", "", "The API's name and versions (no API key needed)", _version, public=True),
    Route("GET", "/status", "Cluster status: health, node and VM counts", _status),
    Route("GET", "/node", "Every node with its states and figures", _nodes),
    Route("GET", "/node/<node>", "One node", _node),
    Route("GET", "/node/<node>/domain-state", "A node's domain state", _domain_state),
    Route(
        "POST",
        "/node/<node>/domain-state",
        "Flush a node (drain it for maintenance) or make it ready again",
        _set_domain_state,
        (
            Param(
                "state",
                "string",
                "flush or ready",
                required=True,
                choices=tuple(node_ops.DOMAIN_STATE_ACTIONS),
            ),
            *_wait(1800),
        ),
    ),
    Route("GET", "/network", "Every network", _networks),
    Route(
        "POST",
        "/network",
        "Add a network",
        _add_network,
        (
            Param("vni", "integer", "its VNI", required=True, minimum=1, maximum=16_777_215),
            Param("description", "string", "a description"),
            Param("nettype", "string", "its type", choices=schema.NETWORK_TYPES),
        ),
        status=201,
    ),
    Route("GET", "/network/<vni>", "One network and the VMs using it", _network),
    Route(
        "DELETE",
        "/network/<vni>",
        "Remove a network",
        _remove_network,
        (Param("force", "boolean", "even if VMs use it"),),
    ),
    Route(
        "GET",
        "/vm",
        "Every VM (optionally filtered)",
        _vms,
        (
            Param("node", "string", "only VMs assigned to this node"),
            Param("state", "string", "only VMs in this state"),
            Param("limit", "string", "only VMs whose name contains this text (or this UUID)"),
        ),
    ),
    Route(
        "POST",
        "/vm",
        "Define a VM from its libvirt XML (stopped; placed by node, or limit and selector)",
        _define,
        (
            Param("xml", "string", "the libvirt domain XML", required=True),
            Param("node", "string", "the node to define it on (default: chosen)"),
            Param("limit", "string", "comma-separated nodes it may run on"),
            *PLACEMENT_METADATA,
        ),
        status=201,
    ),
    Route("GET", "/vm/<vm>", "One VM, by name or UUID", _vm),
    Route(
        "POST",
        "/vm/<vm>",
        "Set a VM's metadata (only what is given; limit '' clears it)",
        _meta,
        (
            Param("limit", "string", "comma-separated nodes it may run on ('' = any)"),
            *PLACEMENT_METADATA,
        ),
    ),
    Route(
        "PUT",
        "/vm/<vm>",
        "Replace a VM's XML",
        _modify,
        (
            Param("xml", "string", "the new libvirt domain XML", required=True),
            Param("restart", "boolean", "restart it if it runs, to apply the XML"),
        ),
    ),
    Route(
        "DELETE",
        "/vm/<vm>",
        "Undefine a stopped VM (or remove it with its RBD disks)",
        _delete,
        (Param("delete_disks", "boolean", "also delete its RBD disks"),),
    ),
    Route("GET", "/vm/<vm>/state", "A VM's state", _state_of),
    Route(
        "POST",
        "/vm/<vm>/state",
        "Ask for a VM state: start, restart, shutdown, stop or disable",
        _set_state,
        (
            Param(
                "state",
                "string",
                "the state wanted",
                required=True,
                choices=vm_rules.STATE_ACTIONS,
            ),
            *_wait(120),
        ),
    ),
    Route("GET", "/vm/<vm>/node", "A VM's node and previous node", _node_of),
    Route(
        "POST",
        "/vm/<vm>/node",
        "Migrate (temporarily), move (for good) or unmigrate a VM",
        _move,
        (
            Param(
                "action",
                "string",
                "what to do",
                required=True,
                choices=("migrate", "move", "unmigrate"),
            ),
            Param("node", "string", "the target (default: chosen by its selector)"),
            Param("force", "boolean", "migrate a migrated VM again, keeping its home"),
            *_wait(120),
        ),
    ),
    Route("POST", "/vm/<vm>/locks", "Clear a stopped VM's stale RBD locks", _flush_locks),
    Route(
        "GET",
        "/vm/<vm>/console",
        "A VM's console: the last lines, or the lines from a position (see 'next')",
        _console,
        (
            Param("lines", "integer", "only the last N lines", minimum=0),
            Param(
                "since", "integer", "only lines from this position (a previous 'next')", minimum=0
            ),
        ),
    ),
    Route(
        "GET",
        "/vm/<vm>/history",
        "A VM's recorded changes, oldest first: when, what, by whom, why",
        _history,
        (Param("last", "integer", "only the last N changes", minimum=0),),
    ),
)
