"""``pvc``: the command-line client of the cluster.

It connects to the cluster's ZooKeeper (``-z/--zookeeper`` or ``PVC_ZOOKEEPER``), calls the
operations of :mod:`pvc_common`, and renders their results. Errors are one line on
standard error and a non-zero exit code (see ``docs/cli.md``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from pvc_common import __version__
from pvc_common.errors import PvcError
from pvc_common.store import ZkStore

from .cluster_commands import cluster
from .network_commands import network
from .node_commands import node
from .vm_commands import vm

DEFAULT_ZOOKEEPER = "127.0.0.1:2181"


class Session:
    """The state shared by a command: where ZooKeeper is, and the store once connected."""

    def __init__(self, hosts: str, timeout: float) -> None:
        self.hosts = hosts
        self.timeout = timeout
        self._store: ZkStore | None = None

    @property
    def store(self) -> ZkStore:
        """The connected store (connects on first use)."""
        if self._store is None:
            self._store = ZkStore(self.hosts, timeout=self.timeout).connect()
        return self._store

    def close(self) -> None:
        """Close the connection if one was opened."""
        if self._store is not None:
            self._store.close()
            self._store = None


class PvcGroup(click.Group):
    """Turns :class:`PvcError` into one line on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PvcError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)


@click.group(cls=PvcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-z",
    "--zookeeper",
    "hosts",
    envvar="PVC_ZOOKEEPER",
    default=DEFAULT_ZOOKEEPER,
    show_default=True,
    metavar="HOSTS",
    help="ZooKeeper connect string host:port[,host:port...][/chroot] (env PVC_ZOOKEEPER).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.5),
    default=10.0,
    show_default=True,
    envvar="PVC_TIMEOUT",
    help="Seconds to wait for ZooKeeper before giving up.",
)
@click.option("-v", "--verbose", is_flag=True, help="Print the change events this command writes.")
@click.version_option(__version__, prog_name="pvc")
@click.pass_context
def cli(ctx: click.Context, hosts: str, timeout: float, verbose: bool) -> None:
    """Manage a cluster of hypervisors: VMs, nodes and networks.

    Commands write the desired state into ZooKeeper; the node daemons carry it out.
    """
    if verbose:
        logging.basicConfig(format="%(name)s: %(message)s", level=logging.WARNING)
        logging.getLogger("pvc.events").setLevel(logging.INFO)
    else:
        # Without a handler, Python prints library warnings (kazoo's reconnect attempts) on
        # stderr; the user is owed one line, the error itself.
        logging.getLogger().addHandler(logging.NullHandler())
    session = Session(hosts, timeout)
    ctx.obj = session
    ctx.call_on_close(session.close)


cli.add_command(cluster)
cli.add_command(node)
cli.add_command(vm)
cli.add_command(network)
