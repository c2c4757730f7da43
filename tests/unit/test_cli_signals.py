"""cli/signals.py: SIGTERM and SIGHUP reach a command as Ctrl-C does, SIGHUP counts once,
an ignored signal stays ignored, and a terminal that goes away costs no traceback.

Each case runs a small program in a child process (signal handlers are per process) that
installs the mapping and reports over a pipe what it saw; the test sends real signals and
closes a real pseudo-terminal.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import typer

from golem_deploy.cli import signals

# The child: install the mapping, then report each interrupt, `wanted` times. It says
# "ready" each time it is back inside its `try` (a signal before that would end it, as it
# would end any program), and with "write" it keeps writing to stdout meanwhile.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from golem_deploy.cli import signals

    report = int(sys.argv[1])
    wanted = int(sys.argv[2])
    write = sys.argv[3] == "write"
    signals.install()
    if sys.argv[4] == "carry-on":
        signals.carry_on_after_hangup()
    seen = 0
    ready = b"ready\\n"
    while seen < wanted:
        try:
            announce, ready = ready, b""
            os.write(report, announce)  # inside the try: a signal may come as it returns
            while True:
                if write:
                    print("a line of the live table", flush=True)
                time.sleep(0.01)
        except KeyboardInterrupt as interrupt:
            seen += 1
            stdout = os.readlink("/proc/self/fd/1")
            line = f"{type(interrupt).__name__} {signals.exit_code(interrupt)} {stdout}\\n"
            os.write(report, line.encode())
            ready = b"ready\\n"
    print("still writes after the terminal went", flush=True)
    sys.exit(0)
    """
)


@contextmanager
def _child(
    reports: int,
    *,
    write: bool = False,
    stdio: int | None = None,
    ignore_hup: bool = False,
    carry_on: bool = False,
) -> Iterator[tuple[subprocess.Popen[bytes], Iterator[str]]]:
    read_end, write_end = os.pipe()

    def prepare() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN if ignore_hup else signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(write_end),
            str(reports),
            "write" if write else "-",
            "carry-on" if carry_on else "-",
        ],
        pass_fds=(write_end,),
        stdin=subprocess.DEVNULL,
        stdout=stdio if stdio is not None else subprocess.DEVNULL,
        stderr=stdio if stdio is not None else subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: only what the test sends arrives
        preexec_fn=prepare,
    )
    os.close(write_end)
    lines = _lines(read_end)
    try:
        assert next(lines) == "ready"
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        os.close(read_end)


def _lines(fd: int) -> Iterator[str]:
    buffer = b""
    while True:
        while b"\n" not in buffer:
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready, "the child reported nothing within 60 s"
            chunk = os.read(fd, 4096)
            assert chunk, "the child ended without reporting"
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        yield line.decode()


def test_exit_codes() -> None:
    assert signals.exit_code(KeyboardInterrupt()) == 130
    assert signals.exit_code(signals.Interrupted(signal.SIGTERM)) == 143
    assert signals.exit_code(signals.Interrupted(signal.SIGHUP)) == 129


def _typer_exit(interrupt: KeyboardInterrupt, code: int = 130, *, hide: bool = False) -> SystemExit:
    """The SystemExit typer ends with when a command raised `interrupt` (typer: `raise
    Exit(130) from e`, then `sys.exit(130)` while handling that; a command of ours raises
    `typer.Exit(130) from None` in its `except KeyboardInterrupt`, `hide`)."""
    try:
        try:
            try:
                raise interrupt
            except KeyboardInterrupt as error:
                if hide:
                    raise typer.Exit(code) from None
                raise typer.Exit(code) from error
        except typer.Exit as exit_:
            sys.exit(exit_.exit_code)
    except SystemExit as end:
        return end
    raise AssertionError("unreachable")


@pytest.mark.parametrize("hide", [False, True])
def test_typers_exit_130_tells_which_signal_it_was(hide: bool) -> None:
    sigterm, sighup = signals.Interrupted(signal.SIGTERM), signals.Interrupted(signal.SIGHUP)
    assert signals.exit_status(_typer_exit(sigterm, hide=hide)) == 143
    assert signals.exit_status(_typer_exit(sighup, hide=hide)) == 129
    assert signals.exit_status(_typer_exit(KeyboardInterrupt(), hide=hide)) == 130  # Ctrl-C
    assert signals.exit_status(_typer_exit(sigterm, 0, hide=hide)) == 0  # handled: exit 0
    assert signals.exit_status(SystemExit(1)) == 1


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_arrives_as_ctrl_c_would(signum: int, code: int) -> None:
    with _child(1) as (process, reports):
        process.send_signal(signum)
        assert next(reports) == f"Interrupted {code} /dev/null"
        assert process.wait(30) == 0


def test_sighup_counts_once_and_sigterm_after_it_still_interrupts() -> None:
    with _child(2) as (process, reports):
        process.send_signal(signal.SIGHUP)
        assert next(reports).startswith("Interrupted 129 ")
        assert next(reports) == "ready"
        # A closing terminal's second SIGHUP is nothing new; a SIGTERM after it is (as a
        # second Ctrl-C is). Sent in this order, the SIGHUP is handled first.
        process.send_signal(signal.SIGHUP)
        process.send_signal(signal.SIGTERM)
        assert next(reports).startswith("Interrupted 143 ")
        assert process.wait(30) == 0


def test_sighup_ignored_at_start_stays_ignored() -> None:
    """As `nohup golem-deploy up …` starts it: the user asked to survive the terminal."""
    with _child(1, ignore_hup=True) as (process, reports):
        process.send_signal(signal.SIGHUP)
        process.send_signal(signal.SIGTERM)
        assert next(reports).startswith("Interrupted 143 ")
        assert process.wait(30) == 0


def test_after_carry_on_after_hangup_sighup_no_longer_interrupts() -> None:
    """`down`: a closed terminal must not cut it short; SIGTERM still does."""
    with _child(1, carry_on=True) as (process, reports):
        process.send_signal(signal.SIGHUP)
        process.send_signal(signal.SIGTERM)
        assert next(reports).startswith("Interrupted 143 ")
        assert process.wait(30) == 0


def test_a_closed_terminal_is_its_sighup_and_output_goes_to_dev_null() -> None:
    """The terminal closes while the command writes to it (no SIGHUP sent: the child has no
    controlling terminal): its next write fails with EIO, which counts as the SIGHUP; from
    then on its output goes to /dev/null, so it carries on and exits cleanly."""
    master, slave = pty.openpty()
    try:
        with _child(1, write=True, stdio=slave) as (process, reports):
            os.close(slave)
            slave = -1
            ready, _, _ = select.select([master], [], [], 60)
            assert ready and b"a line of the live table" in os.read(master, 4096)
            os.close(master)  # the terminal window closes
            master = -1
            assert next(reports) == "Interrupted 129 /dev/null"
            assert process.wait(30) == 0
    finally:
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)
