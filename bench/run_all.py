"""Run every benchmark (each in its own process) and print one summary JSON line last.

Invoked by bench/run. Each benchmark prints its own full JSON (median/min/max/samples);
this collects them and prints, as the last line, the medians the issue asks for:
up_1_s, up_10_s, up_100_s, up_1_cold_s, down_100_s, help_ms, status_json_ms,
validate_one_ms, validate_1000_s, supervisor_rss_mb_100, supervisor_cpu_pct_100,
score_10000_offers_s, vpn_http_p50_ms, vpn_download_mb_s (beside their loopback floor),
renewal_gap_ms and renewal_failed_requests (bench/renewal.py),
cores (plus a few more: down_1_s, down_10_s, status_json_ms_100, ...);
each timed figure's ratio to the yardstick measured alternately with it (`*_ratio`, see
_yardstick.py), the yardsticks themselves (python_pass_ms, yagna_roundtrip_s), the race
against yapapi (vs_yapapi_*), and where it ran: commit, load_start, load_end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def bench(script: str, *args: str) -> dict[str, Any]:
    """Run bench/<script> with this Python; its last stdout line is its JSON result."""
    began = time.monotonic()
    print(f"== {script} {' '.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        cwd=HERE.parent,
    )
    if done.returncode != 0:
        raise SystemExit(f"{script} failed (exit {done.returncode}):\n{done.stdout}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"   {script}: {json.dumps(result)}", file=sys.stderr, flush=True)
    print(f"   ({time.monotonic() - began:.0f}s)", file=sys.stderr, flush=True)
    return result


def commit() -> str:
    """`git rev-parse --short HEAD`, with "-dirty" when tracked files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


GOALS: tuple[tuple[str, str, float], ...] = (
    # (figure, "<=" or ">=", goal): issue 15's goals, as this run's figures
    ("vs_yapapi_up_1", ">=", 2.0),
    ("vs_yapapi_up_10", ">=", 2.0),
    ("vs_yapapi_down_1", ">=", 1.0),
    ("vs_yapapi_down_10", ">=", 1.0),
    ("up_100_s", "<=", 10.0),
    ("up_100_over_13p", "<=", 1.5),
    ("up_1_s", "<=", 1.5),  # "warm on a quiet machine": see load_start / load_end
    ("up_1_ratio", "<=", 4.0),
    ("supervisor_cpu_pct_100", "<=", 3.0),
    ("supervisor_rss_mb_100", "<=", 100.0),
    ("yagna_requestor_cpu_pct_100", "<=", 22.5),  # half of the 45 %
    ("help_ratio", "<=", 2.5),
    ("status_json_ratio", "<=", 2.5),
    ("status_json_100_ratio", "<=", 3.0),
    # 500 idle instances (bench/scale.py; full run only)
    ("scale_500_up_s", "<=", 120.0),
    ("scale_500_supervisor_rss_mb", "<=", 200.0),
)


def _scale_figures(scale: dict[str, Any] | None) -> dict[str, Any]:
    """bench/scale.py's 500-instance run as summary figures (none without that run; an
    `up` that did not come up within its limit has no up time)."""
    run = (scale or {}).get("runs", {}).get("500")
    if not run:
        return {}
    return {
        "scale_500_up_s": run["up_s"] if run.get("came_up") else None,
        "scale_500_down_s": run.get("down_s"),
        "scale_500_supervisor_rss_mb": run.get("supervisor", {}).get("rss_mb"),
        "scale_500_supervisor_cpu_pct": run.get("supervisor", {}).get("cpu_pct"),
    }


