"""The snapshot: plain data describing a deployment at one moment.

Why a separate, dependency-free module: the supervisor builds snapshots, the CLI and the ui
only read them, and `status --json` must start fast. A snapshot is JSON-ready dicts; the
supervisor's API serves a superset (extra keys such as `expires_at`, `reason`, `held`) and
`public_status()` cuts it to exactly the documented `status --json` shape.

Times are ISO-8601 UTC strings (or null); amounts are decimal strings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

Snapshot = dict[str, Any]

INSTANCE_KEYS = (
    "index",
    "state",
    "provider_id",
    "provider_name",
    "agreement_id",
    "activity_id",
    "started_at",
    "restarts",
    "cost",
    "last_output",
)

# Deployment-level states (the instance states are the lifecycle's own).
STARTING, RUNNING, FAILED, STOPPING, STOPPED, GONE = (
    "starting",
    "running",
    "failed",
    "stopping",
    "stopped",
    "gone",
)


def iso(value: float | dt.datetime | None) -> str | None:
    """Epoch seconds or a datetime -> ISO-8601 UTC string; None stays None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    else:
        moment = dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: Any) -> float | None:
    """ISO-8601 string -> epoch seconds (None on anything else)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def public_status(snapshot: Mapping[str, Any]) -> Snapshot:
    """Exactly the `status --json` shape of the CLI reference (README.md, CLI reference)."""
    supervisor = snapshot.get("supervisor") or {}
    network = snapshot.get("network") or {}
    budget = snapshot.get("budget") or {}
    return {
        "name": snapshot.get("name"),
        "state": snapshot.get("state"),
        "supervisor": {"pid": supervisor.get("pid"), "alive": bool(supervisor.get("alive"))},
        "network": {"kind": network.get("kind"), "api_url": network.get("api_url")},
        "budget": {
            "total": budget.get("total"),
            "spent": budget.get("spent"),
            "remaining": budget.get("remaining"),
        },
        "services": [
            {
                "name": service.get("name"),
                "instances": [
                    {key: instance.get(key) for key in INSTANCE_KEYS}
                    for instance in service.get("instances", [])
                ],
            }
            for service in snapshot.get("services", [])
        ],
    }


def instances(snapshot: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every (service name, instance dict) in manifest order."""
    return [
        (service.get("name", "?"), instance)
        for service in snapshot.get("services", [])
        for instance in service.get("instances", [])
    ]


def state_counts(snapshot: Mapping[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, instance in instances(snapshot):
        state = str(instance.get("state"))
        counts[state] = counts.get(state, 0) + 1
    return counts
