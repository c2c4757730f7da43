"""Supervisor cost at scale: RSS and CPU of the supervisor with 100 running instances.

    .venv/bin/python bench/supervisor_cost.py [--instances 100] [--seconds 60] [--status-rounds 5]
                                              [--profile FILE]

A standalone local network with enough providers is started, then `golem-deploy up -d`
of hello-world with N instances (each prints the date every 5 s, so the supervisor keeps
receiving output, debit notes and state polls: its steady state, not a frozen process).
Once every instance runs, the supervisor's CPU time and RSS are sampled once a second for
`seconds`; the local network's processes (requestor and provider yagna daemons, the host
process with the provider agents and ExeUnits) are reported separately. `status --json`
is also timed against this deployment (status_json_ms_N, alternating with `python -c pass`
as its yardstick: "ratio" = median / yardstick median), then it goes down. up_s and down_s
each come right after one sample of the yagna yardstick (_yardstick.YagnaRoundTrip):
up_ratio, down_ratio.

`--restart on-failure` gives the service that restart policy, so an instance an overloaded
machine's local network loses is replaced instead of failing the whole `up -d` (what made
100-instance runs fail at load 20+); the replacements are counted in `restarts`.
`yagna_requests_per_s` is what the requestor's yagna answered during the sampling window
(its access log, which the local network keeps quiet unless told:
GOLEM_DEPLOY_LOCALNET_RUST_LOG, set here), nearly all of it the supervisor's requests;
`yagna_requests_by_kind` splits it by what was asked ("GET exec stream" is a batch's
live-output stream, "GET exec results" its results long poll, "GET activity state" a
watcher's look...), per second: a load-independent figure, unlike CPU %.

`--debit-note-interval 5s` asks for debit notes that often (the manifest's
`payment.debit_note_interval`); by default the interval is negotiated (the local providers
offer 120 s). bench/debit_notes_ab.py alternates the two.

CPU% is of one core (100 = one core busy the whole time). `--profile FILE` also records
the supervisor with py-spy (`pip install py-spy`) during the sampling window, as
collapsed stacks with native frames (400 samples a second; where the supervisor's CPU
goes, system calls included: that is how getpid() under every anyio call was found). py-spy
pauses the process for each sample, so a profiled run's CPU figures are not comparable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    bench_home,
    emit,
    hello_manifest,
    isolate,
    load_average,
    local_network,
    proc_cpu_seconds,
    proc_rss_mb,
    providers_for,
    run_cli,
    stats,
)
from _image import served_image
from _yardstick import YagnaRoundTrip, alternate, python_pass_s, ratio

#: An access-log line of yagna (actix-web): `[2026-12-02T02:55:39.381+0000 INFO
#: actix_web::middleware::logger] 127.0.0.1 "GET /payment-api/v1/... HTTP/1.1" 200 ...`
_ACCESS = re.compile(
    r'^\[(\S+) +INFO +actix_web::middleware::logger\] \S+ "(\w+) ([^ "?]*)(\?[^ "]*)? '
)
#: yagna's log level for the bench's local network: its default, plus actix's line for
#: every request answered (what `requests_between` counts).
ACCESS_LOG = "info,actix_web::middleware::logger=info,ya_vpn=warn"
#: (method, path pattern, whether a query string, kind): the first that matches names it.
_KINDS = [
    ("POST", re.compile(r"/activity-api/v1/activity/[^/]+/exec$"), None, "POST exec"),
    ("GET", re.compile(r"/activity-api/v1/activity/[^/]+/exec/[^/]+$"), True, "GET exec results"),
    ("GET", re.compile(r"/activity-api/v1/activity/[^/]+/exec/[^/]+$"), False, "GET exec stream"),
    ("GET", re.compile(r"/activity-api/v1/activity/[^/]+/state$"), None, "GET activity state"),
    ("GET", re.compile(r"/payment-api/v1/debitNoteEvents$"), None, "GET debitNoteEvents"),
    ("GET", re.compile(r"/payment-api/v1/invoiceEvents$"), None, "GET invoiceEvents"),
    ("GET", re.compile(r"/market-api/v1/agreementEvents$"), None, "GET agreementEvents"),
]


def request_kind(method: str, path: str, query: bool) -> str:
    """What a request of the access log asked, e.g. "GET exec stream" (else method + path
    with its ids cut)."""
    for want, pattern, with_query, kind in _KINDS:
        if method == want and pattern.search(path) and with_query in (None, query):
            return kind
    return f"{method} {re.sub(r'/([A-Z]-)?[0-9a-f-]{16,}', '/{id}', path)}"


def requests_between(log: Path, began: datetime, ended: datetime) -> Counter[str]:
    """Requests the yagna daemon writing `log` answered between the two times, by kind."""
    count: Counter[str] = Counter()
    with log.open(errors="replace") as lines:
        for line in lines:
            match = _ACCESS.match(line)
            if match is None:
                continue
            at = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%f%z")
            if began <= at <= ended:
                count[request_kind(match.group(2), match.group(3), bool(match.group(4)))] += 1
    return count


def requests_in_logs(logs: Path, daemon: str, began: datetime, ended: datetime) -> Counter[str]:
    """Requests the local network's `daemon` ("requestor") answered between the two times,
    by kind, from its log in the network's `logs` folder and the one rotated before it."""
    files = [logs / f"{daemon}.log.1", logs / f"{daemon}.log"]
    return sum((requests_between(log, began, ended) for log in files if log.exists()), Counter())


