"""``pvc vm ...``: define, change, place and inspect VMs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pvc_common import schema, vm_ops
from pvc_common.models import VmRecord
from pvc_common.vm_ops import VmView
from pvc_common.vm_wait import wait_for_lock_flush, wait_for_vm

from .context import confirm, store_of, yes_option
from .output import Cell, echo, format_option, render_data, render_fields, render_table, state_cell
from .vm_history_command import history
from .vm_log_command import log

SELECTOR_CHOICE = click.Choice(schema.SELECTORS)
LIMIT_HELP = "Comma-separated nodes the VM may run on; '' clears the limit."
SELECTOR_HELP = "How a target node is chosen: most free memory (mem), most unprovisioned memory "
SELECTOR_HELP += "(memprov), lowest load (load), fewest vCPUs (vcpus), fewest VMs (vms), or the "
SELECTOR_HELP += "cluster default (none)."
METHOD_CHOICE = click.Choice(schema.MIGRATION_METHODS)
METHOD_HELP = "How the VM changes node while running: live only (live), shut down and start "
METHOD_HELP += "(shutdown), or live falling back to shutdown-and-start (none)."


@click.group()
def vm() -> None:
    """Define, change, place and inspect virtual machines."""


vm.add_command(log)
vm.add_command(history)


def _done(record: VmRecord, what: str) -> None:
    click.echo(f"VM {record.name!r} ({record.uuid}): {what}")


def wait_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--wait`` and ``--wait-timeout`` to a command that asks the daemons for work."""
    command = click.option(
        "--wait-timeout",
        type=click.FloatRange(min=1),
        default=300,
        show_default=True,
        metavar="SECONDS",
        help="Give up waiting after this long (the request itself stays in place).",
    )(command)
    return click.option(
        "-w",
        "--wait",
        is_flag=True,
        help="Wait for the node daemons to carry it out and report the outcome.",
    )(command)


def _wait(ctx: click.Context, record: VmRecord, action: str, wait: bool, timeout: float) -> None:
    """With --wait, follow the request to its outcome; exit 1 if it failed or timed out."""
    if not wait:
        return
    target = record.node if action in ("migrate", "move", "unmigrate") else ""
    outcome = wait_for_vm(
        store_of(ctx),
        record.uuid,
        action,
        target=target,
        request=record.request,
        timeout=timeout,
        on_progress=lambda text: click.echo(f"  ... {text}", err=True),
    )
    _done(record, outcome.message)
    if not outcome.ok:
        ctx.exit(1)


# --------------------------------------------------------------------------- define / meta / modify


@vm.command()
@click.option("-t", "--target", metavar="NODE", help="Node to define it on (default: chosen).")
@click.option("-l", "--limit", metavar="NODES", help=LIMIT_HELP)
@click.option(
    "-s", "--selector", type=SELECTOR_CHOICE, default="none", show_default=True, help=SELECTOR_HELP
)
@click.option(
    "-a/-A",
    "--autostart/--no-autostart",
    default=False,
    help="Start it when its node is next ready after a flush or fence (default: off).",
)
@click.option(
    "-m",
    "--method",
    "migration_method",
    type=METHOD_CHOICE,
    default="none",
    show_default=True,
    help=METHOD_HELP,
)
@click.argument("xmlfile", type=click.File("r"))
@click.pass_context
def define(
    ctx: click.Context,
    target: str | None,
    limit: str | None,
    selector: str,
    autostart: bool,
    migration_method: str,
    xmlfile: Any,
) -> None:
    """Define a VM from the libvirt XML in XMLFILE ('-' for stdin).

    The VM is created stopped. Without --target its node is chosen by --selector among
    the ready nodes of --limit on which its memory fits.
    """
    record = vm_ops.define_vm(
        store_of(ctx),
        xmlfile.read(),
        target=target,
        limit=limit,
        selector=selector,
        autostart=autostart,
        migration_method=migration_method,
    )
    _done(record, f"defined on {record.node}")


