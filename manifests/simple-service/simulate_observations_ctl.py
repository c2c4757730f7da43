#!/usr/bin/env python3
"""Start or stop the observation simulator in the background.

--start launches simulate_observations.py detached (own session, stdio to a log file, so
this command returns at once) and records its pid in /golem/work/simulator.pid;
--stop kills that pid and removes the file. Both print what they did.
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("GOLEM_WORK", "/golem/work"))
PIDFILE = WORK / "simulator.pid"
LOG = WORK / "simulator.log"


def start() -> int:
    if PIDFILE.exists():
        print(f"simulator already running (pid {PIDFILE.read_text().strip()})")
        return 1
    with LOG.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "simulate_observations.py")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    PIDFILE.write_text(str(process.pid))
    print(f"simulator started (pid {process.pid})")
    return 0


def stop() -> int:
    if not PIDFILE.exists():
        print("simulator is not running")
        return 1
    pid = int(PIDFILE.read_text())
    with contextlib.suppress(ProcessLookupError):  # already gone: nothing to stop
        os.kill(pid, signal.SIGTERM)
    PIDFILE.unlink()
    print(f"simulator stopped (pid {pid})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="start/stop the observation simulator")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--start", action="store_true")
    group.add_argument("--stop", action="store_true")
    args = parser.parse_args()
    sys.exit(start() if args.start else stop())
