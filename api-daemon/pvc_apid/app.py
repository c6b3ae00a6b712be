"""The Flask application: the routes of :mod:`pvc_apid.routes`, API keys, JSON errors.

Every answer is JSON. Errors are ``{"message": ...}`` with the status of the project's
error class (400 invalid, 401 unauthenticated, 404 not found, 409 conflict, 412 not
possible now, 503 ZooKeeper unavailable); never an HTML page, never a 500 for bad input.
"""

from __future__ import annotations

import hmac
import html
import logging
import re
from collections.abc import Sequence
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from pvc_common.errors import InvalidInput, PvcError
from pvc_common.history import acting_as
from pvc_common.store import ZkStore

from .metrics import cluster_registry
from .routes import DEFAULT_MAX_WAIT, PREFIX, ROUTES, WAIT_TIMEOUT, Param, Route, read_params

log = logging.getLogger(__name__)

#: The header carrying the API key.
KEY_HEADER = "X-Api-Key"


def key_index(given: str | None, keys: Sequence[str]) -> int | None:
    """The position of ``given`` among ``keys`` (None: not one), compared in constant time.

    Every key is compared (no early return), so the time taken does not tell which key,
    or how much of one, matched.
    """
    if not given:
        return None
    candidate = given.encode()
    found: int | None = None
    for index, key in enumerate(keys):
        if hmac.compare_digest(candidate, key.encode()):
            found = index
    return found


def key_accepted(given: str | None, keys: Sequence[str]) -> bool:
    """Whether ``given`` is one of ``keys`` (see :func:`key_index`)."""
    return key_index(given, keys) is not None


def given_key() -> str | None:
    """The API key of the request: ``X-Api-Key``, or an ``Authorization: Bearer`` token
    (what Prometheus sends when a scrape configuration gives credentials)."""
    key = request.headers.get(KEY_HEADER)
    if key is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return key


def create_app(
    store: ZkStore,
    *,
    keys: Sequence[str],
    authentication: bool = True,
    max_wait: int = DEFAULT_MAX_WAIT,
) -> Flask:
    """The application, serving ``store``'s cluster; no request waits over ``max_wait`` s."""
    app = Flask("pvcapid")
    app.json.sort_keys = False  # type: ignore[attr-defined]

    def error(status: int, message: str) -> tuple[Response, int]:
        return jsonify({"message": message}), status

    @app.errorhandler(PvcError)
    def pvc_error(caught: PvcError) -> tuple[Response, int]:
        return error(caught.http_status, str(caught))

    @app.errorhandler(HTTPException)
    def http_error(caught: HTTPException) -> tuple[Response, int]:
        return error(caught.code or 500, caught.description or caught.name)

    @app.errorhandler(Exception)
    def unexpected(caught: Exception) -> tuple[Response, int]:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return error(500, "internal error (see the API daemon's log)")

    @app.before_request
    def authenticate() -> tuple[Response, int] | None:
        # Compared once per request; the view names the key's position in VM histories.
        g.key_index = key_index(given_key(), keys)
        route = _route_of(request.endpoint)
        if not authentication or (route is not None and route.public):
            return None
        if request.endpoint in ("openapi", "api-docs"):
            return None
        if g.key_index is None:
            return error(401, f"a valid API key is required in the {KEY_HEADER} header")
        return None

    registry = cluster_registry(store)

    @app.get("/metrics", endpoint="metrics")
    def metrics() -> Response:
        # Read from ZooKeeper now: a failure is a JSON 503 like any other (target down).
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    for route in ROUTES:
        app.add_url_rule(
            PREFIX + route.path,
            endpoint=_endpoint(route),
            view_func=_view(store, route, max_wait),
            methods=[route.method],
        )

    @app.get(PREFIX + "/openapi.json", endpoint="openapi")
    def openapi() -> Response:
        return jsonify(openapi_document(max_wait))

    @app.get(PREFIX + "/docs", endpoint="api-docs")
    def api_docs() -> Response:
        return Response(api_page(max_wait), mimetype="text/html")

    return app


def _endpoint(route: Route) -> str:
    return f"{route.method} {route.path or '/'}"


def _route_of(endpoint: str | None) -> Route | None:
    return next((route for route in ROUTES if _endpoint(route) == endpoint), None)


