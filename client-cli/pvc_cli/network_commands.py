"""``pvc network ...``: the registry of cluster networks (VNIs)."""

from __future__ import annotations

import dataclasses

import click

from pvc_common import network_ops, schema

from .context import confirm, store_of, yes_option
from .output import echo, format_option, render_data, render_fields, render_table


@click.group()
def network() -> None:
    """Register, list and remove cluster networks (VNIs)."""


@network.command()
@click.option("-d", "--description", default="", help="What the network is for.")
@click.option(
    "-p",
    "--type",
    "nettype",
    type=click.Choice(schema.NETWORK_TYPES),
    default="bridged",
    show_default=True,
    help="Bridged to a VLAN, or managed.",
)
@click.argument("vni", type=int)
@click.pass_context
def add(ctx: click.Context, description: str, nettype: str, vni: int) -> None:
    """Register network VNI (1-16777215)."""
    record = network_ops.add_network(store_of(ctx), vni, description=description, nettype=nettype)
    click.echo(f"Network {record.vni} ({record.nettype}) added")


@network.command(name="list")
@format_option()
@click.pass_context
def list_command(ctx: click.Context, output_format: str) -> None:
    """List the registered networks."""
    networks = network_ops.list_networks(store_of(ctx))
    if output_format != "pretty":
        echo(render_data([dataclasses.asdict(n) for n in networks], output_format))
        return
    rows = [[str(n.vni), n.nettype, n.description] for n in networks]
    echo(render_table(["VNI", "Type", "Description"], rows))


@network.command()
@format_option()
@click.argument("vni", type=int)
@click.pass_context
def info(ctx: click.Context, output_format: str, vni: int) -> None:
    """Show one network and the VMs attached to it."""
    store = store_of(ctx)
    record = network_ops.network_info(store, vni)
    users = network_ops.network_users(store, record.vni)
    if output_format != "pretty":
        echo(render_data({**dataclasses.asdict(record), "vms": users}, output_format))
        return
    click.echo(
        render_fields(
            [
                ("VNI", str(record.vni)),
                ("Type", record.nettype),
                ("Description", record.description or "-"),
                ("VMs", ", ".join(users) or "-"),
            ]
        )
    )


@network.command()
@click.option("-f", "--force", is_flag=True, help="Remove it even while VMs use it.")
@yes_option()
@click.argument("vni", type=int)
@click.pass_context
def remove(ctx: click.Context, force: bool, yes: bool, vni: int) -> None:
    """Unregister network VNI."""
    confirm(f"Remove network {vni}?", yes)
    record = network_ops.remove_network(store_of(ctx), vni, force=force)
    click.echo(f"Network {record.vni} removed")
