"""Soak: a deployment left running with providers dying under it, and what it costs over time.

    .venv/bin/python bench/soak.py --minutes 60 --instances 20 [--providers 4] [--sample 30]
        [--die-every 300] [--down-for 60]

`golem-deploy up -d` of one service of N instances on the embedded local network:
Python's http.server (as manifests/webapp.yaml runs it), on the deployment's VPN with one
forwarded port, a tcp health check and `restart: on-failure` (max_restarts 1000). While it
runs:

- faults: every `--die-every` seconds one provider dies (the `die_when` fault: its
  ExeUnits stop answering, its offer is gone), in rotation over all of them, one at a
  time, and comes back `--down-for` seconds later as the same node (`come_back_after`).
  A death is healed once every instance runs again (seen at a sample); a provider that
  came back is seen serving again once the engine stops avoiding it (engine AVOID_FOR);
- a client loop GETs the forwarded port twice a second; a request that fails (reset,
  refused, timeout of 5 s, or not a 200) is counted;
- every `--sample` seconds: the supervisor's RSS and open fds, the deployment folder (split
  as in bench/state_growth.py) and the journal size.

Then `down`, and the private network is started again on its state to ask its requestor
yagna for the invoices. Prints a sample line every `--sample` seconds and, as its LAST line,
one JSON object with, scaled to one hour: supervisor RSS and fd growth after the warm-up
(10 minutes, or the first third of a shorter run), deployment folder and journal growth per
instance-hour, provider deaths (and comebacks, from the local network's journal) vs the
restarts performed for them and how long each took to heal, failed client requests,
and GLM accepted (journal) vs the sum of the invoices yagna received and the budget.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_home, emit, isolate, proc_rss_mb, run_cli
from state_growth import measure, slope_per_hour

# yapapi's Python example image; offline, the local network's sealed host root stands in
# for it (as for manifests/webapp.yaml).
PYTHON_IMAGE = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
PORT = 18480
BUDGET = "50.0"


def manifest(folder: Path, instances: int) -> Path:
    doc = {
        "version": "1",
        "name": "soak",
        "budget": float(BUDGET),
        "network": {"cidr": "192.168.77.0/24"},
        "services": {
            "web": {
                "payload": {"image_hash": PYTHON_IMAGE, "min_mem_gib": 0.5},
                "instances": instances,
                "expiration": "3h",
                "restart": {"policy": "on-failure", "max_restarts": 1000, "backoff": "1s"},
                "ports": [f"{PORT}:8000"],
                "start": [
                    {
                        "run": [
                            "/bin/sh",
                            "-c",
                            "mkdir -p /golem/work/www && echo ok > /golem/work/www/index.html",
                        ]
                    },
                    {
                        "run": "python3 -m http.server 8000 --directory /golem/work/www"
                        " > /golem/work/http.log 2>&1 &"
                    },
                ],
                "healthcheck": {"tcp": 8000, "interval": "10s", "timeout": "5s", "retries": 3},
            }
        },
    }
    path = folder / "soak.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


@dataclass
class Client:
    """GET the forwarded port twice a second until stopped; counts what failed."""

    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while not self.stop.wait(0.5):
            try:
                with opener.open(f"http://127.0.0.1:{PORT}/", timeout=5) as answer:
                    good = answer.status == 200 and answer.read().strip() == b"ok"
                why = "" if good else "bad answer"
            except (urllib.error.URLError, OSError) as error:
                good, why = False, type(getattr(error, "reason", error)).__name__
            if good:
                self.ok += 1
            else:
                self.failed += 1
                self.errors[why] = self.errors.get(why, 0) + 1


def supervisor_pid(folder: Path) -> int:
    return int((folder / "supervisor.pid").read_text().strip())


def fd_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def journal_records(folder: Path) -> list[dict[str, Any]]:
    from golem_deploy.supervisor import journal

    return list(journal.read(folder / "journal.jsonl"))


def invoices_in_yagna(state_dir: Path) -> list[dict[str, Any]]:
    """Start the stopped private network on its state and ask its requestor node."""
    from golem_deploy import localnet

    info = localnet.start(state_dir, providers=1, timeout=120)
    try:
        request = urllib.request.Request(
            info.api_url + "/payment-api/v1/invoices",
            headers={"Authorization": f"Bearer {info.app_key}"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as answer:
            return list(json.load(answer))
    finally:
        localnet.stop(state_dir)


def status_of(env: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(run_cli("status", "-n", "soak", "--json", env=env)[1].stdout))


def placement(status: dict[str, Any]) -> dict[str, int]:
    """provider name -> running instances on it."""
    on: dict[str, int] = {}
    for service in status["services"]:
        for instance in service["instances"]:
            if instance["state"] == "running":
                name = str(instance.get("provider_name") or "?")
                on[name] = on.get(name, 0) + 1
    return on


def network_events(state_dir: Path) -> list[dict[str, Any]]:
    """The local network's journal: provider-died / provider-back (come_back_after)."""
    path = state_dir / "journal.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return [e for e in events if e.get("event") in ("provider-died", "provider-back")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--providers", type=int, default=4)
    parser.add_argument("--sample", type=float, default=30.0)
    parser.add_argument("--die-every", type=float, default=300.0, help="seconds between deaths")
    parser.add_argument("--down-for", type=float, default=60.0, help="come_back_after, seconds")
    args = parser.parse_args()
    isolate()
    with bench_home("gd-bench-soak-") as (home, env):
        names = [f"local-provider-{k}" for k in range(1, args.providers + 1)]
        triggers = {name: home / f"kill-{name}" for name in names}
        faults = home / "faults.json"
        faults.write_text(
            json.dumps(
                {
                    name: {"die_when": str(path), "come_back_after": f"{args.down_for}s"}
                    for name, path in triggers.items()
                }
            )
        )
        path = manifest(home, args.instances)
        up_s, _ = run_cli(
            "up",
            "-d",
            str(path),
            "--providers",
            str(args.providers),
            "--faults",
            str(faults),
            "--timeout",
            "10m",
            env=env,
            timeout=900,
        )
        folder = home / "deployments" / "soak"
        pid = supervisor_pid(folder)
        client = Client()
        thread = threading.Thread(target=client.run, daemon=True)
        thread.start()
        total_s = args.minutes * 60
        warmup_s = min(600.0, total_s / 3)
        deaths: list[dict[str, Any]] = []
        samples: list[dict[str, Any]] = []
        seen_on: dict[str, list[float]] = {name: [] for name in names}  # when seen serving
        began = time.monotonic()
        next_sample = 0.0
        try:
            while (elapsed := time.monotonic() - began) <= total_s:
                if elapsed >= args.die_every * (len(deaths) + 1):
                    # one at a time, in rotation; the previous one is back by now
                    name = names[len(deaths) % len(names)]
                    on_it = placement(status_of(env)).get(name, 0)
                    triggers[name].touch()
                    deaths.append(
                        {
                            "t": round(elapsed),
                            "provider": name,
                            "instances": on_it,
                            "healed_s": None,
                        }
                    )
                    print(f"{elapsed:7.0f}s  {name} dies with {on_it} instance(s)", flush=True)
                if elapsed >= next_sample:
                    on = placement(status_of(env))
                    for name, count in on.items():
                        if name in seen_on and count:
                            seen_on[name].append(round(elapsed))
                    running = sum(on.values())
                    for death in deaths:  # healed: all running, none on the dead one
                        if (
                            death["healed_s"] is None
                            and running == args.instances
                            and on.get(death["provider"], 0) == 0
                        ):
                            death["healed_s"] = round(elapsed - death["t"])
                    sizes = measure(folder)
                    sample = {
                        "t": round(elapsed, 1),
                        "rss_mb": round(proc_rss_mb(pid), 1),
                        "fds": fd_count(pid),
                        "folder_mb": round(sizes["total"] / 1e6, 3),
                        "journal_mb": round(sizes.get("journal", 0) / 1e6, 3),
                        "running": running,
                        "on": ",".join(f"{n[-1]}:{c}" for n, c in sorted(on.items())),
                        "ok": client.ok,
                        "failed": client.failed,
                    }
                    samples.append(sample)
                    print(" ".join(f"{k}={v}" for k, v in sample.items()), flush=True)
                    next_sample += args.sample
                time.sleep(1.0)
            status = status_of(env)
        finally:
            client.stop.set()
            thread.join(10)
            down_s, down = run_cli("down", "-n", "soak", env=env, check=False, timeout=900)
        records = journal_records(folder)
        lives = network_events(folder / "localnet")
        invoices = invoices_in_yagna(folder / "localnet")
    comebacks: dict[str, int] = {}
    for e in lives:
        if e["event"] == "provider-back":
            comebacks[e["provider"]] = comebacks.get(e["provider"], 0) + 1
    nth: dict[str, int] = {}
    for death in deaths:
        name = death["provider"]
        nth[name] = nth.get(name, 0) + 1
        death["came_back"] = comebacks.get(name, 0) >= nth[name]
        death["served_again_at"] = next(
            (t for t in seen_on[name] if t > death["t"] + args.down_for), None
        )
    report(args, samples, deaths, records, invoices, status, client, warmup_s, up_s, down_s, lives)
    return 0 if down.returncode == 0 else 1


