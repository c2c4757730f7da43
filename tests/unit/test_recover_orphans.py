"""Which demands and agreements recovery knows from a journal, to tell an orphan."""

from __future__ import annotations

from datetime import UTC, datetime

from golem_deploy.supervisor.recover_orphans import journaled_demands


def test_subscriptions_per_service_the_first_ones_time_and_every_named_agreement() -> None:
    demands = journaled_demands(
        [
            {"ts": 100.0, "kind": "DeploymentStarted", "name": "x"},
            {"ts": 105.0, "kind": "DemandSubscribed", "service": "db", "subscription_id": "s1"},
            {"ts": 101.5, "kind": "DemandSubscribed", "service": "web", "subscription_id": "s2"},
            {"ts": 110.0, "kind": "DemandSubscribed", "service": "web", "subscription_id": "s3"},
            {"ts": 111.0, "kind": "AgreementCreated", "agreement_id": "a1"},
            {"ts": 112.0, "kind": "AgreementOrphaned", "agreement_id": "a2", "service": "web"},
            {"ts": 113.0, "kind": "AgreementRejected", "agreement_id": "a3"},
            {"ts": 114.0, "kind": "DemandUnsubscribed", "service": "web", "subscription_id": "s3"},
        ]
    )
    assert demands.subscriptions == {"db": {"s1"}, "web": {"s2", "s3"}}
    assert demands.since == datetime.fromtimestamp(101.5, UTC)
    assert demands.known == {"a1", "a2", "a3"}


def test_a_journal_without_demands_has_nothing_to_search() -> None:
    demands = journaled_demands([{"ts": 1.0, "kind": "DeploymentStarted"}, {"kind": 3}])
    assert demands.since is None and demands.subscriptions == {}
