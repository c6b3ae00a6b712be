"""The registry of cluster networks (VNIs): add, list, info, remove."""

from __future__ import annotations

from . import schema
from .domain_xml import parse_domain_xml
from .errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from .models import NetworkRecord
from .mutations import EVENTS
from .snapshot import check_schema, load_networks, load_vms
from .store import Create, Delete, Op, ZkStore


def add_network(
    store: ZkStore, vni: int | str, *, description: str = "", nettype: str = "bridged"
) -> NetworkRecord:
    """Register a network; :class:`Conflict` if the VNI is already registered."""
    number = schema.validate_vni(vni)
    if nettype not in schema.NETWORK_TYPES:
        raise InvalidInput(
            f"invalid network type {nettype!r}: use {' or '.join(schema.NETWORK_TYPES)}"
        )
    check_schema(store)
    if store.exists(schema.network_path(number)):
        raise Conflict(f"network {number} already exists")
    ops: list[Op] = [Create(schema.network_path(number), description.encode())]
    ops.append(
        Create(
            schema.network_key_path(number, "nettype"),
            schema.NETWORK_FIELD["nettype"].encode(nettype),
        )
    )
    store.commit(ops)
    EVENTS.info("network %d: add %s %r", number, nettype, description)
    return NetworkRecord(number, description, nettype)


def list_networks(store: ZkStore) -> list[NetworkRecord]:
    """Every registered network, by VNI."""
    check_schema(store)
    return load_networks(store)


def network_info(store: ZkStore, vni: int | str) -> NetworkRecord:
    """One network; :class:`NotFound` when the VNI is not registered."""
    number = schema.validate_vni(vni)
    found = next((n for n in list_networks(store) if n.vni == number), None)
    if found is None:
        raise NotFound(f"no network {number}")
    return found


def network_users(store: ZkStore, vni: int) -> list[str]:
    """Names of the VMs with an interface on network ``vni``."""
    users = []
    for vm in load_vms(store):
        try:
            networks = parse_domain_xml(vm.xml).networks
        except InvalidInput:
            continue
        if str(vni) in networks:
            users.append(vm.name)
    return users


def remove_network(store: ZkStore, vni: int | str, *, force: bool = False) -> NetworkRecord:
    """Unregister a network; refused while VMs use it unless ``force``."""
    network = network_info(store, vni)
    users = network_users(store, network.vni)
    if users and not force:
        raise PreconditionFailed(
            f"network {network.vni} is used by {', '.join(users)}: use --force to remove it anyway"
        )
    own = schema.network_path(network.vni)
    ops: list[Op] = [Delete(path) for path in reversed(store.descendants(own))]
    ops.append(Delete(own))
    store.commit(ops)
    EVENTS.info("network %d: remove", network.vni)
    return network
