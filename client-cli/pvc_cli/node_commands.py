"""``pvc node ...``: list and inspect nodes; ask a node to flush or become ready."""

from __future__ import annotations

import time

import click

from pvc_common import maintenance, node_ops

from .context import store_of
from .output import Cell, echo, format_option, render_data, render_fields, render_table, state_cell


@click.group()
def node() -> None:
    """List and inspect nodes; flush them for maintenance and make them ready again."""


@node.command(name="list")
@format_option()
@click.pass_context
def list_command(ctx: click.Context, output_format: str) -> None:
    """List the nodes with their states and figures (memory in MiB)."""
    store = store_of(ctx)
    nodes = node_ops.list_nodes(store)
    if output_format != "pretty":
        live = node_ops.live_nodes(store)
        echo(render_data([node_ops.node_as_dict(n, live) for n in nodes], output_format))
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
        echo(render_data(node_ops.node_as_dict(n, live), output_format))
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


def _maintenance_command(kind: str, summary: str) -> None:
    @click.option(
        "-n", "--dry-run", is_flag=True, help="Only print the plan: what would happen to each VM."
    )
    @click.option(
        "-w", "--wait", is_flag=True, help="Follow it VM by VM and end with an outcome table."
    )
    @click.option(
        "--wait-timeout",
        type=click.FloatRange(min=1),
        default=1800,
        show_default=True,
        metavar="SECONDS",
        help="Give up waiting after this long (the request itself stays in place).",
    )
    @click.argument("name")
    @click.pass_context
    def command(
        ctx: click.Context, name: str, dry_run: bool, wait: bool, wait_timeout: float
    ) -> None:
        store = store_of(ctx)
        if dry_run:
            plan = maintenance.plan_for(store, name, kind)
            headers = ["VM", "Action", "Target", "Reason"]
            rows = [[Cell(cell) for cell in row] for row in plan.rows()]
            click.echo(f"{kind.capitalize()} of {name} would do ({len(rows)} VM(s)):")
            if rows:
                echo(render_table(headers, rows))
            return
        asked = time.time()
        record = node_ops.set_node_domain_state(store, name, kind)
        click.echo(f"Node {record.name!r}: {kind} requested (domain state {record.domainstate})")
        if not wait:
            return
        outcome = maintenance.wait_for_maintenance(
            store,
            name,
            kind,
            started_after=asked,
            timeout=wait_timeout,
            on_progress=lambda text: click.echo(f"  ... {text}", err=True),
        )
        rows = [[Cell(cell) for cell in row] for row in maintenance.outcome_rows(outcome.record)]
        if rows:
            echo(render_table(["VM", "Action", "Target", "Outcome", "Reason"], rows))
        click.echo(outcome.message)
        if not outcome.ok:
            ctx.exit(1)

    command.__doc__ = summary
    node.command(name=kind)(command)


_maintenance_command(
    "flush",
    "Move NAME's VMs away for maintenance, each within its limit by its selector.\n\n"
    "A VM that no node can take is shut down and marked autostart, so it starts again "
    "when NAME is ready. The node ends 'flushed'.",
)
_maintenance_command(
    "ready",
    "Bring NAME back into service: VMs migrated away by a flush return, autostart VMs start.\n\n"
    "During a flush, this aborts it cleanly (the moves under way finish). The node ends "
    "'ready'.",
)
