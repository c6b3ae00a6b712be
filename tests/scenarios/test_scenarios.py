"""Scenario tests as data: each directory here is one scenario (see README.md).

Each scenario runs on the simulator (the real decision core on a virtual clock, with the
invariants checked after every tick) and its event log must equal ``expected.log``
exactly. A scenario with a ``known_bug`` line in its ``cluster.yaml`` shows a defect of
the real code: its log ends with the invariant it breaks, and the test is an expected
failure until the defect is fixed (then it fails, asking for the line to go).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.simulator import InvariantViolation, load_scenario, run_scenario
from tests.simulator.scenario import (
    CLUSTER_FILE,
    EXPECTED_FILE,
    README_FILE,
    STEPS_FILE,
    Scenario,
)

HERE = Path(__file__).parent
SCENARIOS = sorted(path for path in HERE.iterdir() if (path / STEPS_FILE).is_file())
HOW_TO_REGENERATE = (
    "pytest tests/scenarios --regenerate-scenarios (or PVC_REGENERATE_SCENARIOS=1 pytest ...)"
)


def _outcome(scenario: Scenario) -> tuple[str, InvariantViolation | None]:
    """The run's log, ending with the broken invariant if one broke."""
    try:
        sim = run_scenario(scenario)
    except InvariantViolation as violation:
        line = f"t={violation.now:.1f} INVARIANT VIOLATED: {violation.message}\n"
        return violation.log + line, violation
    return sim.log.text(), None


@pytest.mark.parametrize("directory", SCENARIOS, ids=lambda path: path.name)
def test_scenario(directory: Path, regenerate: bool) -> None:
    scenario = load_scenario(directory)
    text, violation = _outcome(scenario)
    if violation is not None and not scenario.known_bug:
        raise violation
    expected = directory / EXPECTED_FILE
    if regenerate:
        expected.write_text(text)
    elif not expected.is_file():
        pytest.fail(
            f"{directory.name} has no {EXPECTED_FILE}: run {HOW_TO_REGENERATE}, "
            "read the log it writes, and commit it if it shows what the README says"
        )
    else:
        golden = expected.read_text()
        if text != golden:
            diff = "".join(
                difflib.unified_diff(
                    golden.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"{directory.name}/{EXPECTED_FILE}",
                    tofile="this run",
                )
            )
            pytest.fail(
                f"{directory.name}: the event log differs from {EXPECTED_FILE} "
                f"(if the change is intended: {HOW_TO_REGENERATE})\n{diff}",
                pytrace=False,
            )
    if scenario.known_bug:
        if violation is None:
            pytest.fail(
                f"{directory.name} no longer breaks an invariant: if the defect is fixed, "
                f"remove known_bug from its {CLUSTER_FILE} and regenerate its log"
            )
        pytest.xfail(f"known defect: {scenario.known_bug}")


def test_every_scenario_is_complete() -> None:
    """At least 30 scenarios, each with its files, and nothing else lying around."""
    assert len(SCENARIOS) >= 30
    for directory in SCENARIOS:
        for name in (CLUSTER_FILE, STEPS_FILE, README_FILE):
            assert (directory / name).is_file(), f"{directory.name} has no {name}"
    strays = [
        path.name
        for path in HERE.iterdir()
        if path.is_dir() and path not in SCENARIOS and not path.name.startswith((".", "__"))
    ]
    assert not strays, f"directories without {STEPS_FILE}: {strays}"


def test_runs_are_deterministic() -> None:
    """The same scenario twice gives the same log, to the character."""
    scenario = load_scenario(SCENARIOS[0])
    assert _outcome(scenario)[0] == _outcome(scenario)[0]
