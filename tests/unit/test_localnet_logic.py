"""Pure logic of the local network: faults files, offers and prices, daemon environment."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from golem_deploy.localnet import LocalNetInfo
from golem_deploy.localnet.faults import FaultsError, load_faults, parse_duration, parse_faults
from golem_deploy.localnet.node import CHAINS, NodeConfig
from golem_deploy.localnet.provider import (
    CAPACITY,
    Agreement,
    Resources,
    amount_str,
    demand_requirements,
    linear_cost,
    offer_properties,
    parse_mounts,
    price_coeffs,
)


def test_faults_file_is_parsed_into_typed_faults(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        "local-provider-2:\n"
        "  reject_agreements: true\n"
        "  die_after: 10s\n"
        "  slow_start: 500ms\n"
        "  fail_commands_matching: '^/bin/false'\n"
        "local-provider-3: {never_invoice: true, fail_activity_create: true}\n"
    )
    faults = load_faults(path)
    second = faults["local-provider-2"]
    assert second.reject_agreements and second.die_after == 10.0 and second.slow_start == 0.5
    assert second.fail_commands_matching is not None
    assert second.fail_commands_matching.search("/bin/false x")
    assert not second.never_invoice
    assert faults["local-provider-3"].never_invoice
    assert faults["local-provider-3"].fail_activity_create


def test_every_problem_of_a_faults_file_is_reported_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        "local-provider-1:\n  die_after: soon\n  explode: true\nprovider-9: {}\n"
        "local-provider-2: {reject_agreements: 'yes', fail_commands_matching: '('}\n"
    )
    with pytest.raises(FaultsError) as failure:
        load_faults(path)
    message = failure.value.message
    assert f"{path}:2:3: local-provider-1.die_after" in message
    assert f"{path}:3:3: local-provider-1.explode: unknown fault" in message
    assert f"{path}:4:1: 'provider-9' is not a provider name" in message
    assert "local-provider-2.reject_agreements: expected true or false" in message
    assert "local-provider-2.fail_commands_matching" in message


def test_faults_file_must_be_a_mapping_of_valid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text("- local-provider-1\n")
    with pytest.raises(FaultsError, match="must map provider names"):
        load_faults(path)
    path.write_text("a: [\n")
    with pytest.raises(FaultsError, match="not valid YAML"):
        load_faults(path)
    assert parse_faults(None) == {}


@pytest.mark.parametrize(
    ("text", "seconds"), [(10, 10.0), (2.5, 2.5), ("500ms", 0.5), ("3s", 3.0), ("1.5m", 90.0)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1s", True, "10 days"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_offers_have_float_prices_that_differ_per_provider() -> None:
    coeffs = [price_coeffs(k) for k in (1, 2, 3, 4)]
    assert len(set(coeffs)) == 4
    assert price_coeffs(2) == price_coeffs(2)  # deterministic
    offer = offer_properties(2, "local-provider-2", "0xABC")
    assert all(isinstance(c, float) for c in offer["golem.com.pricing.model.linear.coeffs"])
    assert len(offer["golem.com.pricing.model.linear.coeffs"]) == 3
    assert offer["golem.com.payment.platform.erc20-holesky-tglm.address"] == "0xabc"
    assert offer["golem.node.id.name"] == "local-provider-2"
    # below yapapi's default caps (0.2 per cpu-second, 0.1 per second, 1.0 start)
    cpu, duration, start = price_coeffs(10)
    assert cpu < 0.2 and duration < 0.1 and start < 1.0


def test_demand_requirements_come_from_constraints_with_yapapi_defaults() -> None:
    constraints = (
        "(&(golem.inf.mem.gib>=4.0)\n\t(golem.inf.storage.gib>=10)\n\t"
        "(golem.inf.cpu.threads>=3)\n\t(golem.runtime.name=vm))"
    )
    assert demand_requirements(constraints) == Resources(3.0, 4.0, 10.0)
    assert demand_requirements("(golem.runtime.name=vm)") == Resources(1.0, 0.5, 2.0)
    needed = demand_requirements(constraints)
    rest = Resources(CAPACITY.threads - needed.threads, 0, 0)
    assert (needed + rest).fits_in(CAPACITY)
    assert not (needed + rest + Resources(1, 0, 0)).fits_in(CAPACITY)


def test_cost_is_linear_in_usage_and_printed_as_a_plain_decimal() -> None:
    cost = linear_cost(
        [0.0001, 0.00002, 0.001],
        ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
        {"golem.usage.cpu_sec": 2.0, "golem.usage.duration_sec": 100.0},
    )
    assert cost == Decimal("0.0002") + Decimal("0.002") + Decimal("0.001")
    assert amount_str(cost) == "0.0032"
    assert amount_str(Decimal("1E-7")) == "0.0000001"
    assert amount_str(Decimal(0)) == "0"


def test_mounts_come_from_the_demand_as_json() -> None:
    props = {"golem_deploy.local.mounts": json.dumps({"/data": "/srv/data"})}
    assert parse_mounts(props) == {"/data": Path("/srv/data")}
    assert parse_mounts({}) == {}
    with pytest.raises(ValueError, match="not absolute"):
        parse_mounts({"golem_deploy.local.mounts": json.dumps({"data": "/srv"})})
    with pytest.raises(ValueError, match="not absolute"):
        parse_mounts({"golem_deploy.local.mounts": json.dumps({"/data": "srv"})})


def test_daemon_environment_is_offline_and_ignores_the_callers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://corporate-proxy:3128")
    monkeypatch.setenv("YAGNA_APPKEY", "users-own-key")
    monkeypatch.setenv("YA_NET_TYPE", "hybrid")
    config = NodeConfig(
        name="provider",
        data_dir=tmp_path,
        gsb_port=4711,
        api_port=4712,
        hub_port=4700,
        app_key="k",
        extra_env={"OFFER_BROADCAST_DELAY": "300ms"},
    )
    env = config.env()
    assert env["HTTP_PROXY"] == env["HTTPS_PROXY"] == "http://127.0.0.1:9"
    assert env["NO_PROXY"] == "127.0.0.1,localhost"
    assert env["YA_NET_TYPE"] == "central"
    assert env["CENTRAL_NET_HOST"] == "127.0.0.1:4700"
    assert env["GSB_URL"] == "tcp://127.0.0.1:4711"
    assert env["YA_CONSENT_STATS"] == "deny"
    assert env["YAGNA_DEV_SKIP_ALLOCATION_VALIDATION"] == "1"
    assert env["OFFER_BROADCAST_DELAY"] == "300ms"
    assert all(env[f"{chain}_GETH_ADDR"] == "http://127.0.0.1:8545" for chain in CHAINS)
    assert "YAGNA_APPKEY" not in env


def test_local_net_info_env_has_exactly_what_requestor_sdks_read() -> None:
    info = LocalNetInfo(
        api_url="http://127.0.0.1:1234",
        app_key="key",
        subnet="local-dev",
        payment_driver="erc20",
        payment_network="holesky",
        providers=[("local-provider-1", "0x1")],
        state_dir=Path("/tmp/x"),
        gftp_dir=Path("/tmp/x/bin"),
    )
    assert info.path_with_gftp("/usr/bin:/bin") == "/tmp/x/bin:/usr/bin:/bin"
    assert info.env() == {
        "YAGNA_API_URL": "http://127.0.0.1:1234",
        "YAGNA_APPKEY": "key",
        "YAGNA_SUBNET": "local-dev",
        "YAGNA_PAYMENT_DRIVER": "erc20",
        "YAGNA_PAYMENT_NETWORK": "holesky",
    }


def test_debit_notes_follow_the_interval_the_requestor_negotiated() -> None:
    offer = offer_properties(1, "local-provider-1", "0x1")

    def agreement(demand: dict[str, object]) -> Agreement:
        return Agreement("a", "0x2", demand, offer, Resources(), {})

    key = "golem.com.scheme.payu.debit-note.interval-sec?"
    assert agreement({}).debit_note_interval(5.0) == 5.0  # the offer's own interval
    assert agreement({key: 60}).debit_note_interval(5.0) == 60.0  # yapapi's MAP minimum
    assert agreement({key: 1}).debit_note_interval(5.0) == 5.0  # never faster than ours
