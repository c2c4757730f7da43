"""`golem-deploy doctor`: is the user's yagna ready for this manifest? Each check is ok,
FAIL (with one line saying how to fix it) or skip (an earlier failure makes it moot).

In order: yagna reachable (and its version), app key, identity, payment account for the
manifest's platform, funds for the budget, subnet, images (the registry), offers. The funds
check creates an allocation for the whole budget and releases it at once, because that is
the only question yagna answers exactly as it will at `up` (balance, gas, what other
allocations hold); the offers check subscribes the demands for a few seconds and
unsubscribes. Both clean up also when interrupted: nothing stays allocated or subscribed.

`up` on the user's yagna runs the same checks without the offers wait (see cli/up.py).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import anyio

from golem_deploy.manifest.model import Manifest
from golem_deploy.preflight.images import needs_registry, resolve_images
from golem_deploy.preflight.registry import RegistryError
from golem_deploy.protocol import LOCAL_SUBNET, MAINNET_NETWORKS, payment_platform
from golem_deploy.yagna.client import DEFAULT_API_URL, PAYMENT, YagnaClient, YagnaConfig
from golem_deploy.yagna.errors import YagnaError, YagnaStatusError

T = TypeVar("T")

__all__ = ["Check", "Target", "run_checks"]

OK, FAIL, SKIP = "ok", "FAIL", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | FAIL | skip
    detail: str
    fix: str = ""

    def plain(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """The yagna and the terms the checks are about (environment first, then manifest)."""

    api_url: str
    app_key: str
    subnet: str
    driver: str
    network: str
    manifest: Manifest | None

    @classmethod
    def from_env(cls, manifest: Manifest | None) -> Target:
        """As `up` decides (supervisor/backend.py): YAGNA_* over the manifest."""
        env = os.environ
        if manifest is not None:
            subnet = manifest.subnet
            driver, network = manifest.payment.driver, manifest.payment.network
        else:
            subnet = "public"
            driver = env.get("YAGNA_PAYMENT_DRIVER", "erc20")
            network = env.get("YAGNA_PAYMENT_NETWORK", "holesky")
        return cls(
            api_url=(env.get("YAGNA_API_URL") or DEFAULT_API_URL).rstrip("/"),
            app_key=env.get("YAGNA_APPKEY", ""),
            subnet=env.get("YAGNA_SUBNET") or subnet,
            driver=driver,
            network=network,
            manifest=manifest,
        )

    @property
    def platform(self) -> str:
        return payment_platform(self.driver, self.network)


async def run_checks(target: Target, *, offers_wait: float | None) -> list[Check]:
    """Every check, in order; `offers_wait` None leaves out the offers check."""
    checks: list[Check] = []
    config = YagnaConfig.for_yagna(target.api_url, target.app_key)
    async with YagnaClient(config, retries=1) as client:
        checks.append(await _version(client))
        later = ["payment account", "funds", "subnet", "images"]
        if offers_wait is not None and target.manifest is not None:
            later.append("offers")
        if checks[-1].status != OK:
            return checks + _skipped("app key", "identity", *later)
        key, address = await _identity(client, target)
        checks += key
        if address is None:
            return checks + _skipped(*(["identity"] if len(key) == 1 else []), *later)
        # Independent of each other: asked side by side (`up` waits for them).
        account: list[Check] = []
        funds: list[Check] = []
        found: list[tuple[Check, dict[str, tuple[str, str]]]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_into, account, _account(client, target))
            tg.start_soon(_into, funds, _funds(client, target, address))
            tg.start_soon(_into, found, _images(target))
        images = found[0]
        checks += [account[0], funds[0], _subnet(target), images[0]]
        if offers_wait is not None and target.manifest is not None:
            checks.append(await _offers(client, target, address, images[1], offers_wait))
    return checks


async def _into(results: list[T], work: Awaitable[T]) -> None:
    results.append(await work)


def _skipped(*names: str) -> list[Check]:
    return [Check(name, SKIP, "needs the checks above") for name in names]


async def _version(client: YagnaClient) -> Check:
    url = client.config.api_url
    try:
        _, data = await client.request("GET", "/version/get", retry=False, timeout=5.0)
    except YagnaError as error:
        return Check(
            "yagna",
            FAIL,
            f"no yagna answers at {url}: {error.detail}",
            "start it (`yagna service run`), or set YAGNA_API_URL to where it listens",
        )
    current = data.get("current") if isinstance(data, dict) else None
    version = current.get("version") if isinstance(current, dict) else None
    return Check("yagna", OK, f"yagna {version or '(version unknown)'} at {url}")


async def _identity(client: YagnaClient, target: Target) -> tuple[list[Check], str | None]:
    if not target.app_key:
        fix = "`yagna app-key create requestor` prints one: export YAGNA_APPKEY=<that key>"
        why = "YAGNA_APPKEY is not set (without it `up` runs on the embedded local network)"
        return [Check("app key", FAIL, why, fix)], None
    try:
        me = await client.me()
    except YagnaStatusError as error:
        if error.status != 401:
            return [Check("app key", FAIL, str(error.message), "see yagna's log")], None
        fix = "`yagna app-key list` shows this node's keys: export one as YAGNA_APPKEY"
        return [Check("app key", FAIL, "yagna refused YAGNA_APPKEY", fix)], None
    except YagnaError as error:
        return [Check("app key", FAIL, error.message, "see yagna's log")], None
    key = Check("app key", OK, "accepted")
    who = Check("identity", OK, f"{me.node_id}" + (f" ({me.name})" if me.name else ""))
    return [key, who], me.node_id


def _init_command(target: Target) -> str:
    return f"yagna payment init --sender --driver {target.driver} --network {target.network}"


async def _account(client: YagnaClient, target: Target) -> Check:
    try:
        _, data = await client.request("GET", f"{PAYMENT}/requestorAccounts", retry=False)
    except YagnaError as error:
        return Check("payment account", FAIL, error.message, "see yagna's log")
    accounts = data if isinstance(data, list) else []
    for account in accounts:
        ours = isinstance(account, dict) and account.get("platform") == target.platform
        if ours and account.get("send"):
            return Check("payment account", OK, f"{target.platform} {account.get('address')}")
    if target.subnet == LOCAL_SUBNET:
        # golem-deploy's local network pays offline, without an initialised account.
        return Check("payment account", OK, f"{target.platform} (local network: none needed)")
    return Check(
        "payment account",
        FAIL,
        f"no requestor account for {target.platform} on this node",
        f"`{_init_command(target)}`",
    )


async def _funds(client: YagnaClient, target: Target, address: str) -> Check:
    if target.manifest is None:
        return Check("funds", SKIP, "give a manifest to check funds for its budget")
    budget = target.manifest.budget
    try:
        allocation = await client.create_allocation(
            address=address,
            platform=target.platform,
            total=budget,
            timeout=datetime.now(UTC) + timedelta(minutes=5),
        )
    except YagnaError as error:
        status = f"HTTP {error.status}: " if isinstance(error, YagnaStatusError) else ""
        return Check(
            "funds",
            FAIL,
            f"yagna refused an allocation of the budget ({budget} GLM on {target.platform}): "
            + status
            + _why_refused(error.detail),
            _fund_fix(target, address),
        )
    with anyio.CancelScope(shield=True):
        try:
            await client.release_allocation(allocation.allocation_id)
        except YagnaError as error:
            return Check(
                "funds",
                FAIL,
                f"allocated {budget} GLM but could not release it: {error.message}",
                "`yagna payment release-allocations` releases it",
            )
    return Check("funds", OK, f"{budget} GLM can be allocated on {target.platform}")


def _fund_fix(target: Target, address: str) -> str:
    d, n = target.driver, target.network
    if n in MAINNET_NETWORKS:
        top_up = f"send GLM (and gas) to {address}"
    else:
        top_up = f"`yagna payment fund --driver {d} --network {n}`"
    return (
        f"`{_init_command(target)}`, then {top_up}; "
        f"`yagna payment status --driver {d} --network {n}` shows the balance"
    )


def _why_refused(detail: str) -> str:
    """yagna's reason, without its JSON wrapping and source-file positions."""
    try:
        data = json.loads(detail)
        if isinstance(data, dict):
            detail = str(data.get("internalError") or data.get("detail") or detail)
    except ValueError:  # the client keeps 500 characters: often cut JSON
        found = re.search(r'"internalError"\s*:\s*"([^"]*)', detail)
        detail = found.group(1) if found else detail
    return re.sub(r",?\s*/\S+\.rs:\d+:\d+", "", detail).strip()[:300]


