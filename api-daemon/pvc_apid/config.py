"""The API daemon's configuration: one strict YAML file (see ``pvc_common.config_file``).

The smallest useful file names the ZooKeeper ensemble and one API key. Secrets (the API
keys) are never printed: ``--validate-config`` masks them, and no log line names one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from pvc_common.config_file import (
    ConfigError,
    Problem,
    ZooKeeperSection,
    absolute_path,
    boolean,
    integer,
    load_yaml,
    parse_sections,
    reads,
    show,
    text,
)

from .routes import DEFAULT_MAX_WAIT

DEFAULT_CONFIG_PATH: Final = Path("/etc/pvc/pvcapid.yaml")
DEFAULT_PORT: Final = 7370
#: The shortest API key accepted: anything shorter is guessable.
MIN_KEY_LENGTH: Final = 16

__all__ = ["ApiConfig", "ConfigError", "load_config", "parse_config", "render_config"]


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Problem(f"must be a port number 1..65535, not {show(value)}")
    return value


def _optional_path(value: object) -> str | None:
    return None if value is None else absolute_path(value)


def _keys(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(key, str) for key in value):
        raise Problem("must be a list of strings")
    short = [index for index, key in enumerate(value) if len(key) < MIN_KEY_LENGTH]
    if short:
        # The key itself is a secret: name it by its place in the list only.
        raise Problem(f"key #{short[0] + 1} is shorter than {MIN_KEY_LENGTH} characters")
    return tuple(value)


@dataclass(frozen=True)
class ApiSection:
    """The HTTP side."""

    #: Address to listen on.
    listen_address: str = field(default="127.0.0.1", metadata=reads(text))
    #: Port to listen on.
    port: int = field(default=DEFAULT_PORT, metadata=reads(_port))
    #: TLS certificate (PEM) and its key; both or neither. Without them: plain HTTP.
    tls_certificate: str | None = field(default=None, metadata=reads(_optional_path))
    tls_key: str | None = field(default=None, metadata=reads(_optional_path))
    #: Require an API key (``X-Api-Key``) on every endpoint but the version one.
    authentication: bool = field(default=True, metadata=reads(boolean))
    #: The accepted API keys (at least 16 characters each).
    keys: tuple[str, ...] = field(default=(), metadata=reads(_keys))
    #: Worker processes, each with its own ZooKeeper session: a listing is CPU work in
    #: Python, so more processes use more cores.
    workers: int = field(default=2, metadata=reads(integer(1)))
    #: Requests each worker serves at once (its threads).
    threads: int = field(default=8, metadata=reads(integer(1)))
    #: The longest a request may wait (``wait``) for the daemons, in seconds: each waiting
    #: request holds one of the ``threads`` until it ends.
    max_wait: int = field(default=DEFAULT_MAX_WAIT, metadata=reads(integer(1)))


@dataclass(frozen=True)
class ApiConfig:
    """The whole file."""

    zookeeper: ZooKeeperSection
    api: ApiSection
    source: str = "<config>"


SECTIONS: Final[dict[str, type[Any]]] = {"zookeeper": ZooKeeperSection, "api": ApiSection}


def parse_config(data: object, source: str = "<config>") -> ApiConfig:
    """Check a parsed YAML document; :class:`ConfigError` names every problem."""
    config = ApiConfig(**parse_sections(data, SECTIONS, source), source=source)
    problems = []
    api = config.api
    if (api.tls_certificate is None) != (api.tls_key is None):
        problems.append("api.tls_certificate, api.tls_key: give both or neither")
    if api.authentication and not api.keys:
        problems.append("api.keys: at least one key is needed while api.authentication is true")
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: Path) -> ApiConfig:
    """Read, parse and check the file at ``path``."""
    return parse_config(load_yaml(path), str(path))


def render_config(config: ApiConfig) -> str:
    """The effective configuration as YAML, keys masked."""
    api = dict(vars(config.api))
    api["keys"] = ["********"] * len(config.api.keys)
    data = {"zookeeper": dict(vars(config.zookeeper)), "api": api}
    header = f"# Effective pvcapid configuration, read from {config.source}\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
