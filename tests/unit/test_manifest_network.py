"""Networking in the manifest (issue 12): `ports`, `network`, http/tcp health checks.

The parsers are pure and tested by table and by property (the schema's regex and the
parser must agree on every string); the rules end to end, through `check_manifest`, with
the exact position and wording of every message.
"""

from __future__ import annotations

import ipaddress
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golem_deploy.manifest import check_manifest, load_manifest
from golem_deploy.manifest.model import (
    Healthcheck,
    HttpProbe,
    NetworkSpec,
    PortSpec,
    RunStep,
)
from golem_deploy.manifest.network import (
    CIDR_PATTERN,
    DEFAULT_CIDR,
    cidr_problem,
    host_capacity,
    hosts,
    instance_addresses,
    range_for,
    requestor_address,
)
from golem_deploy.manifest.ports import (
    PORT_PATTERN,
    PortSpecError,
    format_port,
    parse_port,
    port_problem,
    same_listener,
)
from golem_deploy.manifest.validate import schema

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
PAYLOAD = f"payload: {{image_hash: {HASH}}}"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    result = check_manifest(path)
    return [f"{d.line}:{d.column}: {d.message}" for d in result.diagnostics]


def hints(path: Path) -> list[str | None]:
    return [d.hint for d in check_manifest(path).diagnostics]


# --------------------------------------------------------------------------- ports


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        ("8000", PortSpec("127.0.0.1", None, 8000)),
        (8000, PortSpec("127.0.0.1", None, 8000)),
        ("8080:8000", PortSpec("127.0.0.1", 8080, 8000)),
        ("0.0.0.0:8080:8000", PortSpec("0.0.0.0", 8080, 8000)),
        ("10.1.2.3::80", PortSpec("10.1.2.3", None, 80)),
        ("8080:8000/tcp", PortSpec("127.0.0.1", 8080, 8000)),
        ("1:65535", PortSpec("127.0.0.1", 1, 65535)),
    ],
)
def test_port_forms(value: str | int, spec: PortSpec) -> None:
    assert parse_port(value) == spec
    assert parse_port(format_port(spec)) == spec
    assert re.search(PORT_PATTERN, str(value))


@pytest.mark.parametrize(
    ("value", "message", "hint"),
    [
        ("8080:80/udp", "'8080:80/udp': only TCP ports can be forwarded, not 'udp'", "/udp"),
        ("web", "'web': 'web' is not a port number", "HOST_PORT:PORT"),
        ("", "'': a port number is missing", "HOST_PORT:PORT"),
        ("8080:", "'8080:': a port number is missing", "HOST_PORT:PORT"),
        ("70000", "'70000': port 70000 is out of range 1..65535", "1 to 65535"),
        ("0:80", "'0:80': port 0 is out of range 1..65535", "leave HOST_PORT out"),
        ("08080:80", "'08080:80': '08080' has a leading zero", "write 8080"),
        ("1.2.3:80:80", "'1.2.3:80:80': '1.2.3' is not an IPv4 address", "127.0.0.1"),
        ("localhost:80:80", "'localhost:80:80': 'localhost' is not an IPv4 address", "0.0.0.0"),
        ("1:2:3:4", "'1:2:3:4': too many ':'", "IP:HOST_PORT:PORT"),
        ("::1:80:80", "'::1:80:80': IPv6 addresses are not supported", "127.0.0.1"),
        ("[::1]:80:80", "'[::1]:80:80': IPv6 addresses are not supported", "127.0.0.1"),
        ("8000-8010:8000", "'8000-8010:8000': port ranges are not supported", "each port"),
        (" 80", "' 80': ' 80' is not a port number", "PORT"),
    ],
)
def test_bad_ports_say_what_is_wrong(value: str, message: str, hint: str) -> None:
    with pytest.raises(PortSpecError) as info:
        parse_port(value)
    assert info.value.message == message
    assert hint in info.value.hint
    assert port_problem(value) == (message, info.value.hint)


PORTISH = st.text(alphabet="0123456789:./-abctpu[] \n\u0663", max_size=24)


