"""The Debian packages of debian/: built with ``make deb``, installed with apt, then run.

The installed commands run on Debian's own ``/usr/bin/python3`` with Debian's Python
packages (python3-kazoo, python3-flask, python3-libvirt...), never the venv's: every
process here gets a clean environment. The daemons run against the session's test
ZooKeeper, in a chroot of their own, and are stopped by their PID.

Needs root, or sudo without a password (apt installs the packages system-wide).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness.zookeeper import (
    ZooKeeperServer,
    create_chroot,
    delete_chroot,
    find_free_port,
    wait_until,
)
from tests.integration.api_process import Api, start_api, stop_api, write_config

# The first test also builds and installs (about 10 s, plus apt's downloads the first time).
pytestmark = [pytest.mark.packaging, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
DEB_DIR = REPO / "build" / "deb"
#: The copy of the working tree `make deb` built from (see the Makefile).
BUILT_TREE = REPO / "build" / "deb-tree" / "pvc"
DIST = "/usr/lib/python3/dist-packages"
#: A clean environment: nothing of the venv or of the source tree may leak in.
ENV = {
    "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
    "LANG": "C.UTF-8",
    "HOME": os.environ.get("HOME", "/root"),
    "NO_COLOR": "1",
}

#: package -> (its Python module, its commands, its systemd units, its conffiles)
PACKAGES: dict[str, tuple[str, list[str], list[str], list[str]]] = {
    "python3-pvc-common": ("pvc_common", [], [], []),
    "pvc-client-cli": ("pvc_cli", ["/usr/bin/pvc"], [], []),
    "pvc-node-daemon": (
        "pvc_noded",
        ["/usr/bin/pvcnoded"],
        ["/lib/systemd/system/pvcnoded.service"],
        ["/etc/pvc/pvcnoded.yaml"],
    ),
    "pvc-api-daemon": (
        "pvc_apid",
        ["/usr/bin/pvcapid"],
        ["/lib/systemd/system/pvcapid.service"],
        ["/etc/pvc/pvcapid.yaml"],
    ),
}
#: Where each package's module comes from in the source tree.
SOURCE_DIRS = {
    "pvc_common": "common",
    "pvc_cli": "client-cli",
    "pvc_noded": "node-daemon",
    "pvc_apid": "api-daemon",
}
#: The Debian packages each binary package must depend on (besides python3).
DEPENDS = {
    "python3-pvc-common": {"python3-kazoo", "python3-lxml", "python3-yaml"},
    "pvc-client-cli": {"python3-pvc-common", "python3-click"},
    "pvc-node-daemon": {"python3-pvc-common", "python3-libvirt", "libvirt-clients"},
    "pvc-api-daemon": {
        "python3-pvc-common",
        "python3-flask",
        "python3-gunicorn",
        "python3-prometheus-client",
    },
}
SAMPLES = {
    "/etc/pvc/pvcnoded.yaml": REPO / "node-daemon" / "pvcnoded.sample.yaml",
    "/etc/pvc/pvcapid.yaml": REPO / "api-daemon" / "pvcapid.sample.yaml",
}


def privilege() -> list[str] | None:
    """The prefix that runs a command as root: none for root, sudo, or None if impossible."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") is not None:
        probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["sudo", "-n"]
    return None


