"""What the debit-note interval costs: yagna and supervisor CPU at N instances, A/B.

    .venv/bin/python bench/debit_notes_ab.py [--instances 100] [--rounds 3] [--seconds 60]
                                             [--short 5s]

Runs bench/supervisor_cost.py alternately with debit notes every `--short` (A: the local
providers' interval before issue 15, what `payment.debit_note_interval: 5s` asks for) and
with the negotiated default (B: the providers' 120 s offer, at least yapapi's 60 s), each
time on a fresh local network, `rounds` times each. Alternating spreads the shared
machine's load swings over both sides; the figures are medians over the rounds. CPU% is of
one core, sampled over `--seconds` once every instance runs. Prints each run's line, then,
as its LAST line, the JSON summary with `saved_pct` (how much less CPU B uses than A).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_average

HERE = Path(__file__).resolve().parent


def one_run(instances: int, seconds: float, interval: str | None) -> dict[str, Any]:
    """One supervisor_cost.py run; a run whose deployment did not come up (on a machine
    this loaded, yagna may declare an activity lost) is tried again, twice at most."""
    command = [sys.executable, str(HERE / "supervisor_cost.py"), "--instances", str(instances)]
    command += ["--seconds", str(seconds), "--status-rounds", "1"]
    if interval:
        command += ["--debit-note-interval", interval]
    for attempt in range(3):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode == 0 and lines:
            result: dict[str, Any] = json.loads(lines[-1])
            return result
        why = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line]
        print(json.dumps({"failed_attempt": attempt + 1, "why": why[:3]}), flush=True)
    raise SystemExit("supervisor_cost.py failed three times in a row")


def cpu(result: dict[str, Any]) -> dict[str, float]:
    """CPU% by role: the supervisor, and each local-network process the pid files name."""
    out = {"supervisor": float(result["supervisor"]["cpu_pct"])}
    for role, figures in result["localnet"].items():
        out[role] = float(figures["cpu_pct"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--short", default="5s", help="side A's payment.debit_note_interval")
    args = parser.parse_args()
    sides: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    load_before = load_average()
    for round_ in range(args.rounds):
        for side, interval in (("A", args.short), ("B", None)):
            result = one_run(args.instances, args.seconds, interval)
            figures = cpu(result)
            sides[side].append(figures)
            line = {"round": round_ + 1, "side": side, "interval": interval or "negotiated"}
            print(json.dumps({**line, "cpu_pct": figures, "load": result.get("load_before")}))
            sys.stdout.flush()
    medians = {
        side: {
            role: round(statistics.median(run[role] for run in runs if role in run), 2)
            for role in sorted({r for run in runs for r in run})
        }
        for side, runs in sides.items()
    }
    saved = {
        role: round(100 * (1 - medians["B"][role] / medians["A"][role]), 1)
        for role in medians["A"]
        if role in medians["B"] and medians["A"][role] > 0
    }
    emit(
        {
            "instances": args.instances,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "A": {"debit_note_interval": args.short, "cpu_pct_median": medians["A"]},
            "B": {"debit_note_interval": "negotiated (120 s)", "cpu_pct_median": medians["B"]},
            "saved_pct": saved,
            "load_before": load_before,
            "load_after": load_average(),
        }
    )


if __name__ == "__main__":
    main()
