"""Turning one negotiated Draft proposal into an approved agreement (create, confirm, wait
for the provider's approval), and never leaving one behind when that fails or is cancelled.

Split out of market.py, which decides *which* Draft to sign; this module only signs it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine import orphans
from golem_deploy.protocol import NODE_NAME
from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import YagnaError, YagnaStatusError
from golem_deploy.yagna.models import Agreement, Proposal

__all__ = ["AgreementFailed", "SignedAgreement", "sign_draft"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedAgreement:
    agreement: Agreement
    proposal_id: str

    @property
    def agreement_id(self) -> str:
        return self.agreement.agreement_id

    @property
    def provider_id(self) -> str:
        return self.agreement.provider_id

    @property
    def provider_name(self) -> str:
        return self.agreement.provider_name


class AgreementFailed(Exception):
    """The provider did not approve: the caller avoids it and asks for another."""

    def __init__(self, provider_id: str, provider_name: str, reason: str) -> None:
        super().__init__(reason)
        self.provider_id = provider_id
        self.provider_name = provider_name
        self.reason = reason


async def sign_draft(
    client: YagnaClient,
    emit: Callable[[ev.EngineEvent], None],
    *,
    service: str,
    index: int,
    proposal: Proposal,
    expiration: datetime,
    approval_timeout: float,
    provider_name: str,
    orphan_watch: orphans.OrphanWatch | None = None,
) -> SignedAgreement | None:
    """An approved agreement from `proposal` (a provider's Draft); None when yagna refused
    to create it (the Draft went stale: try another); AgreementFailed when the provider did
    not approve. A created agreement that is not returned is terminated (shielded). When
    the answer to the create may have been lost, `orphan_watch` looks for the agreement
    yagna may hold anyway (engine/orphans.py)."""
    provider = proposal.issuer_id
    valid_to = expiration + timedelta(minutes=5)
    since = datetime.now(UTC)
    watch = orphan_watch if orphan_watch is not None else orphans.OrphanWatch()
    try:
        with watch.creating(provider) as created:
            agreement_id = await client.create_agreement(proposal.proposal_id, valid_to)
            created(agreement_id)
    except YagnaError as e:
        log.info("create agreement with %s failed: %s", provider_name, e)
        if orphan_watch is not None and orphans.answer_may_be_lost(e):
            await orphan_watch.sweep(client, service, provider, since, emit)
        return None
    try:
        return await _confirm(
            client, emit, agreement_id, proposal, service, index, approval_timeout
        )
    except BaseException:
        # cancelled (the instance was stopped) or failed: never leave it pending/approved
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(10),
            contextlib.suppress(YagnaError),
        ):
            await client.terminate_agreement(agreement_id, "Cancelled", "Cancelled")
            emit(
                ev.AgreementTerminated(
                    agreement_id=agreement_id,
                    provider_id=provider,
                    by="requestor",
                    reason="not used (not approved, or the instance was stopped)",
                )
            )
        raise


async def _confirm(
    client: YagnaClient,
    emit: Callable[[ev.EngineEvent], None],
    agreement_id: str,
    proposal: Proposal,
    service: str,
    index: int,
    approval_timeout: float,
) -> SignedAgreement:
    provider = proposal.issuer_id
    name = proposal.properties.get(NODE_NAME)  # the Draft carries the offer's properties
    provider_name = name if isinstance(name, str) else provider
    emit(
        ev.AgreementCreated(
            service=service,
            index=index,
            agreement_id=agreement_id,
            provider_id=provider,
            provider_name=provider_name,
        )
    )
    # The agreement as yagna holds it (both sides' properties: the agreed payment terms and
    # usage vector) is needed only once it is approved: read it while the provider approves,
    # not before confirming (one round trip less before every instance can start).
    fetched: list[Agreement | YagnaError] = []

    async def fetch() -> None:
        try:
            fetched.append(await client.get_agreement(agreement_id))
        except YagnaError as e:
            fetched.append(e)

    async with anyio.create_task_group() as tg:
        tg.start_soon(fetch)
        refusal = await _approval(client, agreement_id, approval_timeout)
        if refusal is not None:
            tg.cancel_scope.cancel()
    if refusal is not None:
        reason = f"agreement not approved: {refusal.detail}"
        emit(
            ev.AgreementRejected(
                service=service,
                index=index,
                agreement_id=agreement_id,
                provider_id=provider,
                reason=reason,
            )
        )
        raise AgreementFailed(provider, provider_name, reason) from refusal
    agreement = fetched[0]
    if isinstance(agreement, YagnaError):
        raise agreement  # approved, but unreadable: the caller terminates it
    return SignedAgreement(agreement, proposal.proposal_id)


async def _approval(
    client: YagnaClient, agreement_id: str, approval_timeout: float
) -> YagnaError | None:
    """Confirm the agreement and wait for the provider's approval; why not, or None."""
    try:
        await client.confirm_agreement(agreement_id)
        deadline = anyio.current_time() + approval_timeout
        while anyio.current_time() < deadline:
            remaining = max(1.0, math.ceil(deadline - anyio.current_time()))
            if await client.wait_for_approval(agreement_id, timeout=remaining):
                return None
        return YagnaStatusError(408, "not approved in time", "agreement approval")
    except YagnaError as e:
        return e
