"""How fast an idle deployment's folder grows on disk, and where.

    .venv/bin/python bench/state_growth.py [--minutes 5] [--instances 1] [--every 15]

`golem-deploy up -d` of manifests/hello-world.yaml (N instances, embedded local network),
then the deployment folder is measured every `--every` seconds for `--minutes`, split by
what grows: the local network's yagna databases (SQLite main files), their write-ahead
logs (`*-wal`, `*-shm`), yagna's own log files, the journal, the instance logs, the rest.
Prints one line per sample and, as its LAST line, one JSON object with each part's size at
the first sample after the warm-up minute and at the end, and its growth per minute and
per instance-hour over that window (the first minute fills empty WAL files and is not the
steady state), from the end points and as a least-squares fit through every sample of the
window (the WAL files swing between checkpoints). Then `down`.

Sizes are allocated bytes (`st_blocks * 512`), what the disk loses: a WAL file keeps its
high-water size until SQLite truncates it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_home, emit, hello_manifest, isolate, run_cli

WARMUP_S = 60.0


def part_of(relative: Path) -> str:
    """Which part of the deployment folder a file belongs to."""
    name = relative.name
    parts = relative.parts
    if parts[0] == "localnet" and "yagna" in parts:
        if name.endswith(("-wal", "-shm")):
            return "yagna_wal"
        if name.endswith(".db"):
            return "yagna_db"
        if name.endswith(".log") or "logs" in parts:
            return "yagna_logs"
        return "yagna_other"
    if parts[0] == "localnet":
        return "localnet_other"
    if name.startswith("journal.jsonl"):
        return "journal"
    if parts[0] == "logs":
        return "instance_logs"
    return "other"


def slope_per_hour(samples: Sequence[Mapping[str, Any]], key: str) -> float:
    """Least-squares growth of `key` per hour over samples with a time `t` in seconds (0
    with fewer than 2). A WAL file swings between checkpoints: a line through every sample
    says more about the trend than the first and the last."""
    if len(samples) < 2:
        return 0.0
    ts = [s["t"] / 3600 for s in samples]
    ys = [float(s[key]) for s in samples]
    mean_t, mean_y = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mean_t) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return float(sum((t - mean_t) * (y - mean_y) for t, y in zip(ts, ys, strict=True)) / var)


def measure(folder: Path) -> dict[str, int]:
    """Allocated bytes per part; never crosses into a mount (an activity's sandbox mounts
    /proc and its image inside its work dir)."""
    sizes: dict[str, int] = {}
    device = folder.stat().st_dev
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if _same_device(Path(root) / d, device)]
        for name in files:
            path = Path(root) / name
            try:
                st = path.lstat()
            except OSError:
                continue  # rotated or removed while we looked
            part = part_of(path.relative_to(folder))
            sizes[part] = sizes.get(part, 0) + st.st_blocks * 512
    sizes["total"] = sum(sizes.values())
    return sizes


def _same_device(path: Path, device: int) -> bool:
    try:
        return path.lstat().st_dev == device and not os.path.ismount(path)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--every", type=float, default=15.0)
    args = parser.parse_args()
    isolate()
    with bench_home("gd-bench-growth-") as (home, env):
        manifest = hello_manifest(home, "growth", args.instances)
        run_cli("up", "-d", str(manifest), env=env, timeout=300)
        folder = home / "deployments" / "growth"
        began = time.monotonic()
        samples: list[tuple[float, dict[str, int]]] = []
        try:
            while (elapsed := time.monotonic() - began) <= args.minutes * 60:
                sizes = measure(folder)
                samples.append((elapsed, sizes))
                shown = " ".join(f"{k}={v / 1e6:.2f}MB" for k, v in sorted(sizes.items()))
                print(f"{elapsed:6.0f}s {shown}", flush=True)
                time.sleep(args.every)
        finally:
            run_cli("down", "-n", "growth", env=env, check=False, timeout=300)
    steady = [s for s in samples if s[0] >= WARMUP_S] or samples
    (t0, first), (t1, last) = steady[0], samples[-1]
    minutes = max((t1 - t0) / 60, 1e-9)
    parts = sorted(set(first) | set(last))
    growth = {p: (last.get(p, 0) - first.get(p, 0)) / minutes for p in parts}
    fit = [{"t": t, **{p: sizes.get(p, 0) for p in parts}} for t, sizes in steady]
    emit(
        {
            "bench": "state_growth",
            "instances": args.instances,
            "window_s": round(t1 - t0, 1),
            "start_mb": {p: round(first.get(p, 0) / 1e6, 3) for p in parts},
            "end_mb": {p: round(last.get(p, 0) / 1e6, 3) for p in parts},
            "growth_kb_per_min": {p: round(g / 1e3, 1) for p, g in growth.items()},
            "growth_mb_per_instance_hour": {
                p: round(g * 60 / 1e6 / args.instances, 3) for p, g in growth.items()
            },
            "fit_mb_per_instance_hour": {
                p: round(slope_per_hour(fit, p) / 1e6 / args.instances, 3) for p in parts
            },
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
