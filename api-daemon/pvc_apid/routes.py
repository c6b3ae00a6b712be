"""The API's endpoints as data: path, method, parameters and the operation each calls.

The Flask application registers exactly these, and the OpenAPI document is generated from
them, so the two cannot drift. Handlers only translate between HTTP and the operations
of ``pvc_common`` (the same the CLI calls): no business logic lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pvc_common import cluster_ops, node_ops, schema, vm_ops
from pvc_common.errors import InvalidInput
from pvc_common.store import ZkStore

#: The API's version prefix.
PREFIX = "/api/v1"


@dataclass(frozen=True)
class Param:
    """One parameter, from the query string, a form or a JSON body alike."""

    name: str
    kind: str  # "string", "integer" or "boolean"
    description: str
    required: bool = False


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
            continue
        values[name] = _convert(param, given[name])
    return values


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


ROUTES: tuple[Route, ...] = (
    Route("GET", "", "The API's name and versions (no API key needed)", _version, public=True),
    Route("GET", "/status", "Cluster status: health, node and VM counts", _status),
    Route("GET", "/node", "Every node with its states and figures", _nodes),
    Route("GET", "/node/<node>", "One node", _node),
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
    Route("GET", "/vm/<vm>", "One VM, by name or UUID", _vm),
    Route(
        "GET",
        "/vm/<vm>/console",
        "A VM's console: the last lines, or the lines from a position (see 'next')",
        _console,
        (
            Param("lines", "integer", "only the last N lines"),
            Param("since", "integer", "only lines from this position (a previous 'next')"),
        ),
    ),
)