def network_pids(state_dir: Path) -> dict[str, int]:
    """The local network's processes by role, from its pid files."""
    pids = {}
    for path in sorted((state_dir / "pids").glob("*.json")):
        pids[path.stem] = int(json.loads(path.read_text())["pid"])
    return pids


def sample(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """CPU% (of one core) over the window and RSS (median, max) of each process."""
    cpu0 = {role: proc_cpu_seconds(pid) for role, pid in pids.items()}
    rss: dict[str, list[float]] = {role: [] for role in pids}
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        for role, pid in pids.items():
            try:
                rss[role].append(proc_rss_mb(pid))
            except FileNotFoundError:
                ended = f"the {role} process (pid {pid}) ended during the measurement"
                raise SystemExit(ended) from None
        time.sleep(1.0)
    wall = time.monotonic() - began
    return {
        role: {
            "cpu_pct": round(100 * (proc_cpu_seconds(pid) - cpu0[role]) / wall, 2),
            "rss_mb": round(statistics.median(rss[role]), 1),
            "rss_mb_max": round(max(rss[role]), 1),
        }
        for role, pid in pids.items()
    }


def with_restart(manifest: Path, policy: str) -> None:
    """Give the (one) service of `manifest` the restart policy `policy`."""
    lines = manifest.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("instances:"))
    lines[at + 1 : at + 1] = ["    restart:", f"      policy: {policy}"]
    manifest.write_text("\n".join(lines) + "\n")


def restarts(status_json: str) -> int:
    """Replacements over all instances, from `status --json`."""
    status = json.loads(status_json)
    return sum(
        int(instance.get("restarts", 0))
        for service in status.get("services", [])
        for instance in service.get("instances", [])
    )


