"""Run the reliability matrix (tests/reliability) and summarise it.

    python bench/reliability.py                 # every row + security + fuzzing (~20 min)
    python bench/reliability.py --quick         # skip rows marked slow and load
    python bench/reliability.py --load          # also the load rows (100 instances, ...)
    python bench/reliability.py -k row04        # any pytest -k expression
    python bench/reliability.py --fuzz 1000     # fuzz cases per fuzz test (default 200)

The rows are the tests in tests/reliability, run by pytest in a subprocess (which moves
into a loopback-only network namespace when root, like the suite). Each row's audit (see
tests/reliability/_harness.py) appends its figures -- agreements yagna still holds, our
processes left, GLM accepted beyond the budget -- to a report file this script reads.

Prints one line per row (outcome, seconds, audit figures), then, as its LAST line, one
JSON object: scenarios_run, scenarios_passed, agreements_leaked, activities_leaked,
processes_leaked, agreements_orphaned (never-bound agreements yagna holds that the journal
never saw created: Proposal left by a lost answer, or Cancelled by the engine),
orphans_cancelled, glm_accepted_beyond_budget, fuzz_cases, fuzz_tracebacks, localnet_heal
(rows 13c-13e: which part of the local network was killed, ms until the supervisor noticed,
s until the deployment ran again), torn_journal (row 15d, once status and down warned
without a traceback: the torn line, the kind of the record torn, s for that down),
seconds, failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _rows(junit: Path) -> list[dict[str, Any]]:
    """(name, outcome, seconds) of every test case pytest ran."""
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, why = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                why = (child.get("message") or child.text or "").strip().splitlines()[0][:300]
            elif child.tag == "skipped":
                outcome = "skipped"
        rows.append(
            {
                "name": f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}",
                "outcome": outcome,
                "seconds": float(case.get("time") or 0.0),
                "why": why,
            }
        )
    return rows


def _audits(
    report: Path,
    heal: list[dict[str, Any]] | None = None,
    torn: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, dict[str, Any]], int, int]:
    """Audit figures by test id, and the fuzz totals; the local network heal rows' figures
    are appended to `heal`, the torn journal row's to `torn`."""
    audits: dict[str, dict[str, Any]] = {}
    fuzz_cases = fuzz_tracebacks = 0
    if not report.exists():
        return audits, 0, 0
    for line in report.read_text().splitlines():
        record = json.loads(line)
        if "localnet_heal" in record:
            if heal is not None:
                heal.append(record["localnet_heal"])
        elif "torn_journal" in record:
            if torn is not None:
                torn.append(record["torn_journal"])
        elif "fuzz_cases" in record:
            fuzz_cases += int(record["fuzz_cases"])
            fuzz_tracebacks += int(record["fuzz_tracebacks"])
        else:
            audits[str(record["scenario"]).split("::", 1)[-1]] = record
    return audits, fuzz_cases, fuzz_tracebacks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip rows marked slow or load")
    parser.add_argument("--load", action="store_true", help="also run the load rows")
    parser.add_argument("-k", default=None, help="pytest -k expression")
    parser.add_argument("--fuzz", type=int, default=200, help="cases per fuzz test")
    args = parser.parse_args()

    markers = []
    if args.quick:
        markers.append("not slow")
    if not args.load:
        markers.append("not load")
    with tempfile.TemporaryDirectory(prefix="gd-reliability-") as tmp:
        report, junit = Path(tmp) / "report.jsonl", Path(tmp) / "junit.xml"
        command = [
            sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider",
            f"--junitxml={junit}", "-o", "junit_family=xunit2",
        ]  # fmt: skip
        if markers:
            command += ["-m", " and ".join(markers)]
        if args.k:
            command += ["-k", args.k]
        env = dict(os.environ)
        env["GOLEM_DEPLOY_RELIABILITY_REPORT"] = str(report)
        env["RELIABILITY_FUZZ_EXAMPLES"] = str(args.fuzz)
        if args.load:
            env["RELIABILITY_LOAD"] = "1"
        started = time.monotonic()
        pytest_run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - started
        if not junit.exists():
            print(pytest_run.stdout[-3000:] + pytest_run.stderr[-3000:], file=sys.stderr)
            return 2
        rows = _rows(junit)
        heal: list[dict[str, Any]] = []
        torn: list[dict[str, Any]] = []
        audits, fuzz_cases, fuzz_tracebacks = _audits(report, heal, torn)

    leaked = {
        "agreements_leaked": 0,
        "activities_leaked": 0,
        "processes_leaked": 0,
        "agreements_orphaned": 0,
        "orphans_cancelled": 0,
    }
    beyond = Decimal(0)
    for row in rows:
        audit = audits.get(row["name"].split("::", 1)[-1], {})
        for key in leaked:
            leaked[key] += int(audit.get(key, 0))
        beyond += Decimal(str(audit.get("glm_accepted_beyond_budget", "0")))
        figures = (
            f"agreements={audit['agreements']} leaked={audit['agreements_leaked']} "
            f"processes_left={audit['processes_leaked']} glm={audit['glm_accepted']}"
            if audit
            else ""
        )
        print(f"{row['outcome'].upper():7} {row['seconds']:7.1f}s  {row['name']}  {figures}")
        if row["why"]:
            print(f"        {row['why']}")
    ran = [r for r in rows if r["outcome"] != "skipped"]
    summary = {
        "scenarios_run": len(ran),
        "scenarios_passed": sum(1 for r in ran if r["outcome"] == "passed"),
        **leaked,
        "glm_accepted_beyond_budget": str(beyond),
        "fuzz_cases": fuzz_cases,
        "fuzz_tracebacks": fuzz_tracebacks,
        "localnet_heal": heal,
        "torn_journal": torn,
        "seconds": round(seconds, 1),
        "failed": [r["name"] for r in ran if r["outcome"] == "failed"],
    }
    print(json.dumps(summary))
    return 0 if not summary["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
