"""Run ``pvcapid`` as a real server process for the tests, and call it over HTTP.

The daemon runs in its own session (process group) and is stopped by its PID; every
answer, errors included, must be JSON.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.zookeeper import find_free_port, wait_until

PVCAPID = str(Path(sys.executable).with_name("pvcapid"))
KEY = "k" * 8 + "-test-key-0123456789"


@dataclass
class Api:
    """A running pvcapid: its base URL and how to call it."""

    base: str
    context: ssl.SSLContext | None = None

    def call(
        self, path: str, *, key: str | None = KEY, method: str = "GET", body: bytes | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, method=method, data=body)
        if key is not None:
            request.add_header("X-Api-Key", key)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as answer:
                status, payload = answer.status, answer.read()
                content_type = answer.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
            content_type = error.headers.get("Content-Type", "")
        assert content_type.startswith("application/json"), (status, content_type, payload)
        return status, json.loads(payload)


def start_api(
    config: Path, base: str, context: ssl.SSLContext | None, command: str = PVCAPID
) -> subprocess.Popen[bytes]:
    """Start pvcapid (``command``: the venv's by default) on ``config``; its output goes to
    ``pvcapid.log`` beside the config.

    A file, not a pipe: nobody reads a pipe while the tests run, and a full one (64 KiB,
    about a thousand logged writes) would block the daemon.
    """
    log_path = config.with_name("pvcapid.log")
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [command, "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = Api(base, context)

    def answers() -> bool:
        assert process.poll() is None, log_path.read_text(errors="replace")
        try:
            return api.call("/api/v1", key=None)[0] == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    try:
        wait_until(answers, 30, "pvcapid does not answer")
    except BaseException:
        stop_api(process)
        raise
    return process


def stop_api(process: subprocess.Popen[bytes]) -> None:
    """Stop the daemon and its gunicorn worker (its own process group, by its PID)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def write_config(path: Path, zk_hosts: str, port: int, **api: Any) -> Path:
    lines = [
        "zookeeper:",
        f"  hosts: {zk_hosts}",
        "api:",
        f"  port: {port}",
        "  keys:",
        f"    - {KEY}",
        *(f"  {key}: {value}" for key, value in api.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def running_api(zk_hosts: str, directory: Path, **api: Any) -> Iterator[Api]:
    """A pvcapid on a free loopback port with ``api`` settings; stopped on leaving."""
    port = find_free_port()
    config = write_config(directory / "pvcapid.yaml", zk_hosts, port, **api)
    process = start_api(config, f"http://127.0.0.1:{port}", None)
    try:
        yield Api(f"http://127.0.0.1:{port}")
    finally:
        stop_api(process)
