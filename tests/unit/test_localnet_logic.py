"""Pure logic of the local network: faults, offers, prices and bills, API events, daemon env."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from golem_deploy.localnet import LocalNetInfo
from golem_deploy.localnet.faults import FaultsError, load_faults, parse_duration, parse_faults
from golem_deploy.localnet.node import CHAINS, NodeConfig
from golem_deploy.localnet.provider import loops
from golem_deploy.localnet.provider.api import ProviderApiError
from golem_deploy.localnet.provider.events import (
    ActivityEvent,
    Proposal,
    ProposedAgreement,
    json_objects,
    parse_activity_event,
    parse_agreement_event,
    parse_offer_event,
)
from golem_deploy.localnet.provider.loops import (
    EventCursor,
    poll_forever,
    poll_in_lanes,
    retried,
    slot_delay,
)
from golem_deploy.localnet.provider.terms import (
    CAPACITY,
    Resources,
    Tariff,
    Usage,
    amount_str,
    debit_note_interval,
    demand_requirements,
    invoice_amount,
    is_final,
    linear_cost,
    offer_properties,
    parse_mounts,
    payable_now,
    payment_timeout,
    price_coeffs,
    rejection,
)


def test_faults_file_is_parsed_into_typed_faults(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        "local-provider-2:\n"
        "  reject_agreements: true\n"
        "  die_after: 10s\n"
        "  slow_start: 500ms\n"
        "  slow_negotiation: 2s\n"
        "  fail_commands_matching: '^/bin/false'\n"
        "local-provider-3: {never_invoice: true, fail_activity_create: true}\n"
        "local-provider-4: {debit_notes_every: 1s}\n"
    )
    faults = load_faults(path)
    assert faults["local-provider-4"].debit_notes_every == 1.0
    assert faults["local-provider-3"].debit_notes_every is None
    second = faults["local-provider-2"]
    assert second.reject_agreements and second.die_after == 10.0 and second.slow_start == 0.5
    assert second.slow_negotiation == 2.0 and faults["local-provider-3"].slow_negotiation == 0.0
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
        "local-provider-3: {debit_notes_every: 0s}\n"
    )
    with pytest.raises(FaultsError) as failure:
        load_faults(path)
    message = failure.value.message
    assert f"{path}:2:3: local-provider-1.die_after" in message
    assert f"{path}:3:3: local-provider-1.explode: unknown fault" in message
    assert f"{path}:4:1: 'provider-9' is not a provider name" in message
    assert "local-provider-3.debit_notes_every: expected a duration longer than 0" in message
    assert "local-provider-2.reject_agreements: expected true or false" in message
    assert "local-provider-2.fail_commands_matching" in message


def test_die_when_names_the_absolute_path_of_a_trigger_file(tmp_path: Path) -> None:
    faults = parse_faults({"local-provider-1": {"die_when": "/tmp/kill-1"}})
    assert faults["local-provider-1"].die_when == Path("/tmp/kill-1")
    assert faults["local-provider-1"].die_after is None
    for bad in ("kill-1", 5, True):
        with pytest.raises(FaultsError, match="die_when: expected the absolute path"):
            parse_faults({"local-provider-1": {"die_when": bad}})


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
    key = "golem.com.scheme.payu.debit-note.interval-sec?"
    assert debit_note_interval({}, offer, 5.0) == 120.0  # the offer's own: ya-provider's
    assert debit_note_interval({}, {}, 5.0) == 5.0  # the agent's default
    assert debit_note_interval({key: 60}, offer, 5.0) == 60.0  # yapapi's minimum
    assert debit_note_interval({key: 2}, offer, 5.0) == 2.0  # asked for: as ya-provider
    assert debit_note_interval({key: 0.2}, offer, 5.0) == 1.0  # whole seconds, at least 1


def test_payable_notes_come_once_per_payment_timeout_and_at_the_end() -> None:
    key = "golem.com.scheme.payu.payment-timeout-sec?"
    assert payment_timeout({}) is None and payment_timeout({key: 20}) == 20.0
    assert not payable_now(final=True, now=100.0, last_payable=0.0, timeout=None)
    assert not payable_now(final=False, now=19.0, last_payable=0.0, timeout=20.0)
    assert payable_now(final=False, now=20.0, last_payable=0.0, timeout=20.0)
    assert payable_now(final=True, now=1.0, last_payable=0.0, timeout=20.0)


def test_demands_are_rejected_with_a_reason_and_capacity_rejections_are_not_final() -> None:
    demand: dict[str, object] = {
        "golem.node.debug.subnet": "local-dev",
        "golem.com.payment.chosen-platform": "erc20-holesky-tglm",
    }
    small = "(golem.inf.cpu.threads>=4)"
    assert rejection(demand, small, reserved=Resources(), shutting_down=False) is None
    other_subnet = {**demand, "golem.node.debug.subnet": "public"}
    reason = rejection(other_subnet, small, reserved=Resources(), shutting_down=False)
    assert reason is not None and reason.startswith("subnet mismatch") and is_final(reason)
    polygon = {**demand, "golem.com.payment.chosen-platform": "erc20-polygon-glm"}
    reason = rejection(polygon, small, reserved=Resources(), shutting_down=False)
    assert reason is not None and "no common payment platform" in reason
    huge = "(golem.inf.cpu.threads>=64)"
    reason = rejection(demand, huge, reserved=Resources(), shutting_down=False)
    assert reason is not None and reason.startswith("insufficient resources")
    busy = Resources(CAPACITY.threads - 2, 0, 0)
    reason = rejection(demand, small, reserved=busy, shutting_down=False)
    assert reason is not None and reason.startswith("over capacity") and not is_final(reason)
    reason = rejection(demand, small, reserved=Resources(), shutting_down=True)
    assert reason is not None and not is_final(reason)
    bad_mounts = {**demand, "golem_deploy.local.mounts": json.dumps({"data": "/srv"})}
    reason = rejection(bad_mounts, small, reserved=Resources(), shutting_down=False)
    assert reason is not None and "not absolute" in reason


def test_debit_notes_and_invoices_bill_the_agreed_tariff() -> None:
    tariff = Tariff.from_offer(offer_properties(2, "local-provider-2", "0x2"))
    assert tariff.coeffs == (0.00015, 0.00003, 0.001)
    assert tariff.usage_vector == ("golem.usage.cpu_sec", "golem.usage.duration_sec")
    usage = Usage(cpu_sec=2.0, duration_sec=100.0)
    # cumulative: 0.00015*2 + 0.00003*100 + 0.001 start
    assert tariff.cost(usage) == Decimal("0.0003") + Decimal("0.003") + Decimal("0.001")
    assert tariff.counters(Usage(cpu_sec=1.23456789, duration_sec=3.0)) == [1.234568, 3.0]
    assert tariff.cost(Usage()) == Decimal("0.001")  # the start price alone
    # a tariff whose vector lists only duration bills and reports only duration
    by_time = Tariff((0.5, 0.0), ("golem.usage.duration_sec",))
    assert by_time.cost(usage) == Decimal(50) and by_time.counters(usage) == [100.0]
    assert invoice_amount([Decimal("0.0043"), Decimal("0.001")]) == "0.0053"
    assert invoice_amount([]) == "0"
    with pytest.raises(ValueError, match="no valid"):
        Tariff.from_offer({"golem.com.pricing.model.linear.coeffs": ["x"]})


def test_provider_api_events_parse_into_typed_values() -> None:
    offer_event = parse_offer_event(
        "sub-1",
        {
            "eventType": "AgreementEvent",
            "agreement": {
                "agreementId": "a1",
                "demand": {"properties": {"k": 1}, "constraints": "(x=1)", "requestorId": "0xR"},
                "offer": {"properties": {"o": 2}},
                "validTo": "2026-11-28T04:50:29.722646123Z",
            },
        },
    )
    assert isinstance(offer_event, ProposedAgreement)
    assert offer_event.requestor_id == "0xR" and offer_event.demand == {"k": 1}
    assert offer_event.offer == {"o": 2} and offer_event.demand_constraints == "(x=1)"
    assert offer_event.valid_to is not None and offer_event.valid_to.microsecond == 722646
    proposal = parse_offer_event(
        "sub-1", {"eventType": "ProposalEvent", "proposal": {"proposalId": "P-1"}}
    )
    assert isinstance(proposal, Proposal) and proposal.subscription_id == "sub-1"
    assert proposal.properties == {} and proposal.issuer_id is None
    assert parse_offer_event("sub-1", {"eventType": "PropertyQueryEvent"}) is None
    with pytest.raises(KeyError):
        parse_offer_event("sub-1", {"eventType": "ProposalEvent", "proposal": {}})
    activity = parse_activity_event(
        {"activityId": "x", "agreementId": "a1", "eventType": {"CreateActivity": {}}}
    )
    assert (activity.kind, activity.event_date) == ("CreateActivity", "")
    terminated = parse_agreement_event(
        {"agreementId": "a1", "eventType": "AgreementTerminatedEvent", "reason": {"message": "bye"}}
    )
    assert terminated.reason == "bye" and terminated.kind == "AgreementTerminatedEvent"
    assert json_objects([{"a": 1}, 3, "x"]) == [{"a": 1}] and json_objects(None) == []


def test_event_cursor_advances_and_drops_events_seen_before() -> None:
    cursor = EventCursor()
    start = cursor.after
    first = ActivityEvent("x", "a", "CreateActivity", "2999-01-01T00:00:00.000001Z")
    second = ActivityEvent("x", "a", "DestroyActivity", "2999-01-01T00:00:01.000000Z")

    def key(event: ActivityEvent) -> tuple[str, str]:
        return (event.activity_id, event.kind)

    assert cursor.fresh([first], key) == [first]
    assert cursor.after == first.event_date > start
    # yagna returns events after the cursor again when they share a timestamp
    assert cursor.fresh([first, second], key) == [second]
    assert cursor.after == second.event_date
    undated = ActivityEvent("y", "a", "CreateActivity", "")
    assert cursor.fresh([undated], key) == [undated] and cursor.after == second.event_date


@pytest.mark.anyio
async def test_the_poll_loop_survives_a_failed_poll_and_stops_when_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loops, "POLL_BACKOFF", 0.0)
    answers: list[list[int] | ProviderApiError] = [
        ProviderApiError("GET /events", None, "connection refused"),
        [1, 2],
        ProviderApiError("GET /events", 500, "oops"),
        [3],
    ]
    handled: list[int] = []

    async def poll() -> list[int]:
        answer = answers.pop(0)
        if isinstance(answer, ProviderApiError):
            raise answer
        return answer

    await poll_forever("test events", poll, handled.append, until=lambda: not answers)
    assert handled == [1, 2, 3]


@pytest.mark.anyio
async def test_retried_calls_again_after_failures_and_gives_up_with_the_last_error() -> None:
    calls: list[int] = []
    waits: list[int] = []

    async def flaky() -> str:
        calls.append(len(calls))
        if len(calls) < 3:
            raise ProviderApiError("POST /send", 408, "busy")
        return "sent"

    assert await retried("send", flaky, attempts=4, delay=lambda n: waits.append(n) or 0) == "sent"
    assert calls == [0, 1, 2] and waits == [0, 1]

    async def down() -> str:
        raise ProviderApiError("POST /send", None, "refused")

    with pytest.raises(ProviderApiError, match="no answer"):
        await retried("send", down, attempts=2, delay=lambda n: 0)


def test_lanes_are_sent_at_evenly_spread_phases_of_yagnas_check_period() -> None:
    # 3 lanes of a 0.75 s period: phases 0, 0.25, 0.5 s after the origin (100.0)
    assert slot_delay(100.0, 100.0, 0, 3, 0.75) == 0.0
    assert slot_delay(100.0, 100.0, 1, 3, 0.75) == pytest.approx(0.25)
    assert slot_delay(100.0, 100.0, 2, 3, 0.75) == pytest.approx(0.5)
    # many periods later, lane 1 just before its phase waits for it
    assert slot_delay(100.0 + 40 * 0.75 + 0.2, 100.0, 1, 3, 0.75) == pytest.approx(0.05)
    # a lane whose poll just ended on its phase (a little past it) goes now ...
    assert slot_delay(100.0 + 0.75 + 0.26, 100.0, 1, 3, 0.75) == 0.0
    # ... one well past it waits for the next turn
    assert slot_delay(100.0 + 0.75 + 0.45, 100.0, 1, 3, 0.75) == pytest.approx(0.55)
    # never more than one period
    for step in range(200):
        assert 0.0 <= slot_delay(step * 0.0137, 0.0, step % 3, 3, 0.75) < 0.75


def _key(event: ActivityEvent) -> tuple[str, str]:
    return (event.activity_id, event.kind)


@pytest.mark.anyio
async def test_lanes_poll_at_once_and_hand_each_event_over_once() -> None:
    cursor = EventCursor()
    created = ActivityEvent("x", "a", "CreateActivity", "2999-01-01T00:00:00.000001Z")
    destroyed = ActivityEvent("x", "a", "DestroyActivity", "2999-01-01T00:00:01.000000Z")
    in_flight = 0
    all_three = anyio.Event()
    answered = 0
    enough = anyio.Event()
    handled: list[ActivityEvent] = []

    async def poll() -> list[ActivityEvent]:
        nonlocal in_flight, answered
        in_flight += 1
        if in_flight == 3:
            all_three.set()
        await all_three.wait()  # returns only once three polls wait at the same time
        answered += 1
        if answered >= 9:
            enough.set()
        return cursor.fresh([created, destroyed], _key)  # every lane gets both again

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: poll_in_lanes("test", poll, handled.append, lanes=3, period=0.03))
            await enough.wait()
            tg.cancel_scope.cancel()
    assert handled == [created, destroyed]
