"""A VM's serial console log as a bounded buffer of numbered lines (pure: no I/O).

The node running a VM appends what its serial log file gains; the buffer keeps the last
``max_lines`` complete lines within ``max_bytes`` (far below ZooKeeper's 1 MiB per
znode), each with a *position* that only ever grows, plus the unterminated last line
(``partial``). Readers follow by position, so a repeated or blank line is never mistaken
for another, and a reader that fell behind knows exactly how many lines it missed.

``source`` says which file (machine, device, inode) the buffer was last fed from and up
to which byte: a writer that finds the same file continues exactly there (a node
restarting its watcher, or a live migration between hosts sharing the directory); any
other file is read from its end at the moment its watcher started (the VM started or
arrived there then). Positions carry on either way.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass, replace
from typing import Any

#: Where a node's VM console logs are by default (``console.log_directory``).
DEFAULT_LOG_DIRECTORY = "/var/log/pvc/console"
#: Lines kept by default.
DEFAULT_MAX_LINES = 1000
#: Bytes of text kept by default (the JSON around them adds little).
DEFAULT_MAX_BYTES = 256 * 1024
#: What replaces the end of a line longer than the budget allows.
TRUNCATION_MARK = " [...]"


@dataclass(frozen=True)
class ConsoleSource:
    """The file a buffer was fed from, and the byte offset read up to."""

    machine: str
    device: int
    inode: int
    offset: int

    def same_file(self, machine: str, device: int, inode: int) -> bool:
        """Whether ``(machine, device, inode)`` names this source's file."""
        return (self.machine, self.device, self.inode) == (machine, device, inode)


@dataclass(frozen=True)
class ConsoleBuffer:
    """The last lines of a console, numbered: ``lines[i]`` has position ``first + i``."""

    first: int = 0
    lines: tuple[str, ...] = ()
    #: Text after the last newline (a prompt, or a line still being written).
    partial: str = ""
    source: ConsoleSource | None = None

    @property
    def next(self) -> int:
        """The position the next complete line will get."""
        return self.first + len(self.lines)

    def text(self) -> str:
        """The plain text, as the classic ``consolelog`` key holds it."""
        body = "".join(line + "\n" for line in self.lines)
        return body + self.partial

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in ZooKeeper."""
        data: dict[str, Any] = {"first": self.first, "lines": list(self.lines)}
        if self.partial:
            data["partial"] = self.partial
        if self.source is not None:
            data["source"] = {
                "machine": self.source.machine,
                "device": self.source.device,
                "inode": self.source.inode,
                "offset": self.source.offset,
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConsoleBuffer:
        """The buffer a stored JSON object describes (``{}``: an empty one)."""
        source = data.get("source")
        return cls(
            first=int(data.get("first", 0)),
            lines=tuple(str(line) for line in data.get("lines", ())),
            partial=str(data.get("partial", "")),
            source=(
                ConsoleSource(
                    str(source["machine"]),
                    int(source["device"]),
                    int(source["inode"]),
                    int(source["offset"]),
                )
                if isinstance(source, dict)
                else None
            ),
        )

    def encoded_size(self) -> int:
        """Bytes of the stored JSON (UTF-8)."""
        return len(json.dumps(self.to_json(), ensure_ascii=False).encode())


@dataclass(frozen=True)
class Limits:
    """The bounds of a buffer."""

    max_lines: int = DEFAULT_MAX_LINES
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.max_lines < 1 or self.max_bytes < 1024:
            raise ValueError("a console buffer needs at least 1 line and 1024 bytes")


def stored_size(text: str) -> int:
    """Bytes ``text`` takes in the stored JSON string, without its quotes: control
    characters take six (``\u001b``), quotes and backslashes two."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def _cap_line(line: str, max_bytes: int) -> str:
    """``line`` cut to at most ``max_bytes`` as stored (with a mark) if it is longer."""
    if stored_size(line) <= max_bytes:
        return line
    keep = max(0, max_bytes - len(TRUNCATION_MARK))
    # The longest prefix that fits (a character never takes less than one byte stored).
    low, high = 0, min(len(line), keep)
    while low < high:
        middle = (low + high + 1) // 2
        if stored_size(line[:middle]) <= keep:
            low = middle
        else:
            high = middle - 1
    return line[:low] + TRUNCATION_MARK