@vm.command()
@click.option("-l", "--limit", metavar="NODES", help=LIMIT_HELP)
@click.option("-s", "--selector", type=SELECTOR_CHOICE, help=SELECTOR_HELP)
@click.option(
    "-a/-A", "--autostart/--no-autostart", default=None, help="Set or clear the autostart flag."
)
@click.option("-m", "--method", "migration_method", type=METHOD_CHOICE, help=METHOD_HELP)
@click.argument("vm_ref", metavar="VM")
@click.pass_context
def meta(
    ctx: click.Context,
    limit: str | None,
    selector: str | None,
    autostart: bool | None,
    migration_method: str | None,
    vm_ref: str,
) -> None:
    """Change a VM's placement metadata; only the options given are changed.

    A --limit that leaves out the node a running VM is on is refused (exit 5): stop the
    VM or migrate it into the limit first. A stopped VM may get any limit.
    """
    record = vm_ops.set_vm_meta(
        store_of(ctx),
        vm_ref,
        limit=limit,
        selector=selector,
        autostart=autostart,
        migration_method=migration_method,
    )
    limit_text = ",".join(record.node_limit) or "any node"
    _done(
        record,
        f"limit {limit_text}, selector {record.node_selector}, "
        f"autostart {record.node_autostart}, migration method {record.migration_method}",
    )


@vm.command()
@click.option("-r", "--restart", is_flag=True, help="Restart the VM if it runs, to apply it.")
@click.argument("vm_ref", metavar="VM")
@click.argument("xmlfile", type=click.File("r"))
@click.pass_context
def modify(ctx: click.Context, restart: bool, vm_ref: str, xmlfile: Any) -> None:
    """Replace a VM's XML with XMLFILE (the UUID must stay the same)."""
    record = vm_ops.modify_vm(store_of(ctx), vm_ref, xmlfile.read(), restart=restart)
    _done(record, "XML replaced" + (", restarting" if record.state == "restart" else ""))


@vm.command()
@yes_option()
@click.argument("vm_ref", metavar="VM")
@click.pass_context
def undefine(ctx: click.Context, yes: bool, vm_ref: str) -> None:
    """Remove a stopped VM from the cluster, keeping its disks."""
    confirm(f"Undefine VM {vm_ref!r} (its disks are kept)?", yes)
    _done(vm_ops.undefine_vm(store_of(ctx), vm_ref), "undefined")


@vm.command()
@yes_option()
@click.argument("vm_ref", metavar="VM")
@click.pass_context
def remove(ctx: click.Context, yes: bool, vm_ref: str) -> None:
    """Remove a stopped VM and delete its RBD disks."""
    confirm(f"Remove VM {vm_ref!r} and DELETE its disks?", yes)
    _done(vm_ops.remove_vm(store_of(ctx), vm_ref), "removed with its disks")


@vm.command()
@click.argument("vm_ref", metavar="VM")
@click.pass_context
def dump(ctx: click.Context, vm_ref: str) -> None:
    """Print a VM's libvirt XML."""
    click.echo(vm_ops.dump_vm(store_of(ctx), vm_ref).rstrip("\n"))


# --------------------------------------------------------------------------- state


def _state_command(action: str, summary: str, destructive: bool = False) -> Callable[..., None]:
    @click.argument("vm_ref", metavar="VM")
    @wait_options
    @click.pass_context
    def command(
        ctx: click.Context, vm_ref: str, wait: bool, wait_timeout: float, yes: bool = False
    ) -> None:
        if destructive:
            confirm(f"{action.capitalize()} VM {vm_ref!r}?", yes)
        record = vm_ops.change_vm_state(store_of(ctx), vm_ref, action)
        _done(record, f"state set to {action} on {record.node}")
        _wait(ctx, record, action, wait, wait_timeout)

    command.__doc__ = summary
    if destructive:
        command = yes_option()(command)
    return vm.command(name=action)(command)  # type: ignore[no-any-return]


_state_command("start", "Start a VM on its node.")
_state_command("restart", "Restart a running VM.")
_state_command("shutdown", "Shut a VM down gracefully (ACPI), then stop it after a timeout.")
_state_command("stop", "Stop a VM at once (power off).", destructive=True)
_state_command(
    "disable", "Stop a VM and keep it from being started automatically.", destructive=True
)


