"""Render the reference documents from the code: ``docs/schema.md``, ``docs/cli.md`` and
``docs/api-reference.md``.

``schema.md`` comes from :mod:`pvc_common.schema` (paths, fields, codecs, defaults, doc
strings and value sets); ``cli.md`` from the Click ``cli`` group, whose help text is
rendered by Click itself at a fixed width; ``api-reference.md`` from the OpenAPI document
``pvcapid`` serves (:func:`pvc_apid.app.openapi_document`, with the default ``max_wait``).
The output depends on nothing but the code, so a stale document is a failing check, not a
matter of taste.

Usage::

    .venv/bin/python docs/generate.py           # (re)write the documents
    .venv/bin/python docs/generate.py --check   # exit 1 if any is out of date
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from pvc_apid.app import KEY_HEADER, openapi_document
from pvc_apid.routes import DEFAULT_MAX_WAIT, PREFIX
from pvc_cli.main import DEFAULT_ZOOKEEPER, cli
from pvc_common import errors, schema, store
from pvc_common.errors import PvcError

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 100
DIFF_LINES = 40

# How each codec writes a value, by codec name. An unknown codec is an error, so a new one
# cannot reach the documents without a description.
CODECS: dict[str, tuple[str, str]] = {
    "text": ("text", "The string as it is."),
    "bool": (
        "`'True'`/`'False'`",
        "Written `True` or `False`; `true`, `1` and `yes` in any case also read as true, "
        "anything else as false.",
    ),
    "int": (
        "integer",
        "Decimal digits; a fraction is truncated when read, and an unreadable value reads as 0.",
    ),
    "float": (
        "decimal, 2 places",
        "Written with two decimal places (`0.35`); an unreadable value reads as 0.",
    ),
    "comma-list": (
        "comma-separated list",
        "Items joined by `,` without spaces; blanks around items and empty items are dropped.",
    ),
    "space-list": (
        "space-separated list",
        "Items joined by one space; any run of whitespace separates items when read.",
    ),
    "json": (
        "JSON object",
        "Compact JSON with sorted keys; an empty or unreadable value reads as `{}`.",
    ),
}


# --------------------------------------------------------------------------- helpers


def cell(text: str) -> str:
    """Make ``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def code(value: str) -> str:
    """``value`` as inline code; the empty string is shown as ``''``."""
    return f"`{value}`" if value else "`''`"


def values(items: Sequence[str]) -> str:
    """A comma-separated list of inline-code values."""
    return ", ".join(code(item) for item in items)


def codec_label(codec: schema.Codec[Any]) -> str:
    """The readable name of a codec."""
    if codec.name not in CODECS:
        raise KeyError(f"codec {codec.name!r} has no description in docs/generate.py")
    return CODECS[codec.name][0]


def field_table(fields: Sequence[schema.Field[Any]]) -> list[str]:
    """One row per field: key, encoding, default when missing or empty, meaning."""
    rows = ["| Key | Encoding | Default | Meaning |", "|---|---|---|---|"]
    for field in fields:
        default = code(field.codec.encode_text(field.default))
        rows.append(
            f"| {code(field.key)} | {cell(codec_label(field.codec))} | {cell(default)} "
            f"| {cell(field.doc)} |"
        )
    return rows


def docstring(obj: object) -> str:
    """The first paragraph of ``obj``'s docstring, with reST markup turned into Markdown."""
    text = (obj.__doc__ or "").strip().split("\n\n")[0]
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", " ".join(text.split()))
    return text.replace("``", "`")


# --------------------------------------------------------------------------- schema.md