def report(
    args: argparse.Namespace,
    samples: list[dict[str, Any]],
    deaths: list[dict[str, Any]],
    records: list[dict[str, Any]],
    invoices: list[dict[str, Any]],
    status: dict[str, Any],
    client: Client,
    warmup_s: float,
    up_s: float,
    down_s: float,
    lives: list[dict[str, Any]],
) -> None:
    hours = max(samples[-1]["t"] / 3600, 1e-9)
    after = [s for s in samples if s["t"] >= warmup_s] or samples
    window_h = max((after[-1]["t"] - after[0]["t"]) / 3600, 1e-9)
    kinds = [r["kind"] for r in records]
    accepted = sum(
        (Decimal(str(r["amount"])) for r in records if r["kind"] == "InvoiceAccepted"), Decimal(0)
    )
    invoiced = sum((Decimal(str(i["amount"])) for i in invoices), Decimal(0))
    spent = Decimal(str(status.get("budget", {}).get("spent", "0")))
    first, last = samples[0], samples[-1]
    emit(
        {
            "bench": "soak",
            "minutes": args.minutes,
            "instances": args.instances,
            "providers": args.providers,
            "up_s": round(up_s, 1),
            "down_s": round(down_s, 1),
            "warmup_s": warmup_s,
            "supervisor_rss_mb": {
                "start": first["rss_mb"],
                "after_warmup": after[0]["rss_mb"],
                "end": last["rss_mb"],
            },
            "supervisor_rss_mb_per_hour_after_warmup_fit": round(
                slope_per_hour(after, "rss_mb"), 2
            ),
            "supervisor_fds_per_hour_after_warmup_fit": round(slope_per_hour(after, "fds"), 1),
            "supervisor_rss_mb_per_hour_after_warmup": round(
                (last["rss_mb"] - after[0]["rss_mb"]) / window_h, 2
            ),
            "supervisor_fds": {
                "start": first["fds"],
                "after_warmup": after[0]["fds"],
                "end": last["fds"],
            },
            "folder_mb_per_instance_hour": round(
                (last["folder_mb"] - first["folder_mb"]) / hours / args.instances, 3
            ),
            # the WAL files swing between checkpoints: a straight line through every sample
            # after the warm-up says more than two end points
            "folder_mb_per_instance_hour_fit": round(
                slope_per_hour(after, "folder_mb") / args.instances, 3
            ),
            "journal_mb_per_instance_hour": round(
                (last["journal_mb"] - first["journal_mb"]) / hours / args.instances, 3
            ),
            "provider_deaths": len(deaths),
            "network_deaths": sum(1 for e in lives if e["event"] == "provider-died"),
            "network_comebacks": sum(1 for e in lives if e["event"] == "provider-back"),
            "deaths_healed": sum(1 for d in deaths if d["healed_s"] is not None),
            "heal_s": sorted(d["healed_s"] for d in deaths if d["healed_s"] is not None),
            "providers_served_again": sum(1 for d in deaths if d["served_again_at"] is not None),
            "instances_on_dead_providers": sum(d["instances"] for d in deaths),
            "restarts_performed": kinds.count("InstanceRestarted"),
            "all_running_at_end": all(
                i["state"] == "running" for s in status["services"] for i in s["instances"]
            ),
            "client_requests": client.ok + client.failed,
            "client_failed": client.failed,
            "client_errors": client.errors,
            "glm_spent_at_end": str(spent),
            "glm_invoices_accepted": str(accepted),
            "glm_invoiced_in_yagna": str(invoiced),
            "invoices_in_yagna": len(invoices),
            "invoices_not_accepted": sum(
                1 for i in invoices if i.get("status") not in ("ACCEPTED", "SETTLED")
            ),
            "budget": BUDGET,
            "glm_beyond_budget": str(max(Decimal(0), accepted - Decimal(BUDGET))),
            "deaths": deaths,
        }
    )


if __name__ == "__main__":
    sys.exit(main())
