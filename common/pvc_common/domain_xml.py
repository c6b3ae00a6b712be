"""Read the parts of a libvirt domain XML document the cluster works with.

The document is only read, never rewritten: libvirt stays the authority on what the XML
means, and this module extracts what placement, storage locking and console logging need.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Final

from lxml import etree

from .errors import InvalidInput
from .models import CpuTopology, DiskInfo, DomainInfo, InterfaceInfo
from .schema import validate_uuid

MAX_DOCUMENT_BYTES: Final = 1024 * 1024

_MIB: Final = 1024 * 1024
_DIGITS: Final = re.compile(r"[0-9]+")
# A cluster network's bridge and libvirt network are named by the VNI in plain decimal, so a
# leading zero ("vmbr007") does not name VNI 7.
_VNI_BRIDGE: Final = re.compile(r"vmbr([1-9][0-9]*)")
_VNI_NAME: Final = re.compile(r"[1-9][0-9]*")
_MAX_VNI: Final = 16_777_215
# Longer digit strings are no plausible size or count, and int() refuses very long ones.
_MAX_DIGITS: Final = 20
# Binary ("KiB", "K") and decimal ("KB") multipliers of each unit prefix, as libvirt's
# virScaleInteger applies them.
_PREFIXES: Final = {
    "k": (2**10, 10**3),
    "m": (2**20, 10**6),
    "g": (2**30, 10**9),
    "t": (2**40, 10**12),
    "p": (2**50, 10**15),
    "e": (2**60, 10**18),
}
# lxml appends the position to its message; the line alone is given, once.
_POSITION: Final = re.compile(r"(, line [0-9]+)?, column [0-9]+$")


def _invalid(problem: str) -> InvalidInput:
    return InvalidInput(f"invalid domain XML: {problem}")


def _show(text: str) -> str:
    """``repr`` of ``text`` cut short, so a hostile value cannot flood the error message."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _positive_int(text: str | None, what: str) -> int:
    text = (text or "").strip()
    significant = text.lstrip("0")
    if not _DIGITS.fullmatch(text) or not significant:
        raise _invalid(f"{what} {_show(text)} is not a positive integer")
    if len(significant) > _MAX_DIGITS:
        raise _invalid(f"{what} {_show(text)} is out of range")
    return int(significant)


def _required(root: etree._Element, tag: str) -> etree._Element:
    element = root.find(tag)
    if element is None:
        raise _invalid(f"missing <{tag}>")
    return element


def _required_text(root: etree._Element, tag: str) -> str:
    return (_required(root, tag).text or "").strip()


def _unit_scale(unit: str) -> int:
    """Bytes per ``unit``, following libvirt: case-insensitive, ``KiB`` when not given."""
    lowered = unit.lower()
    if lowered in ("b", "byte", "bytes"):
        return 1
    if lowered == "":
        return 1024
    binary, decimal = _PREFIXES.get(lowered[0], (0, 0))
    if binary and lowered[1:] in ("", "ib"):
        return binary
    if decimal and lowered[1:] == "b":
        return decimal
    raise _invalid(f"<memory> unit {_show(unit)} is not a known unit")


