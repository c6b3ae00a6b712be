"""``pvc node ...``: list and inspect nodes; ask a node to flush or become ready."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import click

from pvc_common import node_ops
from pvc_common.models import NodeRecord

from .context import store_of
from .output import Cell, echo, format_option, render_data, render_fields, render_table, state_cell


@click.group()
def node() -> None:
    """List and inspect nodes; flush them for maintenance and make them ready again."""


def node_as_dict(record: NodeRecord, live: frozenset[str]) -> dict[str, Any]:
    """A node as plain data, without its BMC password; ``live`` names nodes with a session."""
    data = dataclasses.asdict(record)
    data["session_alive"] = record.name in live
    data.pop("ipmipassword", None)
    data.pop("version", None)
    data["staticdata"] = list(record.staticdata)
    data["runningdomains"] = list(record.runningdomains)
    return data


@node.command(name="list")
@format_option()
@click.pass_context
def list_command(ctx: click.Context, output_format: str) -> None:
    """List the nodes with their states and figures (memory in MiB)."""
    store = store_of(ctx)
    nodes = node_ops.list_nodes(store)
    if output_format != "pretty":
        live = node_ops.live_nodes(store)
        echo(render_data([node_as_dict(n, live) for n in nodes], output_format))
        return
    headers = [
        "Name",
        "Type",
        "Daemon",
        "Domains",
        "VMs",
        "vCPUs",
        "Load",
        "Mem total",
        "Mem free",
        "Mem alloc",
        "Mem prov",
    ]
    rows = [
        [
            Cell(n.name),
            Cell(n.node_type),
            state_cell(n.daemonstate),
            state_cell(n.domainstate),
            Cell(str(n.domainscount)),
            Cell(str(n.vcpualloc)),
            Cell(f"{n.cpuload:.2f}"),
            Cell(str(n.memtotal)),
            Cell(str(n.memfree)),
            Cell(str(n.memalloc)),
            Cell(str(n.memprov)),
        ]
        for n in nodes
    ]
    echo(render_table(headers, rows))


@node.command()
@format_option()
@click.argument("name")
@click.pass_context
def info(ctx: click.Context, output_format: str, name: str) -> None:
    """Show one node."""
    store = store_of(ctx)
    n = node_ops.node_info(store, name)
    live = node_ops.live_nodes(store)
    if output_format != "pretty":
        echo(render_data(node_as_dict(n, live), output_format))
        return
    ago = f" ({max(0, int(time.time()) - n.keepalive)} s ago)" if n.keepalive else " (never)"
    click.echo(
        render_fields(
            [
                ("Name", n.name),
                ("Type", n.node_type),
                ("Daemon state", state_cell(n.daemonstate)),
                ("Daemon session", "alive" if n.name in live else "none"),
                ("Domain state", state_cell(n.domainstate)),
                ("Running VMs", str(n.domainscount)),
                ("vCPUs allocated", str(n.vcpualloc)),
                ("Load", f"{n.cpuload:.2f}"),
                ("Memory total", f"{n.memtotal} MiB"),
                ("Memory used", f"{n.memused} MiB"),
                ("Memory free", f"{n.memfree} MiB"),
                ("Memory allocated", f"{n.memalloc} MiB"),
                ("Memory provisioned", f"{n.memprov} MiB"),
                ("Keepalive", f"{n.keepalive}{ago}"),
                ("Static data", " ".join(n.staticdata) or "-"),
            ]
        )
    )


@node.command()
@click.argument("name")
@click.pass_context
def flush(ctx: click.Context, name: str) -> None:
    """Ask NAME's daemon to move its VMs away (within their limits) for maintenance."""
    record = node_ops.set_node_domain_state(store_of(ctx), name, "flush")
    click.echo(f"Node {record.name!r}: flush requested (domain state {record.domainstate})")


@node.command()
@click.argument("name")
@click.pass_context
def ready(ctx: click.Context, name: str) -> None:
    """Ask NAME's daemon to take its VMs back and accept new ones."""
    record = node_ops.set_node_domain_state(store_of(ctx), name, "ready")
    click.echo(f"Node {record.name!r}: ready requested (domain state {record.domainstate})")
