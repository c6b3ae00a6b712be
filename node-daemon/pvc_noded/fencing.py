"""Fencing: power a node off through its BMC, and only believe it once the BMC says so.

Before the VMs of a node that stopped answering may start elsewhere, that node must be
off: otherwise two copies of a VM could write the same disk. This module is the one
place that talks to BMCs. A :class:`Fencer` powers the node off, then asks the BMC for the
power state until it reads *off*: the exit code of a power-off command alone never
counts (a BMC may acknowledge the command and do nothing), while a power-off that fails
but is followed by a status that reads off does count (the node is off either way).
Afterwards the node is powered on again, so it can rejoin the cluster once it boots.

Two implementations:

:class:`IpmitoolFencer`
    Runs ``ipmitool`` over IPMI-over-LAN (lanplus). The password goes through the
    ``IPMI_PASSWORD`` environment variable (``-E``), never the command line, which every
    user of the machine can read in ``ps``.
:class:`CommandFencer`
    Runs a configurable fence-agent command such as ``fence_ipmilan``, following the
    fence-agent exit codes (``status`` exits 0 when on and 2 when off).

BMC failures never raise: they come back as ``FenceResult(confirmed_off=False, ...)``
with the reason in one line, since the daemon decides what to do about an unfenced node.
Only programming errors (a malformed command template, say) raise. Every command is
bounded by a timeout.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import string
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol, runtime_checkable

from pvc_common.errors import InvalidInput

if TYPE_CHECKING:
    from pvc_common.models import NodeRecord

log = logging.getLogger(__name__)

#: The RMCP port of IPMI over LAN, used when ``ipmihostname`` names no port.
DEFAULT_IPMI_PORT: Final = 623

#: What a fencer asks of a BMC.
Action = Literal["off", "status", "on"]
ACTIONS: Final[tuple[Action, ...]] = ("off", "status", "on")

#: Placeholders a :class:`CommandFencer` template may use.
TEMPLATE_PLACEHOLDERS: Final = ("host", "port", "username", "password", "action")

#: Fence-agent exit codes (the convention of the fence-agents project): 0 = success (for
#: ``status``: the power is on), 2 = ``status`` found the power off; anything else failed.
AGENT_OK: Final = 0
AGENT_STATUS_OFF: Final = 2

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$"
)
_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\](?::(?P<port>[^:]*))?$")

# ipmitool's -v output on stderr that carries no information about a failure.
_IPMITOOL_NOISE = (
    "loading iana pen registry",
    "running get vso capabilities",
    "discovered ipmb address",
    "invalid completion code received: invalid command",
)
# Markers of a BMC that answered but rejected the user name or password (RAKP stage).
_CREDENTIAL_MARKERS = (
    "hmac is invalid",
    "unauthorized name",
    "invalid integrity check value",
    "unauthorized role",
    "invalid role",
    "invalid user name",
    "password",
)
# Markers of a session that could not be set up at all: nothing answered.
_UNREACHABLE_MARKERS = (
    "get auth capabilities error",
    "error issuing get channel authentication capabilities",
    "no response",
    "unable to establish",
    "address lookup",
    "connection refused",
    "insufficient resources for session",
)


# --------------------------------------------------------------------------- addresses


def _check_text(what: str, value: str) -> str:
    # Neither a command line nor an environment variable can carry NUL, and a line break
    # in a credential is never meant (it would also break one-line messages).
    if not isinstance(value, str) or any(c in value for c in "\0\r\n"):
        raise InvalidInput(f"the BMC {what} must be text on one line")
    return value


def _check_host(host: str) -> str:
    if not isinstance(host, str) or not host:
        raise InvalidInput("the BMC host name is empty")
    try:
        ipaddress.ip_address(host)  # IPv4 or IPv6, with an optional %zone
        return host
    except ValueError:
        pass
    # The leading-character rule also keeps a host from being read as a command option.
    if not _HOSTNAME.match(host):
        raise InvalidInput(f"{host!r} is not a valid BMC host name or IP address")
    return host


def _parse_port(text: str, source: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InvalidInput(f"invalid port in BMC address {source!r}: must be 1-65535")
    return int(text)


@dataclass(frozen=True)
class BmcAddress:
    """Where and as whom to reach a node's BMC.

    Built from the node's ``ipmihostname``, ``ipmiusername`` and ``ipmipassword`` keys with
    :meth:`parse` or :meth:`from_node`; invalid values raise :class:`InvalidInput`. The
    password is left out of ``repr`` so that logging an address cannot leak it.
    """

    host: str
    port: int
    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_host(self.host)
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise InvalidInput(f"BMC port must be an integer, not {self.port!r}")
        if not 1 <= self.port <= 65535:
            raise InvalidInput(f"BMC port {self.port} is not in 1-65535")
        _check_text("user name", self.username)
        _check_text("password", self.password)

    @classmethod
    def parse(cls, ipmihostname: str, username: str, password: str) -> BmcAddress:
        """Parse ``host``, ``host:port``, ``[v6-address]`` or ``[v6-address]:port``.

        The port defaults to 623. A bare IPv6 address (more than one colon) has no port.
        """
        text = _check_text("address", ipmihostname).strip()
        if not text:
            raise InvalidInput("no BMC address: ipmihostname is empty")
        port = DEFAULT_IPMI_PORT
        bracketed = _BRACKETED.match(text)
        if bracketed:
            host = bracketed["host"]
            if bracketed["port"] is not None:
                port = _parse_port(bracketed["port"], text)
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise InvalidInput(f"{host!r} in {text!r} is not an IPv6 address") from None
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = _parse_port(port_text, text)
        else:
            host = text
        return cls(_check_host(host), port, username, password)

    @classmethod
    def from_node(cls, node: NodeRecord) -> BmcAddress | None:
        """The BMC of a node record; None if the node has no BMC address configured."""
        if not node.ipmihostname.strip():
            return None
        return cls.parse(node.ipmihostname, node.ipmiusername, node.ipmipassword)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FenceResult:
    """The outcome of one fence.

    ``confirmed_off`` is True only when the BMC reported the power off after we asked for
    it: then, and only then, may the node's VMs run elsewhere. ``powered_on`` says whether
    the BMC accepted the power-on that followed. ``detail`` is one line for the log.
    """

    confirmed_off: bool
    powered_on: bool
    detail: str


@runtime_checkable
class Fencer(Protocol):
    """Something that can fence a node through its BMC (see the module docstring)."""

    def fence(self, bmc: BmcAddress) -> FenceResult:
        """Power the node off, confirm it is off, then (if configured) power it on."""
        ...

    def power_status(self, bmc: BmcAddress) -> str | None:
        """``"on"``, ``"off"``, or None when the BMC cannot tell us."""
        ...


@dataclass(frozen=True)
class _Reply:
    """What one command against a BMC came back with."""

    #: The command did what was asked (for ``status``: the state could be read).
    ok: bool
    #: For ``status``: "on" or "off" when known.
    state: str | None = None
    #: Why it failed: "unreachable", "credentials", "refused", "timeout", "failed",
    #: "unrunnable"; empty when ok.
    problem: str = ""
    #: One line from the tool's output (or about the tool itself).
    message: str = ""


# --------------------------------------------------------------------------- the procedure


class _ConfirmingFencer:
    """The fence procedure shared by every fencer; subclasses run the commands.

    Procedure: send ``off``. If it was accepted, poll ``status`` every ``poll`` seconds
    until it reads off or ``timeout`` seconds have passed since the start. If it failed,
    read ``status`` once: a node already off is fenced whatever the off said. Once
    confirmed (and only then), send ``on`` if ``power_on``.

    Each command is bounded by ``call_timeout``; no poll starts after the deadline, so a
    fence takes at most about ``max(timeout, call_timeout) + 2 * call_timeout``.
    """

    tool = "fencer"

    def __init__(self, *, timeout: float, poll: float, power_on: bool, call_timeout: float) -> None:
        for name, value in (("timeout", timeout), ("poll", poll), ("call_timeout", call_timeout)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, not {value!r}")
        self.timeout = float(timeout)
        self.poll = float(poll)
        self.power_on = power_on
        self.call_timeout = float(call_timeout)

    def _run(self, bmc: BmcAddress, action: Action) -> _Reply:
        raise NotImplementedError

    def power_status(self, bmc: BmcAddress) -> str | None:
        """``"on"``, ``"off"``, or None when the BMC does not answer or cannot tell."""
        return self._run(bmc, "status").state

    def fence(self, bmc: BmcAddress) -> FenceResult:
        """Power the node behind ``bmc`` off, confirm it, and power it on again."""
        started = time.monotonic()
        deadline = started + self.timeout
        off = self._run(bmc, "off")
        if off.ok:
            status = self._wait_off(bmc, deadline)
        else:
            status = self._run(bmc, "status")
        elapsed = time.monotonic() - started
        if status.state != "off":
            detail = self._failure_detail(bmc, off, status, elapsed)
            log.warning("fencing %s not confirmed: %s", bmc, detail)
            return FenceResult(confirmed_off=False, powered_on=False, detail=detail)
        detail = f"power off confirmed after {elapsed:.2f} s"
        if not off.ok:
            detail += f" (although power off reported: {off.message})"
        powered_on = False
        if self.power_on:
            on = self._run(bmc, "on")
            powered_on = on.ok
            detail += "; power on sent" if on.ok else f"; power on failed: {on.message}"
        else:
            detail += "; power on not requested"
        log.info("fenced %s: %s", bmc, detail)
        return FenceResult(confirmed_off=True, powered_on=powered_on, detail=detail)

    def _wait_off(self, bmc: BmcAddress, deadline: float) -> _Reply:
        """Poll ``status`` until it reads off or the deadline passes; the last reply."""
        while True:
            reply = self._run(bmc, "status")
            remaining = deadline - time.monotonic()
            if reply.state == "off" or remaining <= 0:
                return reply
            # The last read happens at the deadline, so "within timeout" is checked in full.
            time.sleep(min(self.poll, remaining))

    def _failure_detail(self, bmc: BmcAddress, off: _Reply, status: _Reply, elapsed: float) -> str:
        """One line saying why the power-off is not confirmed, most telling reason first."""
        where = f"BMC {bmc}"
        if not off.ok:
            reason = self._describe(where, bmc, off, "power off")
            if status.state == "on":
                return f"{reason}, and it reports power on"
            if status.problem and status.problem != off.problem:
                return f"{reason}; status unknown too ({status.message})"
            return reason
        if status.state == "on":
            return f"{where} accepted power off but still reports power on after {elapsed:.1f} s"
        return (
            f"{where} accepted power off but its power state could not be read within "
            f"{elapsed:.1f} s ({status.message})"
        )

    def _describe(self, where: str, bmc: BmcAddress, reply: _Reply, what: str) -> str:
        message = f"{self.tool}: {reply.message}" if reply.message else self.tool
        if reply.problem == "unreachable":
            return f"{where} did not answer ({message})"
        if reply.problem == "credentials":
            return f"{where} refused the credentials of user {bmc.username!r} ({message})"
        if reply.problem == "timeout":
            return f"{where}: {what} did not finish ({message})"
        if reply.problem == "unrunnable":
            return f"{where}: {what} impossible ({reply.message})"
        if reply.problem == "refused":
            return f"{where} refused {what} ({message})"
        return f"{where}: {what} failed ({message})"

    def _execute(
        self, argv: Sequence[str], env: Mapping[str, str], action: Action
    ) -> subprocess.CompletedProcess[str] | _Reply:
        """Run one command within ``call_timeout``; a _Reply if it could not complete."""
        try:
            return subprocess.run(
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.call_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            # run() has killed and reaped the child already.
            return _Reply(
                ok=False,
                problem="timeout",
                message=f"{action} took longer than {self.call_timeout:.1f} s",
            )
        except OSError as error:
            return _Reply(
                ok=False, problem="unrunnable", message=f"cannot run {argv[0]!r}: {error.strerror}"
            )


def _one_line(text: str, bmc: BmcAddress, limit: int = 200) -> str:
    """``text`` on one line, shortened, and without the password should a tool echo it."""
    line = " ".join(text.split())
    if len(bmc.password) >= 4:  # shorter ones would mangle ordinary words
        line = line.replace(bmc.password, "***")
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --------------------------------------------------------------------------- ipmitool


class IpmitoolFencer(_ConfirmingFencer):
    """Fence through ``ipmitool -I lanplus`` (IPMI v2.0 over LAN).

    ``timeout`` bounds the wait for the BMC to report the power off; ``poll`` is the
    interval of those status reads; ``power_on`` sends ``power on`` after a confirmed off.
    Every ipmitool call is also bounded by ``call_timeout``. ``-N 1 -R 1`` (a 1-second
    timeout, one retry) makes a BMC that does not answer fail in about 2 s instead of
    20 s; ``-C`` picks the cipher suite (3 is widely supported, and without it ipmitool
    first waits 10 s for a cipher suite list some BMCs never send).
    """

    tool = "ipmitool"

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        poll: float = 0.2,
        power_on: bool = True,
        ipmitool: str = "ipmitool",
        cipher_suite: int = 3,
        call_timeout: float = 5.0,
    ) -> None:
        super().__init__(timeout=timeout, poll=poll, power_on=power_on, call_timeout=call_timeout)
        self.ipmitool = ipmitool
        self.cipher_suite = int(cipher_suite)

    def command(self, bmc: BmcAddress, action: Action) -> list[str]:
        """The ipmitool argv for ``chassis power ACTION`` (the password is not in it)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        return [
            self.ipmitool,
            "-v",  # without it a wrong password and a dead BMC fail with the same message
            "-I",
            "lanplus",
            "-C",
            str(self.cipher_suite),
            "-N",
            "1",
            "-R",
            "1",
            "-H",
            bmc.host,
            "-p",
            str(bmc.port),
            "-U",
            bmc.username,
            "-E",  # the password comes from IPMI_PASSWORD
            "chassis",
            "power",
            action,
        ]

    def environment(self, bmc: BmcAddress) -> dict[str, str]:
        """The environment of an ipmitool call: ours plus the password (and C messages)."""
        return {**os.environ, "IPMI_PASSWORD": bmc.password, "LC_ALL": "C"}

    def _run(self, bmc: BmcAddress, action: Action) -> _Reply:
        argv = self.command(bmc, action)
        log.debug("running %s", " ".join(argv))
        done = self._execute(argv, self.environment(bmc), action)
        if isinstance(done, _Reply):
            return done
        if action == "status":
            state = _ipmitool_power_state(done.stdout)
            if done.returncode == 0 and state is not None:
                return _Reply(ok=True, state=state, message=_one_line(done.stdout, bmc))
        elif done.returncode == 0:
            return _Reply(ok=True, message=_one_line(done.stdout, bmc))
        problem, message = _classify_ipmitool_failure(done, bmc)
        return _Reply(ok=False, problem=problem, message=message)


