"""Bounded state: a chatty service's log files stay within its `logs` settings.

A service printing without pause must not fill the disk: each instance's log file is
rotated at `logs.max_size`, at most `logs.max_files` files are kept, and `golem-deploy logs`
still shows the recent lines across the rotation. Ends with the shared audit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli_helpers import Cli, wait_until
from _harness import Scenario, service

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(300)]

MAX_SIZE = 2048
# A time-stamped ~100-byte line (~130 in the file), 10 of them per run step: a rotation
# about every two steps, about 45 lines in the three files.
CHATTY = (
    'i=0; while [ $i -lt 10 ]; do i=$((i+1)); echo "$(date +%s%N) line $i $(printf %040d 0)"; done'
)


def test_log_rotation_under_a_chatty_service(cli: Cli, tmp_path: Path) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "chatty",
        {
            "app": service(
                run={"every": "200ms", "steps": [["/bin/sh", "-c", CHATTY]]},
                logs={"max_size": "2KB", "max_files": 3},
            )
        },
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    logs = scenario.folder / "logs"
    # Two rotations at least: .1 and .2 exist, so the oldest file has been dropped since.
    wait_until(lambda: (logs / "app.0.log.2").exists(), 90, "two rotations of app.0.log")
    wait_until(
        lambda: len(scenario.cli.ok("logs", "-n", "chatty").stdout.splitlines()) > 30,
        60,
        "more lines than one file holds",
    )

    files = sorted(p.name for p in logs.iterdir() if p.name.startswith("app.0.log"))
    assert files == ["app.0.log", "app.0.log.1", "app.0.log.2"], files
    for name in files[1:]:  # the rotated ones are whole, each at most max_size
        size = (logs / name).stat().st_size
        assert 0 < size <= MAX_SIZE, (name, size)
        assert (logs / name).read_text().endswith("\n")
    tail = scenario.cli.ok("logs", "-n", "chatty", "--tail", "30").stdout.splitlines()
    assert len(tail) == 30, tail
    current = (logs / "app.0.log").read_text().count("\n")
    assert current < 30  # so the tail reached into the rotated files
    texts = [line.split(" | ", 1)[1] for line in tail]
    stamps = [int(text.split()[0]) for text in texts if text[:1].isdigit()]  # output lines
    assert stamps == sorted(stamps) and len(stamps) >= 20, tail

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit()
