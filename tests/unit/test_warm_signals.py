"""The typed command passes signals on to the warm process's fork (cli/warm.py), also one
that arrives before the fork's pid is known."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest

from golem_deploy.cli import warm


@pytest.fixture
def command() -> Iterator[subprocess.Popen[bytes]]:
    """A process standing in for the fork; this process's handlers are put back after."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_signal_before_the_pid_is_known_reaches_the_command_once_it_is(
    command: subprocess.Popen[bytes],
) -> None:
    forward = warm._Forwarder()
    signal.raise_signal(signal.SIGTERM)  # this process lives on: the signal is held
    assert command.poll() is None
    forward.to(command.pid)
    assert command.wait(timeout=10) == -signal.SIGTERM


def test_after_the_pid_signals_go_straight_to_the_command(
    command: subprocess.Popen[bytes],
) -> None:
    forward = warm._Forwarder()
    forward.to(command.pid)
    signal.raise_signal(signal.SIGHUP)
    assert command.wait(timeout=10) == -signal.SIGHUP
