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
    agreement = await client.get_agreement(agreement_id)
    emit(
        ev.AgreementCreated(
            service=service,
            index=index,
            agreement_id=agreement_id,
            provider_id=provider,
            provider_name=agreement.provider_name,
        )
    )
    try:
        await client.confirm_agreement(agreement_id)
        deadline = anyio.current_time() + approval_timeout
        approved = False
        while not approved and anyio.current_time() < deadline:
            remaining = max(1.0, math.ceil(deadline - anyio.current_time()))
            approved = await client.wait_for_approval(agreement_id, timeout=remaining)
        if not approved:
            raise YagnaStatusError(408, "not approved in time", "agreement approval")
    except YagnaError as e:
        reason = f"agreement not approved: {e.detail}"
        emit(
            ev.AgreementRejected(
                service=service,
                index=index,
                agreement_id=agreement_id,
                provider_id=provider,
                reason=reason,
            )
        )
        raise AgreementFailed(provider, agreement.provider_name, reason) from e
    return SignedAgreement(agreement, proposal.proposal_id)