def _memory_mib(root: etree._Element) -> int:
    element = _required(root, "memory")
    amount = _positive_int(element.text, "<memory>") * _unit_scale(element.get("unit", ""))
    return -(-amount // _MIB)


def _topology(root: etree._Element, vcpus: int) -> CpuTopology | None:
    element = root.find("cpu/topology")
    if element is None:
        return None
    counts = {
        name: _positive_int(element.get(name), f"<topology> {name}")
        for name in ("sockets", "cores", "threads")
    }
    # Dies and clusters are optional levels of the same product; CpuTopology does not keep
    # them, but leaving them out of the check would refuse valid documents.
    product = counts["sockets"] * counts["cores"] * counts["threads"]
    for name in ("dies", "clusters"):
        if element.get(name) is not None:
            product *= _positive_int(element.get(name), f"<topology> {name}")
    if product != vcpus:
        raise _invalid(
            f"<topology> gives {product} vCPUs (sockets x cores x threads) "
            f"but <vcpu> is {vcpus}; they must be equal"
        )
    return CpuTopology(counts["sockets"], counts["cores"], counts["threads"])


def _disk_source(kind: str, source: etree._Element | None) -> str | None:
    if source is None:
        return None
    if kind == "volume":
        pool, volume = source.get("pool"), source.get("volume")
        return f"{pool}/{volume}" if pool and volume else None
    attribute = {"file": "file", "block": "dev", "network": "name"}.get(kind)
    # An empty attribute names nothing, like a missing one.
    return (source.get(attribute) or None) if attribute else None


def _disk(element: etree._Element) -> DiskInfo:
    # libvirt takes a disk without a type to be a file disk.
    kind = element.get("type") or "file"
    source, target = element.find("source"), element.find("target")
    protocol = source.get("protocol") if kind == "network" and source is not None else None
    return DiskInfo(
        device=element.get("device") or "disk",
        kind=kind,
        target=target.get("dev", "") if target is not None else "",
        source=_disk_source(kind, source),
        protocol=protocol,
    )


def _vni(kind: str, source: str) -> int | None:
    if kind == "bridge":
        match = _VNI_BRIDGE.fullmatch(source)
        digits = match.group(1) if match else None
    else:
        digits = source if kind == "network" and _VNI_NAME.fullmatch(source) else None
    # Out of range, the name cannot be a cluster network (e.g. a host's own bridge).
    if digits is None or len(digits) > 8 or int(digits) > _MAX_VNI:
        return None
    return int(digits)


def _interface(element: etree._Element) -> InterfaceInfo:
    kind = element.get("type", "")
    attribute = {"bridge": "bridge", "network": "network"}.get(kind)
    source_element = element.find("source")
    source = ""
    if attribute and source_element is not None:
        source = source_element.get(attribute, "")
    mac, model = element.find("mac"), element.find("model")
    return InterfaceInfo(
        kind=kind,
        mac=mac.get("address", "") if mac is not None else "",
        source=source,
        model=model.get("type", "") if model is not None else "",
        vni=_vni(kind, source),
    )


def _console_log_path(root: etree._Element) -> str | None:
    for tag in ("serial", "console"):
        for log in root.iterfind(f"devices/{tag}/log"):
            path = log.get("file")
            if path:
                return path
    return None


_PARSERS = threading.local()


def _parser() -> etree.XMLParser:
    # Building a parser costs as much as parsing a small document; one per thread is reused
    # (an lxml parser must not be shared between threads).
    parser: etree.XMLParser | None = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        _PARSERS.parser = parser
    return parser


def _parse_root(xml: str | bytes) -> etree._Element:
    if isinstance(xml, str):
        # Parse text as bytes: lxml refuses a str that carries an encoding declaration.
        try:
            xml = xml.encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid("document is not valid Unicode text") from None
    if len(xml) > MAX_DOCUMENT_BYTES:
        raise _invalid(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
    if not xml.strip():
        raise _invalid("document is empty")
    try:
        root = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as error:
        message = _POSITION.sub("", str(error.msg))
        raise _invalid(f"{message}, line {error.lineno}") from None
    except etree.LxmlError as error:
        raise _invalid(str(error)) from None
    # Entities declared in an internal DTD stay unresolved, so their text would silently
    # vanish from the values read; libvirt never writes one, so refuse it outright.
    if root.getroottree().docinfo.internalDTD is not None:
        raise _invalid("a DOCTYPE with declarations is not allowed")
    if root.tag != "domain":
        tag = str(root.tag)
        shown = tag if len(tag) <= 40 else tag[:40] + "..."
        raise _invalid(f"root element is <{shown}>, expected <domain>")
    return root


#: Documents whose parse is remembered (a few MiB of text at most, for about 2,000 VMs).
PARSE_CACHE_SIZE: Final = 2048


def parse_domain_xml(xml: str | bytes) -> DomainInfo:
    """Parse a libvirt domain XML document into a :class:`DomainInfo`.

    Reads the name, UUID (returned in canonical lower-case form), memory (converted to MiB,
    rounding up), vCPU count and CPU topology, the disks and interfaces in document order,
    and the log file of the serial console. Documents over 1 MiB are refused.

    The result depends on the text alone and is immutable, so the last
    :data:`PARSE_CACHE_SIZE` documents parsed are remembered: a long-lived reader (the API
    daemon listing VMs, a node daemon's reconcile pass) parses only the XML that changed.

    :raises InvalidInput: when the document is not well-formed XML, its root is not
        ``<domain>``, or a required element is missing or holds a bad value; the message is
        one line naming the problem.
    """
    if isinstance(xml, bytes) and len(xml) <= MAX_DOCUMENT_BYTES:
        try:
            xml = xml.decode("utf-8")
        except UnicodeDecodeError:
            return _parse_uncached(xml)  # refused with the parser's own message
    if isinstance(xml, str) and len(xml) <= MAX_DOCUMENT_BYTES:
        return _parse_cached(xml)
    return _parse_uncached(xml)


def _parse_uncached(xml: str | bytes) -> DomainInfo:
    root = _parse_root(xml)
    name = _required_text(root, "name")
    if not name:
        raise _invalid("<name> is empty")
    uuid_text = _required_text(root, "uuid")
    try:
        uuid = validate_uuid(uuid_text)
    except InvalidInput as error:
        raise _invalid(f"<uuid>: {error.message}") from None
    vcpus = _positive_int(_required_text(root, "vcpu"), "<vcpu>")
    return DomainInfo(
        name=name,
        uuid=uuid,
        memory_mib=_memory_mib(root),
        vcpus=vcpus,
        topology=_topology(root, vcpus),
        disks=tuple(_disk(element) for element in root.iterfind("devices/disk")),
        interfaces=tuple(_interface(element) for element in root.iterfind("devices/interface")),
        console_log_path=_console_log_path(root),
    )


# Errors are not cached (lru_cache remembers only returned values): a refused document is
# parsed again each time, which only costs the caller that keeps sending it.
_parse_cached = functools.lru_cache(maxsize=PARSE_CACHE_SIZE)(_parse_uncached)
