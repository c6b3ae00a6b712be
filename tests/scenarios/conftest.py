"""Scenario test options: golden logs are rewritten only when explicitly asked for.

``pytest tests/scenarios --regenerate-scenarios`` (or ``PVC_REGENERATE_SCENARIOS=1`` in
the environment, which also works when pytest starts from the repository root, where
this file's option is not yet known) rewrites each scenario's ``expected.log`` from the
run instead of comparing with it. Read the diff before committing it.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regenerate-scenarios",
        action="store_true",
        default=False,
        help="rewrite tests/scenarios/*/expected.log from the runs instead of comparing",
    )


@pytest.fixture
def regenerate(request: pytest.FixtureRequest) -> bool:
    """Whether this run rewrites golden logs."""
    option = bool(request.config.getoption("--regenerate-scenarios", default=False))
    return option or os.environ.get("PVC_REGENERATE_SCENARIOS") == "1"
