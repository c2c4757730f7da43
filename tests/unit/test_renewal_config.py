"""What renewals are configured with: the manifest's `lifetime` (beside `expiration`), and
the local providers' `max_agreement` / `reject_agreements_after` faults that exercise them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from golem_deploy.localnet.faults import FaultsError, parse_faults
from golem_deploy.localnet.provider.terms import expiration_too_late
from golem_deploy.manifest import check_manifest, load_manifest
from golem_deploy.manifest.dump import manifest_to_data
from golem_deploy.protocol import EXPIRATION

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


def write(tmp_path: Path, service_keys: str) -> Path:
    path = tmp_path / "app.yaml"
    text = f"""\
    budget: 1
    services:
      web:
        payload: {{image_hash: {HASH}}}
    """
    path.write_text(textwrap.dedent(text) + textwrap.indent(textwrap.dedent(service_keys), "    "))
    return path


def problems(path: Path) -> list[str]:
    return [
        f"{d.line}:{d.column}: {d.severity}: {d.message}" for d in check_manifest(path).diagnostics
    ]


def test_lifetime_defaults_to_until_down_and_expiration_stays_the_agreement(
    tmp_path: Path,
) -> None:
    spec = load_manifest(write(tmp_path, "expiration: 20s\n")).services["web"]
    assert spec.expiration == 20.0 and spec.lifetime is None


def test_lifetime_is_a_duration(tmp_path: Path) -> None:
    spec = load_manifest(write(tmp_path, "expiration: 30m\nlifetime: 2d\n")).services["web"]
    assert spec.lifetime == 2 * 86400.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0s", "6:15: error: services.web.lifetime: must be longer than 0s"),
        ("forever", "6:15: error: services.web.lifetime: 'forever' must be a duration"),
        ("-5", "6:15: error: services.web.lifetime:"),
    ],
)
def test_a_bad_lifetime_is_reported_at_its_value(tmp_path: Path, value: str, expected: str) -> None:
    found = problems(write(tmp_path, f"expiration: 20s\nlifetime: {value}\n"))
    assert any(p.startswith(expected) for p in found), found


def test_dump_keeps_the_lifetime_only_when_set(tmp_path: Path) -> None:
    with_lifetime = manifest_to_data(load_manifest(write(tmp_path, "lifetime: 12h\n")))
    assert with_lifetime["services"]["web"]["lifetime"] == "12h"
    without = manifest_to_data(load_manifest(write(tmp_path, "expiration: 1h\n")))
    assert "lifetime" not in without["services"]["web"]


def test_renewal_faults_are_parsed() -> None:
    faults = parse_faults(
        {"local-provider-1": {"max_agreement": "60s", "reject_agreements_after": 1}}
    )
    first = faults["local-provider-1"]
    assert first.max_agreement == 60.0 and first.reject_agreements_after == 1


@pytest.mark.parametrize("bad", [-1, True, "two", 1.5])
def test_reject_agreements_after_is_a_count(bad: object) -> None:
    with pytest.raises(FaultsError, match="reject_agreements_after: expected a number"):
        parse_faults({"local-provider-1": {"reject_agreements_after": bad}})


def test_a_provider_refuses_demands_expiring_beyond_its_max_agreement() -> None:
    now = 1_000_000.0
    in_20s = {EXPIRATION: int((now + 20) * 1000)}
    in_2m = {EXPIRATION: int((now + 120) * 1000)}
    assert expiration_too_late(in_20s, 60.0, now) is None
    why = expiration_too_late(in_2m, 60.0, now)
    assert why is not None and "at most 60s" in why and "120s" in why
    assert expiration_too_late({}, 60.0, now) is None  # nothing to check


def test_the_journal_follows_the_instance_holding_the_index_across_a_renewal() -> None:
    """A renewal's successor and retiring instance share (service, index): status after a
    crash must show the holder, and every agreement of both stays held until released."""
    from golem_deploy.supervisor import journal
    from golem_deploy.supervisor.held import held_from_plain, held_to_plain

    def change(old: str, new: str, renewal: str = "") -> dict[str, object]:
        return {
            "kind": "InstanceStateChanged",
            "service": "web",
            "index": 0,
            "old": old,
            "new": new,
            "renewal": renewal,
        }

    records = [
        {"kind": "AgreementCreated", "agreement_id": "a", "service": "web", "index": 0},
        change("starting", "running"),
        {"kind": "InstanceRenewing", "service": "web", "index": 0, "agreement_id": "a"},
        {"kind": "AgreementCreated", "agreement_id": "b", "service": "web", "index": 0},
        change("pending", "starting", "successor"),
        change("starting", "running", "successor"),
        {"kind": "InstanceRenewed", "service": "web", "index": 0, "renewals": 1},
        change("running", "stopping", "retiring"),
        change("stopping", "terminated", "retiring"),
    ]
    held = journal.fold(records)
    assert held.instance_states == {("web", 0): "running"}
    assert held.instance_renewals == {("web", 0): 1}
    assert set(held.agreements) == {"a", "b"}  # until AgreementTerminated: `down` ends both
    terminated = {"kind": "AgreementTerminated", "agreement_id": "a"}
    assert set(journal.fold([*records, terminated]).agreements) == {"b"}
    plain = held_to_plain(held)  # the compaction snapshot keeps the count
    assert held_from_plain(plain).instance_renewals == {("web", 0): 1}
