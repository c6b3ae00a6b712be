"""The node daemon's configuration: strict types, every problem at once, a sample that loads."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pvc_common import schema
from pvc_common.errors import InvalidInput
from pvc_noded import config as cfg
from pvc_noded.config import ConfigError, NodeConfig, load_config, parse_config, render_config

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "node-daemon" / "pvcnoded.sample.yaml"

#: The smallest valid document: the two required keys.
MINIMAL: dict[str, Any] = {"node": {"name": "hv1"}, "zookeeper": {"hosts": "zk1:2181"}}


def document(section: str, key: str, value: object) -> dict[str, Any]:
    """The minimal document with ``section.key`` set to ``value``."""
    data = {name: dict(keys) for name, keys in MINIMAL.items()}
    data.setdefault(section, {})[key] = value
    return data


def problems_of(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "test.yaml")
    return caught.value.problems


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pvcnoded.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- defaults

# Written out here rather than read from the dataclasses, so a changed default fails.
DEFAULTS = [
    ("node", "coordinator", False),
    ("node", "address", "127.0.0.1"),
    ("zookeeper", "timeout", 10.0),
    ("libvirt", "uri", "qemu:///system"),
    ("libvirt", "peer_uri", "qemu+tcp://{address}/system"),
    ("migration", "uri", "tcp://{address}"),
    ("migration", "max_downtime_ms", 300),
    ("migration", "attempts", 3),
    ("migration", "timeout", 120.0),
    ("vm", "shutdown_timeout", 90.0),
    ("vm", "restart_budget", 3),
    ("vm", "restart_window", 300.0),
    ("vm", "workers", 8),
    ("maintenance", "concurrency", 2),
    ("maintenance", "vm_timeout", 600.0),
    ("fencing", "enabled", True),
    ("fencing", "intervals", 6),
    ("fencing", "rechecks", 2),
    ("fencing", "max_dead_fraction", 0.34),
    ("fencing", "method", "ipmitool"),
    ("fencing", "command", None),
    ("fencing", "timeout", 10.0),
    ("fencing", "recover_after_failed_fence", False),
    ("fencing", "rbd_command", ("rbd",)),
    ("fencing", "bmc_address", ""),
    ("fencing", "bmc_username", ""),
    ("fencing", "bmc_password", ""),
    ("console", "log_directory", "/var/log/pvc/console"),
    ("console", "lines", 1000),
    ("console", "max_bytes", 262144),
    ("console", "coalesce", 0.05),
    ("console", "poll_interval", 1.0),
    ("daemon", "keepalive_interval", 5.0),
    ("daemon", "reconcile_interval", 10.0),
    ("daemon", "default_selector", None),
    ("logging", "level", "info"),
]


@pytest.mark.parametrize(("section", "key", "default"), DEFAULTS)
def test_omitted_sections_and_keys_take_their_defaults(
    section: str, key: str, default: object
) -> None:
    config = parse_config(MINIMAL)
    value = getattr(getattr(config, section), key)
    assert value == default
    assert type(value) is type(default)


def test_defaults_table_covers_every_optional_field() -> None:
    optional = {
        (section, spec.name)
        for section, cls in cfg.SECTIONS.items()
        for spec in dataclasses.fields(cls)
        if spec.default is not dataclasses.MISSING
    }
    assert optional == {(section, key) for section, key, _ in DEFAULTS}


def test_sections_and_source() -> None:
    config = parse_config(MINIMAL, "here.yaml")
    assert list(cfg.SECTIONS) == [
        "node",
        "zookeeper",
        "libvirt",
        "migration",
        "vm",
        "maintenance",
        "fencing",
        "console",
        "daemon",
        "logging",
    ]
    assert config.node.name == "hv1"
    assert config.zookeeper.hosts == "zk1:2181"
    assert config.source == "here.yaml"
    assert parse_config(MINIMAL).source == "<config>"
    assert cfg.DEFAULT_CONFIG_PATH == Path("/etc/pvc/pvcnoded.yaml")


def test_configuration_is_frozen() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.vm.workers = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.node = config.node  # type: ignore[misc]


# --------------------------------------------------------------------------- accepted values


@pytest.mark.parametrize(
    ("section", "key", "value", "stored"),
    [
        ("node", "name", "hv-1.example_a", "hv-1.example_a"),
        ("node", "coordinator", True, True),
        ("node", "address", "10.0.0.5", "10.0.0.5"),
        ("zookeeper", "hosts", "zk1:2181,zk2:2182,zk3:2183", "zk1:2181,zk2:2182,zk3:2183"),
        ("zookeeper", "hosts", ["zk1:2181", "zk2:2182"], "zk1:2181,zk2:2182"),
        ("zookeeper", "hosts", " zk1:2181 , zk2:2181 ", "zk1:2181,zk2:2181"),
        ("zookeeper", "hosts", "zk1:1,zk2:65535/pvc/test", "zk1:1,zk2:65535/pvc/test"),
        ("zookeeper", "hosts", ["zk1:2181", "zk2:2181/pvc"], "zk1:2181,zk2:2181/pvc"),
        ("zookeeper", "hosts", "[2001:db8::1]:2181", "[2001:db8::1]:2181"),
        ("zookeeper", "timeout", 3, 3.0),  # an int where a float is expected
        ("zookeeper", "timeout", 0.25, 0.25),
        ("libvirt", "uri", "qemu+ssh://root@hv1/system", "qemu+ssh://root@hv1/system"),
        ("libvirt", "peer_uri", "qemu+tls://{name}.lan/system", "qemu+tls://{name}.lan/system"),
        ("migration", "uri", "tcp://{address}:49152", "tcp://{address}:49152"),
        ("migration", "uri", "tcp://literal", "tcp://literal"),
        ("migration", "max_downtime_ms", 1, 1),
        ("migration", "attempts", 10, 10),
        ("vm", "restart_budget", 0, 0),
        ("vm", "workers", 1, 1),
        ("console", "log_directory", "/srv/console", "/srv/console"),
        ("daemon", "default_selector", "load", "load"),
        ("daemon", "default_selector", None, None),
        ("logging", "level", "DEBUG", "debug"),
        ("logging", "level", "Warning", "warning"),
        ("logging", "level", "error", "error"),
    ],
)
def test_accepted_values(section: str, key: str, value: object, stored: object) -> None:
    config = parse_config(document(section, key, value))
    result = getattr(getattr(config, section), key)
    assert result == stored
    assert type(result) is type(stored)


@pytest.mark.parametrize("selector", schema.SELECTORS)
def test_default_selector_is_any_selector_except_none(selector: str) -> None:
    data = document("daemon", "default_selector", selector)
    if selector == "none":
        assert problems_of(data) == [
            "daemon.default_selector: must be one of mem, memprov, load, vcpus, vms or null, "
            "not 'none'"
        ]
    else:
        assert parse_config(data).daemon.default_selector == selector


# --------------------------------------------------------------------------- refused values


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("node", "name", "hv 1", "invalid node name 'hv 1'"),
        ("node", "name", "-hv", "invalid node name '-hv'"),
        ("node", "name", 5, "must be a string, not 5"),
        ("node", "name", None, "must be a string, not null"),
        # A YAML string "yes" (quoted) is text, not a boolean; nor is 1.
        ("node", "coordinator", "yes", "must be true or false, not 'yes'"),
        ("node", "coordinator", 1, "must be true or false, not 1"),
        ("node", "address", "", "must be a non-empty string without blanks, not ''"),
        ("node", "address", "10.0.0.1 ", "must be a non-empty string without blanks"),
        ("zookeeper", "hosts", "zk1", "each entry must be host:port with port 1..65535, not 'zk1'"),
        ("zookeeper", "hosts", "zk1:0", "not 'zk1:0'"),
        ("zookeeper", "hosts", "zk1:65536", "not 'zk1:65536'"),
        ("zookeeper", "hosts", "zk1:21x1", "not 'zk1:21x1'"),
        ("zookeeper", "hosts", ":2181", "not ':2181'"),
        ("zookeeper", "hosts", "zk1:2181,,zk2:2181", "not ''"),
        ("zookeeper", "hosts", "zk1:2181,zk2,zk3:99999", "not 'zk2', 'zk3:99999'"),
        ("zookeeper", "hosts", "2001:db8::1:2181", "not '2001:db8::1:2181'"),
        ("zookeeper", "hosts", "zk1:2181/", "invalid chroot '/' after the hosts"),
        ("zookeeper", "hosts", "zk1:2181/a//b", "invalid chroot '/a//b'"),
        ("zookeeper", "hosts", ["zk1:2181/pvc", "zk2:2181"], "invalid chroot '/pvc,zk2:2181'"),
        ("zookeeper", "hosts", [], "must be a 'host:port,host:port' string or a list"),
        ("zookeeper", "hosts", ["zk1:2181", 2181], "not ['zk1:2181', 2181]"),
        ("zookeeper", "hosts", 2181, "not 2181"),
        ("zookeeper", "hosts", None, "not null"),
        ("zookeeper", "timeout", 0, "must be a number of seconds > 0, not 0"),
        ("zookeeper", "timeout", -1.5, "must be a number of seconds > 0, not -1.5"),
        ("zookeeper", "timeout", "10", "must be a number of seconds > 0, not '10'"),
        ("zookeeper", "timeout", True, "must be a number of seconds > 0, not true"),
        ("zookeeper", "timeout", float("inf"), "not inf"),
        ("zookeeper", "timeout", float("nan"), "not nan"),
        ("libvirt", "uri", 7, "must be a non-empty string without blanks, not 7"),
        ("libvirt", "peer_uri", "qemu+tcp://{host}/system", "unknown placeholder {host}"),
        ("libvirt", "peer_uri", "qemu+tcp://{}/system", "unknown placeholder {}"),
        ("libvirt", "peer_uri", "qemu+tcp://{0}/system", "unknown placeholder {0}"),
        ("libvirt", "peer_uri", "qemu+tcp://{address.x}/system", "unknown placeholder"),
        ("libvirt", "peer_uri", "qemu+tcp://{address!r}/s", "unknown placeholder {address!r}"),
        ("libvirt", "peer_uri", "qemu+tcp://{address:>9}/s", "unknown placeholder {address:>9}"),
        ("libvirt", "peer_uri", "qemu+tcp://{address/system", "malformed template"),
        ("migration", "uri", "tcp://address}", "malformed template 'tcp://address}'"),
        ("migration", "uri", "tcp://{name", "malformed template"),
        ("migration", "uri", "", "must be a non-empty string without blanks, not ''"),
        ("migration", "max_downtime_ms", "abc", "must be an integer >= 1, not 'abc'"),
        ("migration", "max_downtime_ms", 0, "must be an integer >= 1, not 0"),
        ("migration", "max_downtime_ms", 1.5, "must be an integer >= 1, not 1.5"),
        # A bool is not an int here, although it is one in Python.
        ("migration", "attempts", True, "must be an integer >= 1, not true"),
        ("migration", "attempts", 0, "must be an integer >= 1, not 0"),
        ("migration", "timeout", None, "must be a number of seconds > 0, not null"),
        ("vm", "shutdown_timeout", 0.0, "must be a number of seconds > 0, not 0.0"),
        ("vm", "restart_budget", -1, "must be an integer >= 0, not -1"),
        ("vm", "restart_budget", False, "must be an integer >= 0, not false"),
        ("vm", "restart_window", "5m", "must be a number of seconds > 0, not '5m'"),
        ("vm", "workers", 0, "must be an integer >= 1, not 0"),
        ("maintenance", "concurrency", 0, "must be an integer >= 1, not 0"),
        ("fencing", "rbd_command", None, "must be a non-empty list of strings, not null"),
        ("fencing", "command", "fence_x", "must be a non-empty list of strings or null"),
        ("fencing", "max_dead_fraction", 1.5, "must be a number > 0 and <= 1, not 1.5"),
        ("console", "log_directory", "var/log/pvc", "must be an absolute path, not 'var/log/pvc'"),
        ("console", "max_bytes", 100, "must be an integer >= 1024, not 100"),
        ("console", "log_directory", 5, "must be an absolute path, not 5"),
        ("daemon", "keepalive_interval", -5, "must be a number of seconds > 0, not -5"),
        ("daemon", "reconcile_interval", [10], "must be a number of seconds > 0, not [10]"),
        ("daemon", "default_selector", "MEM", "not 'MEM'"),
        ("daemon", "default_selector", "fastest", "not 'fastest'"),
        (
            "logging",
            "level",
            "verbose",
            "must be one of debug, info, warning, error, not 'verbose'",
        ),
        ("logging", "level", "critical", "not 'critical'"),
        ("logging", "level", 10, "not 10"),
    ],
)
def test_refused_values(section: str, key: str, value: object, problem: str) -> None:
    problems = problems_of(document(section, key, value))
    assert len(problems) == 1
    assert problems[0].startswith(f"{section}.{key}: ")
    assert problem in problems[0]


def test_long_values_are_shortened_in_messages() -> None:
    (problem,) = problems_of(document("vm", "workers", "x" * 500))
    assert problem.startswith("vm.workers: must be an integer >= 1, not 'xxx")
    assert problem.endswith("...")
    assert len(problem) < 120


@pytest.mark.parametrize(
    ("data", "problems"),
    [
        (
            {"zookeeper": {"hosts": "zk1:2181"}},
            ["node.name: required"],
        ),
        (
            {"node": {"name": "hv1"}},
            ["zookeeper.hosts: required"],
        ),
        # An empty file, or one of comments only.
        (None, ["node.name: required", "zookeeper.hosts: required"]),
        # A section header whose keys are all commented out is an empty section.
        ({"node": None, "zookeeper": {"hosts": "zk1:2181"}}, ["node.name: required"]),
        (
            {**MINIMAL, "vm": "fast"},
            ["vm: must be a mapping of keys, not 'fast'"],
        ),
        (
            {**MINIMAL, "console": ["/var/log"]},
            ["console: must be a mapping of keys, not ['/var/log']"],
        ),
        (
            ["node", "zookeeper"],
            [
                "top level: must be a mapping of sections (node, zookeeper, libvirt, migration, "
                "vm, maintenance, fencing, console, daemon, logging), not ['node', 'zookeeper']"
            ],
        ),
        ("just text", ["top level: must be a mapping of sections"]),
    ],
)
def test_required_keys_and_mapping_shapes(data: object, problems: list[str]) -> None:
    found = problems_of(data)
    assert len(found) == len(problems)
    for got, expected in zip(found, problems, strict=True):
        assert got.startswith(expected)


def test_omitting_optional_sections_is_fine_and_empty_ones_too() -> None:
    data = {**MINIMAL, "vm": None, "logging": {}}
    assert parse_config(data) == parse_config(MINIMAL)


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            document("vm", "shutdown_timout", 30),
            "vm.shutdown_timout: unknown key (did you mean 'shutdown_timeout'?)",
        ),
        (
            document("migration", "max_downtime", 30),
            "migration.max_downtime: unknown key (did you mean 'max_downtime_ms'?)",
        ),
        (
            document("node", "adress", "10.0.0.1"),
            "node.adress: unknown key (did you mean 'address'?)",
        ),
        (
            document("logging", "destination", "syslog"),
            "logging.destination: unknown key (known: level)",
        ),
        (
            {**MINIMAL, "zookeper": {"hosts": "zk1:2181"}},
            "zookeper: unknown section (did you mean 'zookeeper'?)",
        ),
        (
            {**MINIMAL, "ceph": {}},
            "ceph: unknown section (known: node, zookeeper, libvirt, migration, vm, maintenance, "
            "fencing, console, daemon, logging)",
        ),
        (document("vm", 5, 1), "vm.5: unknown key (known: shutdown_timeout, restart_budget,"),
    ],
)
def test_unknown_keys_are_errors_with_a_suggestion(data: object, problem: str) -> None:
    problems = problems_of(data)
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_every_problem_is_reported_at_once_by_key_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "node:\n"
        "  coordinator: 'yes'\n"
        "zookeeper:\n"
        "  hosts: [zk1:2181, zk2]\n"
        "libvirt:\n"
        "  peer_uri: qemu+tcp://{host}/system\n"
        "migration:\n"
        "  max_downtime_ms: abc\n"
        "vm:\n"
        "  shutdown_timout: 30\n"
        "logging:\n"
        "  level: loud\n"
        "vmm: {}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = [
        "vmm: unknown section (did you mean 'vm'?)",
        "node.name: required",
        "node.coordinator: must be true or false, not 'yes'",
        "zookeeper.hosts: each entry must be host:port with port 1..65535, not 'zk2'",
        "libvirt.peer_uri: unknown placeholder {host} in 'qemu+tcp://{host}/system' "
        "(use {address} or {name})",
        "migration.max_downtime_ms: must be an integer >= 1, not 'abc'",
        "vm.shutdown_timout: unknown key (did you mean 'shutdown_timeout'?)",
        "logging.level: must be one of debug, info, warning, error, not 'loud'",
    ]
    assert caught.value.problems == problems
    assert str(caught.value) == f"{path}: " + "; ".join(problems)
    assert caught.value.source == str(path)


def test_config_error_is_a_one_line_invalid_input() -> None:
    error = ConfigError("f.yaml", ["a: first\nline", "b: second"])
    assert isinstance(error, InvalidInput)
    assert error.exit_code == InvalidInput.exit_code
    assert error.problems == ["a: first line", "b: second"]
    assert error.message == "f.yaml: a: first line; b: second"


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("peer_uri", "migration_uri", "peer", "migration"),
    [
        (None, None, "qemu+tcp://10.1.2.3/system", "tcp://10.1.2.3"),
        (
            "qemu+ssh://root@{name}/system?k={{x}}",
            "tcp://{address}:{name}",
            "qemu+ssh://root@hv7/system?k={x}",
            "tcp://10.1.2.3:hv7",
        ),
        ("qemu:///system", "unix:///run/{name}.sock", "qemu:///system", "unix:///run/hv7.sock"),
    ],
)
def test_uri_templates_render_with_this_nodes_address_and_name(
    peer_uri: str | None, migration_uri: str | None, peer: str, migration: str
) -> None:
    data: dict[str, Any] = {
        "node": {"name": "hv7", "address": "10.1.2.3"},
        "zookeeper": {"hosts": "zk1:2181"},
    }
    if peer_uri is not None:
        data["libvirt"] = {"peer_uri": peer_uri}
    if migration_uri is not None:
        data["migration"] = {"uri": migration_uri}
    config = parse_config(data)
    assert config.peer_libvirt_uri() == peer
    assert config.migration_uri() == migration


def test_both_templates_are_checked() -> None:
    data = {
        **MINIMAL,
        "libvirt": {"peer_uri": "qemu+tcp://{adress}/system"},
        "migration": {"uri": "tcp://{address"},
    }
    problems = problems_of(data)
    assert [problem.split(":")[0] for problem in problems] == ["libvirt.peer_uri", "migration.uri"]
    assert "unknown placeholder {adress}" in problems[0]
    assert "malformed template" in problems[1]


# --------------------------------------------------------------------------- files


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# comments are fine\n"
        "node:\n  name: hv2\n  coordinator: true\n"
        "zookeeper:\n  hosts:\n    - zk1:2181\n    - zk2:2181\n"
        "vm:\n  # every key commented out\n",
    )
    config = load_config(path)
    assert config.node == cfg.NodeSection(name="hv2", coordinator=True)
    assert config.zookeeper.hosts == "zk1:2181,zk2:2181"
    assert config.vm == cfg.VmSection()
    assert config.source == str(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "node:\n  name: hv1\nzookeeper:\n  hosts: zk1:2181\n    timeout: 5\n",
            "line 5, column 12: invalid YAML: mapping values are not allowed here",
        ),
        (
            "node:\n  name: [hv1\nzookeeper:\n  hosts: zk1:2181\n",
            "line 3, column 10: invalid YAML: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence at line 2)",
        ),
        (
            "node:\n  name: hv1\n\tcoordinator: true\n",
            "line 3, column 1: invalid YAML: found character '\\t' that cannot start any token",
        ),
        ("node: {name: hv1}\n---\nnode: {}\n", "line 2, column 1: invalid YAML: "),
    ],
)
def test_yaml_syntax_errors_name_the_line(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(problem)
    assert str(caught.value).startswith(f"{path}: line ")


def test_bad_encoding_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "pvcnoded.yaml"
    path.write_bytes(b"node:\n  name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_keys_given_twice_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "node:\n  name: hv1\n  name: hv2\nzookeeper:\n  hosts: zk1:2181\nnode:\n  address: x\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        "node.name: given twice (lines 2 and 3)",
        "node: given twice (lines 1 and 6)",
    ]


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value) == f"{missing}: file not found"
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)  # a directory
    assert str(caught.value).startswith(f"{tmp_path}: cannot read: ")


# --------------------------------------------------------------------------- rendering


def test_render_config_spells_out_everything_and_loads_back(tmp_path: Path) -> None:
    config = parse_config(
        {
            "node": {"name": "hv3", "address": "192.0.2.3", "coordinator": True},
            "zookeeper": {"hosts": ["zk1:2181", "zk2:2181/pvc"], "timeout": 4},
            "migration": {"uri": "tcp://{address}:49152"},
            "daemon": {"default_selector": "vms"},
            "logging": {"level": "DEBUG"},
        },
        "in.yaml",
    )
    text = render_config(config)
    assert "read from in.yaml" in text
    assert "qemu+tcp://192.0.2.3/system" in text  # the rendered templates, as comments
    assert "tcp://192.0.2.3:49152" in text
    rendered = yaml.safe_load(text)
    assert rendered["zookeeper"] == {"hosts": "zk1:2181,zk2:2181/pvc", "timeout": 4.0}
    assert rendered["vm"]["workers"] == 8  # defaults included
    assert rendered["logging"]["level"] == "debug"
    assert list(rendered) == list(cfg.SECTIONS)
    reloaded = load_config(write(tmp_path, text))
    assert dataclasses.replace(reloaded, source="in.yaml") == config


def test_render_config_of_defaults_loads_back() -> None:
    config = parse_config(MINIMAL, "x")
    assert parse_config(yaml.safe_load(render_config(config)), "x") == config
    assert "default_selector: null" in render_config(config)


# --------------------------------------------------------------------------- the sample


def test_sample_file_loads() -> None:
    config = load_config(SAMPLE)
    assert isinstance(config, NodeConfig)


def test_sample_shows_every_key_with_its_default() -> None:
    sample = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    assert list(sample) == list(cfg.SECTIONS)
    for section, cls in cfg.SECTIONS.items():
        assert list(sample[section]) == [spec.name for spec in dataclasses.fields(cls)], section
        for spec in dataclasses.fields(cls):
            if spec.default is not dataclasses.MISSING:
                # YAML has lists where the dataclasses keep tuples (commands).
                default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
                assert sample[section][spec.name] == default, f"{section}.{spec.name}"


def test_sample_comments_every_key() -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("  ") and not line.lstrip().startswith("#") and ":" in line:
            assert lines[index - 1].lstrip().startswith("#"), f"no comment above {line.strip()!r}"


def test_rendered_config_masks_the_bmc_password_and_loads_back() -> None:
    data = {**MINIMAL, "fencing": {"bmc_password": "s3cret!", "rbd_command": ["rbd", "--id", "x"]}}
    config = parse_config(data, "x.yaml")
    rendered = cfg.render_config(config)
    assert "s3cret!" not in rendered and "bmc_password: '********'" in rendered
    assert config.fencing.rbd_command == ("rbd", "--id", "x")


@pytest.mark.parametrize(
    ("fencing", "problem"),
    [
        ({"method": "command"}, "fencing.command: required when fencing.method is command"),
        (
            {"method": "command", "command": ["fence_ipmilan", "--ip={hots}"]},
            "only {host}, {port}, {username}, {password}, {action} may be used, not {hots}",
        ),
        ({"command": ["fence_ipmilan", "{host!r}"]}, "fencing.command:"),
    ],
)
def test_an_unusable_fence_agent_is_refused_when_the_config_is_read(
    fencing: dict[str, Any], problem: str
) -> None:
    """Found by --validate-config and at start, not by the fencing thread when a node dies."""
    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse_config({**MINIMAL, "fencing": fencing})
    usable = {"method": "command", "command": ["fence_ipmilan", "--ip={host}", "-o", "{action}"]}
    assert parse_config({**MINIMAL, "fencing": usable}).fencing.command == tuple(usable["command"])