def _subnet(target: Target) -> Check:
    manifest = target.manifest
    source = "YAGNA_SUBNET" if os.environ.get("YAGNA_SUBNET") else "the manifest"
    detail = f"{target.subnet} (from {source})"
    if manifest is not None and os.environ.get("YAGNA_SUBNET") and manifest.subnet != target.subnet:
        detail += f"; the manifest says {manifest.subnet}"
    return Check("subnet", OK, detail)


async def _images(target: Target) -> tuple[Check, dict[str, tuple[str, str]]]:
    manifest = target.manifest
    if manifest is None or not needs_registry(manifest):
        return Check("images", OK, "no image needs the registry"), {}
    warnings: list[str] = []
    try:
        resolved = await resolve_images(manifest, subnet=target.subnet, warn=warnings.append)
    except RegistryError as error:
        return Check("images", FAIL, error.message, error.hint or ""), {}
    detail = ", ".join(f"{name}: {image.sha3[:12]}…" for name, image in resolved.items())
    if warnings:
        detail = "; ".join([*warnings, detail] if detail else warnings)
    return Check("images", OK, detail), {n: (i.sha3, i.url) for n, i in resolved.items()}


async def _offers(
    client: YagnaClient,
    target: Target,
    address: str,
    images: dict[str, tuple[str, str]],
    wait: float,
) -> Check:
    # The market part builds on the engine, which `up` (no offers check) need not import.
    from golem_deploy.preflight.market import look_at_offers, service_demands

    assert target.manifest is not None
    try:
        demands = await service_demands(
            target.manifest,
            subnet=target.subnet,
            platform=target.platform,
            address=address,
            images=images,
        )
        offers = await look_at_offers(client, demands, wait)
    except (YagnaError, RegistryError) as error:
        return Check("offers", FAIL, error.message, "see yagna's log")
    counts = {name: len(found) for name, found in offers.items()}
    detail = ", ".join(f"{name}: {n}" for name, n in counts.items()) + f" (in {wait:g} s)"
    if all(counts.values()):
        return Check("offers", OK, detail)
    return Check(
        "offers",
        FAIL,
        f"no matching offer for {', '.join(n for n, c in counts.items() if not c)}: {detail}",
        f"check the subnet (this is {target.subnet!r}; Golem's main one is `public`), ask for less "
        "(min_mem_gib, min_storage_gib, min_cpu_threads, capabilities), or retry with --wait",
    )
