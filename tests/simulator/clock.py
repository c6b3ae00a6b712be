"""Virtual time: the clock every part of the simulation reads, the event log, and tasks.

Nothing in the simulator sleeps or reads the wall clock. Anything that takes time in the
real cluster (a live migration, an ACPI shutdown, a BMC call) is a *task*: a generator
that yields how many simulated seconds it waits before going on. The simulation resumes
each task on the first tick at or after its wake-up time, so a run is a pure function of
the scenario and its seed.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

#: A simulated activity: yields the seconds it waits, may return a value at the end.
Activity = Generator[float, None, Any]

# Float ticks (0.5 s) add up exactly, but a scenario may use e.g. 0.1: compare with slack.
_EPSILON = 1e-9


class VirtualClock:
    """Simulated seconds since the start of the run, advanced one tick at a time."""

    def __init__(self, tick: float = 0.5) -> None:
        if tick <= 0:
            raise ValueError(f"the tick must be positive, not {tick!r}")
        self.tick = tick
        self.ticks = 0
        self.now = 0.0

    def advance(self) -> None:
        """Move on by one tick (computed from the tick count, so no rounding drifts in)."""
        self.ticks += 1
        self.now = round(self.ticks * self.tick, 9)

    def reached(self, moment: float) -> bool:
        """Whether ``moment`` is now or in the past."""
        return moment <= self.now + _EPSILON


class EventLog:
    """The run's fixed-format event lines: ``t=12.5 vm 'web1': live-migrated hv1 -> hv2``.

    These lines are the golden output of a scenario, so every line is deterministic: it
    says what happened, never how long the host took to compute it.
    """

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.lines: list[str] = []

    def emit(self, text: str) -> None:
        """Add one line stamped with the current simulated time."""
        self.lines.append(f"t={self.clock.now:.1f} {text}")

    def text(self) -> str:
        """The whole log, one event per line, ending with a newline."""
        return "".join(line + "\n" for line in self.lines)

    def tail(self, count: int = 60) -> str:
        """The last ``count`` lines (for failure messages)."""
        return "\n".join(self.lines[-count:])


class Task:
    """A running :data:`Activity` and the moment it next wants to run."""

    def __init__(self, label: str, body: Activity, now: float) -> None:
        self.label = label
        self.body = body
        self.wake = now
        self.done = False
        self.result: Any = None

    def advance(self, clock: VirtualClock) -> bool:
        """Run the task for as long as it does not wait into the future; True once done.

        A task that yields 0 goes on at once, so a sequence of instantaneous steps (read,
        decide, write) happens within one tick, as it does within one pass of a daemon.
        """
        while not self.done and clock.reached(self.wake):
            try:
                delay = next(self.body)
            except StopIteration as stop:
                self.done = True
                self.result = stop.value
                break
            self.wake = clock.now + max(0.0, delay)
        return self.done

    def abandon(self) -> None:
        """Drop the task, as a killed process drops its threads: no clean-up code runs.

        The generator is not closed (closing would run its ``finally`` clauses, i.e. the
        clean-up of a process that no longer exists); activities hold no such clauses
        with side effects anyway, and a killed process's store client refuses writes.
        """
        self.done = True
