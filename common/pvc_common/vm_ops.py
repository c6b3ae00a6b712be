"""VM operations shared by the CLI and the API: read, decide with the pure core, write intent.

Every function takes a connected :class:`ZkStore` and names a VM by its exact name or
UUID. State changes only write the desired state; the node daemons carry it out.
Every refusal is a :class:`PvcError` with a one-line reason, raised before anything is
written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from . import schema
from .console import DEFAULT_LOG_DIRECTORY, ConsoleBuffer, lines_since
from .console_store import read_console
from .domain_xml import parse_domain_xml
from .errors import Conflict, InvalidInput, NotFound, PreconditionFailed, PvcError
from .history import entries as history_entries
from .models import DomainInfo, NodeRecord, VmRecord
from .mutations import create_vm, delete_vm, update_vm
from .placement import check_explicit_target, select_target_node
from .snapshot import (
    check_schema,
    find_vm,
    load_default_selector,
    load_networks,
    load_nodes,
    load_vm_names,
    load_vms,
)
from .storage import RbdCommand, VolumeRemover
from .store import ZkStore
from .vm_rules import (
    ACTIVE_STATES,
    Change,
    as_request,
    check_migratable,
    migration_change,
    move_change,
    state_change,
    unmigrate_change,
)
from .vm_wait import running_on

#: Times a metadata change is tried on a freshly read VM before a conflict is reported.
META_CONFLICT_RETRIES = 5


# --------------------------------------------------------------------------- input parsing


def parse_node_limit(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Turn ``'hv1,hv2'`` (or a list) into a sorted tuple; ``''`` is the empty limit.

    None means "not given" (leave the limit as it is).
    """
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    names = sorted({item.strip() for item in items if item.strip()})
    for name in names:
        schema.validate_node_name(name)
    return tuple(names)


def _validate_limit(limit: tuple[str, ...], nodes: Sequence[NodeRecord]) -> None:
    known = {node.name for node in nodes}
    unknown = [name for name in limit if name not in known]
    if unknown:
        raise InvalidInput(f"node limit names unknown node(s): {', '.join(unknown)}")


def _validate_selector(selector: str) -> str:
    if selector not in schema.SELECTORS:
        raise InvalidInput(
            f"invalid selector {selector!r}: use one of {', '.join(schema.SELECTORS)}"
        )
    return selector


def _validate_migration_method(method: str) -> str:
    if method not in schema.MIGRATION_METHODS:
        raise InvalidInput(
            f"invalid migration method {method!r}: use one of {', '.join(schema.MIGRATION_METHODS)}"
        )
    return method


# --------------------------------------------------------------------------- define / meta / modify


def define_vm(
    store: ZkStore,
    xml: str,
    *,
    target: str | None = None,
    limit: str | Sequence[str] | None = None,
    selector: str = "none",
    autostart: bool = False,
    migration_method: str = "none",
) -> VmRecord:
    """Define a VM from its libvirt XML, stopped, on ``target`` or an automatic choice.

    Without a target, the node is chosen with the ``limit`` and ``selector`` given here,
    so a VM never starts life outside the limit it was defined with.
    """
    domain = parse_domain_xml(xml)
    node_limit = parse_node_limit(limit) or ()
    _validate_selector(selector)
    _validate_migration_method(migration_method)
    check_schema(store)
    nodes = load_nodes(store)
    _validate_limit(node_limit, nodes)
    listing_version = _refuse_duplicate(store, domain)
    node = _initial_node(store, nodes, domain, target, node_limit, selector)
    record = VmRecord(
        uuid=domain.uuid,
        name=domain.name,
        xml=xml if isinstance(xml, str) else xml.decode(),
        state="stop",
        node=node,
        node_limit=node_limit,
        node_selector=selector,
        node_autostart=autostart,
        rbdlist=domain.rbd_volumes,
        migration_method=migration_method,
    )
    return create_vm(store, record, listing_version=listing_version, event=f"define on {node}")


def _refuse_duplicate(store: ZkStore, domain: DomainInfo) -> int:
    """Refuse a name or UUID already in use; return the version of ``/domains`` read first.

    Every define rewrites ``/domains`` at that version, so two defines racing with the same
    new name cannot both pass this check and commit.
    """
    listing_version = store.get(schema.DOMAINS_PATH).version
    names = load_vm_names(store)
    clash = domain.uuid if domain.uuid in names else None
    clash = clash or next((uuid for uuid, name in names.items() if name == domain.name), None)
    if clash is not None:
        raise Conflict(f"a VM {names[clash]!r} with UUID {clash} already exists")
    return listing_version


