"""The bounded per-VM history (pvc_common.history): appending, dropping, who wrote it."""

from __future__ import annotations

import threading

from pvc_common.history import (
    HISTORY_LIMIT,
    MAX_TEXT,
    HistoryEntry,
    acting_as,
    appended,
    current_actor,
    entries,
    set_process_actor,
)


def test_entries_are_appended_oldest_first_and_the_oldest_dropped_and_counted() -> None:
    stored: dict[str, object] = {}
    for number in range(HISTORY_LIMIT + 7):
        stored = appended(stored, HistoryEntry(float(number), "pvc", f"change {number}"))
    kept, dropped = entries(stored)
    assert dropped == 7 and len(kept) == HISTORY_LIMIT
    assert [entry.what for entry in kept[:2]] == ["change 7", "change 8"]
    assert kept[-1] == HistoryEntry(float(HISTORY_LIMIT + 6), "pvc", f"change {HISTORY_LIMIT + 6}")


def test_long_texts_are_clipped() -> None:
    stored = appended({}, HistoryEntry(1.0, "x" * 1000, "y" * 1000, "z" * 1000))
    (entry,), _ = entries(stored)
    assert len(entry.by) == len(entry.what) == len(entry.why) == MAX_TEXT
    assert entry.what.endswith("...")


def test_malformed_stored_entries_are_skipped_not_fatal() -> None:
    stored = {
        "entries": [
            {"at": 5, "by": "pvc", "what": "start", "why": ""},
            {"at": "yesterday", "what": "x"},
            "garbage",
            {"at": True, "what": "x"},
            {"at": 6.5, "what": "stop"},
        ],
        "dropped": -3,
    }
    kept, dropped = entries(stored)
    assert [(entry.at, entry.what, entry.by) for entry in kept] == [
        (5.0, "start", "pvc"),
        (6.5, "stop", ""),
    ]
    assert dropped == 0
    assert entries({"entries": "nope"}) == ([], 0)


def test_the_actor_is_the_request_then_the_process_then_a_default() -> None:
    assert "@" in current_actor()  # program user@host
    set_process_actor("pvcnoded hv1")
    try:
        assert current_actor() == "pvcnoded hv1"
        seen: list[str] = []
        with acting_as("pvcapid for 10.0.0.1 (key #2)"):
            assert current_actor() == "pvcapid for 10.0.0.1 (key #2)"
            # Another thread (another request) is not affected.
            thread = threading.Thread(target=lambda: seen.append(current_actor()))
            thread.start()
            thread.join()
        assert seen == ["pvcnoded hv1"]
        assert current_actor() == "pvcnoded hv1"
    finally:
        set_process_actor("")