def _view(store: ZkStore, route: Route, max_wait: int) -> Any:
    def view(**path: str) -> Response:
        given: dict[str, Any] = dict(request.args.items())
        given.update(request.form.items())
        body = request.get_json(silent=True) if request.data else None
        if request.data and not isinstance(body, dict):
            raise InvalidInput("the request body must be a JSON object")
        given.update(body or {})
        values = read_params(route, given)
        if WAIT_TIMEOUT in values:
            # A waiting request holds a server thread: bound it by the configuration.
            if WAIT_TIMEOUT in given and values[WAIT_TIMEOUT] > max_wait:
                raise InvalidInput(
                    f"parameter {WAIT_TIMEOUT!r} must be at most this server's max_wait "
                    f"({max_wait} s)"
                )
            values[WAIT_TIMEOUT] = min(values[WAIT_TIMEOUT], max_wait)
        # The VM history names who asked: this daemon, for which client and key.
        index = g.key_index
        actor = f"pvcapid for {request.remote_addr}"
        if index is not None:
            actor += f" (key #{index + 1})"
        with acting_as(actor):
            result = route.handler(store, **path, **values)
        answer = jsonify(result)
        answer.status_code = route.status
        return answer

    return view


# --------------------------------------------------------------------------- OpenAPI

_PATH_VARIABLE = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


def _param_schema(param: Param, max_wait: int) -> dict[str, Any]:
    """The JSON schema of one parameter's value, with its choices, bounds and default."""
    described: dict[str, Any] = {"type": param.kind}
    if param.choices:
        described["enum"] = list(param.choices)
    if param.minimum is not None:
        described["minimum"] = param.minimum
    maximum = max_wait if param.name == WAIT_TIMEOUT else param.maximum
    if maximum is not None:
        described["maximum"] = maximum
    if param.default is not None:
        described["default"] = (
            min(param.default, max_wait) if param.name == WAIT_TIMEOUT else param.default
        )
    return described


def openapi_document(max_wait: int = DEFAULT_MAX_WAIT) -> dict[str, Any]:
    """The OpenAPI 3 description, generated from :data:`ROUTES` (with this ``max_wait``)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        path = _PATH_VARIABLE.sub(r"{\1}", PREFIX + route.path)
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
            }
            for name in _PATH_VARIABLE.findall(route.path)
        ] + [
            {
                "name": param.name,
                "in": "query",
                "required": param.required,
                "description": param.description,
                "schema": _param_schema(param, max_wait),
            }
            for param in route.params
        ]
        responses: dict[str, Any] = {
            str(route.status): {"description": "OK", "content": {"application/json": {}}},
            "400": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
            "412": {"$ref": "#/components/responses/Error"},
            "503": {"$ref": "#/components/responses/Error"},
        }
        if route.method != "GET":
            responses["409"] = {"$ref": "#/components/responses/Error"}
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": _endpoint(route),
            "parameters": parameters,
            "responses": responses,
        }
        if route.public:
            operation["security"] = []
        else:
            responses["401"] = {"$ref": "#/components/responses/Error"}
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "pvcapid", "version": "1"},
        "paths": paths,
        "security": [{"ApiKey": []}],
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER}},
            "responses": {
                "Error": {
                    "description": "An error, said in one line",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"message": {"type": "string"}},
                                "required": ["message"],
                            }
                        }
                    },
                }
            },
        },
    }


def api_page(max_wait: int = DEFAULT_MAX_WAIT) -> str:
    """A plain human-readable page of the endpoints, from the OpenAPI document."""
    document = openapi_document(max_wait)
    rows = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            params = ", ".join(
                param["name"] + ("*" if param["required"] else "")
                for param in operation["parameters"]
                if param["in"] != "path"
            )
            key = "" if operation.get("security") == [] else "yes"
            rows.append(
                f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(operation['summary'])}</td><td>{html.escape(params)}</td>"
                f"<td>{key}</td></tr>"
            )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>pvcapid API</title></head>"
        "<body><h1>pvcapid API</h1><p>Parameters come as query values, form values or a JSON "
        f"object body; * marks required ones. API key: the <code>{KEY_HEADER}</code> header. "
        f"Machine-readable: <a href='{PREFIX}/openapi.json'>openapi.json</a>.</p>"
        "<table border='1' cellpadding='4'><tr><th>Method</th><th>Path</th><th>What</th>"
        "<th>Parameters</th><th>Key</th></tr>" + "".join(rows) + "</table></body></html>"
    )
