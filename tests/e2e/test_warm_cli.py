"""The warm process (cli/warm.py): commands handed to it behave as cold ones, end to end.

Each test switches it on (the suite runs commands cold, tests/conftest.py) and stops it at
the end; the `cli` fixture's teardown would kill it otherwise, as it names the test's home.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_helpers import MANIFESTS, REPO, Cli, ExternalNet, processes_mentioning, wait_until

from golem_deploy.cli import warm

pytestmark = pytest.mark.localnet


@pytest.fixture
def warm_cli(cli: Cli) -> Iterator[Cli]:
    """`cli` with the warm process on, started by a first (cold) command."""
    cli.env[warm.SWITCH] = "1"
    cli.ok("validate", str(MANIFESTS / "hello-world.yaml"))
    wait_until(lambda: list((cli.home / "warm").glob("*.sock")), 30, "the warm process")
    try:
        yield cli
    finally:
        warm.stop_all(cli.home)


def _warm_pid(cli: Cli) -> int:
    (pid_file,) = (cli.home / "warm").glob("*.pid")
    return int(pid_file.read_text())


def _alive(pid: int) -> bool:
    """Running (a zombie has ended; only its parent's wait is missing)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_a_cold_command_starts_one_warm_process_and_stop_ends_it(cli: Cli) -> None:
    cli.env[warm.SWITCH] = "0"
    cli.ok("validate", str(MANIFESTS / "hello-world.yaml"))
    assert not (cli.home / "warm").exists()  # switched off: nothing is started
    cli.env[warm.SWITCH] = "1"
    for _ in range(3):
        cli.ok("validate", str(MANIFESTS / "hello-world.yaml"))
        # listening: the next command is handed to it, and starts no other
        wait_until(lambda: list((cli.home / "warm").glob("*.sock")), 30, "the warm process")
    assert len(list((cli.home / "warm").glob("*.sock"))) == 1
    pid = _warm_pid(cli)
    assert "golem_deploy.cli.warm_server" in _cmdline(pid)
    assert warm.stop_all(cli.home) == 1
    assert not _alive(pid)
    assert not list((cli.home / "warm").glob("*.sock"))  # it removed its socket


def test_errors_usage_and_exit_codes_are_those_of_a_cold_command(
    warm_cli: Cli, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nservices:\n  a:\n    payload: {image: foo}\n    bogus: 1\n")
    for args in (
        ("validate", str(bad)),
        ("up",),  # a usage error: exit 2, and the program named as typed
        ("up", str(tmp_path / "missing.yaml")),
        ("status", "-n", "nothing-here"),
        ("down", "-n", "nothing-here"),
    ):
        hot = warm_cli(*args)
        warm_cli.env[warm.SWITCH] = "0"
        cold = warm_cli(*args)
        warm_cli.env[warm.SWITCH] = "1"
        assert (hot.returncode, hot.stdout, hot.stderr) == (
            cold.returncode,
            cold.stdout,
            cold.stderr,
        ), args
        assert hot.returncode != 0


def test_up_status_down_run_in_the_warm_process(warm_cli: Cli, external_net: ExternalNet) -> None:
    manifest = str(MANIFESTS / "hello-world.yaml")
    up = warm_cli.ok("up", "-d", manifest)
    assert "is up" in up.stderr
    supervisor = warm_cli.supervisor_pid("hello-world")
    # forked by the warm process's fork: it carries the warm process's command line
    assert "golem_deploy.cli.warm_server" in _cmdline(supervisor)
    status = warm_cli.ok("status", "-n", "hello-world")
    warm_cli.env[warm.SWITCH] = "0"
    cold = warm_cli.ok("status", "-n", "hello-world")
    assert _steady(status.stdout) == _steady(cold.stdout)
    warm_cli.env[warm.SWITCH] = "1"
    warm_cli.ok("down", "-n", "hello-world")
    kinds = [record["kind"] for record in warm_cli.journal("hello-world")]
    assert kinds[-1] == "DeploymentStopped"
    assert not _alive(supervisor)


def test_ctrl_c_reaches_the_command_and_a_killed_caller_ends_it(
    warm_cli: Cli, external_net: ExternalNet, tmp_path: Path
) -> None:
    manifest = str(MANIFESTS / "hello-world.yaml")
    # Ctrl-C (SIGINT to the typed command) is passed on: attached `up` goes down gracefully.
    attached = warm_cli.popen("up", manifest, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: "DeploymentRunning" in _kinds(warm_cli, "hello-world"), 120, "running")
        attached.send_signal(signal.SIGINT)
        out, err = attached.communicate(timeout=120)
    finally:
        if attached.poll() is None:
            attached.kill()
            attached.wait()
    assert attached.returncode == 0, out + err  # as a cold `up` after a graceful down
    assert "everything released" in out
    assert _kinds(warm_cli, "hello-world")[-1] == "DeploymentStopped"
    # A SIGKILLed caller: its command dies with it, as a cold one would, and the
    # deployment it showed keeps running (its supervisor is its own process).
    second = tmp_path / "second.yaml"
    second.write_text(Path(manifest).read_text().replace("name: hello-world", "name: second"))
    attached = warm_cli.popen("up", str(second), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: "DeploymentRunning" in _kinds(warm_cli, "second"), 120, "running")
    forks = _forks(warm_cli)
    assert len(forks) == 1
    attached.kill()
    attached.wait()
    wait_until(lambda: not _forks(warm_cli), 10, "the killed caller's command to end")
    assert warm_cli.status("second")["state"] == "running"
    warm_cli.ok("down", "-n", "second")


def _steady(status: str) -> list[str]:
    """A plain `status` without what changes from one second to the next (age, expiry,
    the instance's last output line)."""
    return [re.sub(r" up=\S+| expires=\S+| \|.*", "", line) for line in status.splitlines()]


def _kinds(cli: Cli, name: str) -> list[str]:
    path = cli.deployment_dir(name) / "journal.jsonl"
    return [r["kind"] for r in cli.journal(name)] if path.exists() else []


def _forks(cli: Cli) -> list[int]:
    """The warm process's forks running a command now (the supervisor has its own session)."""
    server = _warm_pid(cli)
    found = []
    for pid, _ in processes_mentioning(str(cli.home)):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == server and pid != server:  # its parent is the warm process
            found.append(pid)
    return found


def test_the_warm_process_ends_when_its_socket_is_taken_away(warm_cli: Cli) -> None:
    pid = _warm_pid(warm_cli)
    for path in (warm_cli.home / "warm").glob("*.sock"):
        os.unlink(path)
    wait_until(lambda: not _alive(pid), 10, "the warm process to end")


def test_attached_up_in_a_terminal_draws_its_table_and_goes_down_on_a_typed_ctrl_c(
    warm_cli: Cli, external_net: ExternalNet
) -> None:
    """The fork writes to the typed command's terminal (a pseudo-terminal here) and the
    terminal's Ctrl-C, which only the typed command receives, reaches it."""
    argv = [sys.executable, "-m", "golem_deploy", "up", str(MANIFESTS / "hello-world.yaml")]
    pid, terminal = pty.fork()
    if pid == 0:  # the child: becomes the typed command, in the new terminal
        os.chdir(REPO)
        os.execve(sys.executable, argv, {**warm_cli.env, "TERM": "xterm-256color"})
    shown = b""

    def read_for(seconds: float, until: bytes) -> None:
        nonlocal shown
        deadline = time.monotonic() + seconds
        while until not in shown and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.2)[0]:
                try:
                    shown += os.read(terminal, 65536)
                except OSError:  # the terminal closed: the command ended
                    return

    try:
        read_for(120, b"running")
        assert b"running" in shown and b"\x1b[" in shown  # the live table, in colour
        assert "golem_deploy.cli.warm_server" in _cmdline(warm_cli.supervisor_pid("hello-world"))
        os.write(terminal, b"\x03")  # Ctrl-C, typed
        read_for(120, b"everything released")
        _, status = os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"everything released" in shown
