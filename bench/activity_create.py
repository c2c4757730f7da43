"""Activity create / destroy latency on the local network, requestor and provider side.

    .venv/bin/python bench/activity_create.py [--instances 1 10] [--rounds 6]

The requestor's `POST /activity` returns when the provider node's yagna, checking the
activity's persisted state every 750 ms from the moment it recorded CreateActivity, sees
Initialized; `DELETE /activity` the same with Terminated (docs/architecture.md, "The local
network's provider agent"). So a create costs 0.75 s when the provider's agent saw the event
and its ExeUnit reported Initialized within the first 750 ms, 1.5 s when not; N activities
created at once cost the slowest of them. This benchmark shows where a deployment's
activities stand against those ticks:

- a local network with max(--instances) providers, one multi-activity agreement each,
  negotiated over the requestor's REST API (no golem-deploy engine involved);
- each round creates N activities at once (one per agreement, N = each --instances value),
  timing every POST /activity, then destroys them at once, timing every DELETE;
- the provider agents' own log lines (golem_deploy/localnet/provider/activities.py) say,
  per activity, how long after yagna recorded the event the agent saw it
  (`seen_create`, `seen_destroy`) and how long its ExeUnit took to report Initialized /
  Terminated after that (`exeunit_initialized`, `exeunit_terminated`).

Prints one JSON object: per N, {create, destroy, create_slowest, destroy_slowest (the
slowest of each round's N: what a deployment of N waits for), seen_create,
exeunit_initialized, seen_destroy, exeunit_terminated} each as {median, p90, max, n}, and
create/destroy_missed_first_check ("late/all": calls that took more than 1.125 s, i.e.
missed yagna's first check), and the load before and after. Provider-side figures are
absent when the agent does not log them (older commits).
As root on Linux it first moves into a loopback-only network namespace, like the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, isolate, load_average

from golem_deploy import localnet

PLATFORM = "erc20-holesky-tglm"
#: A create/destroy slower than this missed yagna's first 750 ms check (0.75 s + slack).
MISSED_FIRST_CHECK = 1.125
UP = re.compile(r"activity (\w+) up \(CreateActivity seen after ([\d.?]+) s, Initialized ([\d.]+)")
ENDED = re.compile(
    r"activity (\w+) ended: .*\(DestroyActivity seen after ([\d.?]+) s, Terminated ([\d.]+)"
)


def distribution(samples: Sequence[float]) -> dict[str, float | int]:
    """median / p90 / max of `samples` (p90: nearest rank)."""
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    p90 = ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]
    return {
        "median": round(statistics.median(ordered), 3),
        "p90": round(p90, 3),
        "max": round(ordered[-1], 3),
        "n": len(ordered),
    }


class Requestor:
    """The few requestor calls this benchmark makes, over one HTTP session."""

    def __init__(self, http: aiohttp.ClientSession, api: str) -> None:
        self._http = http
        self._api = api

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        async with self._http.request(method, self._api + path, json=body, params=params) as r:
            text = await r.text()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: {r.status} {text}")
            return json.loads(text) if text else None

    async def agreements(self, info: localnet.LocalNetInfo) -> list[str]:
        """One approved multi-activity agreement with every provider of the network."""
        me = (await self.call("GET", "/me"))["identity"]
        demand = {
            "properties": {
                "golem.srv.comp.expiration": int((time.time() + 3600) * 1000),
                "golem.srv.caps.multi-activity": True,
                "golem.node.debug.subnet": info.subnet,
                f"golem.com.payment.platform.{PLATFORM}.address": me,
                "golem.com.payment.chosen-platform": PLATFORM,
            },
            "constraints": f"(&(golem.node.debug.subnet={info.subnet})(golem.runtime.name=vm))",
        }
        sub = await self.call("POST", "/market-api/v1/demands", demand)
        drafts: dict[str, str] = {}  # provider id -> draft proposal
        while len(drafts) < len(info.providers):
            events = await self.call(
                "GET", f"/market-api/v1/demands/{sub}/events", timeout=5, maxEvents=100
            )
            for event in events:
                proposal = event.get("proposal") or {}
                if proposal.get("state") == "Initial":
                    path = f"/market-api/v1/demands/{sub}/proposals/{proposal['proposalId']}"
                    await self.call("POST", path, demand)
                elif proposal.get("state") == "Draft":
                    drafts.setdefault(proposal["issuerId"], proposal["proposalId"])
        agreements: list[str] = []

        async def agree(proposal_id: str) -> None:
            valid_to = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            body = {"proposalId": proposal_id, "validTo": valid_to}
            agreement = await self.call("POST", "/market-api/v1/agreements", body)
            await self.call("POST", f"/market-api/v1/agreements/{agreement}/confirm")
            await self.call("POST", f"/market-api/v1/agreements/{agreement}/wait", timeout=15)
            agreements.append(agreement)

        async with anyio.create_task_group() as tg:
            for proposal_id in drafts.values():
                tg.start_soon(agree, proposal_id)
        await self.call("DELETE", f"/market-api/v1/demands/{sub}")
        return agreements

    async def terminate(self, agreements: Sequence[str]) -> None:
        for agreement in agreements:
            path = f"/market-api/v1/agreements/{agreement}/terminate"
            await self.call("POST", path, {"message": "benchmark done"})

    async def round(self, agreements: Sequence[str]) -> tuple[list[float], list[float]]:
        """Create one activity on each agreement at once, then destroy them at once:
        (create seconds, destroy seconds), one per activity."""
        created: list[str] = []
        create_s: list[float] = []
        destroy_s: list[float] = []

        async def create(agreement: str) -> None:
            began = time.perf_counter()
            answer = await self.call("POST", "/activity-api/v1/activity", agreement, timeout=10)
            create_s.append(time.perf_counter() - began)
            created.append(answer if isinstance(answer, str) else answer["activityId"])

        async def destroy(activity: str) -> None:
            began = time.perf_counter()
            await self.call("DELETE", f"/activity-api/v1/activity/{activity}", timeout=10)
            destroy_s.append(time.perf_counter() - began)

        async with anyio.create_task_group() as tg:
            for agreement in agreements:
                tg.start_soon(create, agreement)
        async with anyio.create_task_group() as tg:
            for activity in created:
                tg.start_soon(destroy, activity)
        return create_s, destroy_s


def provider_side(log_text: str, activities_after: int) -> dict[str, list[float]]:
    """The agents' timings from the host log (lines after byte `activities_after`)."""
    figures: dict[str, list[float]] = {
        "seen_create": [],
        "exeunit_initialized": [],
        "seen_destroy": [],
        "exeunit_terminated": [],
    }
    text = log_text[activities_after:]
    for match in UP.finditer(text):
        if match.group(2) != "?":
            figures["seen_create"].append(float(match.group(2)))
        figures["exeunit_initialized"].append(float(match.group(3)))
    for match in ENDED.finditer(text):
        if match.group(2) != "?":
            figures["seen_destroy"].append(float(match.group(2)))
        figures["exeunit_terminated"].append(float(match.group(3)))
    return figures