@vm.command(name="flush-locks")
@click.option(
    "--no-wait", "no_wait", is_flag=True, help="Only write the request; do not wait for it."
)
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=1),
    default=120,
    show_default=True,
    metavar="SECONDS",
    help="Give up waiting after this long (the request itself stays in place).",
)
@click.argument("vm_ref", metavar="VM")
@click.pass_context
def flush_locks(ctx: click.Context, no_wait: bool, wait_timeout: float, vm_ref: str) -> None:
    """Clear the RBD locks of a stopped VM (stale locks of a dead holder).

    The VM's node daemon does it, with the code fence recovery uses; the holders are
    blocklisted in Ceph so a holder that was not dead after all can no longer write.
    Refused while the VM runs. Waits for the outcome unless --no-wait.
    """
    store = store_of(ctx)
    record = vm_ops.request_flush_locks(store, vm_ref)
    _done(record, f"RBD lock flush requested from {record.node}")
    if no_wait:
        return
    outcome = wait_for_lock_flush(store, record.uuid, timeout=wait_timeout)
    _done(record, f"RBD lock flush {outcome}")
    if not outcome.startswith("done"):
        ctx.exit(1)


# --------------------------------------------------------------------------- placement


@vm.command()
@click.option("-t", "--target", metavar="NODE", help="Target node (default: chosen by selector).")
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Migrate an already-migrated VM again, keeping its original previous node.",
)
@click.argument("vm_ref", metavar="VM")
@wait_options
@click.pass_context
def migrate(
    ctx: click.Context,
    target: str | None,
    force: bool,
    vm_ref: str,
    wait: bool,
    wait_timeout: float,
) -> None:
    """Migrate a VM temporarily; 'pvc vm unmigrate' sends it back.

    A running VM is live-migrated by the node daemons; if that fails it is shut down and
    started on the target, unless its migration method is 'live' (then it stays where it
    is, with the reason). A stopped VM only changes node.
    """
    record = vm_ops.migrate_vm(store_of(ctx), vm_ref, target=target, force=force)
    _done(record, f"migrating to {record.node} (previous node {record.lastnode})")
    _wait(ctx, record, "migrate", wait, wait_timeout)


@vm.command()
@click.option("-t", "--target", metavar="NODE", help="Target node (default: chosen by selector).")
@click.argument("vm_ref", metavar="VM")
@wait_options
@click.pass_context
def move(
    ctx: click.Context, target: str | None, vm_ref: str, wait: bool, wait_timeout: float
) -> None:
    """Move a VM permanently to another node (as migrate, but it keeps no previous node)."""
    record = vm_ops.move_vm(store_of(ctx), vm_ref, target=target)
    _done(record, f"moving to {record.node}")
    _wait(ctx, record, "move", wait, wait_timeout)


@vm.command()
@click.argument("vm_ref", metavar="VM")
@wait_options
@click.pass_context
def unmigrate(ctx: click.Context, vm_ref: str, wait: bool, wait_timeout: float) -> None:
    """Send a migrated VM back to its previous node."""
    record = vm_ops.unmigrate_vm(store_of(ctx), vm_ref)
    _done(record, f"returning to {record.node}")
    _wait(ctx, record, "unmigrate", wait, wait_timeout)


# --------------------------------------------------------------------------- list / info


def _networks_cell(view: VmView) -> Cell:
    text = ",".join(view.domain.networks) if view.domain else "?"
    # The whole cell is red, not single entries: colouring inside a cell broke alignment.
    return Cell(text or "-", "red" if view.unknown_networks else None)


def _vm_row(view: VmView) -> list[Cell]:
    vm = view.record
    domain = view.domain
    return [
        Cell(vm.name),
        Cell(vm.uuid),
        state_cell(vm.state),
        _networks_cell(view),
        Cell(str(domain.memory_mib) if domain else "?"),
        Cell(str(domain.vcpus) if domain else "?"),
        Cell(vm.node),
        Cell(f"from {vm.lastnode}" if vm.lastnode else "no", "yellow" if vm.lastnode else None),
    ]