SCHEMA_INTRO = f"""\
# ZooKeeper tree

This is the reference of everything the cluster keeps in ZooKeeper. It is generated from
`common/pvc_common/schema.py` by `docs/generate.py`; do not edit it by hand.

Every value is a UTF-8 string. The layout and the string formats follow the tree of the
classic PVC cluster manager (as of its 0.6 release), so that operators who know that tree,
and the scripts they wrote against it, find every key where they expect it and can read it
the same way. The few places where we differ are listed at the end.

## Schema version

`{schema.SCHEMA_VERSION_PATH}` holds the layout version of the tree as an integer (this program
reads and writes version {schema.SCHEMA_VERSION}). `pvc cluster init` creates it in the same
transaction as the rest of the tree, and wiping a cluster deletes it first, so a tree without
it is not initialised: commands refuse to use it and say to run `pvc cluster init`.
A program that finds a version newer than its own refuses to read or change the tree (a
precondition failure, exit code 5) and asks to be upgraded: it never guesses at a layout
it does not know. One that finds an *older* version refuses too (it would write keys the
tree lacks) and says to run `pvc cluster upgrade`, which adds what each newer version
needs with its default, creating only what is missing and writing the new version last,
so it is safe on a live cluster and safe to run again. Version 2 added `migration_method`
and `lockflush` to VMs, `libvirturi`, `migrationuri` and `maintenance` to nodes, and the
`/liveness` and `/locks` roots; version 3 added `request`, `confirmed` and `console` to
VMs; version 4 added `history` to VMs and `stats` to nodes.

## Row versions

The data of an entity's own znode (`/domains/<uuid>` holds the VM's name, `/nodes/<name>`
the node's type) doubles as the entity's row version. Every change of a VM or a node, even
one that touches a single child key, rewrites that data in the same transaction, on the
condition that its ZooKeeper version is still the one that was read. Two writers that read
the same version therefore cannot both commit: the second gets a conflict (exit code 4,
HTTP 409) and must read again, instead of silently overwriting the first one's change. The
child keys themselves are written without a check; the parent's version guards them all.
Networks are only ever created or deleted whole, each in a single transaction.

## Reads

Listing the cluster reads thousands of znodes (one per key of every VM and node). They are
read with ZooKeeper's multi-read, up to {store.READ_BATCH} paths per request, and every request is
sent before any answer is awaited, so a listing costs a few round trips whatever the size
of the cluster. Servers older than ZooKeeper 3.6, which have no multi-read, get pipelined
single reads instead.

## Missing keys and encodings

A key that is missing, or holds the empty string, reads as the default given in the tables
below. Values are written in these encodings:
"""

SCHEMA_DIFFERENCES = f"""\
## Differences from the classic tree

- A VM whose last action failed has the state `fail`; PVC 0.6 wrote `failed`. Scripts that
  look for `failed` must look for `fail`.
- The cluster's default selector, the one a VM with the selector `none` uses, is kept in
  the tree, at `{schema.config_key_path("migration_target_selector")}`, so that every client and
  daemon agrees on it. A value that is not one of {values(schema.DEFAULT_SELECTORS)}
  reads as `{schema.DEFAULT_SELECTOR}`.
- `{schema.SCHEMA_VERSION_PATH}` and `{schema.CONFIG_PATH}` exist from the first version of the
  tree; PVC added them only after 0.6.
- The node memory figures ({values([f.key for f in schema.NODE_FIELDS if "MiB" in f.doc])})
  are integers in MiB.
"""