def goals(summary: dict[str, Any]) -> dict[str, str]:
    """Each goal as "value <= goal: met" (or "not met", or "not measured")."""
    figures = dict(summary)
    if summary.get("up_100_s") and summary.get("up_100_13p_s"):
        figures["up_100_over_13p"] = round(summary["up_100_s"] / summary["up_100_13p_s"], 2)
    verdicts = {}
    for name, op, goal in GOALS:
        value = figures.get(name)
        if not isinstance(value, int | float):
            verdicts[name] = "not measured"
            continue
        met = value <= goal if op == "<=" else value >= goal
        verdicts[name] = f"{value:g} {op} {goal:g}: {'met' if met else 'not met'}"
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every golem-deploy benchmark.")
    parser.add_argument("--quick", action="store_true", help="one round each, 20 s sampling")
    parser.add_argument("--out", type=Path, help="also write every full result to this file")
    args = parser.parse_args()
    q = args.quick
    load_start = round(os.getloadavg()[0], 2)
    measured_commit = commit()  # before the run: what was measured, even if HEAD moves
    results = {
        "market": bench("market_score.py", "--rounds", "2" if q else "5"),
        "validate": bench("validate_throughput.py", "--rounds", "1" if q else "3"),
        "cli": bench("cli_latency.py", "--rounds", "3" if q else "10"),
        # --quick: 100 instances come up once, in supervisor_cost.py (with their yardstick).
        "up_down": bench(
            "up_down.py",
            *(["--instances", "1", "10"] if q else []),
            "--rounds",
            "1" if q else "3",
            "--cold-rounds",
            "1" if q else "3",
        ),
        "supervisor": bench(
            "supervisor_cost.py", "--seconds", "20" if q else "60", "--status-rounds", "5"
        ),
        "vs_yapapi": bench("vs_yapapi.py", "--rounds", "1" if q else "3"),
        "vpn": bench(
            "vpn.py", "--http-rounds", "10" if q else "30", "--download-rounds", "1" if q else "2"
        ),
        # about 20 s per renewal (20 s agreements), after one `up` of a few seconds
        "renewal": bench("renewal.py", "--renewals", "2" if q else "4"),
        "scale_change": bench("scale_change.py", "--rounds", "1" if q else "3"),
        # 500 idle instances on 16 providers (full run only: a few minutes)
        **({} if q else {"scale": bench("scale.py", "--instances", "500", "--seconds", "20")}),
    }
    ud, sup, cli = results["up_down"], results["supervisor"], results["cli"]
    vs, vpn = results["vs_yapapi"], results["vpn"]
    if q:
        ud["up"]["100"] = {"median": sup["up_s"], "ratio": sup["up_ratio"]}
        ud["down"]["100"] = {"median": sup["down_s"], "ratio": sup["down_ratio"]}
    summary = {
        "up_1_s": ud["up"]["1"]["median"],
        "up_10_s": ud["up"]["10"]["median"],
        "up_100_s": ud["up"]["100"]["median"],
        "up_1_cold_s": ud["up_cold"]["1"]["median"],
        "down_1_s": ud["down"]["1"]["median"],
        "down_10_s": ud["down"]["10"]["median"],
        "down_100_s": ud["down"]["100"]["median"],
        "help_ms": cli["help_ms"]["median"],
        "status_json_ms": cli["status_json_ms"]["median"],
        "status_json_ms_100": sup["status_json_ms_100"]["median"],
        "validate_one_ms": cli["validate_one_ms"]["median"],
        "validate_1000_s": results["validate"]["validate_s"]["median"],
        "supervisor_rss_mb_100": sup["supervisor"]["rss_mb"],
        "supervisor_cpu_pct_100": sup["supervisor"]["cpu_pct"],
        "yagna_requestor_cpu_pct_100": sup["localnet"].get("requestor", {}).get("cpu_pct"),
        "yagna_provider_cpu_pct_100": sup["localnet"].get("provider", {}).get("cpu_pct"),
        "yagna_requests_per_s_100": sup.get("yagna_requests_per_s"),
        "score_10000_offers_s": results["market"]["score_s"]["median"],
        "scale_10_to_100_s": results["scale_change"]["scale_10_to_100_s"]["median"],
        **_scale_figures(results.get("scale")),
        # The same 100 instances on 13 providers (full run only): the few providers' share.
        "up_100_13p_s": ud.get("up_wide", {}).get("100", {}).get("median"),
        # Ratios to the yardstick measured alternately with each figure (_yardstick.py).
        "python_pass_ms": cli["help_ms"]["yardstick_ms"]["median"],
        "yagna_roundtrip_s": ud["yardstick"]["1"]["median"],
        **{f"{w}_{n}_ratio": ud[w][n]["ratio"] for w in ("up", "down") for n in ("1", "10", "100")},
        "help_ratio": cli["help_ms"]["ratio"],
        "status_json_ratio": cli["status_json_ms"]["ratio"],
        "status_json_100_ratio": sup["status_json_ms_100"]["ratio"],
        "validate_one_ratio": cli["validate_one_ms"]["ratio"],
        "validate_one_warm_ms": cli["validate_one_warm_ms"]["median"],
        "validate_one_warm_ratio": cli["validate_one_warm_ms"]["ratio"],
        # yapapi seconds / ours, same network, alternating: > 1 means golem-deploy is faster.
        "vs_yapapi_up_1": vs["1"]["ratio_up"],
        "vs_yapapi_up_10": vs["10"]["ratio_up"],
        "vs_yapapi_down_1": vs["1"]["ratio_down"],
        "vs_yapapi_down_10": vs["10"]["ratio_down"],
        # the same with every command its own process (GOLEM_DEPLOY_WARM=0, cli/warm.py)
        "vs_yapapi_up_1_cold": vs["1"]["ratio_up_cold"],
        "vs_yapapi_up_10_cold": vs["10"]["ratio_up_cold"],
        "vs_yapapi_down_1_cold": vs["1"]["ratio_down_cold"],
        "vs_yapapi_down_10_cold": vs["10"]["ratio_down_cold"],
        "vs_yapapi_s": {
            f"{side}_{w}_{n}": vs[n][f"{side}_{w}"]["median"]
            for side in ("yapapi", "ours", "ours_cold")
            for w in ("up", "down")
            for n in ("1", "10")
        },
        # A forwarded port of a deployment (the Golem VPN) and its floor, direct loopback.
        "vpn_http_p50_ms": vpn["vpn_http_ms"]["median"],
        "vpn_download_mb_s": vpn["vpn_download_mb_s"]["median"],
        "loopback_http_p50_ms": vpn["loopback_http_ms"]["median"],
        "loopback_download_mb_s": vpn["loopback_download_mb_s"]["median"],
        "vpn_http_ratio": vpn["vpn_http_ms"]["ratio"],
        "vpn_download_ratio": vpn["vpn_download_mb_s"]["ratio"],
        # Renewals on fresh agreements under a client's requests (goal: 0 failed requests).
        "renewal_gap_ms": results["renewal"]["renewal_gap_ms"],
        "renewal_failed_requests": results["renewal"]["failed_requests"],
        "cores": results["market"]["cores"],
        "quick": q,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "load_start": load_start,
        "load_end": round(os.getloadavg()[0], 2),
        "commit": measured_commit,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    summary["goals"] = goals(summary)
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, **results}, indent=2) + "\n")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