def _ipmitool_power_state(stdout: str) -> str | None:
    """ "on" or "off" from ``Chassis Power is on|off``; None for anything else."""
    match = re.search(r"Chassis Power is (on|off)\b", stdout)
    return match[1] if match else None


def _classify_ipmitool_failure(
    done: subprocess.CompletedProcess[str], bmc: BmcAddress
) -> tuple[str, str]:
    """(problem, one-line message) of a failed ipmitool call, from its -v output."""
    # -v prefixes some lines with "> "; "Error: " adds nothing to a failure's message.
    lines = [
        line.strip().removeprefix("> ").removeprefix("Error: ")
        for line in (done.stderr + "\n" + done.stdout).splitlines()
    ]
    useful = [
        line
        for line in lines
        if line and not any(noise in line.lower() for noise in _IPMITOOL_NOISE)
    ]
    message = _one_line("; ".join(dict.fromkeys(useful)), bmc) or f"exit code {done.returncode}"
    lowered = message.lower()
    if any(marker in lowered for marker in _CREDENTIAL_MARKERS):
        return "credentials", message
    if any(marker in lowered for marker in _UNREACHABLE_MARKERS):
        return "unreachable", message
    return "refused", message


# --------------------------------------------------------------------------- fence agents


def check_command_template(template: Sequence[str]) -> None:
    """Raise ValueError if ``template`` is not a usable fence-agent command template.

    It must be a non-empty list of strings whose ``{placeholders}`` are among
    :data:`TEMPLATE_PLACEHOLDERS`, without conversions or format specs.
    """
    if isinstance(template, str) or not isinstance(template, Sequence) or not template:
        raise ValueError("a fence command must be a non-empty list of arguments")
    allowed = ", ".join("{" + name + "}" for name in TEMPLATE_PLACEHOLDERS)
    for part in template:
        if not isinstance(part, str):
            raise ValueError(f"fence command arguments must be strings, not {part!r}")
        try:
            parsed = list(string.Formatter().parse(part))
        except ValueError as error:
            raise ValueError(f"malformed fence command argument {part!r}: {error}") from None
        for _literal, name, spec, conversion in parsed:
            if name is None:
                continue
            if name not in TEMPLATE_PLACEHOLDERS or spec or conversion:
                raise ValueError(
                    f"fence command argument {part!r}: only {allowed} may be used, "
                    f"not {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}"
                )
    if not template[0].strip():
        raise ValueError("the fence command's program is empty")