def _initial_node(
    store: ZkStore,
    nodes: Sequence[NodeRecord],
    domain: DomainInfo,
    target: str | None,
    node_limit: tuple[str, ...],
    selector: str,
) -> str:
    if target:
        _check_target(nodes, target, domain, node_limit, current_node=None)
        return target
    placement = select_target_node(
        nodes,
        vm_name=domain.name,
        memory_mib=domain.memory_mib,
        node_limit=node_limit,
        selector=selector,
        default_selector=load_default_selector(store),
    )
    if placement.node is None:
        raise PreconditionFailed(placement.reason)
    return placement.node


def _check_target(
    nodes: Sequence[NodeRecord],
    target: str,
    domain: DomainInfo,
    node_limit: Sequence[str],
    current_node: str | None,
) -> None:
    if target not in {node.name for node in nodes}:
        raise NotFound(f"no node named {target!r}")
    reason = check_explicit_target(
        nodes,
        target,
        vm_name=domain.name,
        memory_mib=domain.memory_mib,
        node_limit=node_limit,
        current_node=current_node,
    )
    if reason:
        raise PreconditionFailed(reason)


def set_vm_meta(
    store: ZkStore,
    vm_ref: str,
    *,
    limit: str | Sequence[str] | None = None,
    selector: str | None = None,
    autostart: bool | None = None,
    migration_method: str | None = None,
) -> VmRecord:
    """Change only the metadata given (None = keep); ``limit=''`` clears the limit.

    A limit that leaves out the node a VM runs on (or is started or migrated to) is
    refused (:class:`PreconditionFailed`): a running VM is never outside its limit. A
    stopped VM may get any limit.
    """
    node_limit = parse_node_limit(limit)
    changes: dict[str, Any] = {}
    if node_limit is not None:
        changes["node_limit"] = node_limit
    if selector is not None:
        changes["node_selector"] = _validate_selector(selector)
    if autostart is not None:
        changes["node_autostart"] = autostart
    if migration_method is not None:
        changes["migration_method"] = _validate_migration_method(migration_method)
    if not changes:
        raise InvalidInput(
            "nothing to change: give a limit, a selector, autostart or a migration method"
        )
    described = ", ".join(f"{key}={_show(value)}" for key, value in changes.items())
    # Setting metadata is the same request whatever else changed in the VM's row since it
    # was read (its node daemon writes the row too): on a conflict, read the VM again and
    # check the request against it afresh, a few times, before giving up with a Conflict.
    reference = vm_ref
    for attempt in range(META_CONFLICT_RETRIES):
        vm = find_vm(store, reference)
        reference = vm.uuid  # the same VM again, even if it is renamed meanwhile
        if node_limit is not None:
            nodes = load_nodes(store)
            _validate_limit(node_limit, nodes)
            _check_limit_keeps_vm(vm, node_limit, nodes)
        try:
            return update_vm(store, vm, changes, event=f"meta {described}")
        except Conflict:
            if attempt == META_CONFLICT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _check_limit_keeps_vm(
    vm: VmRecord, node_limit: tuple[str, ...], nodes: Sequence[NodeRecord]
) -> None:
    """Refuse a limit that leaves out a node the VM runs on, or is to run on.

    The write is version-checked against ``vm``: a VM started meanwhile makes it a
    conflict, so a stopped VM that passes here cannot start outside the new limit.
    """
    if not node_limit:
        return  # the empty limit: any node
    where = set(running_on(nodes, vm.uuid))
    if vm.state in ACTIVE_STATES:
        where.add(vm.node)
    outside = sorted(where - set(node_limit))
    if outside:
        raise PreconditionFailed(
            f"vm {vm.name!r} runs on {', '.join(outside)}, outside the limit "
            f"{','.join(node_limit)}: stop it, or migrate it into the limit first"
        )


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "''"
    return str(value)


