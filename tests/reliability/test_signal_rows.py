"""Fault matrix rows 10c-10e: the signals a deployment's processes get from the world
besides Ctrl-C (row 10a) -- `kill PID`, a container or systemd stop, a cancelled CI job
(SIGTERM), a closed terminal (SIGHUP).

- 10c: attached `up` must go down as Ctrl-C does: a graceful down (shutdown steps run,
  agreements terminated, invoices settled), then exit 0. SIGTERM is sent as `kill` does,
  also after the reader of `up`'s output went away; SIGHUP comes from the kernel, by
  closing the pseudo-terminal `up` runs in (its controlling terminal), plus the one a
  shell passes on to its jobs -- a second SIGHUP that must not force the down, where a
  second SIGTERM does, as a second Ctrl-C. `logs -f` and `status --watch` end quietly.
- 10d: `up -d` SIGTERMed while it waits stops waiting (exit 143) and the deployment
  keeps starting; its supervisor lives in its own session (a closing terminal never
  signals it), ignores SIGHUP, and takes SIGTERM as a graceful down.
- 10e: `down` in a terminal that closes under it finishes all the same.

Each row ends with `Scenario.audit()` (_harness.py): no process of ours, nothing held,
every agreement Terminated in the requestor yagna's own records.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import threading
from pathlib import Path
from typing import IO, Any

import pytest
from _cli_helpers import REPO, Cli, wait_until
from _harness import Scenario, finish, service

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(420)]

BYE = [["/bin/echo", "bye"]]  # the shutdown step a graceful down runs


def _running(scenario: Scenario) -> None:
    scenario.wait_for_record(
        "the deployment running", lambda r: r["kind"] == "DeploymentRunning", 180
    )


def _first_line(stream: IO[str] | None, what: str) -> str:
    """The first line a command printed (bounded wait): it comes from the command's loop,
    where an interrupt is handled."""
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], 120)
    line = stream.readline() if ready else ""
    assert line, f"{what} printed nothing"
    return line


def _supervisor_pid(scenario: Scenario) -> int:
    pid = scenario.cli.supervisor_pid(scenario.name)
    # Its own session: a terminal's SIGHUP goes to the session it controls, never here.
    assert os.getsid(pid) == pid
    return pid


def _gone(pid: int) -> bool:
    """No such process, or a zombie only its parent's wait() keeps."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def _went_down_gracefully(scenario: Scenario, supervisor: int) -> None:
    """The supervisor itself went down (not killed, not recovered after it), shutdown
    steps and all, and is gone; `status` says so."""
    records = scenario.journal()
    kinds = [r["kind"] for r in records]
    assert "DownRequested" in kinds, kinds
    assert "DownTimedOut" not in kinds, kinds
    stopped = [r for r in records if r["kind"] == "DeploymentStopped"]
    assert stopped and stopped[-1]["clean"] is True, stopped
    # Not a forced down: nothing was left for recovery (cli's finish_down) to release.
    assert not stopped[-1].get("recovered"), stopped
    assert not [r for r in records if r.get("reason") == "recovery"], records[-10:]
    assert "| bye" in scenario.cli.ok("logs", "-n", scenario.name).stdout  # shutdown ran
    assert _gone(supervisor)
    status = scenario.status()
    assert status["state"] == "stopped" and status["supervisor"]["alive"] is False, status


# ---- row 10c: attached `up` gets SIGTERM or SIGHUP -----------------------------------------


def test_row10c_sigterm_to_attached_up_goes_down_like_ctrl_c(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli, tmp_path, "row10c-term", {"app": service(instances=2, shutdown=BYE)}
    )
    attached = scenario.popen_up()  # no terminal: plain lines
    try:
        _first_line(attached.stdout, "up")
        _running(scenario)
        supervisor = _supervisor_pid(scenario)
        _followers_end_quietly(scenario)
        attached.send_signal(signal.SIGTERM)
        attached.wait(240)
    finally:
        out, err = finish(attached, 30)
    assert attached.returncode == 0, out + err  # as after Ctrl-C (row 10a)
    assert "going down" in out and "everything released" in out, out
    assert "Traceback" not in err, err
    down_requested = [r for r in scenario.journal() if r["kind"] == "DownRequested"]
    assert len(down_requested) == 1, down_requested  # one graceful down, never forced
    _went_down_gracefully(scenario, supervisor)
    scenario.audit()


