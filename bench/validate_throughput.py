"""Validate throughput: 1,000 manifests in one `golem-deploy validate` call.

    .venv/bin/python bench/validate_throughput.py [--manifests 1000] [--rounds 3]

The manifests are copies of the three examples in manifests/ (hello-world, simple-service,
multi-service), each renamed, in a temporary folder next to a copy of the simple-service
files their mounts point at, so every one is valid and fully checked (schema, semantics,
mount paths). Whole-process wall time of `golem-deploy validate --quiet FILE...`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MANIFESTS, emit, load_average, run_cli, stats

EXAMPLES = ("hello-world", "simple-service", "multi-service")


def make_manifests(folder: Path, count: int) -> list[Path]:
    for child in MANIFESTS.iterdir():
        if child.is_dir():
            shutil.copytree(child, folder / child.name)
    texts = {name: (MANIFESTS / f"{name}.yaml").read_text() for name in EXAMPLES}
    paths = []
    for i in range(count):
        text = texts[EXAMPLES[i % len(EXAMPLES)]]
        renamed = "\n".join(
            f"name: bench-{i}" if line.startswith("name:") else line for line in text.splitlines()
        )
        path = folder / f"m{i:04d}.yaml"
        path.write_text(renamed + "\n")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gd-bench-validate-"))
    try:
        files = [str(p) for p in make_manifests(folder, args.manifests)]
        # cold, each call its own process (no warm process: cli/warm.py)
        env = {**os.environ, "GOLEM_DEPLOY_HOME": str(folder / "home"), "GOLEM_DEPLOY_WARM": "0"}
        run_cli("validate", "--quiet", *files, env=env)  # warm-up; also: all must be valid
        samples = [run_cli("validate", "--quiet", *files, env=env)[0] for _ in range(args.rounds)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    emit(
        {
            "manifests": args.manifests,
            "validate_s": stats(samples),
            "load": load_average(),
        }
    )


if __name__ == "__main__":
    main()
