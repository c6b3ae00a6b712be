"""``pvc cluster ...``: create the tree and summarise the cluster."""

from __future__ import annotations

import click

from pvc_common import audit, cluster_ops, schema_upgrade

from .context import store_of
from .output import Cell, echo, format_option, render_data, render_fields


@click.group()
def cluster() -> None:
    """Create the cluster's ZooKeeper tree, upgrade and check it, and show its status."""


@cluster.command()
@click.option(
    "-y",
    "--yes",
    is_flag=True,
    help="Wipe an existing cluster (every VM, node and network) and start again.",
)
@click.pass_context
def init(ctx: click.Context, yes: bool) -> None:
    """Create the cluster's tree in ZooKeeper (refuses to wipe one without --yes)."""
    cluster_ops.init_cluster(store_of(ctx), wipe=yes)
    click.echo("Cluster initialised")


@cluster.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Bring the tree to this program's schema version (adds new keys with their defaults).

    Safe to run on a live cluster and to run again: it only creates what is missing, and
    writes the new version last, so an interrupted upgrade is simply run again.
    """
    before, after = schema_upgrade.upgrade_schema(store_of(ctx))
    if before == after:
        click.echo(f"The schema is already at version {after}")
    else:
        click.echo(f"Schema upgraded from version {before} to {after}")


@cluster.command()
@format_option()
@click.pass_context
def check(ctx: click.Context, output_format: str) -> None:
    """Check every stored key strictly; list each malformed one (exit 1 if any).

    Listings read damaged keys leniently (a bad number reads as 0), so damage left by a
    hand edit or another tool can go unseen. This reads the whole tree and reports every
    value this program would never write: a state outside the schema, a limit or node
    naming an unknown node, XML that does not parse or names another UUID, a missing or
    unknown key, two VMs with one name. It changes nothing.
    """
    report = audit.audit_cluster(store_of(ctx))
    if output_format != "pretty":
        echo(render_data(report.as_dict(), output_format))
    else:
        for problem in report.problems:
            click.echo(str(problem))
        checked = f"{report.vms} VMs, {report.nodes} nodes, {report.networks} networks"
        if report.ok:
            click.echo(f"No problems found ({checked} checked)")
        else:
            click.echo(f"{len(report.problems)} problem(s) found ({checked} checked)")
    if not report.ok:
        ctx.exit(1)


@cluster.command()
@format_option()
@click.pass_context
def status(ctx: click.Context, output_format: str) -> None:
    """Summarise nodes, VMs and networks."""
    summary = cluster_ops.cluster_status(store_of(ctx))
    if output_format != "pretty":
        echo(render_data(summary.as_dict(), output_format))
        return

    def counts(values: dict[str, int]) -> str:
        return ", ".join(f"{count} {state}" for state, count in values.items()) or "-"

    click.echo(
        render_fields(
            [
                (
                    "Health",
                    Cell("healthy", "green") if summary.healthy else Cell("degraded", "yellow"),
                ),
                (
                    "Nodes",
                    f"{summary.node_count} ({counts(summary.nodes_by_daemon_state)}; "
                    f"{counts(summary.nodes_by_domain_state)})",
                ),
                ("VMs", f"{summary.vm_count} ({counts(summary.vms_by_state)})"),
                (
                    "Failed VMs",
                    Cell(", ".join(summary.failed_vms), "red") if summary.failed_vms else "-",
                ),
                ("Networks", str(summary.network_count)),
                ("Primary node", summary.primary_node or "-"),
                ("Default selector", summary.default_selector),
                (
                    "Schema version",
                    str(summary.schema_version)
                    if summary.schema_current
                    else Cell(f"{summary.schema_version} (run 'pvc cluster upgrade')", "red"),
                ),
            ]
        )
    )
