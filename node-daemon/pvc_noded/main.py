"""``pvcnoded``: the node daemon's command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from pvc_common.errors import PvcError

from .config import DEFAULT_CONFIG_PATH, ConfigError, load_config, render_config
from .daemon import NodeDaemon
from .logging_setup import configure_logging

log = logging.getLogger("pvc_noded")


def argument_parser() -> argparse.ArgumentParser:
    """The command line of ``pvcnoded`` (also the source of its manual page)."""
    parser = argparse.ArgumentParser(
        prog="pvcnoded",
        description=(
            "Node daemon of a pvc cluster: registers this hypervisor in ZooKeeper, keeps its "
            "figures current and runs, stops and migrates the VMs assigned to it through "
            "libvirt. SIGTERM stops the daemon cleanly; running VMs are left running."
        ),
    )
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"YAML configuration file (default: {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--validate-config",
        action="store_true",
        help="check the configuration, print the effective settings and exit (0 = valid)",
    )
    return parser


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    return argument_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the daemon until SIGTERM or SIGINT; return the process exit code."""
    args = _arguments(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"pvcnoded: {error}", file=sys.stderr)
        return 2
    if args.validate_config:
        print(f"# {config.source}: valid\n{render_config(config)}", end="")
        return 0
    configure_logging(config.logging.level, node=config.node.name)
    daemon = NodeDaemon(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("pvcnoded starting as node %r (config %s)", config.node.name, config.source)
    try:
        daemon.run()
    except PvcError as error:
        log.error("%s", error)
        return 1
    log.info("pvcnoded stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