@vm.command(name="list")
@click.option("-t", "--target", "node", metavar="NODE", help="Only VMs on this node.")
@click.option("-s", "--state", type=click.Choice(schema.VM_STATES), help="Only VMs in this state.")
@click.option("-r", "--raw", is_flag=True, help="Print only the names, one per line.")
@format_option()
@click.argument("name_filter", metavar="[FILTER]", required=False)
@click.pass_context
def list_command(
    ctx: click.Context,
    node: str | None,
    state: str | None,
    raw: bool,
    output_format: str,
    name_filter: str | None,
) -> None:
    """List VMs, optionally only those whose name contains FILTER.

    RAM is in MiB. A VM's whole Networks cell is shown red when any of its networks is
    not registered with 'pvc network add' (the cell is coloured as a whole so that the
    columns stay aligned).
    """
    views = vm_ops.list_vms(store_of(ctx), node=node, state=state, name_filter=name_filter)
    if raw:
        for view in views:
            click.echo(view.record.name)
    elif output_format != "pretty":
        echo(render_data([view.as_dict() for view in views], output_format))
    else:
        headers = ["Name", "UUID", "State", "Networks", "RAM", "vCPUs", "Node", "Migrated"]
        echo(render_table(headers, [_vm_row(view) for view in views]))


@vm.command()
@click.option(
    "-l",
    "--long",
    "long_output",
    is_flag=True,
    help="Also show disks, interfaces, CPU topology and the console log file.",
)
@format_option()
@click.argument("vm_ref", metavar="VM")
@click.pass_context
def info(ctx: click.Context, long_output: bool, output_format: str, vm_ref: str) -> None:
    """Show a VM's state, placement metadata and resources."""
    view = vm_ops.vm_info(store_of(ctx), vm_ref)
    if output_format != "pretty":
        echo(render_data(view.as_dict(long=long_output), output_format))
        return
    echo(render_fields(_info_fields(view, long_output)))


def _console_cell(view: VmView) -> Cell | str:
    if view.console_hint:
        return Cell(f"none: {vm_ops.serial_log_advice(view.record.name)}", "yellow")
    count = view.console_lines or 0
    return f"{count} line{'' if count == 1 else 's'} buffered (pvc vm log {view.record.name})"


def _info_fields(view: VmView, long_output: bool) -> list[tuple[str, Cell | str]]:
    vm, domain = view.record, view.domain
    fields: list[tuple[str, Cell | str]] = [
        ("Name", vm.name),
        ("UUID", vm.uuid),
        ("State", state_cell(vm.state)),
        ("Node", vm.node),
        ("Previous node", vm.lastnode or "-"),
        ("Node limit", ",".join(vm.node_limit) or "any node"),
        ("Node selector", vm.node_selector),
        ("Autostart", str(vm.node_autostart)),
        ("Migration method", vm.migration_method),
    ]
    if vm.failedreason:
        fields.append(("Failed reason", Cell(vm.failedreason, "red")))
    if domain is None:
        fields.append(("XML", Cell(view.xml_error, "red")))
        return fields
    fields += [
        ("Memory", f"{domain.memory_mib} MiB"),
        ("vCPUs", str(domain.vcpus)),
        ("Networks", _networks_cell(view)),
        ("RBD disks", ",".join(vm.rbdlist) or "-"),
        ("Console log", _console_cell(view)),
    ]
    if long_output:
        if domain.topology:
            topology = domain.topology
            fields.append(
                (
                    "Topology",
                    f"{topology.sockets} sockets x {topology.cores} cores x "
                    f"{topology.threads} threads",
                )
            )
        for disk in domain.disks:
            fields.append(
                (
                    f"Disk {disk.target or '?'}",
                    f"{disk.device} {disk.kind} {disk.source or '(empty)'}",
                )
            )
        for interface in domain.interfaces:
            fields.append(
                (
                    f"Interface {interface.mac or '?'}",
                    f"{interface.kind} {interface.source or '-'} {interface.model or ''}".rstrip(),
                )
            )
        if domain.console_log_path:
            fields.append(("Console log file", domain.console_log_path))
    return fields