def render_schema() -> str:
    """The whole of ``docs/schema.md``."""
    lines = [SCHEMA_INTRO.rstrip("\n"), "", "| Encoding | Stored as |", "|---|---|"]
    lines += [f"| {cell(label)} | {cell(text)} |" for label, text in CODECS.values()]
    lines += [
        "",
        "## Tree",
        "",
        "| Path | Encoding | Default | Meaning |",
        "|---|---|---|---|",
        f"| {code(schema.SCHEMA_VERSION_PATH)} | integer | none: the tree is not initialised "
        f"| Layout version of the tree (currently {schema.SCHEMA_VERSION}). |",
        f"| {code(schema.PRIMARY_NODE_PATH)} | text | `''` "
        "| Name of the primary coordinator; `''` when there is none. |",
        f"| `{schema.DOMAINS_PATH}/<uuid>` | text | | The VM's name; one child per key below. |",
        f"| `{schema.NODES_PATH}/<name>` | text | "
        f"| The node's type ({values(schema.NODE_TYPES)}); one child per key below. |",
        f"| `{schema.NETWORKS_PATH}/<vni>` | text "
        "| | The network's description; one child per key below. |",
        f"| `{schema.CONFIG_PATH}/<key>` | | | Cluster-wide settings, one znode per key below. |",
        f"| `{schema.LIVENESS_PATH}/<name>` | text | "
        "| Ephemeral: exists while the node's daemon holds a ZooKeeper session "
        "(data: its PID and start time). |",
        f"| `{schema.LOCKS_PATH}/fence-<name>` | text | "
        "| Ephemeral: held by the one coordinator fencing that node. |",
    ]
    entities = [
        (f"{schema.DOMAINS_PATH}/<uuid>", "A VM, by its libvirt UUID.", schema.DOMAIN_FIELDS),
        (f"{schema.NODES_PATH}/<name>", "A node, by its host name.", schema.NODE_FIELDS),
        (
            f"{schema.NETWORKS_PATH}/<vni>",
            "A network, by its VXLAN network identifier (1 to 16777215).",
            schema.NETWORK_FIELDS,
        ),
        (f"{schema.CONFIG_PATH}/<key>", "Cluster-wide settings.", schema.CONFIG_FIELDS),
    ]
    for path, summary, fields in entities:
        lines += ["", f"## `{path}`", "", summary, "", *field_table(fields)]
    value_sets = [
        ("VM states", "`state` of a VM", schema.VM_STATES),
        ("Node daemon states", "`daemonstate` of a node", schema.NODE_DAEMON_STATES),
        ("Node domain states", "`domainstate` of a node", schema.NODE_DOMAIN_STATES),
        ("Node types", "data of `/nodes/<name>`", schema.NODE_TYPES),
        ("Selectors", "`node_selector` of a VM", schema.SELECTORS),
        ("Default selectors", "`migration_target_selector`", schema.DEFAULT_SELECTORS),
        ("Network types", "`nettype` of a network", schema.NETWORK_TYPES),
    ]
    lines += ["", "## Allowed values", "", "| Set | Used by | Values |", "|---|---|---|"]
    lines += [f"| {name} | {used} | {values(items)} |" for name, used, items in value_sets]
    lines += ["", SCHEMA_DIFFERENCES.rstrip("\n")]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- cli.md


def walk(
    command: click.Command, name: str, parent: click.Context | None, width: int = WIDTH
) -> Iterator[click.Context]:
    """A help context for ``command`` and, recursively, each subcommand, sorted by name."""
    settings = {**command.context_settings, "terminal_width": width, "max_content_width": width}
    ctx = click.Context(command, info_name=name, parent=parent, **settings)
    yield ctx
    if isinstance(command, click.Group):
        for sub_name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, sub_name, ctx, width)


def commands_with(contexts: Sequence[click.Context], param: str, help_word: str = "") -> str:
    """The commands with an option named ``param`` whose help mentions ``help_word``."""
    paths = [
        ctx.command_path
        for ctx in contexts
        if any(
            p.name == param and help_word in (getattr(p, "help", None) or "")
            for p in ctx.command.params
        )
    ]
    return ", ".join(f"`{path}`" for path in paths)


def exit_codes() -> list[tuple[int, str]]:
    """Each exit code of ``pvc`` and its meaning, from the error classes' ``exit_code``."""
    classes: list[type[PvcError]] = []
    pending = list(PvcError.__subclasses__())
    while pending:
        error = pending.pop()
        # Only the library's own errors reach the CLI; daemons subclass them for themselves.
        if error.__module__ == PvcError.__module__:
            classes.append(error)
        pending.extend(error.__subclasses__())
    codes = [
        (0, "Success."),
        (
            PvcError.exit_code,
            "Any other error the cluster reported (for example a failed `rbd` command), a "
            "declined confirmation (`Aborted!`), or a bug (reported with a traceback).",
        ),
        (
            2,
            "A usage error found by the command line parser: an unknown option, a missing "
            "argument, a value that is not one of the choices.",
        ),
    ]
    # By code (a stable sort: on a shared code the hand-written row comes first), then by name.
    classes.sort(key=lambda error: error.__name__)
    codes += [(error.exit_code, f"{docstring(error)} (`{error.__name__}`)") for error in classes]
    return sorted(codes, key=lambda row: row[0])