def render_command(template: Sequence[str], bmc: BmcAddress, action: Action) -> list[str]:
    """The argv of ``template`` for ``bmc`` and ``action`` (placeholders filled in)."""
    check_command_template(template)
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    values = {
        "host": bmc.host,
        "port": str(bmc.port),
        "username": bmc.username,
        "password": bmc.password,
        "action": action,
    }
    # Values are substituted once, never parsed again: braces in a password are harmless.
    return [part.format_map(values) for part in template]


class CommandFencer(_ConfirmingFencer):
    """Fence through a fence-agent command, e.g. ``fence_ipmilan``.

    ``template`` is the command as a list whose arguments may use ``{host}``, ``{port}``,
    ``{username}``, ``{password}`` and ``{action}`` (off, status or on), e.g.::

        ["fence_ipmilan", "--ip={host}", "--ipport={port}", "--username={username}",
         "--password={password}", "--lanplus", "--cipher=3", "--power-wait=0",
         "-o", "{action}"]

    The agent also finds the same values in its environment (``PVC_FENCE_HOST``,
    ``PVC_FENCE_PORT``, ``PVC_FENCE_USERNAME``, ``PVC_FENCE_PASSWORD``,
    ``PVC_FENCE_ACTION``), so a wrapper can keep the password off the command line.
    Exit codes follow fence-agents: 0 = done (``status``: on), 2 = ``status``: off,
    anything else = failed. ``call_timeout`` (default: ``timeout``) bounds each run.
    """

    tool = "fence agent"

    def __init__(
        self,
        template: Sequence[str],
        *,
        timeout: float = 30.0,
        power_on: bool = True,
        poll: float = 0.5,
        call_timeout: float | None = None,
    ) -> None:
        check_command_template(template)
        super().__init__(
            timeout=timeout,
            poll=poll,
            power_on=power_on,
            call_timeout=timeout if call_timeout is None else call_timeout,
        )
        self.template: tuple[str, ...] = tuple(template)

    def command(self, bmc: BmcAddress, action: Action) -> list[str]:
        """The agent's argv for ``action`` on ``bmc``."""
        return render_command(self.template, bmc, action)

    def environment(self, bmc: BmcAddress, action: Action) -> dict[str, str]:
        """The agent's environment: ours plus the BMC's address, credentials and action."""
        return {
            **os.environ,
            "PVC_FENCE_HOST": bmc.host,
            "PVC_FENCE_PORT": str(bmc.port),
            "PVC_FENCE_USERNAME": bmc.username,
            "PVC_FENCE_PASSWORD": bmc.password,
            "PVC_FENCE_ACTION": action,
        }

    def _run(self, bmc: BmcAddress, action: Action) -> _Reply:
        argv = self.command(bmc, action)
        # The rendered argv may hold the password: log the template instead.
        log.debug("running fence agent %s for %s (%s)", self.template[0], bmc, action)
        done = self._execute(argv, self.environment(bmc, action), action)
        if isinstance(done, _Reply):
            return done
        code = done.returncode
        if action == "status" and code in (AGENT_OK, AGENT_STATUS_OFF):
            state = "on" if code == AGENT_OK else "off"
            return _Reply(ok=True, state=state, message=f"exit code {code}")
        if action != "status" and code == AGENT_OK:
            return _Reply(ok=True, message=_one_line(done.stdout, bmc))
        output = _one_line(done.stderr.strip() or done.stdout.strip(), bmc)
        message = f"exit code {code}" + (f": {output}" if output else "")
        return _Reply(ok=False, problem="failed", message=message)