@given(st.one_of(PORTISH, st.text(max_size=12)))
def test_the_schema_pattern_and_the_parser_agree(value: str) -> None:
    """Editors (the regex) and golem-deploy (the parser) accept exactly the same strings;
    Python's `$` also matches before a final newline, which only the parser rejects (the
    rules report it)."""
    accepted = port_problem(value) is None
    if value.endswith("\n"):
        assert not accepted
    else:
        assert accepted == (re.search(PORT_PATTERN, value) is not None)


@given(
    st.sampled_from(["127.0.0.1", "0.0.0.0", "10.0.0.7"]),
    st.none() | st.integers(1, 65535),
    st.integers(1, 65535),
)
def test_every_port_spec_prints_to_a_string_that_parses_back(
    host: str, host_port: int | None, port: int
) -> None:
    spec = PortSpec(host, host_port, port)
    assert parse_port(format_port(spec)) == spec
    assert re.search(PORT_PATTERN, format_port(spec))


def test_which_forwards_share_a_listener() -> None:
    local, every = PortSpec("127.0.0.1", 8080, 1), PortSpec("0.0.0.0", 8080, 2)
    assert same_listener(local, PortSpec("127.0.0.1", 8080, 3))
    assert same_listener(local, every) and same_listener(every, local)
    assert not same_listener(local, PortSpec("10.0.0.1", 8080, 1))
    assert not same_listener(local, PortSpec("127.0.0.1", 8081, 1))
    auto = PortSpec("127.0.0.1", None, 1)
    assert not same_listener(auto, auto)


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("10.8.0.0/24", None),
        ("0.0.0.0/0", None),
        ("10.8.0.0", ("'10.8.0.0' has no prefix length", "e.g. `cidr: 10.8.0.0/24`")),
        ("10.8.0/24", ("'10.8.0/24' is not an IPv4 network", "e.g. `cidr: 10.8.0.0/24`")),
        ("fd00::/64", ("'fd00::/64' is not an IPv4 network", "e.g. `cidr: 10.8.0.0/24`")),
        ("10.8.0.0/33", ("'10.8.0.0/33': the prefix length must be 0 to 32", "10.8.0.0/24")),
        ("10.8.0.5/24", ("'10.8.0.5/24' has host bits set", "did you mean 10.8.0.0/24?")),
    ],
)
def test_cidr_problems(value: str, problem: tuple[str, str] | None) -> None:
    found = cidr_problem(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found[0] == problem[0] and problem[1] in found[1]


@given(st.text(alphabet="0123456789./:af \n", max_size=20))
def test_the_cidr_pattern_rejects_only_what_the_parser_rejects(value: str) -> None:
    """The regex cannot see host bits; everything else it judges like the parser."""
    if cidr_problem(value) is None:
        assert re.search(CIDR_PATTERN, value)
    elif re.search(CIDR_PATTERN, value):
        assert value.endswith("\n") or "host bits" in (cidr_problem(value) or ("",))[0]


def test_capacity_and_the_range_that_fits() -> None:
    assert host_capacity("10.0.0.0/24") == 254
    assert host_capacity("10.0.0.0/30") == 2
    assert host_capacity("10.0.0.0/31") == 0 and host_capacity("10.0.0.0/32") == 0
    assert range_for(254, "10.8.0.0/24") == "10.8.0.0/24"
    assert range_for(255, "10.8.0.0/24") == "10.8.0.0/23"
    assert range_for(3, "10.8.0.8/29") == "10.8.0.8/29"
    assert range_for(7, "10.8.0.8/29") == "10.8.0.0/28"
    assert range_for(2**32, "10.8.0.0/24") is None


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize(
    ("top", "services", "cidr"),
    [
        ("", {"web": ""}, None),  # one service, nothing forwarded: no VPN
        ("", {"web": "", "db": ""}, DEFAULT_CIDR),  # two services talk over a VPN
        ("", {"web": 'ports: ["8080:80"]'}, DEFAULT_CIDR),  # forwarding needs one
        ("network: false", {"web": "", "db": ""}, None),
        ("network: true", {"web": ""}, DEFAULT_CIDR),
        ("network: {}", {"web": ""}, DEFAULT_CIDR),
        ("network: {cidr: 10.8.0.0/24}", {"web": ""}, "10.8.0.0/24"),
    ],
)
def test_when_a_deployment_gets_a_network(
    tmp_path: Path, top: str, services: dict[str, str], cidr: str | None
) -> None:
    lines = ["budget: 1", top, "services:"]
    for name, extra in services.items():
        lines += [f"  {name}:", f"    {PAYLOAD}", f"    {extra}"]
    path = tmp_path / "app.yaml"
    path.write_text("\n".join(lines) + "\n")
    m = load_manifest(path)
    assert m.network == (None if cidr is None else NetworkSpec(cidr))
    for spec in m.services.values():
        # On a VPN the demand asks for it; off it, nothing is added.
        assert ("vpn" in spec.payload.capabilities) == (cidr is not None)


def test_ports_and_probes_in_the_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        services:
          web:
            {PAYLOAD}
            ports: ["8080:8000", 9000, "0.0.0.0::443/tcp"]
            healthcheck: {{http: {{port: 8000}}, interval: 5s}}
          db:
            payload: {{image_hash: {HASH}, capabilities: [inet, vpn]}}
            healthcheck: {{tcp: 6379}}
          cron:
            {PAYLOAD}
            healthcheck: {{http: {{port: 80, path: /health}}}}
        """,
    )
    m = load_manifest(path)
    web, db, cron = m.services.values()
    assert web.ports == (
        PortSpec("127.0.0.1", 8080, 8000),
        PortSpec("127.0.0.1", None, 9000),
        PortSpec("0.0.0.0", None, 443),
    )
    assert web.healthcheck == Healthcheck(http=HttpProbe(8000, "/"), interval=5.0)
    assert web.healthcheck.run is None and web.healthcheck.tcp is None
    assert db.healthcheck == Healthcheck(tcp=6379)
    assert db.payload.capabilities == ("inet", "vpn")  # listed once, where the user put it
    assert web.payload.capabilities == ("vpn",)
    assert cron.healthcheck is not None and cron.healthcheck.http == HttpProbe(80, "/health")
    assert Healthcheck(run=RunStep(("/bin/true",))).run == RunStep(("/bin/true",))


def test_addresses_are_fixed_by_the_manifest(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        network: {{cidr: 10.8.0.0/28}}
        services:
          db: {{{PAYLOAD}, instances: 2}}
          idle: {{{PAYLOAD}, instances: 0}}
          web: {{{PAYLOAD}}}
        """,
    )
    m = load_manifest(path)
    assert requestor_address(m) == "10.8.0.1"
    assert instance_addresses(m) == {
        ("db", 0): "10.8.0.2",
        ("db", 1): "10.8.0.3",
        ("web", 0): "10.8.0.4",
    }
    assert hosts(m) == {
        "db": "10.8.0.2",
        "db-0": "10.8.0.2",
        "db-1": "10.8.0.3",
        "web": "10.8.0.4",
        "web-0": "10.8.0.4",
    }
    alone = write(tmp_path, f"budget: 1\nservices: {{a: {{{PAYLOAD}}}}}\n")
    single = load_manifest(alone)
    assert requestor_address(single) is None and instance_addresses(single) == {}