def exit_code_rows() -> list[str]:
    """The exit code table of ``docs/cli.md``."""
    rows = [f"| {code} | {cell(text)} |" for code, text in exit_codes()]
    return ["| Code | Meaning |", "|---|---|", *rows]


def fenced(text: str) -> str:
    """``text`` in a fenced code block whose fence is longer than any backtick run in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text.rstrip()}\n{fence}"


def render_cli() -> str:
    """The whole of ``docs/cli.md``."""
    contexts = list(walk(cli, "pvc", None))
    lines = [
        "# Command line reference",
        "",
        "The `pvc` command manages the cluster by writing its desired state into ZooKeeper;",
        "the node daemons carry it out. This reference is generated from the command",
        "definitions by `docs/generate.py`; do not edit it by hand.",
        "",
        "## Global options",
        "",
        "Global options go before the command, as in `pvc -z hv1:2181 vm list`:",
        "",
        "- `-z/--zookeeper HOSTS`: the ZooKeeper connect string, `host:port[,host:port...]` with",
        "  an optional `/chroot`. When it is not given, the `PVC_ZOOKEEPER` environment variable",
        f"  is used, and without that `{DEFAULT_ZOOKEEPER}`.",
        "- `--timeout SECONDS` (or `PVC_TIMEOUT`): how long to wait for ZooKeeper before giving",
        "  up with exit code 6.",
        "- `-v/--verbose`: print the change events the command writes, one line each, on",
        "  standard error.",
        "- `--version`, and `-h/--help`, which every command accepts.",
        "",
        "## Output",
        "",
        "Commands that show cluster state print aligned tables by default. `-o/--format json` or",
        "`-o/--format yaml` prints the same data for scripts instead; use those rather than",
        "parsing the tables, whose layout may change. The option is accepted by",
        f"{commands_with(contexts, 'output_format')}.",
        "",
        "Tables are coloured only when standard output is a terminal. Setting `NO_COLOR` to any",
        "non-empty value turns colour off; setting `CLICOLOR_FORCE` to anything but `0` turns it",
        "on even when the output is piped. `NO_COLOR` wins when both are set.",
        "",
        "## Confirmation",
        "",
        "Commands that destroy or interrupt something ask for confirmation first; `-y/--yes`",
        "answers yes. When the answer is no, or standard input ends without an answer, the",
        "command prints `Aborted!` and exits with code 1 without changing anything. The",
        f"option is accepted by {commands_with(contexts, 'yes', 'confirmation')}.",
        "",
        "`pvc cluster init` never asks: without `-y/--yes` it refuses to touch an existing",
        "cluster, and with it it wipes that cluster (every VM, node and network) and starts",
        "again.",
        "",
        "## Exit codes",
        "",
        "Errors are printed as one line, `Error: ...`, on standard error.",
        "",
        *exit_code_rows(),
    ]
    for ctx in contexts:
        lines += ["", f"## {ctx.command_path}", "", fenced(ctx.command.get_help(ctx))]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- api-reference.md

# What each path parameter names, by name. The OpenAPI document gives path parameters no
# description; an unknown one is an error, so a new route cannot reach the document
# without one.
PATH_PARAMETERS: dict[str, str] = {
    "node": "The node's name.",
    "vm": "The VM's exact name or UUID.",
    "vni": "The network's VNI.",
}

API_INTRO = f"""\
# HTTP API reference

