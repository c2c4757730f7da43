"""The supervisor learns of a local network process's death at once, from real processes.

`first_death` waits on pidfds: no poll interval decides how soon it knows. These tests stand
real processes (a sleeping Python, carrying the marker in their command line as the daemons carry
their data dir) in for the requestor, provider and host, record them as the local network
does, and end them by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from golem_deploy.localnet.records import write_pid_file
from golem_deploy.supervisor.localnet_watch import Part, first_death, recorded_parts

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Three stand-in processes recorded under tmp_path/pids, like a running network's."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name in ("requestor", "provider", "host"):
        marker = str(tmp_path / name)
        # The marker is in the command line, as a daemon's -d DIR is.
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker])
        processes[name] = process
        write_pid_file(tmp_path, name, process.pid, marker)
    try:
        yield processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()


def test_the_first_process_to_die_is_named_at_once(
    tmp_path: Path, network: dict[str, subprocess.Popen[bytes]]
) -> None:
    parts = recorded_parts(tmp_path)
    assert [part.name for part in parts] == ["requestor", "provider", "host"]
    assert parts[1].died() == (
        f"the local network's provider yagna daemon (pid {network['provider'].pid}) died"
    )

    async def main() -> Part:
        async with anyio.create_task_group() as tg:
            found: list[Part] = []

            async def wait() -> None:
                found.append(await first_death(parts))

            tg.start_soon(wait)
            await anyio.sleep(0.2)
            assert not found  # nothing died yet: it waits, it does not guess
            network["provider"].send_signal(signal.SIGKILL)
        return found[0]

    assert anyio.run(main).name == "provider"


def test_a_daemon_is_named_before_the_host_that_stopped_because_of_it(
    tmp_path: Path, network: dict[str, subprocess.Popen[bytes]]
) -> None:
    """The host ends the network when a daemon dies: when both are gone, the daemon's death
    is the cause worth reporting."""
    parts = recorded_parts(tmp_path)
    for name in ("host", "requestor"):
        network[name].kill()
        network[name].wait()
    assert anyio.run(first_death, parts).name == "requestor"


def test_a_recorded_pid_that_now_runs_something_else_counts_as_dead(
    tmp_path: Path, network: dict[str, subprocess.Popen[bytes]]
) -> None:
    parts = recorded_parts(tmp_path)
    impostor = Part("host", os.getpid(), str(tmp_path / "host"))  # alive, not the host
    assert anyio.run(first_death, [*parts[:2], impostor]) == impostor
