"""Forwarded ports in docker compose's short syntax: parsing, the one error message per
mistake, and when two forwards would listen on the same local address.

    "8000"                 a free local port (chosen at `up`) -> port 8000 of the instances
    "8080:8000"            127.0.0.1:8080 -> 8000
    "0.0.0.0:8080:8000"    every interface, port 8080 -> 8000
    "127.0.0.1::8000"      a free port on that address -> 8000
    8000                   (an integer) the same as "8000"

An optional "/tcp" suffix is accepted (compose allows it); any other protocol is an error,
because forwarding goes through the VPN's TCP sockets. `PORT_PATTERN` says the same in the
schema's regex dialect so editors flag mistakes while typing; a test checks that the pattern
and `port_problem` agree on every string.
"""

from __future__ import annotations

import ipaddress
import re

from golem_deploy.manifest.model import PortSpec

DEFAULT_HOST = "127.0.0.1"

_NUMBER = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4_PATTERN = rf"{_OCTET}(\.{_OCTET}){{3}}"
# [0-9], not \d: in Python's regexes \d also matches other scripts' digits.
PORT_PATTERN = rf"^(({IPV4_PATTERN}:)?{_NUMBER}:|{IPV4_PATTERN}::)?{_NUMBER}(/tcp)?$"

FORMS_HINT = (
    'write PORT ("8000"), HOST_PORT:PORT ("8080:8000"), IP:HOST_PORT:PORT '
    '("0.0.0.0:8080:8000") or IP::PORT'
)
RANGE_HINT = 'ports are 1 to 65535; leave HOST_PORT out ("8000") to have a free local port chosen'
ADDRESS_HINT = "bind to 127.0.0.1 (this machine only, the default) or 0.0.0.0 (every interface)"


class PortSpecError(ValueError):
    """A port spec that cannot be used: `message` says what is wrong, `hint` how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse_port(value: str | int) -> PortSpec:
    """The PortSpec of one `ports` entry; PortSpecError says what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PortSpecError(f"{value!r} is not a port", FORMS_HINT)
    if isinstance(value, int):
        return PortSpec(DEFAULT_HOST, None, _number(str(value), repr(value)))
    shown = repr(value)
    text = value
    if "/" in text:
        text, protocol = text.split("/", 1)
        if protocol != "tcp":
            raise PortSpecError(
                f"{shown}: only TCP ports can be forwarded, not {protocol!r}",
                f"remove '/{protocol}'; forwarding carries TCP connections over the VPN",
            )
    if "[" in text or text.count(":") > 2:
        if "[" in text or _is_ipv6(text.rsplit(":", 2)[0]):
            raise PortSpecError(f"{shown}: IPv6 addresses are not supported", ADDRESS_HINT)
        raise PortSpecError(f"{shown}: too many ':'", FORMS_HINT)
    parts = text.split(":")
    host = DEFAULT_HOST
    if len(parts) == 3:
        host = parts[0]
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise PortSpecError(f"{shown}: {host!r} is not an IPv4 address", ADDRESS_HINT) from None
        parts = parts[1:]
        if parts[0] == "":
            return PortSpec(host, None, _number(parts[1], shown))
    if len(parts) == 2:
        return PortSpec(host, _number(parts[0], shown), _number(parts[1], shown))
    return PortSpec(host, None, _number(parts[0], shown))


def port_problem(value: str | int) -> tuple[str, str] | None:
    """(message, hint) when `value` is not a valid port spec, else None."""
    try:
        parse_port(value)
    except PortSpecError as e:
        return e.message, e.hint
    return None


def format_port(spec: PortSpec) -> str:
    """The spec in its full form, which parses back to the same PortSpec."""
    host_port = "" if spec.host_port is None else str(spec.host_port)
    return f"{spec.host}:{host_port}:{spec.port}"


def same_listener(a: PortSpec, b: PortSpec) -> bool:
    """Whether two forwards would listen on the same local address and port (0.0.0.0
    takes the port on every address). Ports chosen at `up` never collide."""
    if a.host_port is None or a.host_port != b.host_port:
        return False
    return a.host == b.host or "0.0.0.0" in (a.host, b.host)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _number(text: str, shown: str) -> int:
    if "-" in text and re.fullmatch("[0-9]+-[0-9]+", text):
        raise PortSpecError(f"{shown}: port ranges are not supported", "list each port on its own")
    if not re.fullmatch("[0-9]+", text):
        what = "a port number is missing" if text == "" else f"{text!r} is not a port number"
        raise PortSpecError(f"{shown}: {what}", FORMS_HINT)
    if len(text) > 1 and text.startswith("0"):
        number = int(text)
        if number == 0:
            raise PortSpecError(f"{shown}: port 0 is out of range 1..65535", RANGE_HINT)
        raise PortSpecError(f"{shown}: {text!r} has a leading zero", f"write {number}")
    number = int(text)
    if not 1 <= number <= 65535:
        raise PortSpecError(f"{shown}: port {number} is out of range 1..65535", RANGE_HINT)
    return number