This is the reference of every endpoint of `pvcapid`. It is generated by `docs/generate.py`
from the OpenAPI document the daemon serves at `{PREFIX}/openapi.json` (itself generated
from `api-daemon/pvc_apid/routes.py`); do not edit it by hand. How to run and configure the
daemon, authentication and examples are in [`api.md`](api.md).

## Conventions

- Every path starts with `{PREFIX}`. Every answer of the endpoints below, errors included,
  is JSON. With a valid key, a path that does not exist is a JSON 404 and a method a path
  does not serve a JSON 405 (without a key, both are a 401); an unexpected fault is a JSON
  500, logged by the daemon with its traceback.
- **API key.** An endpoint marked "needed" wants one of the configured `api.keys`, in the
  `{KEY_HEADER}` header or as `Authorization: Bearer <key>`; without a valid one the answer
  is 401. When `api.authentication` is `false` in the daemon's configuration, no endpoint
  needs a key. Three paths are not in the OpenAPI document and not listed below:
  `{PREFIX}/openapi.json` and `{PREFIX}/docs` (the same description as a plain HTML page),
  which never need a key, and `/metrics` (outside `{PREFIX}`: the cluster's figures in
  Prometheus' text format), which needs one.
- **Parameters.** Those marked `path` are part of the URL. The others (`query` in the
  OpenAPI document) may be given as query values, as form values, or as the members of a
  JSON object body, mixed freely; when a name comes twice, the JSON body wins over a form
  value, which wins over a query value. A body that is not a JSON object, a parameter the
  endpoint does not know, a missing required one, a value of the wrong type, or one outside
  the accepted values or bounds is refused with 400 and a message saying which, before
  anything is read or written.
- **Types.** `string`: text (a JSON number or boolean is refused). `integer`: a whole
  number in decimal, as text or a JSON number (a JSON boolean or a fraction is refused).
  `boolean`: a JSON `true` or `false`, or the text `true`, `1`, `yes`, `on`, `false`, `0`,
  `no` or `off` in any case.
- **Missing parameters.** An optional parameter without a listed default is left to the
  operation: on `POST {PREFIX}/vm/{{vm}}` it leaves that setting as it is; elsewhere a
  missing filter filters nothing, a missing flag is false, and a missing choice takes the
  default of the matching `pvc` command (`none` for `selector` and `migration_method`,
  `bridged` for `nettype`, every line kept for `lines`).
- **Waiting.** The upper bound of `wait_timeout` is the server's `api.max_wait`: a larger
  value is refused, and a default above it is lowered to it. The bounds and defaults below
  are those of the default `max_wait`, {DEFAULT_MAX_WAIT} seconds; the document a running
  server serves shows its own.
"""


def status_rows(statuses: Sequence[str]) -> list[str]:
    """What each HTTP status the document uses means, from the error classes."""
    by_status: dict[int, list[str]] = {}
    for error in sorted(
        (getattr(errors, name) for name in dir(errors)),
        key=lambda item: getattr(item, "__name__", ""),
    ):
        if isinstance(error, type) and issubclass(error, PvcError) and error is not PvcError:
            by_status.setdefault(error.http_status, []).append(
                f"{docstring(error)} (`{error.__name__}`)"
            )
    # The base class is the status of any other error an operation reports.
    by_status.setdefault(PvcError.http_status, []).append(
        "Also any other error the cluster reported, such as a failed `rbd` command."
    )
    meanings = {
        200: ["Success: the answer is the data described by the endpoint's summary."],
        201: ["Created: the answer is the new entity."],
        401: [f"No valid API key in the `{KEY_HEADER}` header."],
        **by_status,
    }
    rows = ["| Status | Meaning |", "|---|---|"]
    for status in sorted({int(code) for code in statuses}):
        if status not in meanings:
            raise KeyError(f"HTTP status {status} has no description in docs/generate.py")
        rows.append(f"| {status} | {cell(' '.join(meanings[status]))} |")
    return rows


def accepted(param: dict[str, Any]) -> str:
    """A parameter's accepted values, bounds and default, in words."""
    described = param.get("schema", {})
    parts = []
    if "enum" in described:
        parts.append(values([str(item) for item in described["enum"]]))
    low, high = described.get("minimum"), described.get("maximum")
    if low is not None and high is not None:
        parts.append(f"{low} to {high}")
    elif low is not None:
        parts.append(f"at least {low}")
    elif high is not None:
        parts.append(f"at most {high}")
    if described.get("minLength") == 1:
        parts.append("not empty")
    elif described.get("minLength"):
        parts.append(f"at least {described['minLength']} characters")
    if "default" in described:
        default = described["default"]
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        parts.append(f"default {code(shown)}")
    if described.get("type") == "boolean" and "enum" not in described:
        parts.insert(0, values(["true", "false"]))
    return "; ".join(parts) or "any"


def parameter_rows(parameters: Sequence[dict[str, Any]]) -> list[str]:
    """One row per parameter: name, place, type, required, accepted values, description."""
    rows = [
        "| Name | In | Type | Required | Accepted values | Description |",
        "|---|---|---|---|---|---|",
    ]
    for param in parameters:
        description = param.get("description", "")
        if param["in"] == "path":
            if param["name"] not in PATH_PARAMETERS:
                raise KeyError(
                    f"path parameter {param['name']!r} has no description in docs/generate.py"
                )
            description = PATH_PARAMETERS[param["name"]]
        elif description:
            description = description[0].upper() + description[1:] + "."
        rows.append(
            f"| {code(param['name'])} | {param['in']} | {param['schema']['type']} "
            f"| {'yes' if param['required'] else 'no'} | {cell(accepted(param))} "
            f"| {cell(description)} |"
        )
    return rows


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) in the document's order (the routes' order)."""
    return [
        (method.upper(), path, operation)
        for path, by_method in document["paths"].items()
        for method, operation in by_method.items()
    ]


def key_needed(document: dict[str, Any], operation: dict[str, Any]) -> bool:
    """Whether the operation needs an API key (an empty ``security`` list says not)."""
    return bool(operation.get("security", document.get("security")))


def render_api_reference() -> str:
    """The whole of ``docs/api-reference.md``."""
    document = openapi_document()
    found = operations(document)
    statuses = sorted({status for _, _, op in found for status in op["responses"]}, key=int)
    lines = [API_INTRO.rstrip("\n"), "", "## Statuses", ""]
    lines += [
        'Any answer other than a success is `{"message": "..."}`, one line saying what is',
        "wrong. These are the statuses the document lists:",
        "",
        *status_rows(statuses),
        "",
        "## Endpoints",
        "",
        "| Method | Path | Summary | API key |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {method} | {code(path)} | {cell(op['summary'])} "
        f"| {'needed' if key_needed(document, op) else 'not needed'} |"
        for method, path, op in found
    ]
    for method, path, op in found:
        responses = sorted(op["responses"], key=int)
        success = [status for status in responses if status.startswith("2")]
        failure = [status for status in responses if not status.startswith("2")]
        key = f"needed (`{KEY_HEADER}` header)" if key_needed(document, op) else "not needed"
        lines += ["", f"## {method} {path}", "", f"{op['summary']}.", "", f"- API key: {key}."]
        lines.append(f"- Success: {', '.join(success)}; errors: {', '.join(failure)}.")
        if op["parameters"]:
            lines += ["", *parameter_rows(op["parameters"])]
        else:
            lines += ["- Parameters: none."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main

# --------------------------------------------------------------------------- manual pages

#: Width of the help texts in the manual pages (shown as they are, in no-fill mode).
MAN_WIDTH = 78


def roff(text: str) -> str:
    """``text`` safe in a roff document: backslashes escaped, no line taken for a request."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in escaped.splitlines()
    )


