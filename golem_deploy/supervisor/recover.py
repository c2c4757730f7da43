"""Release what a dead supervisor left behind, using only its journal.

Why: after a SIGKILL nobody remembers the agreements, activities and allocation except the
journal (decision 5). `golem-deploy down` folds it and calls `release()`: agreements are
terminated and activities destroyed through yagna's REST API, the allocation is released,
the private local network is stopped (its processes are recorded in its state folder), and
each release is journaled so that running `down` twice is harmless. `Proposal` agreements
orphaned by a create call that lost its answer are looked for as well (recover_orphans.py).
A private network that is no longer running (one of its daemons died, and its host stopped
the rest) is started again on its own state first: its yagna databases still hold every
agreement, and only a running requestor can record their end.

The app key is never in the journal: a private local network's key is read from its state
folder; for the user's own yagna it comes from YAGNA_APPKEY, as for `up`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from golem_deploy.errors import GolemDeployError
from golem_deploy.supervisor import journal, lock, reach
from golem_deploy.supervisor.deployments import DeploymentDir
from golem_deploy.supervisor.journal import Held, Journal
from golem_deploy.supervisor.recover_orphans import sweep_orphans

if TYPE_CHECKING:
    from golem_deploy.yagna.client import YagnaClient

Progress = Callable[[str], None]

TERMINATE_REASON = "deployment went down after its supervisor was lost"
RESTART_TIMEOUT = 30.0  # starting a stopped private network again, to release through it
RELEASE_AT_ONCE = 16  # releases in flight at once (_for_each)


class RecoveryError(GolemDeployError):
    pass


async def _release_market(
    held: Held,
    api_url: str,
    app_key: str,
    journal: Journal,
    progress: Progress,
    invoice_wait: float,
) -> list[str]:
    """Terminate agreements, destroy activities, remove networks, release allocations;
    returns problems."""
    from golem_deploy.yagna.client import YagnaClient, YagnaConfig
    from golem_deploy.yagna.errors import YagnaError
    from golem_deploy.yagna.net import NetApi

    problems: list[str] = []
    async with YagnaClient(YagnaConfig.for_yagna(api_url, app_key), retries=2) as client:
        # A supervisor killed between creating an activity and journaling it leaves one the
        # journal never saw: yagna lists every activity of an agreement.
        async def list_activities(agreement_id: str) -> None:
            with contextlib.suppress(YagnaError, TimeoutError), anyio.fail_after(10):
                for activity_id in await client.activities_of(agreement_id):
                    held.activities.setdefault(activity_id, agreement_id)

        async def end_agreement(agreement_id: str) -> None:
            try:
                with anyio.fail_after(30):
                    outcome = await _end_agreement(client, agreement_id)
            except (YagnaError, TimeoutError) as error:
                problems.append(f"agreement {agreement_id}: {error}")
                return
            journal.append(
                "AgreementTerminated", agreement_id=agreement_id, by="requestor", reason=outcome
            )
            progress(f"agreement {agreement_id[:12]}… {outcome}")
            if outcome == "terminated":
                # It was approved, so its provider invoices it -- even when the supervisor
                # died before journaling the activity it had already created there.
                held.worked.add(agreement_id)

        await _for_each(held.agreements, list_activities)
        # yapapi's order: terminate the agreement, then destroy its activity.
        await _for_each(held.agreements, end_agreement)
        # A create call whose answer was lost when the supervisor died left an agreement
        # the journal never saw (recover_orphans.py): cancel or report it.
        await sweep_orphans(client, journal, progress)
        await _release_each(
            held.activities,
            "activity",
            client.destroy_activity,
            ("ActivityDestroyed", "activity_id"),
            "{short}… destroyed",
            journal,
            progress,
            problems,
        )
        await _release_each(
            held.networks,
            "network",
            NetApi(client).remove_network,
            ("NetworkRemoved", "network_id"),
            "{short}… removed",
            journal,
            progress,
            problems,
        )
        if held.allocations and invoice_wait > 0:
            await _settle_invoices(
                client, held, next(iter(held.allocations)), journal, progress, invoice_wait
            )
        await _release_each(
            held.allocations,
            "allocation",
            client.release_allocation,
            ("AllocationReleased", "allocation_id"),
            "{full} released",
            journal,
            progress,
            problems,
        )
    return problems


async def _release_each(
    ids: Iterable[str],
    what: str,
    release: Callable[[str], Awaitable[None]],
    record: tuple[str, str],
    done: str,
    journal: Journal,
    progress: Progress,
    problems: list[str],
) -> None:
    """Release every one of `ids` (bounded each), journal each release as `record`
    (kind, id field), and say so; what fails goes to `problems` and stays held."""
    from golem_deploy.yagna.errors import YagnaError

    kind, field = record

    async def release_one(ident: str) -> None:
        try:
            with anyio.fail_after(30):
                await release(ident)
        except (YagnaError, TimeoutError) as error:
            problems.append(f"{what} {ident}: {error}")
            return
        journal.append(kind, **{field: ident}, reason="recovery")
        progress(f"{what} " + done.format(short=ident[:12], full=ident))

    await _for_each(ids, release_one)


async def _for_each(ids: Iterable[str], act: Callable[[str], Awaitable[None]]) -> None:
    """`act` on every id, up to RELEASE_AT_ONCE at a time; `act` handles its own errors.

    Each release is mostly a wait on yagna (a destroy is answered at its 750 ms check): one
    by one, the 421 activities a `down` of 500 instances left on a saturated machine took
    343 s to destroy."""
    limiter = anyio.CapacityLimiter(RELEASE_AT_ONCE)

    async def one(ident: str) -> None:
        async with limiter:
            await act(ident)

    async with anyio.create_task_group() as tg:
        for ident in list(ids):
            tg.start_soon(one, ident)


async def _settle_invoices(
    client: YagnaClient,
    held: Held,
    allocation_id: str,
    journal: Journal,
    progress: Progress,
    wait: float,
) -> None:
    """Accept the invoices for work done, as the supervisor would have, before the
    allocation goes. Providers invoice once an agreement is terminated, so wait for them a
    little; yagna itself refuses anything beyond the allocation (the budget)."""
    from golem_deploy.yagna.client import PAYMENT
    from golem_deploy.yagna.errors import YagnaError
    from golem_deploy.yagna.models import Invoice

    unpaid = held.worked - held.invoiced
    deadline = anyio.current_time() + wait
    while unpaid:
        try:
            _, data = await client.request("GET", f"{PAYMENT}/invoices", timeout=15)
        except YagnaError as error:
            progress(f"cannot list invoices: {error}")
            return
        for item in data if isinstance(data, list) else []:
            try:
                invoice = Invoice.parse(item, "GET /invoices")
            except YagnaError:
                continue
            if invoice.agreement_id not in unpaid:
                continue
            if invoice.status in ("ACCEPTED", "SETTLED"):
                unpaid.discard(invoice.agreement_id)
                continue
            if invoice.status != "RECEIVED":
                continue
            try:
                await client.accept_invoice(invoice.invoice_id, invoice.amount, allocation_id)
            except YagnaError as error:
                progress(f"invoice {invoice.invoice_id} not accepted: {error}")
                unpaid.discard(invoice.agreement_id)
                continue
            covered = held.accepted_by_agreement.get(invoice.agreement_id, Decimal(0))
            journal.append(
                "InvoiceAccepted",
                invoice_id=invoice.invoice_id,
                agreement_id=invoice.agreement_id,
                amount=invoice.amount,
                new_spend=max(invoice.amount - covered, Decimal(0)),
                reason="recovery",
            )
            progress(f"invoice {invoice.invoice_id} accepted ({invoice.amount} GLM)")
            unpaid.discard(invoice.agreement_id)
        if not unpaid or anyio.current_time() > deadline:
            break
        await anyio.sleep(1.0)
    for agreement_id in sorted(unpaid):
        progress(f"no invoice arrived for agreement {agreement_id[:12]}… within {wait:g}s")


async def _end_agreement(client: YagnaClient, agreement_id: str) -> str:
    """Make sure the agreement no longer binds anyone; returns what was done.

    A crash can leave it in any state: Approved (terminate it), Pending (confirmed but not yet
    approved: cancel it), Proposal (never confirmed: it just expires), or already final.
    """
    from golem_deploy.yagna.client import MARKET
    from golem_deploy.yagna.errors import YagnaStatusError

    try:
        agreement = await client.get_agreement(agreement_id)
    except YagnaStatusError as error:
        if error.status == 404:
            return "unknown to yagna (never created)"
        raise
    state = agreement.state
    if state == "Approved":
        await client.terminate_agreement(agreement_id, TERMINATE_REASON, "Cancelled")
        return "terminated"
    if state == "Pending":
        await client.request(
            "POST",
            f"{MARKET}/agreements/{agreement_id}/cancel",
            body={"message": TERMINATE_REASON},
            ok=(200, 204, 410),
        )
        return "cancelled"
    return f"already {state.lower()}"


def _forget_market(held: Held, journal: Journal, why: str, progress: Progress) -> None:
    """The private network these lived on is gone with its yagna: nothing can still bill."""
    for agreement_id in held.agreements:
        journal.append("AgreementTerminated", agreement_id=agreement_id, by="recovery", reason=why)
    for activity_id in held.activities:
        journal.append("ActivityDestroyed", activity_id=activity_id, reason=why)
    for allocation_id in held.allocations:
        journal.append("AllocationReleased", allocation_id=allocation_id, reason=why)
    for network_id in held.networks:
        journal.append("NetworkRemoved", network_id=network_id, reason=why)
    if held.agreements or held.activities or held.allocations or held.networks:
        progress(f"market state dropped: {why}")


def release(
    held: Held, journal: Journal, *, progress: Progress = print, invoice_wait: float = 15.0
) -> list[str]:
    """Release everything `held` lists; returns what could not be released (empty: all)."""
    problems: list[str] = []
    market_held = bool(held.agreements or held.activities or held.allocations or held.networks)
    if held.network_kind == "local" or held.localnet_dir:
        from golem_deploy import localnet

        state_dir = Path(held.localnet_dir) if held.localnet_dir else None
        info = localnet.status(state_dir) if state_dir is not None else None
        if state_dir is not None and info is not None and reach.refuses(info.api_url):
            # Its requestor daemon died; the host stops the rest by itself within a second.
            progress("the local network's requestor yagna is dead; stopping the network")
            localnet.stop(state_dir)
            info = None
        if market_held:
            if info is not None:
                problems += anyio.run(
                    _release_market,
                    held,
                    info.api_url,
                    info.app_key,
                    journal,
                    progress,
                    invoice_wait,
                )
            elif state_dir is not None and (state_dir / "yagna").is_dir():
                problems += _release_on_restarted_network(held, state_dir, journal, progress)
            else:
                _forget_market(held, journal, "its local network is no longer running", progress)
        if state_dir is not None:
            localnet.stop(state_dir)
            journal.append("LocalnetStopped", state_dir=state_dir, reason="recovery")
            progress(f"local network in {state_dir} stopped")
    elif market_held:
        app_key = os.environ.get("YAGNA_APPKEY")
        api_url = held.api_url or os.environ.get("YAGNA_API_URL") or "http://127.0.0.1:7465"
        if not app_key:
            raise RecoveryError(
                "the deployment ran on your yagna and still holds agreements; "
                "an app key is needed to release them",
                hint="set YAGNA_APPKEY (the same key `up` used) and run `golem-deploy down` again",
            )
        if reach.refuses(api_url):
            # Each release would only fail in turn; the journal keeps them all for later.
            raise RecoveryError(
                f"yagna at {api_url} refuses connections: nothing could be released; "
                + "; ".join(held.summary())
                + " are still held",
                hint="start your yagna again (same data dir) and run `golem-deploy down` again",
            )
        problems += anyio.run(
            _release_market, held, api_url, app_key, journal, progress, invoice_wait
        )
    return problems


def _release_on_restarted_network(
    held: Held, state_dir: Path, journal: Journal, progress: Progress
) -> list[str]:
    """Release through the private network started again on its own state.

    It stopped by itself (one of its daemons died) or with the machine. Its daemons keep
    their databases in `state_dir`, so the restarted requestor still has every agreement,
    activity and the allocation, and records their end -- instead of keeping them
    Approved forever. Invoices are not waited for: the provider agents that did the work
    went with the old network and the fresh ones never invoice it; the debit notes
    accepted until then pay for it. Should the network not start, the state is dropped as
    before: nothing of it can run or bill without its daemons."""
    from golem_deploy import localnet

    progress("the local network is not running; starting it again on its state to release")
    try:
        info = localnet.start(
            state_dir, providers=held.localnet_providers or 3, timeout=RESTART_TIMEOUT
        )
    except localnet.LocalnetError as error:
        why = f"its local network is no longer running and did not start again ({error.message})"
        _forget_market(held, journal, why, progress)
        return []
    return anyio.run(_release_market, held, info.api_url, info.app_key, journal, progress, 0.0)


def finish_down(deployment: DeploymentDir, *, progress: Progress) -> None:
    """After the supervisor ended: release what the journal says is still held, holding the
    deployment's lock so no `up` starts meanwhile. RecoveryError when something remains."""
    held = journal.load(deployment.journal)
    if held.empty:
        return
    progress("releasing what the journal says is still held:")
    for line in held.summary():
        progress(f"  {line}")
    with lock.held(deployment.lock, name=deployment.name), Journal(deployment.journal) as jr:
        problems = release(held, jr, progress=lambda m: progress(f"  {m}"))
        if journal.load(deployment.journal).empty and not problems:
            jr.append("DeploymentStopped", clean=True, recovered=True)
    held = journal.load(deployment.journal)
    if problems or not held.empty:
        raise RecoveryError(
            f"deployment {deployment.name} is down but some things were not released: "
            + "; ".join(problems + held.summary()),
            hint="run `golem-deploy down` again; if it persists, check the yagna daemon",
        )


def missing_invoices(deployment: DeploymentDir) -> list[str]:
    """The last run's agreements whose provider never sent an invoice (the supervisor gave
    up waiting for it): worth telling, since their last debit notes are all that was paid."""
    return [
        f"  no invoice arrived for agreement {agreement[:12]}… within {waited}s; "
        "its accepted debit notes cover the work"
        for agreement, waited in journal.load(deployment.journal).invoices_missing
    ]