def run(
    *command: str, expect: int | None = 0, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, env=ENV, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if expect is not None:
        assert result.returncode == expect, (command, result.stdout, result.stderr)
    return result


def changelog_version() -> str:
    changelog = REPO / "debian" / "changelog"
    return run("dpkg-parsechangelog", "-l", str(changelog), "-S", "Version").stdout.strip()


@pytest.fixture(scope="module")
def installed(pytestconfig: pytest.Config) -> str:
    """Build the packages with ``make deb``, install all four with apt; their version."""
    prefix = privilege()
    if prefix is None:
        pytest.skip("installing Debian packages needs root, or sudo without a password")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    shown: list[str] = []

    def progress(message: str) -> None:
        """Shown at once, even with output capture on: the build is the slow part."""
        text = ("" if shown else "\n") + f"[packaging] {message}"
        shown.append(message)
        if capture is None:
            print(text, flush=True)
            return
        with capture.global_and_fixture_disabled():
            print(text, flush=True)

    progress("make deb (apt build dependencies if missing, then dpkg-buildpackage) ...")
    started = time.monotonic()
    build = subprocess.run(
        ["make", "--no-print-directory", "deb"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    progress(f"built in {time.monotonic() - started:.1f} s")

    version = changelog_version()
    debs = [DEB_DIR / f"{package}_{version}_all.deb" for package in PACKAGES]
    assert sorted(DEB_DIR.glob("*.deb")) == sorted(debs)

    progress("apt-get install --reinstall of the four packages ...")
    started = time.monotonic()
    command = [*prefix, "apt-get", "install", "-y", "--reinstall"]
    command += [f"./{deb.relative_to(REPO)}" for deb in debs]
    apt_env = {**ENV, "DEBIAN_FRONTEND": "noninteractive"}
    install = subprocess.run(
        command, cwd=REPO, env=apt_env, capture_output=True, text=True, timeout=240
    )
    if install.returncode != 0:  # stale package lists: refresh once
        subprocess.run([*prefix, "apt-get", "update"], env=apt_env, capture_output=True)
        install = subprocess.run(
            command, cwd=REPO, env=apt_env, capture_output=True, text=True, timeout=240
        )
    assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-4000:]
    progress(f"installed in {time.monotonic() - started:.1f} s")
    return version


@pytest.fixture
def chroot(zookeeper_server: ZooKeeperServer) -> Iterator[str]:
    """A private tree on the session's ZooKeeper, initialised by the packaged ``pvc``."""
    hosts = create_chroot(zookeeper_server.hosts)
    run("/usr/bin/pvc", "-z", hosts, "cluster", "init")
    yield hosts
    delete_chroot(hosts)


def owned_files(package: str) -> set[str]:
    return set(run("dpkg", "-L", package).stdout.split("\n")) - {""}


# ------------------------------------------------------------------------------ contents


@pytest.mark.parametrize("package", list(PACKAGES))
def test_each_package_is_installed_and_owns_its_files(installed: str, package: str) -> None:
    status = run("dpkg-query", "-W", "-f=${Status} ${Version} ${Architecture}", package).stdout
    assert status == f"install ok installed {installed} all"
    module, commands, units, conffiles = PACKAGES[package]
    files = owned_files(package)

    # The module, exactly the files of the tree it was built from.
    source = BUILT_TREE / SOURCE_DIRS[module] / module
    expected = {f"{DIST}/{module}/{path.relative_to(source)}" for path in source.rglob("*.py")}
    packaged = {name for name in files if name.startswith(f"{DIST}/{module}/")}
    assert {name for name in packaged if name.endswith(".py")} == expected
    for other in PACKAGES.values():
        if other[0] != module:
            assert not any(name.startswith(f"{DIST}/{other[0]}") for name in files)
    assert not any("inotify_simple" in name for name in files)  # not vendored

    assert {name for name in files if name.startswith("/usr/bin/")} == set(commands)
    for command in commands:
        assert Path(command).read_text().startswith("#!/usr/bin/python3\n")
    assert {name for name in files if name.endswith(".service")} == set(units)
    listed = run("dpkg-query", "-W", "-f=${Conffiles}", package).stdout.split("\n")
    assert sorted(line.split()[0] for line in listed if line.strip()) == conffiles
    for conffile in conffiles:
        # Installed from the sample in the source tree, readable by root only (secrets).
        packaged_md5 = next(line.split()[1] for line in listed if conffile in line)
        sample = (BUILT_TREE / SAMPLES[conffile].relative_to(REPO)).read_bytes()
        assert packaged_md5 == hashlib.md5(sample).hexdigest()
        assert Path(conffile).stat().st_mode & 0o777 == 0o640
    if package == "python3-pvc-common":
        assert any(re.search(r"/pvc_cluster-[^/]+\.dist-info/METADATA$", f) for f in files)

    depends = run("dpkg-query", "-W", "-f=${Depends}", package).stdout
    names = {re.split(r"[ (]", item.strip())[0] for item in depends.split(",")}
    assert DEPENDS[package] <= names, depends
    if package != "python3-pvc-common":
        assert f"python3-pvc-common (= {installed})" in depends


def test_debian_python_imports_the_packaged_modules(installed: str) -> None:
    script = (
        "import json, kazoo, lxml, yaml, click, flask, gunicorn, libvirt, prometheus_client\n"
        "import pvc_common, pvc_cli.main, pvc_noded.main, pvc_apid.main\n"
        "mods = [pvc_common, pvc_cli.main, pvc_noded.main, pvc_apid.main, kazoo, flask]\n"
        "print(json.dumps([m.__file__ for m in mods]))\n"
    )
    paths = json.loads(run("/usr/bin/python3", "-c", script, cwd=Path("/")).stdout)
    assert all(path.startswith(f"{DIST}/") for path in paths), paths


def test_the_units_name_the_packaged_commands(installed: str) -> None:
    for unit, command in [("pvcnoded", "pvcnoded"), ("pvcapid", "pvcapid")]:
        text = Path(f"/lib/systemd/system/{unit}.service").read_text()
        assert f"ExecStart=/usr/bin/{command} --config /etc/pvc/{command}.yaml\n" in text
        assert "After=network-online.target" in text and "Restart=on-failure" in text


def test_systemd_analyze_verifies_the_units(installed: str, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    # A trivial unit first: if even that fails, systemd is not usable here.
    probe = tmp_path / "pvc-probe.service"
    probe.write_text("[Unit]\nDescription=probe\n\n[Service]\nExecStart=/bin/true\n")
    result = run("systemd-analyze", "verify", str(probe), expect=None)
    if result.returncode != 0 or (result.stdout + result.stderr).strip():
        reason = (result.stdout + result.stderr).strip()
        pytest.skip(f"systemd-analyze verify does not work in this container: {reason}")
    units = ["/lib/systemd/system/pvcnoded.service", "/lib/systemd/system/pvcapid.service"]
    result = run("systemd-analyze", "verify", *units, expect=None)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


# ------------------------------------------------------------------------------ commands


def test_pvc_help_lists_the_command_groups(installed: str) -> None:
    output = run("/usr/bin/pvc", "--help").stdout
    for group in ("cluster", "network", "node", "vm"):
        assert re.search(rf"^  {group} ", output, re.MULTILINE), output
    assert installed.split("-")[0] in run("/usr/bin/pvc", "--version").stdout


def test_the_shipped_configs_are_valid_as_their_comments_say(
    installed: str, tmp_path: Path
) -> None:
    # pvcnoded.yaml: "only node.name and zookeeper.hosts have no default and must be set";
    # the sample sets both to examples, so it is valid as shipped...
    result = run("/usr/bin/pvcnoded", "--config", "/etc/pvc/pvcnoded.yaml", "--validate-config")
    assert "valid" in result.stdout.splitlines()[0]
    # ... and without them it is not.
    sample = yaml.safe_load(Path("/etc/pvc/pvcnoded.yaml").read_text())
    del sample["node"]["name"], sample["zookeeper"]["hosts"]
    broken = tmp_path / "pvcnoded.yaml"
    broken.write_text(yaml.safe_dump(sample))
    result = run("/usr/bin/pvcnoded", "--config", str(broken), "--validate-config", expect=2)
    assert "node.name" in result.stderr and "zookeeper.hosts" in result.stderr
    # pvcapid.yaml: every key shown with its default, the required ones with examples.
    result = run("/usr/bin/pvcapid", "--config", "/etc/pvc/pvcapid.yaml", "--validate-config")
    assert "zookeeper:" in result.stdout


# ------------------------------------------------------------------------------ daemons


def test_pvcapid_serves_the_tree_pvc_initialised(
    installed: str, chroot: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        monkeypatch.delenv(name, raising=False)
    run("/usr/bin/pvc", "-z", chroot, "network", "add", "100", "-d", "packaged")
    port = find_free_port()
    config = write_config(tmp_path / "pvcapid.yaml", chroot, port, workers=1)
    run("/usr/bin/pvcapid", "--config", str(config), "--validate-config")
    base = f"http://127.0.0.1:{port}"
    process = start_api(config, base, None, command="/usr/bin/pvcapid")
    try:
        api = Api(base)
        status, version = api.call("/api/v1", key=None)
        assert status == 200 and version["name"] == "pvcapid", version
        status, nodes = api.call("/api/v1/node")
        assert status == 200 and nodes == [], nodes
        status, networks = api.call("/api/v1/network")
        assert status == 200 and [network["vni"] for network in networks] == [100]
        assert api.call("/api/v1/node", key=None)[0] == 401
    finally:
        stop_api(process)


def test_pvcnoded_registers_and_runs_a_vm(installed: str, chroot: str, tmp_path: Path) -> None:
    """The packaged daemon on libvirt's test driver (python3-libvirt), from a copy of the
    shipped sample with test values."""
    (tmp_path / "node.xml").write_text(
        "<node><cpu><mhz>2000</mhz><model>x86_64</model><active>2</active><nodes>1</nodes>"
        "<sockets>1</sockets><cores>2</cores><threads>1</threads></cpu>"
        "<memory>2097152</memory></node>\n"
    )
    config = yaml.safe_load(Path("/etc/pvc/pvcnoded.yaml").read_text())
    config["node"]["name"] = "pkg1"
    config["zookeeper"].update(hosts=chroot, timeout=5.0)
    config["libvirt"].update(uri=f"test://{tmp_path}/node.xml", peer_uri="test:///default")
    config["console"]["log_directory"] = str(tmp_path / "console")
    config["daemon"].update(keepalive_interval=1.0, reconcile_interval=2.0)
    config["fencing"]["enabled"] = False
    path = tmp_path / "pvcnoded.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run("/usr/bin/pvcnoded", "--config", str(path), "--validate-config")
    assert "name: pkg1" in result.stdout

    def pvc(*args: str) -> str:
        return run("/usr/bin/pvc", "-z", chroot, *args, timeout=90).stdout

    def node_state() -> str | None:
        nodes = json.loads(pvc("node", "list", "-o", "json"))
        return next((node["daemonstate"] for node in nodes if node["name"] == "pkg1"), None)

    log_path = tmp_path / "pvcnoded.log"
    with log_path.open("ab") as log_file:
        daemon = subprocess.Popen(
            ["/usr/bin/pvcnoded", "--config", str(path)],
            env=ENV,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def running() -> bool:
            assert daemon.poll() is None, log_path.read_text(errors="replace")
            return node_state() == "run"

        wait_until(running, 30, "the packaged pvcnoded does not register")
        xml = tmp_path / "pkgvm.xml"
        xml.write_text(
            "<domain type='test'><name>pkgvm</name>"
            "<uuid>8f1d3a52-5c1e-4b7a-9d0e-2f6c4a1b7e90</uuid><memory unit='MiB'>128</memory>"
            "<vcpu>1</vcpu><os><type>hvm</type></os><devices/></domain>"
        )
        pvc("vm", "define", "--target", "pkg1", str(xml))
        assert "running on pkg1" in pvc("vm", "start", "pkgvm", "--wait")
    finally:
        if daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=5)
    log = log_path.read_text(errors="replace")
    assert daemon.returncode == 0, log
    assert node_state() == "stop", log
    inotify = run("/usr/bin/python3", "-c", "import inotify_simple", expect=None, cwd=Path("/"))
    if inotify.returncode != 0:  # no Debian package: the daemon polls console logs
        assert "inotify_simple missing" in log