def man_header(name: str, section: int, summary: str) -> list[str]:
    """The title and NAME section of a manual page (no date: the output is reproducible)."""
    return [
        f'.TH {name.upper()} {section} "" "pvc" "pvc manual"',
        ".SH NAME",
        f"{name} \\- {roff(summary)}",
    ]


def preformatted(text: str) -> list[str]:
    """``text`` shown as it is (help already laid out by Click or argparse)."""
    return [".nf", roff(text.rstrip()), ".fi"]


def render_pvc_man() -> str:
    """``docs/man/pvc.1``: the whole command line, from the same definitions as cli.md."""
    contexts = list(walk(cli, "pvc", None, MAN_WIDTH))
    lines = [
        *man_header("pvc", 1, "manage a pvc hypervisor cluster"),
        ".SH SYNOPSIS",
        ".B pvc",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\fR]...",
        ".SH DESCRIPTION",
        roff(
            "pvc manages a cluster of hypervisors by writing the desired state of its VMs, "
            "nodes and networks into ZooKeeper; the node daemons, pvcnoded(8), carry it out. "
            "Commands that ask for a change return once it is written; --wait, where a "
            "command has it, follows it to its outcome. Errors are one line on standard "
            "error, and the exit status says which kind (see EXIT STATUS)."
        ),
        ".PP",
        roff(
            "Every command and subcommand accepts -h/--help. -o/--format json or yaml gives "
            "the data of a listing or an info for scripts."
        ),
        ".PP",
        *preformatted(contexts[0].command.get_help(contexts[0])),
        ".SH COMMANDS",
    ]
    for ctx in contexts[1:]:
        lines += [f'.SS "{roff(ctx.command_path)}"', *preformatted(ctx.command.get_help(ctx))]
    lines += [".SH ENVIRONMENT"]
    for variable, meaning in (
        (
            "PVC_ZOOKEEPER",
            f"the ZooKeeper connect string when -z is not given (default {DEFAULT_ZOOKEEPER})",
        ),
        ("PVC_TIMEOUT", "seconds to wait for ZooKeeper when --timeout is not given"),
        ("NO_COLOR", "any non-empty value: tables are never coloured"),
        ("CLICOLOR_FORCE", "anything but 0: tables are coloured even when piped"),
    ):
        lines += [".TP", f"\\fB{variable}\\fR", roff(meaning)]
    lines += [".SH EXIT STATUS"]
    for code, meaning in exit_codes():
        lines += [".TP", f"\\fB{code}\\fR", roff(meaning.replace("`", ""))]
    lines += [
        ".SH SEE ALSO",
        "pvcnoded(8), pvcapid(8); the operations guide, docs/operations.md, and the "
        "troubleshooting guide, docs/troubleshooting.md, in the project's sources.",
    ]
    return "\n".join(lines) + "\n"


