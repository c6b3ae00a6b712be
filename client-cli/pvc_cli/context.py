"""Helpers shared by the command modules."""

from __future__ import annotations

from typing import Any

import click

from pvc_common.store import ZkStore


def store_of(ctx: click.Context) -> ZkStore:
    """The connected store of the running ``pvc`` invocation."""
    store: ZkStore = ctx.find_root().obj.store
    return store


def yes_option() -> Any:
    """``-y/--yes``: do not ask for confirmation."""
    return click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")


def confirm(question: str, yes: bool) -> None:
    """Ask ``question`` unless ``yes``; abort (exit 1) on no or when nothing answers."""
    if not yes:
        click.confirm(question, abort=True)
