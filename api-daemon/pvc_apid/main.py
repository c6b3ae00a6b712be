"""``pvcapid``: serve the API with gunicorn (a production WSGI server): ``api.workers``
processes, each with its own ZooKeeper session and ``api.threads`` request threads."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from pvc_common.errors import PvcError
from pvc_common.store import ZkStore

from .app import create_app
from .config import DEFAULT_CONFIG_PATH, ApiConfig, ConfigError, load_config, render_config

log = logging.getLogger("pvcapid")


class _Server(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured from our file rather than its command line."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        super().__init__()

    def load_config(self) -> None:
        api = self.config.api
        settings: dict[str, Any] = {
            "bind": f"{api.listen_address}:{api.port}",
            "workers": api.workers,
            "worker_class": "gthread",
            "threads": api.threads,
            "accesslog": "-",
            "errorlog": "-",
            # A request may wait for the daemons (wait=true) up to api.max_wait.
            "timeout": api.max_wait + 60,
        }
        if api.tls_certificate and api.tls_key:
            settings["certfile"] = api.tls_certificate
            settings["keyfile"] = api.tls_key
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        store = ZkStore(self.config.zookeeper.hosts, timeout=self.config.zookeeper.timeout)
        store.connect()
        api = self.config.api
        return create_app(
            store, keys=api.keys, authentication=api.authentication, max_wait=api.max_wait
        )


def argument_parser() -> argparse.ArgumentParser:
    """The command line of ``pvcapid`` (also the source of its manual page)."""
    parser = argparse.ArgumentParser(
        prog="pvcapid",
        description=(
            "HTTP API daemon of a pvc cluster: serves the cluster under /api/v1 (and "
            "/metrics) with gunicorn, api.workers processes each with its own ZooKeeper "
            "session and api.threads request threads. SIGTERM stops it cleanly."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--validate-config",
        action="store_true",
        help="check the configuration, print it (keys masked) and exit",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pvcapid`` command."""
    options = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(options.config)
    except ConfigError as error:
        print(f"pvcapid: {error}", file=sys.stderr)
        return 2
    if options.validate_config:
        sys.stdout.write(render_config(config))
        return 0
    if not config.api.authentication:
        log.warning("API keys are not required (api.authentication is false)")
    try:
        _Server(config).run()
    except PvcError as error:
        print(f"pvcapid: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