class LineDecoder:
    """Bytes of a log file -> complete lines and the partial last one, as text.

    Bytes that are not UTF-8 become U+FFFD (never an exception, never lost history); a
    multi-byte character split between two reads is decoded whole once complete.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes) -> tuple[list[str], str]:
        """Decode ``data``; return the lines it completed and the current partial line."""
        text = self._pending + self._decoder.decode(data)
        *complete, self._pending = text.split("\n")
        # A carriage return before the newline (serial consoles send CRLF) is not text.
        return [line.removesuffix("\r") for line in complete], self._pending

    def reset(self) -> None:
        """Forget a partial line and bytes (the file was truncated or replaced)."""
        self._decoder.reset()
        self._pending = ""


def append_lines(
    buffer: ConsoleBuffer,
    lines: list[str],
    partial: str,
    source: ConsoleSource | None,
    limits: Limits = Limits(),
) -> ConsoleBuffer:
    """``buffer`` with ``lines`` appended (numbered on), ``partial`` as its last line, fed
    from ``source``; the oldest lines go until both bounds hold.

    A line longer than a quarter of the byte budget is cut (with a mark), so one huge
    line never pushes every other line out.
    """
    line_budget = limits.max_bytes // 4
    kept = list(buffer.lines) + [_cap_line(line, line_budget) for line in lines]
    partial = _cap_line(partial.removesuffix("\r"), line_budget)
    overflow = max(0, len(kept) - limits.max_lines)
    # Each kept line costs its stored size plus its quotes and separator.
    size = sum(stored_size(line) + 3 for line in kept[overflow:]) + stored_size(partial)
    while size > limits.max_bytes and overflow < len(kept):
        size -= stored_size(kept[overflow]) + 3
        overflow += 1
    return replace(
        buffer,
        first=buffer.first + overflow,
        lines=tuple(kept[overflow:]),
        partial=partial,
        source=source,
    )


# --------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class FollowState:
    """What a follower has printed: every line before ``next``, and ``partial`` of the
    line at ``next``."""

    next: int
    partial: str = ""


@dataclass(frozen=True)
class FollowStep:
    """What to print now, how many lines were missed (left the buffer unread), and the
    follower's new state."""

    text: str
    skipped: int
    state: FollowState


def start_following(buffer: ConsoleBuffer, lines: int) -> FollowState:
    """The state of a follower that starts with the last ``lines`` lines of ``buffer``."""
    return FollowState(max(buffer.first, buffer.next - max(0, lines)))


def follow(buffer: ConsoleBuffer, state: FollowState) -> FollowStep:
    """What a follower in ``state`` prints on seeing ``buffer``: each line exactly once.

    A partial line is printed as it grows; when it completes, only the rest is printed.
    If the buffer went back (a partial line that was replaced by another), the follower
    ends that line and prints the new one whole.
    """
    out: list[str] = []
    skipped = max(0, buffer.first - state.next)
    position = max(state.next, buffer.first)
    printed = state.partial if skipped == 0 else ""
    for line in buffer.lines[position - buffer.first :]:
        out.append(_rest(printed, line) + "\n")
        printed = ""
    partial = buffer.partial
    if partial != printed:
        out.append(_rest(printed, partial))
    return FollowStep("".join(out), skipped, FollowState(buffer.next, partial))


def _rest(printed: str, line: str) -> str:
    """What to print to turn the already printed ``printed`` into ``line``."""
    if line.startswith(printed):
        return line[len(printed) :]
    body = line.removesuffix(TRUNCATION_MARK)
    if body != line and printed.startswith(body):
        # A partial line that grew past the budget and was cut: what was printed of it
        # stands; only the mark says that the rest is not kept.
        return TRUNCATION_MARK
    return ("\n" if printed else "") + line


def lines_since(buffer: ConsoleBuffer, position: int) -> tuple[list[str], int, int]:
    """For clients that poll (HTTP): the lines from ``position`` on, the position to ask
    from next, and how many lines between ``position`` and the buffer's first were lost."""
    skipped = max(0, buffer.first - position)
    start = max(position, buffer.first) - buffer.first
    return list(buffer.lines[start:]), buffer.next, skipped


def resume_offset(
    source: ConsoleSource | None, machine: str, device: int, inode: int, size: int
) -> int:
    """Where a watcher starting now reads the file ``(machine, device, inode)`` from.

    The same file as the buffer's source: exactly where the buffer stopped (or 0 if the
    file is shorter now: it was truncated). Another file: its end (what it held before
    this VM started or arrived here is not this run's output).
    """
    if source is not None and source.same_file(machine, device, inode):
        return source.offset if source.offset <= size else 0
    return size
