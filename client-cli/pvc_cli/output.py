"""Rendering for the terminal: aligned tables with optional colour, and JSON/YAML output.

Colour is used only when standard output is a terminal and ``NO_COLOR`` is not set, so
piped output and files stay plain text.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

FORMATS = ("pretty", "json", "yaml")


def colour_enabled() -> bool:
    """Whether to colour output.

    ``NO_COLOR`` (any value) turns colour off; ``CLICOLOR_FORCE`` (not ``0``) turns it on
    even when piped; otherwise colour follows whether standard output is a terminal.
    """
    if os.environ.get("NO_COLOR", "") != "":
        return False
    if os.environ.get("CLICOLOR_FORCE", "0") not in ("", "0"):
        return True
    return sys.stdout.isatty()


@dataclass(frozen=True)
class Cell:
    """One table cell: its text and, optionally, the colour of the whole cell."""

    text: str
    colour: str | None = None
    bold: bool = False


def paint(text: str, colour: str | None = None, *, bold: bool = False) -> str:
    """``text`` in ``colour`` when colour is enabled, else unchanged."""
    if not colour_enabled() or (colour is None and not bold):
        return text
    return click.style(text, fg=colour, bold=bold or None)


def echo(text: str) -> None:
    """Print ``text``; click strips colour codes when not on a terminal unless told otherwise."""
    click.echo(text, color=colour_enabled())


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Cell | str]]) -> str:
    """Align columns on the plain text, then colour whole cells, so colour never shifts them."""
    cells = [[cell if isinstance(cell, Cell) else Cell(str(cell)) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell.text))
    lines = [
        "  ".join(
            paint(header.ljust(width), bold=True)
            for header, width in zip(headers, widths, strict=True)
        ).rstrip()
    ]
    for row in cells:
        padded = [
            paint(cell.text.ljust(width), cell.colour, bold=cell.bold)
            for cell, width in zip(row, widths, strict=True)
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def render_fields(pairs: Sequence[tuple[str, Cell | str]]) -> str:
    """A two-column ``Label: value`` block with the values aligned."""
    width = max((len(label) for label, _ in pairs), default=0) + 1
    lines = []
    for label, value in pairs:
        cell = value if isinstance(value, Cell) else Cell(str(value))
        lines.append(
            f"{paint((label + ':').ljust(width), bold=True)} {paint(cell.text, cell.colour)}"
        )
    return "\n".join(lines)


def render_data(data: Any, output_format: str) -> str:
    """Serialise plain data as JSON or YAML."""
    if output_format == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    import yaml  # imported here: only YAML output needs it

    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False)).rstrip()


def format_option() -> Any:
    """The ``--format`` option shared by list and info commands."""
    return click.option(
        "-o",
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="pretty",
        show_default=True,
        help="Output format: an aligned table, or JSON/YAML for scripts.",
    )


STATE_COLOURS = {
    "start": "green",
    "run": "green",
    "ready": "green",
    "restart": "yellow",
    "migrate": "blue",
    "shutdown": "yellow",
    "flush": "blue",
    "unflush": "blue",
    "flushed": "cyan",
    "init": "yellow",
    "stop": "white",
    "disable": "blue",
    "fail": "red",
    "dead": "red",
    "fenced": "red",
    "fence-flush": "red",
    "delete": "red",
}


def state_cell(state: str) -> Cell:
    """A state, coloured by what it means."""
    return Cell(state, STATE_COLOURS.get(state))