@given(st.lists(st.integers(0, 40), min_size=1, max_size=6), st.integers(20, 30))
def test_a_valid_range_holds_every_address(counts: list[int], prefix: int) -> None:
    """Whenever validation accepts the range, every instance has a distinct host address
    inside it, never the requestor's, the network's or the broadcast one."""
    import tempfile

    services = "".join(f"  s{i}: {{{PAYLOAD}, instances: {n}}}\n" for i, n in enumerate(counts))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_text(f"budget: 1\nnetwork: {{cidr: 10.0.0.0/{prefix}}}\nservices:\n{services}")
        result = check_manifest(path)
    fits = 1 + sum(counts) <= 2 ** (32 - prefix) - 2
    assert (result.manifest is not None) == fits, result.diagnostics
    if result.manifest is None:
        [d] = result.errors
        assert d.message.startswith("network.cidr: the network 10.0.0.0/") and d.hint
        return
    network = ipaddress.IPv4Network(f"10.0.0.0/{prefix}")
    usable = set(network.hosts()) - {network.network_address, network.broadcast_address}
    addresses = [ipaddress.IPv4Address(a) for a in instance_addresses(result.manifest).values()]
    requestor = ipaddress.IPv4Address(requestor_address(result.manifest))
    assert len(set(addresses)) == len(addresses) == sum(counts)
    assert requestor not in addresses
    assert set(addresses) | {requestor} <= usable