def modify_vm(store: ZkStore, vm_ref: str, xml: str, *, restart: bool = False) -> VmRecord:
    """Replace a VM's XML; everything derived from it (name, RBD list) follows.

    The UUID cannot change. With ``restart``, a running VM is restarted to apply it.
    """
    vm = find_vm(store, vm_ref)
    domain = parse_domain_xml(xml)
    if domain.uuid != vm.uuid:
        raise InvalidInput(
            f"the new XML has UUID {domain.uuid}, but VM {vm.name!r} is {vm.uuid}: "
            "a VM's UUID cannot change"
        )
    if domain.name != vm.name:
        try:
            other = find_vm(store, domain.name)
        except NotFound:
            pass
        else:
            raise Conflict(f"another VM is already named {other.name!r} ({other.uuid})")
    changes: dict[str, Any] = {"xml": xml, "rbdlist": domain.rbd_volumes}
    if restart and vm.state == "start":
        changes = as_request(vm, {**changes, "state": "restart"})
    renamed = f" (renamed from {vm.name!r})" if domain.name != vm.name else ""
    return update_vm(store, vm, changes, event=f"modify XML{renamed}", name=domain.name)


# ---------------------------------------------------------------- undefine / remove / dump


def undefine_vm(store: ZkStore, vm_ref: str) -> VmRecord:
    """Remove a stopped VM from the cluster, keeping its disks."""
    vm = find_vm(store, vm_ref)
    _refuse_active(vm, "undefine")
    delete_vm(store, vm, event="undefine")
    return vm


def remove_vm(store: ZkStore, vm_ref: str, *, volumes: VolumeRemover | None = None) -> VmRecord:
    """Remove a stopped VM and delete its RBD disks.

    The VM is first claimed (``state=delete``, version-checked) so no one else acts on
    it; it leaves the tree only after every disk is gone. If a disk cannot be deleted,
    the VM stays (``state=delete`` with the reason in ``failedreason``) and the command
    can simply be run again.
    """
    vm = find_vm(store, vm_ref)
    if vm.state != "delete":
        _refuse_active(vm, "remove")
    remover = volumes or RbdCommand()
    if vm.rbdlist:
        remover.check_available()
    claimed = update_vm(store, vm, {"state": "delete", "failedreason": ""}, event="remove")
    for volume in claimed.rbdlist:
        try:
            remover.remove(volume)
        except PvcError as error:
            update_vm(
                store,
                claimed,
                {"failedreason": f"removing {volume}: {error}"},
                event=f"remove failed at {volume}",
            )
            raise
    delete_vm(store, claimed, event="removed with its disks")
    return vm


def _refuse_active(vm: VmRecord, action: str) -> None:
    if vm.state in ACTIVE_STATES or vm.state == "shutdown":
        raise PreconditionFailed(
            f"cannot {action} VM {vm.name!r} while its state is {vm.state}: stop it first"
        )


def dump_vm(store: ZkStore, vm_ref: str) -> str:
    """The VM's libvirt XML as stored."""
    return find_vm(store, vm_ref).xml


# --------------------------------------------------------------------------- state and placement


def change_vm_state(store: ZkStore, vm_ref: str, action: str) -> VmRecord:
    """Write the desired state ``start|restart|shutdown|stop|disable`` for the node daemon."""
    vm = find_vm(store, vm_ref)
    return _apply(store, vm, state_change(vm, action))


def request_flush_locks(store: ZkStore, vm_ref: str) -> VmRecord:
    """Ask the VM's node daemon to clear the RBD locks of a VM that is not running.

    Clearing a lock blocklists its holder, so it is refused while the VM may run.
    """
    vm = find_vm(store, vm_ref)
    if vm.state in ACTIVE_STATES or vm.state == "shutdown":
        raise PreconditionFailed(
            f"VM {vm.name!r} is {vm.state}: stop it before clearing its RBD locks"
        )
    if not vm.rbdlist:
        raise PreconditionFailed(f"VM {vm.name!r} has no RBD disks: no locks to clear")
    return update_vm(store, vm, {"lockflush": "requested"}, event="RBD lock flush requested")


def migrate_vm(
    store: ZkStore, vm_ref: str, *, target: str | None = None, force: bool = False
) -> VmRecord:
    """Temporarily migrate a VM to ``target`` (or the node its selector chooses)."""
    vm = find_vm(store, vm_ref)
    check_migratable(vm, force=force)
    node = _migration_target(store, vm, target)
    return _apply(store, vm, migration_change(vm, node, force=force))


def move_vm(store: ZkStore, vm_ref: str, *, target: str | None = None) -> VmRecord:
    """Permanently move a VM to ``target`` (or the node its selector chooses)."""
    vm = find_vm(store, vm_ref)
    node = _migration_target(store, vm, target)
    return _apply(store, vm, move_change(vm, node))


