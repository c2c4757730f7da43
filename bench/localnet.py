"""Benchmark of the embedded local network; prints one JSON object.

    .venv/bin/python bench/localnet.py [--providers 3] [--rounds 5]

Measures, on a fresh temporary state dir:
- cold_start_s: `localnet.start()` with no data dirs (identities are created, the provider
  daemon restarts once);
- stop_s: `localnet.stop()`;
- warm_start_s: `localnet.start()` again on the same state dir (the common case);
- agreements_per_s: full negotiations (demand, counter, provider Draft, create, confirm,
  approve) per second, `rounds` rounds of one agreement with every provider, all terminated.
As root on Linux it first moves into a loopback-only network namespace, like the test suite.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from golem_deploy import localnet

PLATFORM = "erc20-holesky-tglm"


def isolate() -> bool:
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:  # CLONE_NEWNET
        return False
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return True


async def agreements_per_second(info: localnet.LocalNetInfo, rounds: int) -> tuple[int, float]:
    headers = {"Authorization": f"Bearer {info.app_key}"}
    api = info.api_url

    async with aiohttp.ClientSession(headers=headers) as http:

        async def call(method: str, path: str, body: Any = None, **params: Any) -> Any:
            async with http.request(method, api + path, json=body, params=params) as response:
                text = await response.text()
                if response.status >= 300:
                    raise RuntimeError(f"{method} {path}: {response.status} {text}")
                return json.loads(text) if text else None

        me = (await call("GET", "/me"))["identity"]
        demand = {
            "properties": {
                "golem.srv.comp.expiration": int((time.time() + 1800) * 1000),
                "golem.srv.caps.multi-activity": True,
                "golem.node.debug.subnet": info.subnet,
                f"golem.com.payment.platform.{PLATFORM}.address": me,
                "golem.com.payment.chosen-platform": PLATFORM,
            },
            "constraints": f"(&(golem.node.debug.subnet={info.subnet})(golem.runtime.name=vm))",
        }
        count = 0
        began = time.monotonic()
        for _ in range(rounds):
            sub = await call("POST", "/market-api/v1/demands", demand)
            drafts: list[str] = []
            while len(drafts) < len(info.providers):
                for event in await call(
                    "GET", f"/market-api/v1/demands/{sub}/events", timeout=5, maxEvents=100
                ):
                    proposal = event.get("proposal") or {}
                    if proposal.get("state") == "Initial":
                        await call(
                            "POST",
                            f"/market-api/v1/demands/{sub}/proposals/{proposal['proposalId']}",
                            demand,
                        )
                    elif proposal.get("state") == "Draft":
                        drafts.append(proposal["proposalId"])

            async def agree(proposal_id: str) -> None:
                valid_to = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
                body = {"proposalId": proposal_id, "validTo": valid_to}
                agreement = await call("POST", "/market-api/v1/agreements", body)
                await call("POST", f"/market-api/v1/agreements/{agreement}/confirm")
                await call("POST", f"/market-api/v1/agreements/{agreement}/wait", timeout=15)
                await call(
                    "POST", f"/market-api/v1/agreements/{agreement}/terminate", {"message": "b"}
                )

            async with anyio.create_task_group() as tg:
                for proposal_id in drafts:
                    tg.start_soon(agree, proposal_id)
            count += len(drafts)
            await call("DELETE", f"/market-api/v1/demands/{sub}")
        return count, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--providers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    isolated = isolate()
    root = Path(tempfile.mkdtemp(prefix="gd-bench-localnet-"))
    os.environ["GOLEM_DEPLOY_HOME"] = str(root / "home")  # a true cold start, nothing kept
    state_dir = root / "net"
    try:
        t0 = time.monotonic()
        localnet.start(state_dir, providers=args.providers, timeout=60)
        cold = time.monotonic() - t0
        t0 = time.monotonic()
        localnet.stop(state_dir)
        stop = time.monotonic() - t0
        t0 = time.monotonic()
        info = localnet.start(state_dir, providers=args.providers, timeout=60)
        warm = time.monotonic() - t0
        count, elapsed = anyio.run(agreements_per_second, info, args.rounds)
        result = {
            "providers": args.providers,
            "isolated_netns": isolated,
            "cold_start_s": round(cold, 3),
            "stop_s": round(stop, 3),
            "warm_start_s": round(warm, 3),
            "agreements": count,
            "agreements_per_s": round(count / elapsed, 2),
        }
        print(json.dumps(result))
    finally:
        localnet.stop(state_dir)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
