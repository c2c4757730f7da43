#!/usr/bin/env python3
"""The observation simulator: appends a random observation every SIMULATION_INTERVAL
seconds (default 1) to /golem/work/observations.txt until it is killed.

Started in the background by simulate_observations_ctl.py --start. It needs no network and
only the standard library, so it runs on any image with python3 and on the local network.
"""

import os
import random
import time
from pathlib import Path

WORK = Path(os.environ.get("GOLEM_WORK", "/golem/work"))
DATA = WORK / "observations.txt"


def main() -> None:
    interval = float(os.environ.get("SIMULATION_INTERVAL", "1"))
    while True:
        value = random.gauss(100.0, 15.0)
        with DATA.open("a") as data:
            data.write(f"{time.time():.3f} {value:.4f}\n")
        time.sleep(interval)


if __name__ == "__main__":
    main()