def unmigrate_vm(store: ZkStore, vm_ref: str) -> VmRecord:
    """Send a migrated VM back to its previous node."""
    vm = find_vm(store, vm_ref)
    change = unmigrate_change(vm)
    _check_target(load_nodes(store), vm.lastnode, _domain(vm), vm.node_limit, vm.node)
    return _apply(store, vm, change)


def _migration_target(store: ZkStore, vm: VmRecord, target: str | None) -> str:
    nodes = load_nodes(store)
    domain = _domain(vm)
    if target:
        _check_target(nodes, target, domain, vm.node_limit, vm.node)
        return target
    placement = select_target_node(
        nodes,
        vm_name=vm.name,
        memory_mib=domain.memory_mib,
        node_limit=vm.node_limit,
        selector=vm.node_selector,
        default_selector=load_default_selector(store),
        current_node=vm.node,
    )
    if placement.node is None:
        raise PreconditionFailed(placement.reason)
    return placement.node


def _apply(store: ZkStore, vm: VmRecord, change: Change) -> VmRecord:
    return update_vm(store, vm, change.values, event=change.event)


def _domain(vm: VmRecord) -> DomainInfo:
    try:
        return parse_domain_xml(vm.xml)
    except InvalidInput as error:
        raise PreconditionFailed(f"VM {vm.name!r} has an unusable stored XML: {error}") from None


# --------------------------------------------------------------------------- console


def serial_log_advice(vm_name: str) -> str:
    """How to give ``vm_name`` a serial console log, as a phrase (``add <log .../> ...``)."""
    path = f"{DEFAULT_LOG_DIRECTORY}/{vm_name}.log"
    return f"add <log file='{path}' append='on'/> inside its <serial> device"


def serial_log_hint(vm_name: str) -> str:
    """The one line saying that ``vm_name`` has no serial console log, and how to add one."""
    return f"VM {vm_name!r} has no serial console log: {serial_log_advice(vm_name)}"


@dataclass(frozen=True)
class VmConsole:
    """A VM, its console buffer, and whether its XML logs a serial console at all."""

    record: VmRecord
    buffer: ConsoleBuffer
    #: False only when the XML was read and names no log file (an unreadable XML: True).
    has_serial_log: bool

    @property
    def hint(self) -> str | None:
        """How to enable the log, when there is none and nothing was ever buffered."""
        if self.has_serial_log or self.buffer.lines or self.buffer.partial:
            return None
        return serial_log_hint(self.record.name)


def vm_console(store: ZkStore, vm_ref: str) -> VmConsole:
    """A VM's console buffer as it is now (follow it with ``console_store.follow_console``)."""
    vm = find_vm(store, vm_ref)
    buffer, _ = read_console(store, vm.uuid)
    try:
        has_log = parse_domain_xml(vm.xml).console_log_path is not None
    except InvalidInput:
        has_log = True  # unknown: do not advise on a document that cannot be read
    return VmConsole(vm, buffer, has_log)


def console_view(
    store: ZkStore, vm_ref: str, *, lines: int | None = None, since: int | None = None
) -> dict[str, Any]:
    """A VM's console as JSON data for clients that poll (``GET .../console``).

    ``lines`` limits the answer to the last lines; ``since`` continues from a position a
    previous answer gave as ``next``: only lines from there on, and ``skipped`` counts
    the lines that left the buffer before they were asked for. The partial last line is
    given apart (``partial``): it may still grow.
    """
    if lines is not None and lines < 0:
        raise InvalidInput(f"lines must be 0 or more, not {lines}")
    if since is not None and since < 0:
        raise InvalidInput(f"since must be a position (0 or more), not {since}")
    console = vm_console(store, vm_ref)
    buffer = console.buffer
    start = buffer.first if since is None else since
    text, following, skipped = lines_since(buffer, start)
    if lines is not None:
        text = text[len(text) - lines :] if lines else []
    return {
        "name": console.record.name,
        "uuid": console.record.uuid,
        "first": buffer.first,
        "next": following,
        "skipped": skipped,
        "lines": text,
        "partial": buffer.partial,
        "hint": console.hint,
    }


# --------------------------------------------------------------------------- list / info


