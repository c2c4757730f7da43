"""Yardsticks: what each figure is divided by, measured in the same run, alternating.

This machine is shared: absolute times swing 2x from one minute to the next (even
`python -c pass` took 41 ms once and 134 ms a minute later), so a figure alone proves
little. A ratio to a yardstick measured right before it, under the same load, is what can
be compared between runs and commits:

- CLI figures (`--help`, `status --json`, `validate`) are divided by `python -c pass`,
  the interpreter's own start: what no Python CLI can beat.
- Deployment figures (`up`, `down`) are divided by a raw yagna round trip on the same local
  network: a requestor creates an activity on an agreement it already holds and runs one
  exec batch (deploy, start, echo) to completion, through plain REST (`YagnaRoundTrip`).
  That is the least any tool must wait for yagna to get one instance running.

The REST calls are re-stated here (as tests/integration/_localnet_requestor.py does) with
the standard library, synchronously: no engine code, nothing of ours in the yardstick.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from _image import Image

PLATFORM_PROPERTY = "golem.com.payment.platform"


def python_pass_s() -> float:
    """Wall seconds of `python -c pass` with the benchmarks' interpreter."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - began


def alternate(
    yardstick: Callable[[], float], measure: Callable[[], float], rounds: int
) -> tuple[list[float], list[float]]:
    """yardstick, measure, yardstick, measure, ...: (yardstick samples, measured samples)."""
    ys, ms = [], []
    for _ in range(rounds):
        ys.append(yardstick())
        ms.append(measure())
    return ys, ms


class YagnaRoundTrip:
    """One agreement held open; each `sample()` times activity create + one exec batch.

    Use as a context manager with the YAGNA_* environment of a running local network and the
    benchmark image: entering negotiates the agreement (untimed), leaving terminates it.
    """

    def __init__(self, env: dict[str, str], image: Image) -> None:
        self.api_url = env["YAGNA_API_URL"]
        self.app_key = env["YAGNA_APPKEY"]
        self.subnet = env["YAGNA_SUBNET"]
        driver, network = env["YAGNA_PAYMENT_DRIVER"], env["YAGNA_PAYMENT_NETWORK"]
        token = "tglm" if network != "mainnet" else "glm"
        self.platform = f"{driver}-{network}-{token}"
        self.image = image
        self.agreement_id = ""

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(
            self.api_url + path + query,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.app_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            detail = error.read().decode()[:500]
            raise RuntimeError(f"{method} {path} -> {error.code}: {detail}") from None
        return json.loads(text) if text else None

    def __enter__(self) -> YagnaRoundTrip:
        self.agreement_id = self._negotiate()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.agreement_id:
            body = {"message": "benchmark done", "golem.requestor.code": "Success"}
            path = f"/market-api/v1/agreements/{self.agreement_id}/terminate"
            with contextlib.suppress(RuntimeError, OSError):  # the network stops right after
                self.call("POST", path, body)

    def sample(self) -> float:
        """Seconds from `POST /activity` to the exec batch's last result (then destroyed)."""
        self.call("GET", "/me")  # not timed; only checks the daemon answers
        began = time.perf_counter()
        activity = str(
            self.call("POST", "/activity-api/v1/activity", self.agreement_id, timeout=30)
        )
        script = [
            {"deploy": {}},
            {"start": {"args": []}},
            {"run": {"entry_point": "/bin/echo", "args": ["yardstick"]}},
        ]
        path = f"/activity-api/v1/activity/{activity}"
        batch = str(self.call("POST", f"{path}/exec", {"text": json.dumps(script)}))
        deadline = time.monotonic() + 60
        while True:
            results = self.call("GET", f"{path}/exec/{batch}", timeout=5)
            if results and results[-1]["isBatchFinished"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"yardstick batch unfinished after 60 s: {results}")
        elapsed = time.perf_counter() - began
        self.call("DELETE", path, timeout=30)
        return elapsed

    def _demand(self, node_id: str) -> dict[str, Any]:
        properties = {
            "golem.srv.comp.expiration": int((time.time() + 3600) * 1000),
            "golem.srv.caps.multi-activity": True,  # one agreement, many activities
            "golem.node.debug.subnet": self.subnet,
            f"{PLATFORM_PROPERTY}.{self.platform}.address": node_id,
            "golem.com.payment.chosen-platform": self.platform,
            "golem.com.payment.protocol.version": "3",
            "golem.srv.comp.task_package": self.image.task_package,
            "golem.srv.comp.vm.package_format": "gvmkit-squash",
        }
        constraints = (
            f"(&(golem.node.debug.subnet={self.subnet})"
            f"({PLATFORM_PROPERTY}.{self.platform}.address=*)"
            "(golem.com.pricing.model=linear)"
            "(golem.inf.cpu.threads>=1)(golem.runtime.name=vm))"
        )
        return {"properties": properties, "constraints": constraints}

    def _negotiate(self) -> str:
        """Counter the first Initial proposal, sign its Draft: the agreement id."""
        demand = self._demand(str(self.call("GET", "/me")["identity"]))
        sub = str(self.call("POST", "/market-api/v1/demands", demand))
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                events = self.call("GET", f"/market-api/v1/demands/{sub}/events", timeout=2)
                for event in events or []:
                    proposal = event.get("proposal") or {}
                    if proposal.get("state") == "Initial":
                        path = f"/market-api/v1/demands/{sub}/proposals/{proposal['proposalId']}"
                        self.call("POST", path, demand)
                    elif proposal.get("state") == "Draft":
                        return self._agree(str(proposal["proposalId"]))
            raise RuntimeError("yardstick: no provider answered the demand within 60 s")
        finally:
            self.call("DELETE", f"/market-api/v1/demands/{sub}")

    def _agree(self, proposal_id: str) -> str:
        valid_to = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        body = {"proposalId": proposal_id, "validTo": valid_to}
        agreement = str(self.call("POST", "/market-api/v1/agreements", body))
        self.call("POST", f"/market-api/v1/agreements/{agreement}/confirm")
        self.call("POST", f"/market-api/v1/agreements/{agreement}/wait", timeout=15)
        return agreement


def ratio(measured: list[float], yardstick: list[float]) -> float:
    """median(measured) / median(yardstick), the figure that survives a busy machine."""
    return round(statistics.median(measured) / statistics.median(yardstick), 2)
