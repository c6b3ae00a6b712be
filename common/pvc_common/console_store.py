"""Reading, writing and following a VM's console buffer in ZooKeeper.

The buffer lives in the VM's ``console`` key (JSON, see :mod:`pvc_common.console`), with
its plain text in the classic ``consolelog`` key, both written in one transaction that
checks the ``console`` znode's own version. These writes do not touch the VM's row
version: a console that prints never conflicts with a state change of its VM.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from . import schema
from .console import ConsoleBuffer, FollowState, follow, start_following
from .errors import NotFound, PvcError
from .store import SetData, ZkStore


def read_console(store: ZkStore, uuid: str) -> tuple[ConsoleBuffer, int]:
    """The VM's console buffer and the version of its ``console`` znode.

    :raises NotFound: when the VM (or, in a tree not yet upgraded, the key) is missing.
    """
    path = schema.domain_key_path(uuid, "console")
    found = store.read_many([path])[0]
    if found is None:
        raise NotFound(f"the VM {uuid} has no console buffer (removed, or schema not upgraded)")
    try:
        data = json.loads(found.data or b"{}")
    except ValueError:
        data = {}  # a damaged buffer is replaced by the next write, never fatal
    return ConsoleBuffer.from_json(data if isinstance(data, dict) else {}), found.version


def write_console(store: ZkStore, uuid: str, buffer: ConsoleBuffer, version: int) -> None:
    """Store ``buffer`` if the ``console`` znode is still at ``version``.

    :raises Conflict: when another writer changed it meanwhile (nothing is written).
    """
    encoded = json.dumps(buffer.to_json(), ensure_ascii=False, separators=(",", ":"))
    store.commit(
        [
            SetData(schema.domain_key_path(uuid, "console"), encoded.encode(), version),
            SetData(schema.domain_key_path(uuid, "consolelog"), buffer.text().encode()),
        ]
    )


def follow_console(
    store: ZkStore,
    uuid: str,
    *,
    lines: int,
    emit: Callable[[str], None],
    on_skipped: Callable[[int], None],
    stop: threading.Event,
) -> None:
    """Print the last ``lines`` lines, then every new one as it comes, until ``stop`` is
    set; returns normally then.

    Driven by a ZooKeeper watch on the buffer (no polling): each change wakes the loop,
    which reads the buffer and prints what :func:`pvc_common.console.follow` says is new.

    :raises NotFound: when the VM is removed (its buffer disappears).
    """
    changed = threading.Event()
    buffer, _ = read_console(store, uuid)
    state: FollowState = start_following(buffer, lines)
    store.watch_data(schema.domain_key_path(uuid, "console"), changed.set)
    while not stop.is_set():
        step = follow(buffer, state)
        if step.skipped:
            on_skipped(step.skipped)
        if step.text:
            emit(step.text)
        state = step.state
        # Only a change of the buffer wakes it (kazoo re-arms the watch after a reconnect);
        # the timeout only lets it notice ``stop``.
        while not changed.wait(1.0):
            if stop.is_set():
                return
        changed.clear()
        if stop.is_set():
            return
        try:
            buffer, _ = read_console(store, uuid)
        except NotFound:
            raise NotFound(f"the VM {uuid} was removed") from None
        except PvcError:
            continue  # ZooKeeper unreachable for now: the client reconnects; try again