@dataclass(frozen=True)
class VmView:
    """A VM with what its XML says and which of its networks the cluster does not know."""

    record: VmRecord
    domain: DomainInfo | None
    xml_error: str
    unknown_networks: tuple[str, ...]
    #: Lines in its console buffer (the partial line counts), when read (``vm_info``).
    console_lines: int | None = None

    @property
    def console_hint(self) -> str | None:
        """How to enable the serial console log, when the XML names none."""
        if self.domain is None or self.domain.console_log_path:
            return None
        return serial_log_hint(self.record.name)

    def as_dict(self, *, long: bool = False) -> dict[str, Any]:
        """Plain data for JSON/YAML output."""
        vm = self.record
        data: dict[str, Any] = {
            "name": vm.name,
            "uuid": vm.uuid,
            "state": vm.state,
            "node": vm.node,
            "lastnode": vm.lastnode,
            "migrated": bool(vm.lastnode),
            "failed_reason": vm.failedreason,
            "node_limit": list(vm.node_limit),
            "node_selector": vm.node_selector,
            "node_autostart": vm.node_autostart,
            "migration_method": vm.migration_method,
            "memory_mib": self.domain.memory_mib if self.domain else None,
            "vcpus": self.domain.vcpus if self.domain else None,
            "networks": list(self.domain.networks) if self.domain else [],
            "unknown_networks": list(self.unknown_networks),
            "rbd_list": list(vm.rbdlist),
            "console_log": bool(self.domain and self.domain.console_log_path),
        }
        if self.console_lines is not None:
            data["console_lines"] = self.console_lines
        if self.console_hint:
            data["console_hint"] = self.console_hint
        if self.xml_error:
            data["xml_error"] = self.xml_error
        if long and self.domain:
            data["disks"] = [vars(disk) for disk in self.domain.disks]
            data["interfaces"] = [vars(interface) for interface in self.domain.interfaces]
            data["console_log_path"] = self.domain.console_log_path
            topology = self.domain.topology
            data["topology"] = vars(topology) if topology else None
        return data


def _view(vm: VmRecord, known_networks: set[str]) -> VmView:
    try:
        domain: DomainInfo | None = parse_domain_xml(vm.xml)
        error = ""
    except InvalidInput as problem:
        domain, error = None, str(problem)
    unknown = tuple(n for n in (domain.networks if domain else ()) if n not in known_networks)
    return VmView(vm, domain, error, unknown)


def list_vms(
    store: ZkStore,
    *,
    node: str | None = None,
    state: str | None = None,
    name_filter: str | None = None,
) -> list[VmView]:
    """Every VM (optionally on one node, in one state, or whose name contains a text)."""
    if state is not None and state not in schema.VM_STATES:
        raise InvalidInput(f"invalid state {state!r}: use one of {', '.join(schema.VM_STATES)}")
    check_schema(store)
    known = {str(network.vni) for network in load_networks(store)}
    views = []
    for vm in load_vms(store):
        if node and vm.node != node:
            continue
        if state and vm.state != state:
            continue
        if name_filter and name_filter not in vm.name and name_filter != vm.uuid:
            continue
        views.append(_view(vm, known))
    return views


def vm_info(store: ZkStore, vm_ref: str) -> VmView:
    """One VM in detail, with the size of its console buffer."""
    vm = find_vm(store, vm_ref)
    known = {str(network.vni) for network in load_networks(store)}
    buffer, _ = read_console(store, vm.uuid)
    lines = len(buffer.lines) + (1 if buffer.partial else 0)
    return replace(_view(vm, known), console_lines=lines)


def vm_history(store: ZkStore, vm_ref: str, *, last: int | None = None) -> dict[str, Any]:
    """A VM's recorded changes, oldest first (the last ``last`` only, when given).

    Each entry has ``at`` (Unix time), ``by`` (the program and user, daemon or API client
    that made the change), ``what`` and ``why``; ``dropped`` counts older entries no
    longer kept (see :mod:`pvc_common.history`).
    """
    if last is not None and last < 0:
        raise InvalidInput(f"last must be 0 or more, not {last}")
    vm = find_vm(store, vm_ref)
    field = schema.DOMAIN_FIELD["history"]
    (read,) = store.read_many([schema.domain_key_path(vm.uuid, field.key)])
    kept, dropped = history_entries(field.decode(read.data if read else None))
    if last is not None:
        dropped += max(0, len(kept) - last)
        kept = kept[len(kept) - last :] if last else []
    return {
        "name": vm.name,
        "uuid": vm.uuid,
        "dropped": dropped,
        "entries": [asdict(entry) for entry in kept],
    }