@contextlib.contextmanager
def profiled(pid: int, seconds: float, out: Path | None) -> Iterator[None]:
    """Record `pid` with py-spy while the body runs (nothing when `out` is None)."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--pid", str(pid), "--rate", "400", "--native", "--format", "raw"]
    command += ["--duration", str(int(seconds)), "--output", str(out)]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        _, err = recorder.communicate(timeout=seconds + 60)
        if recorder.returncode != 0:
            print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--status-rounds", type=int, default=5)
    parser.add_argument("--profile", type=Path, help="write py-spy collapsed stacks here")
    parser.add_argument(
        "--debit-note-interval", help="payment.debit_note_interval (default: negotiated)"
    )
    parser.add_argument("--restart", help="the service's restart.policy (default: never)")
    args = parser.parse_args()
    isolated = isolate()
    os.environ.setdefault("GOLEM_DEPLOY_LOCALNET_RUST_LOG", ACCESS_LOG)
    n = args.instances
    result: dict[str, object] = {"isolated_netns": isolated, "instances": n}
    with bench_home("gd-bench-supervisor-") as (home, env), served_image() as image:
        count = providers_for(n)
        with (
            local_network(home, env, count) as net_env,
            YagnaRoundTrip(net_env, image) as yardstick,
        ):
            name = f"hello-{n}"
            manifest = hello_manifest(home, name, n)
            if args.debit_note_interval:
                with manifest.open("a") as text:
                    text.write(f"payment:\n  debit_note_interval: {args.debit_note_interval}\n")
                result["debit_note_interval"] = args.debit_note_interval
            if args.restart:
                with_restart(manifest, args.restart)
                result["restart"] = args.restart
            network = network_pids(home / "localnet" / f"p{count}")
            yardstick.sample()  # warm-up, untimed
            ys = [yardstick.sample()]
            before = {role: proc_cpu_seconds(pid) for role, pid in network.items()}
            up_began = datetime.now().astimezone()
            up, _ = run_cli("up", "-d", "--timeout", "5m", str(manifest), env=net_env)
            try:
                supervisor = int((home / "deployments" / name / "supervisor.pid").read_text())
                # CPU seconds each process spent while `up -d` ran (the supervisor: since
                # it started): where the time to running goes on a 2-core machine.
                during_up = {"supervisor": proc_cpu_seconds(supervisor)}
                for role, pid in network.items():
                    during_up[role] = proc_cpu_seconds(pid) - before[role]
                result["cpu_s_during_up"] = {k: round(v, 2) for k, v in during_up.items()}
                # What each yagna daemon was asked while `up -d` ran, in requests per
                # instance: what the CPU seconds above were spent answering.
                logs = home / "localnet" / f"p{count}" / "logs"
                up_ended = datetime.now().astimezone()
                result["requests_per_instance_during_up"] = {
                    daemon: {
                        kind: round(number / n, 2)
                        for kind, number in requests_in_logs(
                            logs, daemon, up_began, up_ended
                        ).most_common()
                    }
                    for daemon in ("requestor", "provider")
                }
                pids = {"supervisor": supervisor, **network}
                result["load_before"] = load_average()
                began = datetime.now().astimezone()
                with profiled(supervisor, args.seconds, args.profile):
                    measured = sample(pids, args.seconds)
                ended = datetime.now().astimezone()
                result["load_after"] = load_average()
                served = requests_in_logs(logs, "requestor", began, ended)
                window = (ended - began).total_seconds()
                result["yagna_requests_per_s"] = round(served.total() / window, 1)
                result["yagna_requests_by_kind"] = {
                    kind: round(count / window, 2) for kind, count in served.most_common()
                }
                result["supervisor"] = measured.pop("supervisor")
                result["localnet"] = measured
                status = ["status", "-n", name, "--json"]
                py, ms = alternate(
                    python_pass_s, lambda: run_cli(*status, env=net_env)[0], args.status_rounds
                )
                result[f"status_json_ms_{n}"] = {
                    **stats([m * 1000 for m in ms], digits=1),
                    "yardstick_ms": stats([y * 1000 for y in py], digits=1),
                    "ratio": ratio(ms, py),
                }
                ys.append(yardstick.sample())
                result["restarts"] = restarts(run_cli(*status, env=net_env)[1].stdout)
            finally:
                down, _ = run_cli("down", "-n", name, env=net_env, check=False)
        result.update(providers=count, up_s=round(up, 3), down_s=round(down, 3))
        # One sample each, so bench/run --quick can take up_100/down_100 from here.
        result.update(
            yardstick_s=stats(ys), up_ratio=ratio([up], ys[:1]), down_ratio=ratio([down], ys[1:])
        )
    result["seconds"] = args.seconds
    emit(result)


if __name__ == "__main__":
    main()