def daemon_man(
    name: str, parser: argparse.ArgumentParser, summary: str, extra: Sequence[str]
) -> str:
    """The manual page of a daemon, from its argparse command line, plus ``extra`` lines."""
    options = [action for action in parser._actions if action.option_strings]
    synopsis = " ".join(
        f"[\\fB{roff(action.option_strings[-1])}\\fR"
        + ("" if action.nargs == 0 else f" \\fI{action.metavar or action.dest.upper()}\\fR")
        + "]"
        for action in options
        if action.dest != "help"
    )
    lines = [
        *man_header(name, 8, summary),
        ".SH SYNOPSIS",
        f".B {name}",
        synopsis,
        ".SH DESCRIPTION",
        roff(" ".join((parser.description or "").split())),
        ".SH OPTIONS",
    ]
    for action in options:
        flags = ", ".join(action.option_strings)
        argument = "" if action.nargs == 0 else f" \\fI{action.metavar or action.dest.upper()}\\fR"
        lines += [".TP", f"\\fB{roff(flags)}\\fR{argument}", roff(action.help or "")]
    return "\n".join([*lines, *extra]) + "\n"


def render_pvcnoded_man() -> str:
    """``docs/man/pvcnoded.8``."""
    from pvc_noded.main import argument_parser

    return daemon_man(
        "pvcnoded",
        argument_parser(),
        "node daemon of a pvc cluster",
        [
            ".SH FILES",
            ".TP",
            "\\fI/etc/pvc/pvcnoded.yaml\\fR",
            roff(
                "The configuration: node name and type, ZooKeeper, libvirt, fencing and its "
                "BMC, maintenance, console logs. Every key is commented in the sample "
                "(node-daemon/pvcnoded.sample.yaml in the sources; the file the Debian "
                "package installs) and described in docs/node-daemon.md."
            ),
            ".SH SIGNALS",
            roff(
                "SIGTERM and SIGINT stop the daemon cleanly: it marks its node stopped and "
                "leaves the running VMs running. A node stopped so is never fenced."
            ),
            ".SH EXIT STATUS",
            roff(
                "0 after a clean stop or a valid --validate-config; 2 for a configuration "
                "that cannot be used (every problem is named on standard error)."
            ),
            ".SH SEE ALSO",
            "pvc(1), pvcapid(8), docs/node-daemon.md and docs/operations.md in the sources.",
        ],
    )