# --------------------------------------------------------------------------- the rules


def test_port_errors_point_at_each_bad_entry(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        services:
          web:
            {PAYLOAD}
            ports:
              - "8080:8000"
              - "8080:80/udp"
              - "1.2.3.4.5:80:80"
              - 0
              - 8.5
              - "0.0.0.0:8080:9000"
              - "8081:8000"
          db:
            {PAYLOAD}
            ports: ["127.0.0.1:8081:6379", "8000", "8000"]
        """,
    )
    assert problems(path) == [
        "7:9: services.web.ports[1]: '8080:80/udp': only TCP ports can be forwarded, not 'udp'",
        "8:9: services.web.ports[2]: '1.2.3.4.5:80:80': '1.2.3.4.5' is not an IPv4 address",
        "9:9: services.web.ports[3]: must be at least 1, not 0",
        "10:9: services.web.ports[4]: must be a string or an integer, not a number",
        "11:9: services.web.ports[5]: 0.0.0.0:8080 is already taken by 127.0.0.1:8080 in "
        "services.web.ports[0] (0.0.0.0 listens on every address)",
        "15:13: services.db.ports[0]: 127.0.0.1:8081 is already taken by 127.0.0.1:8081 in "
        "services.web.ports[6]",
    ]
    assert "remove '/udp'" in (hints(path)[0] or "")
    assert "pick another HOST_PORT" in (hints(path)[-1] or "")


def test_a_trailing_newline_slips_past_the_regex_but_not_the_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        network: {{cidr: "10.0.0.0/24\\n"}}
        services:
          web: {{{PAYLOAD}, ports: ["8080\\n"]}}
        """,
    )
    found = problems(path)
    assert found == [
        "2:17: network.cidr: '10.0.0.0/24\\n': the prefix length must be 0 to 32",
        "4:98: services.web.ports[0]: '8080\\n': '8080\\n' is not a port number",
    ]


def test_network_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        network: {{cidr: 10.8.0.5/24, mask: 24}}
        services:
          web: {{{PAYLOAD}}}
        """,
    )
    assert problems(path) == [
        "2:17: network.cidr: '10.8.0.5/24' has host bits set",
        "2:30: network: unknown key 'mask'",
    ]
    assert hints(path)[0] == "did you mean 10.8.0.0/24?"
    path.write_text(f"budget: 1\nnetwork: yes\nservices: {{web: {{{PAYLOAD}}}}}\n")
    assert problems(path) == ["2:10: network: must be a boolean or a mapping, not a string"]
    assert "network: true" in (hints(path)[0] or "")
    # An unusable range is reported once, not again as "there is no network".
    path.write_text(
        f"budget: 1\nnetwork: {{cidr: 10.8.0}}\nservices: {{web: {{{PAYLOAD}, ports: ['80']}}}}\n"
    )
    assert problems(path) == ["2:17: network.cidr: '10.8.0' has no prefix length"]


def test_a_range_too_small_says_what_would_fit(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        network: {{cidr: 10.8.0.0/29}}
        services:
          web: {{{PAYLOAD}, instances: 4}}
          db: {{{PAYLOAD}, instances: 2}}
        """,
    )
    assert problems(path) == [
        "2:17: network.cidr: the network 10.8.0.0/29 holds 6 hosts, but this deployment "
        "needs 7 (the requestor and 6 instances)"
    ]
    assert hints(path) == ["use a larger range: `cidr: 10.8.0.0/28`"]
    # The default range, implied: the error is at `services`, the hint names the key.
    path.write_text(
        f"budget: 1\nservices:\n  web: {{{PAYLOAD}, instances: 200}}\n"
        f"  db: {{{PAYLOAD}, instances: 100}}\n"
    )
    assert problems(path) == [
        "2:1: services: the network 192.168.0.0/24 holds 254 hosts, but this deployment "
        "needs 301 (the requestor and 300 instances)"
    ]
    assert hints(path) == [
        "192.168.0.0/24 is the default range; set a larger one: `network: {cidr: 192.168.0.0/23}`"
    ]
    path.write_text(f"budget: 1\nnetwork: true\nservices: {{w: {{{PAYLOAD}, instances: 254}}}}\n")
    assert problems(path) == [
        "2:1: network: the network 192.168.0.0/24 holds 254 hosts, but this deployment "
        "needs 255 (the requestor and 254 instances)"
    ]