def test_row10c_sigterm_when_nobody_reads_the_output_still_goes_down(
    cli: Cli, tmp_path: Any
) -> None:
    """`up | tee log` in a CI job that is cancelled: tee ends first, so every line `up`
    prints from then on meets a broken pipe; the down must still happen in full."""
    scenario = Scenario.create(
        cli, tmp_path, "row10c-pipe", {"app": service(instances=1, shutdown=BYE)}
    )
    attached = scenario.popen_up()
    try:
        _first_line(attached.stdout, "up")
        _running(scenario)
        supervisor = _supervisor_pid(scenario)
        assert attached.stdout is not None
        attached.stdout.close()  # the reader is gone
        attached.send_signal(signal.SIGTERM)
        attached.wait(240)
    finally:
        if attached.poll() is None:
            attached.kill()
            attached.wait()
        err = attached.stderr.read() if attached.stderr else ""
    assert attached.returncode == 0, err
    assert "Traceback" not in err, err
    _went_down_gracefully(scenario, supervisor)
    scenario.audit()


def test_row10c_a_second_sigterm_forces_like_a_second_ctrl_c(cli: Cli, tmp_path: Any) -> None:
    """SIGTERM, then SIGTERM again while the shutdown step still runs: the supervisor is
    killed and `up` releases what its journal lists, as after a second Ctrl-C."""
    hang = [["/bin/sleep", "600"]]  # a shutdown step only forcing ends
    scenario = Scenario.create(
        cli, tmp_path, "row10c-force", {"app": service(instances=1, shutdown=hang)}
    )
    attached = scenario.popen_up()
    try:
        _first_line(attached.stdout, "up")
        _running(scenario)
        supervisor = _supervisor_pid(scenario)
        attached.send_signal(signal.SIGTERM)
        scenario.wait_for_record("down requested", lambda r: r["kind"] == "DownRequested", 60)
        attached.send_signal(signal.SIGTERM)
        attached.wait(240)
    finally:
        out, err = finish(attached, 30)
    assert attached.returncode == 0, out + err
    assert "everything released" in out, out
    assert "Traceback" not in err, err
    assert _gone(supervisor)
    stopped = [r for r in scenario.journal() if r["kind"] == "DeploymentStopped"]
    assert stopped and stopped[-1].get("recovered") is True, stopped  # forced, then recovered
    scenario.audit()


