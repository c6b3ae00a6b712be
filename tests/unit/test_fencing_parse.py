"""Fencing without a BMC: address parsing, command rendering and reading tool output.

The fence procedure itself runs against real simulated BMCs in
tests/cluster/test_bmc_fencing.py; here a few tiny fence agents (shell scripts) pin the
rules of the procedure that a BMC cannot easily be made to show.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pvc_common.errors import InvalidInput
from pvc_common.models import NodeRecord
from pvc_noded.fencing import (
    DEFAULT_IPMI_PORT,
    BmcAddress,
    CommandFencer,
    Fencer,
    IpmitoolFencer,
    _classify_ipmitool_failure,
    _ipmitool_power_state,
    check_command_template,
    render_command,
)

BMC = BmcAddress("10.0.0.5", 6230, "admin", "s3cret{x}")


# --------------------------------------------------------------------------- BmcAddress


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("10.0.0.5", "10.0.0.5", DEFAULT_IPMI_PORT),
        ("10.0.0.5:6230", "10.0.0.5", 6230),
        ("  bmc-hv1.example.org  ", "bmc-hv1.example.org", 623),
        ("bmc_hv1:1", "bmc_hv1", 1),
        ("localhost:65535", "localhost", 65535),
        ("fd00::1", "fd00::1", 623),
        ("[fd00::1]", "fd00::1", 623),
        ("[fd00::1]:624", "fd00::1", 624),
        ("[fe80::1%eth0]:624", "fe80::1%eth0", 624),
    ],
)
def test_parse_accepts_host_and_optional_port(text: str, host: str, port: int) -> None:
    address = BmcAddress.parse(text, "admin", "pw")
    assert (address.host, address.port, address.username, address.password) == (
        host,
        port,
        "admin",
        "pw",
    )


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("bmc:", "invalid port"),
        ("bmc:0", "invalid port"),
        ("bmc:65536", "invalid port"),
        ("bmc:62a", "invalid port"),
        ("bmc:-1", "invalid port"),
        ("-oProxyCommand=x", "not a valid BMC host"),
        ("bad host", "not a valid BMC host"),
        ("a:b:c", "not a valid BMC host"),
        ("[bmc.example]:623", "not an IPv6 address"),
        ("[fd00::1]:", "invalid port"),
        ("bmc\nother", "one line"),
    ],
)
def test_parse_rejects_malformed_addresses(text: str, complaint: str) -> None:
    with pytest.raises(InvalidInput, match=complaint):
        BmcAddress.parse(text, "admin", "pw")


@pytest.mark.parametrize(("username", "password"), [("ad\nmin", "pw"), ("admin", "p\0w")])
def test_credentials_must_be_one_line(username: str, password: str) -> None:
    with pytest.raises(InvalidInput, match="one line"):
        BmcAddress.parse("bmc", username, password)


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(InvalidInput, match="1-65535"):
        BmcAddress("bmc", 0, "admin", "pw")
    with pytest.raises(InvalidInput, match="integer"):
        BmcAddress("bmc", True, "admin", "pw")
    with pytest.raises(InvalidInput, match="not a valid"):
        BmcAddress("--help", 623, "admin", "pw")


def test_password_stays_out_of_repr_and_str() -> None:
    assert "s3cret" not in repr(BMC)
    assert str(BMC) == "10.0.0.5:6230"
    assert str(BmcAddress("fd00::1", 623, "admin", "pw")) == "[fd00::1]:623"


def test_from_node_reads_the_ipmi_keys() -> None:
    node = NodeRecord(
        name="hv1", ipmihostname="127.0.0.1:6230", ipmiusername="admin", ipmipassword="pw"
    )
    assert BmcAddress.from_node(node) == BmcAddress("127.0.0.1", 6230, "admin", "pw")
    assert BmcAddress.from_node(NodeRecord(name="hv2")) is None  # no BMC configured


# --------------------------------------------------------------------------- ipmitool


def test_ipmitool_command_keeps_the_password_off_the_command_line() -> None:
    fencer = IpmitoolFencer(ipmitool="/usr/bin/ipmitool")
    argv = fencer.command(BMC, "off")
    assert argv[0] == "/usr/bin/ipmitool"
    assert argv[-3:] == ["chassis", "power", "off"]
    text = " ".join(argv)
    # Cipher suite 3 and one short retry: see ENVIRONMENT.md (10 s / 20 s waits otherwise).
    for option in ("-I lanplus", "-C 3", "-N 1", "-R 1", "-H 10.0.0.5", "-p 6230", "-U admin"):
        assert option in text
    assert "-E" in argv and "-P" not in argv
    assert not any("s3cret" in part for part in argv)
    assert fencer.environment(BMC)["IPMI_PASSWORD"] == "s3cret{x}"
    with pytest.raises(ValueError):
        fencer.command(BMC, "cycle")  # type: ignore[arg-type]


def test_fencers_satisfy_the_protocol_and_check_their_settings() -> None:
    assert isinstance(IpmitoolFencer(), Fencer)
    assert isinstance(CommandFencer(["true"]), Fencer)
    for bad in ({"timeout": 0}, {"poll": -1.0}, {"call_timeout": 0}):
        with pytest.raises(ValueError):
            IpmitoolFencer(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stdout", "state"),
    [
        ("Chassis Power is on\n", "on"),
        ("Chassis Power is off\n", "off"),
        ("Chassis Power is onward\n", None),
        ("", None),
    ],
)
def test_power_state_is_read_from_ipmitool_output(stdout: str, state: str | None) -> None:
    assert _ipmitool_power_state(stdout) == state


# Real ipmitool 1.8.19 -v output against ipmi_sim (noise lines included).
_WRONG_PASSWORD = (
    "Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\n"
    "Error: Unable to establish IPMI v2 / RMCP+ session\n"
)
_UNKNOWN_USER = (
    "Loading IANA PEN Registry...\nRAKP 2 message indicates an error : unauthorized name\n"
    "Error: Unable to establish IPMI v2 / RMCP+ session\n"
)
_NO_ANSWER = (
    "Loading IANA PEN Registry...\nGet Auth Capabilities error\n"
    "Error issuing Get Channel Authentication Capabilities request\n"
    "Error: Unable to establish IPMI v2 / RMCP+ session\n"
)
_REFUSED = (
    "Loading IANA PEN Registry...\nRunning Get VSO Capabilities my_addr 0x20, transit 0, "
    "target 0x20\nInvalid completion code received: Invalid command\n"
    "Discovered IPMB address 0x0\n"
    "Set Chassis Power Control to Down/Off failed: Unspecified error\n"
)


@pytest.mark.parametrize(
    ("stderr", "problem", "message"),
    [
        (_WRONG_PASSWORD, "credentials", "RAKP 2 HMAC is invalid"),
        (_UNKNOWN_USER, "credentials", "unauthorized name"),
        (_NO_ANSWER, "unreachable", "Get Auth Capabilities error"),
        (_REFUSED, "refused", "Set Chassis Power Control to Down/Off failed"),
        ("", "refused", "exit code 1"),
    ],
)
def test_ipmitool_failures_are_told_apart(stderr: str, problem: str, message: str) -> None:
    done = subprocess.CompletedProcess(["ipmitool"], 1, stdout="", stderr=stderr)
    found, text = _classify_ipmitool_failure(done, BMC)
    assert found == problem
    assert message in text
    assert "\n" not in text and "IANA" not in text and "VSO" not in text


def test_a_password_echoed_by_a_tool_is_masked() -> None:
    done = subprocess.CompletedProcess(["x"], 1, stdout="", stderr="bad password s3cret{x}")
    assert "s3cret" not in _classify_ipmitool_failure(done, BMC)[1]


# --------------------------------------------------------------------------- fence agents

TEMPLATE = [
    "fence_ipmilan",
    "--ip={host}",
    "--ipport={port}",
    "--username={username}",
    "--password={password}",
    "--lanplus",
    "--cipher=3",
    "-o",
    "{action}",
]


def test_render_command_fills_placeholders_once() -> None:
    assert render_command(TEMPLATE, BMC, "status") == [
        "fence_ipmilan",
        "--ip=10.0.0.5",
        "--ipport=6230",
        "--username=admin",
        "--password=s3cret{x}",  # braces in a value are not parsed again
        "--lanplus",
        "--cipher=3",
        "-o",
        "status",
    ]
    assert render_command(["agent", "{{literal}}", "{action}"], BMC, "on") == [
        "agent",
        "{literal}",
        "on",
    ]


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("fence_ipmilan -o {action}", "list"),
        ([], "non-empty"),
        (["agent", "{hostname}"], "only"),
        (["agent", "{0}"], "only"),
        (["agent", "{host!r}"], "only"),
        (["agent", "{port:>5}"], "only"),
        (["agent", "{host"], "malformed"),
        (["agent", 3], "strings"),
        ([" ", "{action}"], "program"),
    ],
)
def test_bad_templates_are_refused_up_front(template: object, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        check_command_template(template)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=complaint):
        CommandFencer(template)  # type: ignore[arg-type]


def test_agent_environment_carries_the_bmc() -> None:
    env = CommandFencer(TEMPLATE).environment(BMC, "off")
    assert env["PVC_FENCE_HOST"] == "10.0.0.5"
    assert env["PVC_FENCE_PORT"] == "6230"
    assert env["PVC_FENCE_USERNAME"] == "admin"
    assert env["PVC_FENCE_PASSWORD"] == "s3cret{x}"
    assert env["PVC_FENCE_ACTION"] == "off"


def _agent(tmp_path: Path, body: str) -> list[str]:
    """A tiny fence agent: ``body`` is sh code run with the action in $1."""
    script = tmp_path / "agent.sh"
    script.write_text(f'#!/bin/sh\necho "$1" >> {tmp_path}/calls\n{body}\n')
    script.chmod(0o755)
    return [str(script), "{action}"]


def _calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().split()


def test_an_acknowledged_off_never_counts_without_a_status_of_off(tmp_path: Path) -> None:
    # Every command "succeeds" (exit 0) but status keeps saying on (exit 0).
    fencer = CommandFencer(_agent(tmp_path, "exit 0"), timeout=0.5, poll=0.1)
    result = fencer.fence(BMC)
    assert not result.confirmed_off and not result.powered_on
    assert "accepted power off but still reports power on" in result.detail
    calls = _calls(tmp_path)
    assert calls[0] == "off" and set(calls[1:]) == {"status"} and len(calls) >= 3
    assert "on" not in calls  # never powered on when not confirmed


def test_a_failed_off_followed_by_status_off_counts(tmp_path: Path) -> None:
    body = 'case "$1" in off) echo "BMC hiccup" >&2; exit 1;; status) exit 2;; esac; exit 0'
    result = CommandFencer(_agent(tmp_path, body), timeout=5).fence(BMC)
    assert result.confirmed_off and result.powered_on
    assert "although power off reported: exit code 1: BMC hiccup" in result.detail
    assert _calls(tmp_path) == ["off", "status", "on"]


def test_a_failed_off_with_status_on_is_not_confirmed(tmp_path: Path) -> None:
    body = 'case "$1" in off) echo "no route to BMC" >&2; exit 1;; esac; exit 0'
    result = CommandFencer(_agent(tmp_path, body), timeout=5).fence(BMC)
    assert not result.confirmed_off
    assert result.detail == (
        "BMC 10.0.0.5:6230: power off failed (fence agent: exit code 1: no route to BMC), "
        "and it reports power on"
    )
    assert _calls(tmp_path) == ["off", "status"]


def test_power_on_failure_is_reported_but_off_still_confirmed(tmp_path: Path) -> None:
    body = 'case "$1" in status) exit 2;; on) echo "on refused" >&2; exit 1;; esac; exit 0'
    result = CommandFencer(_agent(tmp_path, body), timeout=5).fence(BMC)
    assert result.confirmed_off and not result.powered_on
    assert result.detail.endswith("; power on failed: exit code 1: on refused")


def test_power_on_can_be_left_out(tmp_path: Path) -> None:
    result = CommandFencer(_agent(tmp_path, "exit 2"), timeout=5, power_on=False).fence(BMC)
    assert result.confirmed_off and not result.powered_on
    assert result.detail.endswith("power on not requested")
    assert "on" not in _calls(tmp_path)


def test_a_hanging_agent_is_cut_off(tmp_path: Path) -> None:
    # exec: the shell becomes sleep, so killing the agent leaves no orphan behind.
    fencer = CommandFencer(_agent(tmp_path, "exec sleep 30"), timeout=0.3, call_timeout=0.3)
    result = fencer.fence(BMC)
    assert not result.confirmed_off
    assert "took longer than 0.3 s" in result.detail
    assert fencer.power_status(BMC) is None


def test_a_missing_tool_is_a_result_not_an_exception(tmp_path: Path) -> None:
    result = IpmitoolFencer(ipmitool=str(tmp_path / "no-ipmitool")).fence(BMC)
    assert not result.confirmed_off
    assert "cannot run" in result.detail and "No such file" in result.detail
