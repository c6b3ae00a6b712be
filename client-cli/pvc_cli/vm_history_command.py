"""``pvc vm history``: a VM's recorded changes (when, what, who or which daemon, why)."""

from __future__ import annotations

import time

import click

from pvc_common import vm_ops

from .context import store_of
from .output import echo, format_option, render_data, render_table


@click.command(name="history")
@click.option(
    "-n",
    "--last",
    type=click.IntRange(min=0),
    metavar="N",
    help="Show only the last N changes (default: every one kept).",
)
@format_option()
@click.argument("vm_ref", metavar="VM")
@click.pass_context
def history(ctx: click.Context, last: int | None, output_format: str, vm_ref: str) -> None:
    """Show the changes of a VM, oldest first: when, what, by whom, why.

    Every change of a VM is recorded with it, in the same write: operators' requests
    (define, start, meta, migrate...) with the program, user and host, or the API client,
    that made them; and what the node daemons did (started, migrated, stopped for a flush,
    recovered after a fence), with the daemon's node and its reason. The last 50 changes
    are kept; a first line says how many older ones were dropped.

    Times are local; -o json gives Unix times.

    \b
    Example:
      pvc vm history web1 -n 5
    """
    data = vm_ops.vm_history(store_of(ctx), vm_ref, last=last)
    if output_format != "pretty":
        echo(render_data(data, output_format))
        return
    if data["dropped"]:
        click.echo(f"({data['dropped']} older change(s) not shown)")
    rows = [
        [
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["at"])),
            entry["by"],
            entry["what"],
            entry["why"] or "-",
        ]
        for entry in data["entries"]
    ]
    echo(render_table(["When", "By", "What", "Why"], rows))
