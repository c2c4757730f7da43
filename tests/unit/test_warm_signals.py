"""The typed command passes signals on to the warm process's fork (cli/warm.py), also one
that arrives before the fork's pid is known."""

from __future__ import annotations

import signal
import subprocess

from golem_deploy.cli import warm


def test_a_signal_before_the_pid_is_known_reaches_the_command_once_it_is() -> None:
    before = signal.getsignal(signal.SIGTERM)
    command = subprocess.Popen(["sleep", "60"])
    try:
        forward = warm._Forwarder()
        signal.raise_signal(signal.SIGTERM)  # this process lives on: the signal is held
        assert command.poll() is None
        forward.to(command.pid)
        assert command.wait(timeout=10) == -signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, before)
        if command.poll() is None:
            command.kill()
            command.wait()


def test_after_the_pid_signals_go_straight_to_the_command() -> None:
    before = signal.getsignal(signal.SIGHUP)
    command = subprocess.Popen(["sleep", "60"])
    try:
        forward = warm._Forwarder()
        forward.to(command.pid)
        signal.raise_signal(signal.SIGHUP)
        assert command.wait(timeout=10) == -signal.SIGHUP
    finally:
        signal.signal(signal.SIGHUP, before)
        if command.poll() is None:
            command.kill()
            command.wait()
