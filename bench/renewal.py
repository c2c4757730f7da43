"""Renewals: how long a forwarded port goes without an answer while instances move to fresh
agreements (issue 16's renewal_gap_ms; the goal is no failed request at all).

    .venv/bin/python bench/renewal.py [--renewals 4]

`golem-deploy up -d` of one HTTP service with `expiration: 20s` on a private local network
whose providers sign agreements of at most 30 s (the `max_agreement` fault), so the
instance is renewed about every 10 to 15 s. A client loops GETs through the forwarded port
(one connection each, back to back) from the first answer until `--renewals` renewals
happened, then `down`.

- renewal_gap_ms: the slowest request of the whole window (p100), renewals included: the
  longest a client waited for an answer. A failed request would show as failed_requests;
- requests, failed_requests, renewals, p50_ms (the typical request, for comparison);
- renewal_ready_s: how long the replacements took from asking for an agreement to
  running and healthy (median, from the journal's InstanceRenewed records).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_home, emit, isolate, load_average, run_cli

from golem_deploy.testing.http_service import free_port, http_service


def manifest(folder: Path, port: int) -> Path:
    doc = {
        "version": "1",
        "name": "renewal-bench",
        "budget": 100.0,
        "network": {"cidr": "192.168.0.0/24"},
        "services": {"web": http_service(folder, port)},  # expiration: 20s
    }
    path = folder / "renewal-bench.yaml"
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


def get(port: int) -> float:
    """One GET through the forwarded port; its seconds (raises on any failure)."""
    began = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as answer:  # loopback
        if answer.status != 200 or not answer.read():  # the serving instance's address
            raise RuntimeError(f"unexpected answer {answer.status}")
    return time.perf_counter() - began


def renewed(journal: Path) -> list[dict[str, object]]:
    records = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("kind") == "InstanceRenewed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--renewals", type=int, default=4)
    args = parser.parse_args()
    isolated = isolate()
    result: dict[str, object] = {"isolated_netns": isolated, "load_start": load_average()}
    with bench_home("gd-bench-renewal-") as (home, env):
        port = free_port()
        path = manifest(home, port)
        faults = home / "faults.yaml"
        faults.write_text(
            json.dumps({f"local-provider-{k}": {"max_agreement": "30s"} for k in (1, 2, 3)})
        )
        run_cli("up", "-d", str(path), "--faults", str(faults), "--timeout", "4m", env=env)
        journal = home / "deployments" / "renewal-bench" / "journal.jsonl"
        latencies: list[float] = []
        failures: list[str] = []
        deadline = time.monotonic() + 60.0
        while True:  # `up -d` returns once running; the server answers a moment later
            try:
                get(port)
                break
            except Exception as error:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the service never answered: {error}") from error
                time.sleep(0.2)
        began = time.monotonic()
        while len(renewed(journal)) < args.renewals:
            try:
                latencies.append(get(port))
            except Exception as error:  # every failure counts, whatever it is
                failures.append(f"{type(error).__name__}: {error}")
            if time.monotonic() - began > 600:
                raise SystemExit(f"fewer than {args.renewals} renewals in 10 minutes")
        window = time.monotonic() - began
        records = renewed(journal)
        run_cli("down", "-n", "renewal-bench", env=env)
    took = [float(r["took"]) for r in records if isinstance(r.get("took"), int | float)]
    result.update(
        renewal_gap_ms=round(max(latencies) * 1000, 1) if latencies else None,
        failed_requests=len(failures),
        failures=failures[:5],
        requests=len(latencies) + len(failures),
        renewals=len(records),
        window_s=round(window, 1),
        p50_ms=round(statistics.median(latencies) * 1000, 1) if latencies else None,
        renewal_ready_s=round(statistics.median(took), 2) if took else None,
        load_end=load_average(),
    )
    emit(result)


if __name__ == "__main__":
    main()