def test_what_needs_the_network(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        network: false
        services:
          web:
            {PAYLOAD}
            ports: ["8080:80"]
            healthcheck: {{http: {{port: 80}}}}
          db:
            {PAYLOAD}
            healthcheck: {{tcp: 6379}}
        """,
    )
    assert problems(path) == [
        "6:5: services.web.ports: forwarding ports needs the network, but `network: false` "
        "turns the VPN off",
        "7:19: services.web.healthcheck.http: an http health check needs the network, but "
        "`network: false` turns the VPN off",
        "10:19: services.db.healthcheck.tcp: a tcp health check needs the network, but "
        "`network: false` turns the VPN off",
    ]
    assert all((h or "").startswith("remove `network: false`") for h in hints(path))
    # One service, no ports: no network unless asked for, so an http check says how.
    path.write_text(
        f"budget: 1\nservices:\n  web:\n    {PAYLOAD}\n    healthcheck: {{http: {{port: 80}}}}\n"
    )
    assert problems(path) == [
        "5:19: services.web.healthcheck.http: an http health check needs the network, but "
        "there is no network"
    ]
    assert (hints(path)[0] or "").startswith("add `network: true` at the top level")


def test_a_health_check_has_exactly_one_probe(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        network: true
        services:
          a:
            {PAYLOAD}
            healthcheck:
              interval: 5s
          b:
            {PAYLOAD}
            healthcheck:
              run: "true"
              tcp: 80
          c:
            {PAYLOAD}
            healthcheck:
              http: {{path: health}}
              tcp: 0
          d:
            {PAYLOAD}
            healthcheck: {{http: {{port: 80, path: /}}}}
        """,
    )
    assert problems(path) == [
        "6:5: services.a.healthcheck: needs one of `run`, `http` or `tcp`",
        "12:7: services.b.healthcheck: give only one of `run`, `http` or `tcp`, not `run` and "
        "`tcp`",
        "16:7: services.c.healthcheck.http: missing required key 'port'",
        "16:20: services.c.healthcheck.http.path: 'health' must start with /, e.g. /health",
        "17:7: services.c.healthcheck: give only one of `run`, `http` or `tcp`, not `http` and "
        "`tcp`",
        "17:12: services.c.healthcheck.tcp: must be at least 1, not 0",
    ]
    assert "give exactly one of `run: COMMAND`" in (hints(path)[0] or "")


def test_host_names_must_not_collide(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        services:
          web: {{{PAYLOAD}, instances: 2}}
          web-1: {{{PAYLOAD}}}
          Web: {{{PAYLOAD}}}
          web-2: {{{PAYLOAD}}}
        """,
    )
    assert problems(path) == [
        "4:3: services.web-1: host name 'web-1' on the network is taken by service 'web'",
        "5:3: services.Web: host name 'Web' on the network is taken by service 'web'",
    ]
    # Off the network the names resolve nowhere, so they cannot collide.
    path.write_text(path.read_text().replace("budget: 1\n", "budget: 1\nnetwork: false\n"))
    assert problems(path) == []


def test_the_schema_documents_the_new_keys() -> None:
    defs = schema()["$defs"]
    network = schema()["properties"]["network"]
    assert network["properties"]["cidr"]["default"] == DEFAULT_CIDR
    assert network["properties"]["cidr"]["pattern"] == CIDR_PATTERN
    assert defs["port_forward"]["pattern"] == PORT_PATTERN
    service = defs["service"]["properties"]
    assert service["ports"]["default"] == []
    http = service["healthcheck"]["properties"]["http"]
    assert http["properties"]["path"]["default"] == HttpProbe(1).path
    for example in (*defs["port_forward"]["examples"], *service["ports"]["examples"][1]):
        parse_port(example)