def render_pvcapid_man() -> str:
    """``docs/man/pvcapid.8``."""
    from pvc_apid.main import argument_parser

    return daemon_man(
        "pvcapid",
        argument_parser(),
        "HTTP API daemon of a pvc cluster",
        [
            ".SH FILES",
            ".TP",
            "\\fI/etc/pvc/pvcapid.yaml\\fR",
            roff(
                "The configuration: ZooKeeper, listen address and port (default "
                "127.0.0.1:7370), TLS certificate and key, API keys, workers, threads and "
                "max_wait; every key is commented in api-daemon/pvcapid.sample.yaml. It "
                "holds secrets: keep it readable by the daemon only."
            ),
            ".SH ENDPOINTS",
            roff(
                f"Everything under {PREFIX} is described by the OpenAPI document the daemon "
                f"serves at {PREFIX}/openapi.json, and as a page at {PREFIX}/docs. Every "
                f"other endpoint but {PREFIX} itself needs one of the API keys, in the "
                f"{KEY_HEADER} header or as a Bearer token; /metrics gives the cluster's "
                "figures to Prometheus."
            ),
            ".SH EXIT STATUS",
            roff("0 after a clean stop or a valid --validate-config; 2 for a bad configuration."),
            ".SH SEE ALSO",
            "pvc(1), pvcnoded(8), docs/api.md and docs/api-reference.md in the sources.",
        ],
    )


OUTPUTS: dict[str, Callable[[], str]] = {
    "docs/schema.md": render_schema,
    "docs/cli.md": render_cli,
    "docs/api-reference.md": render_api_reference,
    "docs/man/pvc.1": render_pvc_man,
    "docs/man/pvcnoded.8": render_pvcnoded_man,
    "docs/man/pvcapid.8": render_pvcapid_man,
}


def stale_message(name: str) -> str:
    """What to say about a document that does not match the code."""
    return f"{name} is out of date: run .venv/bin/python docs/generate.py"


def diff(name: str, current: str, expected: str) -> str:
    """A unified diff from the file on disk to what would be written, cut to a few lines."""
    lines = list(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            f"{name} (on disk)",
            f"{name} (generated)",
        )
    )
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more diff lines)\n"]
    return "".join(lines)


def stale() -> list[tuple[str, str]]:
    """Each out-of-date document, with a short diff of what would change."""
    found = []
    for name, render in OUTPUTS.items():
        path = ROOT / name
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        expected = render()
        if current != expected:
            found.append((name, diff(name, current, expected)))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Write the documents, or with ``--check`` report the stale ones and return 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for name, text in problems:
            print(stale_message(name))
            print(text)
        return 1 if problems else 0
    for name, render in OUTPUTS.items():
        path = ROOT / name
        text = render()
        if path.exists() and path.read_text(encoding="utf-8") == text:
            print(f"{name}: unchanged")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"{name}: written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
