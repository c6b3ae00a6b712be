"""A VM's history: when, what, who (or which daemon) and why, for every change of its row.

Every write of a VM goes through :mod:`pvc_common.mutations`, which appends one entry here
in the same transaction as the change, so the history can neither miss a change nor record
one that did not happen. It is bounded: the last :data:`HISTORY_LIMIT` entries are kept
and the number dropped before them is counted.

Who: each process names itself once (``pvc root@host``, ``pvcnoded hv1``), and a server
acting for someone names them for the duration of a request (:func:`acting_as`).

The stored form is the ``history`` key of the VM, a JSON object::

    {"entries": [{"at": 1764150000.25, "by": "pvc root@host", "what": "start", "why": ""}],
     "dropped": 0}
"""

from __future__ import annotations

import contextvars
import getpass
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Final

#: Entries kept per VM (older ones are dropped and counted).
HISTORY_LIMIT: Final = 50
#: The longest text kept of one field of an entry (a runaway reason cannot bloat the VM).
MAX_TEXT: Final = 300


@dataclass(frozen=True)
class HistoryEntry:
    """One change of a VM."""

    at: float  #: Unix time, by the writer's clock
    by: str  #: the program and user, daemon or API client that made it
    what: str  #: the change, as in the event log (``migrate hv1 -> hv2``)
    why: str = ""  #: the reason a daemon gave, when it gave one


def _default_actor() -> str:
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{program} {user}@{socket.gethostname()}"


_process_actor: str | None = None
_request_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pvc_request_actor", default=None
)


def set_process_actor(actor: str) -> None:
    """Name this whole process in the entries it writes (a daemon calls it at start)."""
    global _process_actor
    _process_actor = actor


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Name ``actor`` in the entries written within this block (this thread/context only)."""
    token = _request_actor.set(actor)
    try:
        yield
    finally:
        _request_actor.reset(token)


def current_actor() -> str:
    """Who the entries written now name."""
    return _request_actor.get() or _process_actor or _default_actor()


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def entries(stored: Mapping[str, Any]) -> tuple[list[HistoryEntry], int]:
    """The entries of a stored history, oldest first, and how many were dropped before them.

    Entries that are not well formed (another tool's, or damaged) are skipped.
    """
    found: list[HistoryEntry] = []
    for item in stored.get("entries", ()) if isinstance(stored.get("entries"), list) else ():
        if not isinstance(item, dict):
            continue
        at, by, what, why = (item.get(key) for key in ("at", "by", "what", "why"))
        if isinstance(at, int | float) and not isinstance(at, bool) and isinstance(what, str):
            found.append(
                HistoryEntry(
                    float(at),
                    by if isinstance(by, str) else "",
                    what,
                    why if isinstance(why, str) else "",
                )
            )
    dropped = stored.get("dropped", 0)
    return found, dropped if isinstance(dropped, int) and dropped >= 0 else 0


def appended(
    stored: Mapping[str, Any], entry: HistoryEntry, *, limit: int = HISTORY_LIMIT
) -> dict[str, Any]:
    """The stored history with ``entry`` added and the oldest beyond ``limit`` dropped."""
    kept, dropped = entries(stored)
    clipped = HistoryEntry(entry.at, _clip(entry.by), _clip(entry.what), _clip(entry.why))
    kept.append(clipped)
    excess = max(0, len(kept) - limit)
    return {"entries": [asdict(item) for item in kept[excess:]], "dropped": dropped + excess}