async def measure(
    info: localnet.LocalNetInfo, instances: list[int], rounds: int
) -> dict[str, object]:
    log_path = info.state_dir / "logs" / "host.log"
    result: dict[str, object] = {}
    headers = {"Authorization": f"Bearer {info.app_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        requestor = Requestor(http, info.api_url)
        agreements = await requestor.agreements(info)
        try:
            for n in instances:
                mark = len(log_path.read_text(errors="replace"))
                figures: dict[str, list[float]] = {}
                for _ in range(rounds):
                    # a random phase against the providers' polls and yagna's 750 ms ticks
                    await anyio.sleep(random.uniform(0.2, 1.0))
                    c, d = await requestor.round(agreements[:n])
                    figures.setdefault("create", []).extend(c)
                    figures.setdefault("destroy", []).extend(d)
                    figures.setdefault("create_slowest", []).append(max(c))
                    figures.setdefault("destroy_slowest", []).append(max(d))
                await anyio.sleep(0.5)  # the last activities' "ended" lines
                figures.update(provider_side(log_path.read_text(errors="replace"), mark))
                summary: dict[str, object] = {k: distribution(v) for k, v in figures.items() if v}
                for what in ("create", "destroy"):
                    late = sum(1 for s in figures[what] if s > MISSED_FIRST_CHECK)
                    summary[f"{what}_missed_first_check"] = f"{late}/{len(figures[what])}"
                result[str(n)] = summary
        finally:
            await requestor.terminate(agreements)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    isolated = isolate()
    root = Path(tempfile.mkdtemp(prefix="gd-bench-activity-"))
    os.environ["GOLEM_DEPLOY_HOME"] = str(root / "home")
    state_dir = root / "net"
    result: dict[str, Any] = {"isolated_netns": isolated, "load_before": load_average()}
    try:
        info = localnet.start(state_dir, providers=max(args.instances), timeout=120)
        result["providers"] = len(info.providers)
        result["rounds"] = args.rounds
        result.update(anyio.run(measure, info, args.instances, args.rounds))
    finally:
        localnet.stop(state_dir)
        shutil.rmtree(root, ignore_errors=True)
    result["load_after"] = load_average()
    emit(result)


if __name__ == "__main__":
    main()
