"""`pvcnoded` as a process: configuration checks and refusing an uninitialised cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PVCNODED = str(Path(sys.executable).with_name("pvcnoded"))
SAMPLE = Path(__file__).resolve().parents[2] / "node-daemon" / "pvcnoded.sample.yaml"


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PVCNODED, *args], capture_output=True, text=True, timeout=timeout)


def test_validate_config_prints_the_effective_settings() -> None:
    result = run("--config", str(SAMPLE), "--validate-config")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout.splitlines()[0]
    assert "shutdown_timeout: 90" in result.stdout


def test_an_invalid_config_names_every_problem_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("node: {name: hv1}\nmigration: {attempts: 0}\nvm: {workers: two}\n")
    result = run("--config", str(config))
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    for problem in ("zookeeper.hosts: required", "migration.attempts", "vm.workers"):
        assert problem in message


def test_an_uninitialised_cluster_is_refused(tmp_path: Path, zk_hosts: str) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(
        f"node: {{name: hv1}}\nzookeeper: {{hosts: '{zk_hosts}', timeout: 5}}\n"
        "libvirt: {uri: 'test:///default'}\n"
    )
    result = run("--config", str(config))
    assert result.returncode == 1
    assert "no cluster at" in result.stderr and "pvc cluster init" in result.stderr