def _followers_end_quietly(scenario: Scenario) -> None:
    """What a user may have open in other terminals ends quietly on SIGTERM, once it
    follows (before that, SIGTERM ends it as Ctrl-C would: exit 143 / 130)."""
    logs = scenario.cli.popen(
        "logs", "-f", "-n", scenario.name, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    watch, master = _in_a_terminal("status", "--watch", "-n", scenario.name, cli=scenario.cli)
    screen = _Screen(master)
    try:
        _first_line(logs.stdout, "logs -f")
        wait_until(lambda: b"INSTANCE" in screen.seen, 60, "the status --watch table")
        for follower in (logs, watch):
            follower.send_signal(signal.SIGTERM)
            follower.wait(60)
    finally:
        _out, err = finish(logs, 30)
        finish(watch, 30)
        screen.close()
    assert logs.returncode == 0, err
    assert "Traceback" not in err, err
    assert watch.returncode == 0, screen.seen[-2000:]
    assert b"Traceback" not in screen.seen, screen.seen[-2000:]


def _in_a_terminal(*args: str, cli: Cli) -> tuple[subprocess.Popen[str], int]:
    """`golem-deploy ARGS` in a pseudo-terminal that is its controlling terminal, as a
    shell in a terminal window starts it; the terminal's master end is returned."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x00\x28\x00\x78\x00\x00\x00\x00")  # 40x120

    def session() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # after setsid: the pty becomes its terminal

    env = {k: v for k, v in cli.env.items() if k not in ("NO_COLOR", "COLUMNS")}
    process = subprocess.Popen(
        [sys.executable, "-m", "golem_deploy", *args],
        env={**env, "TERM": "xterm-256color"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=session,
        text=True,
        cwd=REPO,
    )
    os.close(slave)
    return process, master


class _Screen:
    """Reads the terminal's master end (a full pty would block the writer) until stopped."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.seen = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    return

    def close(self) -> None:
        """The terminal window closes: the kernel hangs the terminal up and sends SIGHUP
        to its session's leader. (The reader stops first: a read in progress would keep
        the master open.)"""
        self._stop.set()
        self._thread.join()
        os.close(self.master)


def test_row10c_closed_terminal_sighup_goes_down_like_ctrl_c(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli, tmp_path, "row10c-hup", {"app": service(instances=2, shutdown=BYE)}
    )
    attached, master = _in_a_terminal(*scenario.up_args(), cli=cli)
    screen = _Screen(master)
    try:
        _running(scenario)
        supervisor = _supervisor_pid(scenario)
        wait_until(lambda: b"running" in screen.seen, 30, "the live table on the terminal")
        screen.close()
        scenario.wait_for_record("down requested", lambda r: r["kind"] == "DownRequested", 60)
        # The shell's SIGHUP passed on, or the kernel's when the session leader exits:
        # during the down, and no second Ctrl-C (that would force it).
        attached.send_signal(signal.SIGHUP)
        attached.wait(240)
    finally:
        finish(attached, 30)
    assert attached.returncode == 0
    down_requested = [r for r in scenario.journal() if r["kind"] == "DownRequested"]
    assert len(down_requested) == 1, down_requested  # one graceful down, never forced
    _went_down_gracefully(scenario, supervisor)
    scenario.audit()


# ---- row 10e: the terminal `down` runs in is closed ----------------------------------------


def test_row10e_down_in_a_closed_terminal_finishes(cli: Cli, tmp_path: Any) -> None:
    slow_bye = [["/bin/sleep", "4"], ["/bin/echo", "bye"]]  # the down outlasts the terminal
    scenario = Scenario.create(
        cli, tmp_path, "row10e", {"app": service(instances=1, shutdown=slow_bye)}
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    supervisor = _supervisor_pid(scenario)
    down, master = _in_a_terminal("down", "-n", scenario.name, cli=cli)
    screen = _Screen(master)
    try:
        scenario.wait_for_record("down requested", lambda r: r["kind"] == "DownRequested", 60)
        assert down.poll() is None  # still going down (its shutdown step sleeps)
        screen.close()  # the kernel sends `down` SIGHUP
        down.wait(240)
    finally:
        finish(down, 30)
    assert down.returncode == 0  # finished, not cut short (129)
    _went_down_gracefully(scenario, supervisor)
    scenario.audit()


# ---- row 10d: the supervisor of `up -d` gets SIGHUP, then SIGTERM -----------------------


def test_row10d_supervisor_ignores_sighup_and_goes_down_on_sigterm(cli: Cli, tmp_path: Any) -> None:
    slow = {f"local-provider-{k}": {"slow_start": "5s"} for k in (1, 2, 3)}
    scenario = Scenario.create(
        cli, tmp_path, "row10d", {"app": service(instances=1, shutdown=BYE)}, faults=slow
    )
    # `up -d` SIGTERMed while it waits (the start takes 5 s at least): it stops waiting,
    # the deployment keeps starting.
    waiting = scenario.popen_up("-d", "--timeout", "3m")
    try:
        first = _first_line(waiting.stderr, "up -d")
        assert first.startswith("row10d: "), first  # "row10d: 0/1 running": it waits
        waiting.send_signal(signal.SIGTERM)
        waiting.wait(60)
    finally:
        _out, err = finish(waiting, 30)
    assert waiting.returncode == 143, err
    assert "stopped waiting" in err and "keeps starting" in err, err
    assert "Traceback" not in err, err
    _running(scenario)
    supervisor = _supervisor_pid(scenario)
    os.kill(supervisor, signal.SIGHUP)
    # Sent after it, SIGTERM is handled after it: had SIGHUP meant anything, the down
    # would say so (or the supervisor would be gone without one).
    os.kill(supervisor, signal.SIGTERM)
    wait_until(lambda: _gone(supervisor), 240, "the supervisor to go down")
    requested = [r for r in scenario.journal() if r["kind"] == "DownRequested"]
    assert [r["reason"] for r in requested] == ["signal SIGTERM"], requested
    _went_down_gracefully(scenario, supervisor)
    down = scenario.down()  # nothing left to release; says so and exits 0
    assert down.returncode == 0 and "everything released" in down.stdout, down.stdout
    scenario.audit()
