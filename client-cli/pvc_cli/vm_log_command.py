"""``pvc vm log``: show or follow a VM's serial console log (its buffer in ZooKeeper)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading

import click

from pvc_common import vm_ops
from pvc_common.console import follow, start_following
from pvc_common.console_store import follow_console
from pvc_common.errors import NotFound
from pvc_common.store import ZkStore

from .context import store_of

#: Lines shown before following, unless -l says otherwise.
FOLLOW_DEFAULT_LINES = 10


@click.command(name="log")
@click.option(
    "-l",
    "--lines",
    type=click.IntRange(min=0),
    metavar="N",
    help="Show only the last N complete lines, and the unfinished one after them "
    "(default: every line kept; 10 with --follow).",
)
@click.option(
    "-f",
    "--follow",
    "following",
    is_flag=True,
    help="Keep printing new lines as the VM writes them, until Ctrl-C (no pager).",
)
@click.argument("vm_ref", metavar="VM")
@click.pass_context
def log(ctx: click.Context, lines: int | None, following: bool, vm_ref: str) -> None:
    """Show the serial console log of a VM.

    The VM's node copies what the VM writes to its serial console log file into the
    cluster, which keeps its last lines (1000, at most 256 KiB, unless the node daemons'
    console settings say otherwise); this command shows them,
    including an unfinished last line (a login prompt, say). On a terminal the text is
    shown in 'less -R' (so the guest's colours come through); piped or redirected, it is
    printed as it is.

    With --follow, the last lines are printed (10 unless -l says otherwise), then every new
    line as it arrives, each exactly once, until Ctrl-C (exit 0). If the cluster dropped
    lines before they could be shown (the VM wrote faster than they were read), a line on
    standard error says how many. If the VM is removed meanwhile, a line on standard error
    says so and the exit code is 1.

    A VM whose libvirt XML logs no serial console has nothing to show: the command says
    how to add a <log file=... append='on'/> element to its <serial> device (exit 0).

    \b
    Examples:
      pvc vm log web1             # every line kept, in the pager
      pvc vm log web1 -l 50       # the last 50 lines
      pvc vm log web1 -f          # the last 10 lines, then new ones as they come
      pvc vm log web1 -f -l 0 | grep --line-buffered 'login:'
    """
    store = store_of(ctx)
    console = vm_ops.vm_console(store, vm_ref)
    if console.hint:
        click.echo(console.hint, err=True)
        return
    if following:
        count = FOLLOW_DEFAULT_LINES if lines is None else lines
        ctx.exit(_follow(store, console.record.uuid, count))
    buffer = console.buffer
    start = start_following(buffer, len(buffer.lines) if lines is None else lines)
    text = follow(buffer, start).text
    if not text:
        return
    if sys.stdout.isatty() and shutil.which("less"):
        _page(text)
    else:
        _write(text)


def _follow(store: ZkStore, uuid: str, lines: int) -> int:
    """Follow the buffer until Ctrl-C (0) or the VM's removal (1); the exit code."""
    stop = threading.Event()
    # Whether standard output is in the middle of a line, so that a message on standard
    # error (often the same terminal) starts on a line of its own.
    mid_line = False

    def emit(text: str) -> None:
        nonlocal mid_line
        # Set before writing: a Ctrl-C right after the write must still see it.
        mid_line = not text.endswith("\n")
        _write(text)

    def on_skipped(count: int) -> None:
        nonlocal mid_line
        if mid_line:
            # The cut-off partial line will not be completed: the lines after it are gone.
            mid_line = False
            _write("\n")
        click.echo(
            f"-- {count} line(s) skipped: they left the buffer before they were read --",
            err=True,
        )

    # Ctrl-C only sets ``stop``: raised as KeyboardInterrupt it could land inside the
    # ZooKeeper client's own code and leave it unable to close. The loop sees ``stop``
    # within a second and returns.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        follow_console(
            store,
            uuid,
            lines=lines,
            emit=emit,
            on_skipped=on_skipped,
            stop=stop,
        )
    except NotFound:
        if mid_line:
            _write("\n")
        click.echo("-- the VM was removed --", err=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    if mid_line:
        _write("\n")
    return 0


def _write(text: str) -> None:
    """Print ``text`` as it is and flush it, so a reader of a pipe sees it at once."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other Unix tools do. Standard
        # output now points at /dev/null so the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


def _page(text: str) -> None:
    """Show ``text`` in ``less -R`` and wait until the user leaves it."""
    encoding = sys.stdout.encoding or "utf-8"
    with subprocess.Popen(["less", "-R"], stdin=subprocess.PIPE) as pager:
        # Ctrl-C belongs to less (it stops a search); the CLI must not die under it.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            pager.communicate(text.encode(encoding, errors="replace"))
        except BrokenPipeError:
            pass  # the user quit before reading everything
        finally:
            signal.signal(signal.SIGINT, previous)
