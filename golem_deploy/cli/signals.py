"""SIGTERM and SIGHUP end a `golem-deploy` command the way Ctrl-C does.

Why: `kill PID`, a container or systemd stop and a cancelled CI job send SIGTERM; closing
the terminal sends SIGHUP. Python's default for both is to die on the spot (exit 143 /
129), so an attached `up` used to leave its deployment running -- supervisor, agreements,
local network -- for a user who never asked for a background deployment. Every command
already handles Ctrl-C where it matters (Python's KeyboardInterrupt): attached `up` goes
down gracefully and a second Ctrl-C forces it, `logs -f` and `status --watch` end quietly,
`up -d` stops waiting. Raising the same exception for SIGTERM and SIGHUP gives them that
tested path, with no second copy of it:

- `Interrupted` (a KeyboardInterrupt) carries the signal, so a command that exits because
  of it exits 128 + the signal's number (143, 129) where Ctrl-C exits 130: typer (and the
  commands themselves) turn an interrupt into exit 130, and `exit_status` finds the
  signal behind that 130.
- SIGHUP counts once. A closing terminal can deliver it more than once (the shell passes
  its own SIGHUP on to its jobs, the kernel signals the foreground group when the session
  leader exits), and a repeat must not turn attached `up`'s graceful down into a forced
  one. A SIGTERM or Ctrl-C after it still forces, as a second Ctrl-C does.
- A closed terminal fails every write with EIO, and a graceful down goes on for seconds,
  printing its progress. Writes to a lost terminal are sent to /dev/null instead, and the
  first such failure counts as the terminal's SIGHUP (it may come before the signal).
- An attached `up` without a terminal prints through `say`: when nobody reads its output
  any more (`up | tee log`, the tee ended with the terminal or the CI job), the rest goes
  to /dev/null instead of ending `up` with BrokenPipeError before its down is done.
- A signal the command was started with ignored (`nohup` ignores SIGHUP) stays ignored.
- `down` is not cut short by a closed terminal (`carry_on_after_hangup`): the user asked
  for everything to be released, and a terminal window closing is no change of mind. Its
  SIGHUP only sends the rest of the output to /dev/null; SIGTERM and Ctrl-C still stop it.

The supervisor is a separate process with its own rules (supervisor/daemon.py).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from types import FrameType
from typing import TextIO

__all__ = [
    "Interrupted",
    "carry_on_after_hangup",
    "exit_code",
    "exit_status",
    "install",
    "say",
]

_MAPPED = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would raise KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The exit status of a command that ends because of `interrupt`: 128 + its signal."""
    return 128 + (interrupt.signum if isinstance(interrupt, Interrupted) else signal.SIGINT)


def exit_status(end: SystemExit) -> int | str | None:
    """The status to exit with: 128 + the signal when `end` is the exit 130 an `Interrupted`
    led to (typer raises it from the interrupt; a command raises it while handling one),
    else `end`'s own."""
    error: BaseException | None = end
    while end.code == 130 and error is not None:
        if isinstance(error, Interrupted):
            return exit_code(error)
        error = error.__cause__ or error.__context__
    return end.code


def install() -> None:
    """Map SIGTERM and SIGHUP to `Interrupted` and guard a terminal's outputs (main thread,
    once, before the command runs)."""
    for signum in _MAPPED:
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _interrupt)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and stream.isatty():
            setattr(sys, name, _TerminalStream(stream))


def carry_on_after_hangup() -> None:
    """From now on SIGHUP does not interrupt: the command finishes, writing to /dev/null
    once its terminal is gone (main thread; after `install`)."""
    if signal.getsignal(signal.SIGHUP) is _interrupt:
        signal.signal(signal.SIGHUP, _carry_on)


def _carry_on(_signum: int, _frame: FrameType | None) -> None:
    _drop_lost_terminal()


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    _drop_lost_terminal()
    if signum == signal.SIGHUP:
        # Counted once: a repeat only redirects output. A handler, not SIG_IGN: an ignored
        # signal would stay ignored in every program started from here on.
        signal.signal(signal.SIGHUP, _carry_on)
    raise Interrupted(signum)


def _drop_lost_terminal() -> None:
    """Point stdout and stderr at /dev/null when their terminal is gone.

    A hung-up terminal fails every write with EIO, even an empty one (which writes nothing
    to a terminal that is still there, or to a file or pipe)."""
    for fd in (1, 2):
        try:
            os.write(fd, b"")
        except OSError as error:
            if error.errno != errno.EIO:
                continue
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


def say(text: str) -> None:
    """print() a line to stdout; once nobody reads it (a broken pipe), to /dev/null."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


class _TerminalStream:
    """stdout or stderr on a terminal: a write the lost terminal refuses (EIO) goes
    nowhere, and counts as the terminal's SIGHUP (sent to this process, so the main thread
    sees it as `Interrupted` wherever it is, even when a display thread wrote).

    Everything else is delegated to the real stream (rich asks it whether it is a terminal
    and how wide), as cli/entry.py's HelpRecorder does."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as error:
            _lost(error)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as error:
            _lost(error)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _lost(error: OSError) -> None:
    """After a failed write: re-raise unless the terminal is gone; else its SIGHUP.

    Two threads can meet the lost terminal at once; the second finds /dev/null already in
    place, and its write is dropped all the same."""
    if error.errno != errno.EIO:
        raise error
    _drop_lost_terminal()
    if signal.getsignal(signal.SIGHUP) is _interrupt:  # not ignored, not counted yet
        os.kill(os.getpid(), signal.SIGHUP)
