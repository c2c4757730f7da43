"""`down` after a SIGKILL releases what yagna holds, also what the journal never saw.

A supervisor can die between yagna creating an activity and the journal recording it. The
agreement is in the journal; recovery must ask yagna for that agreement's activities and
destroy them, or yagna keeps the activity alive in the requestor's records forever.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from _localnet_requestor import with_requestor

from golem_deploy.localnet import LocalNetInfo
from golem_deploy.supervisor import journal, recover
from golem_deploy.supervisor.journal import Held, HeldAgreement, Journal

pytestmark = pytest.mark.localnet


async def _agreement_with_unjournaled_activity(info: LocalNetInfo) -> tuple[str, str]:
    session, requestor = await with_requestor(info)
    async with session:
        agreement_id = await requestor.one_agreement()
        activity_id = await requestor.create_activity(agreement_id)
        return agreement_id, activity_id


async def _state(info: LocalNetInfo, activity_id: str) -> str:
    session, requestor = await with_requestor(info)
    async with session:
        return str((await requestor.state(activity_id))["state"][0])


def test_recovery_destroys_an_activity_the_journal_never_saw(
    localnet: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info: LocalNetInfo = localnet(providers=1)  # type: ignore[operator]
    agreement_id, activity_id = anyio.run(_agreement_with_unjournaled_activity, info)
    held = Held(
        network_kind="yagna",
        api_url=info.api_url,
        agreements={agreement_id: HeldAgreement(agreement_id)},
    )
    monkeypatch.setenv("YAGNA_APPKEY", info.app_key)
    said: list[str] = []
    path = tmp_path / "journal.jsonl"
    with Journal(path) as jr:
        problems = recover.release(held, jr, progress=said.append, invoice_wait=0)

    assert problems == []
    assert anyio.run(_state, info, activity_id) == "Terminated"
    assert any(activity_id[:12] in line and "destroyed" in line for line in said), said
    assert journal.load(path).empty
