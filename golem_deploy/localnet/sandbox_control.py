"""The ExeUnit's end of a sealed sandbox's command channel: commands the init starts.

Why: a command used to enter the sandbox from outside, through a fresh ``python
exeunit_init.py --exec`` wrapper (for its CPU time and limits) and ``nsenter``: ~40 ms of
CPU per command, the largest cost of an activity's start on a small machine and, at 100
instances running a step every 5 s, most of the local network's CPU. The sandbox's init
already lives in every namespace and the new root, so it starts each command itself, as a
VM's agent does (:func:`exeunit_init.serve_commands`): a ``posix_spawn`` of ~1 ms. Its
limits are the init's, its CPU time adds up in the init's children's times.

The channel is a Unix stream socket, the init's stdin: requests are framed
(:func:`exeunit_init.frame`), with the write ends of the command's output pipes attached;
answers are JSON lines ``{"id": N, "exit": CODE}``. When the init dies, every command it
started is dead too (pid 1 of their pid namespace): their waits end with ``-SIGKILL``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc

from golem_deploy.localnet.exeunit_init import frame

KILLED = -int(signal.SIGKILL)


class PipeStream(anyio.abc.ByteReceiveStream):
    """The read end of a pipe as an anyio byte stream (the command's stdout or stderr)."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._fd < 0:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            anyio.notify_closing(fd)
            os.close(fd)


@dataclass
class _Waiter:
    done: anyio.Event = field(default_factory=anyio.Event)
    code: int = KILLED


class InitControl:
    """Starts commands in the sandbox through its init and learns how they ended.

    :meth:`listen` must run (in the sandbox's task group) for waits to end; :meth:`close`
    closes the channel, which the init takes as the end of the activity.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._last_id = 0
        self._waiters: dict[int, _Waiter] = {}
        self._gone = False  # the init closed its end, or we closed ours

    async def start(
        self, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[int, PipeStream, PipeStream]:
        """Start ``argv``; (its id, its stdout, its stderr)."""
        if self._gone:
            raise OSError("the sandbox's init is gone")
        self._last_id += 1
        command = self._last_id
        self._waiters[command] = _Waiter()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            request = {"id": command, "argv": list(argv), "env": dict(env)}
            await self._send(frame(request), [out_w, err_w])
        except BaseException:
            self._waiters.pop(command, None)
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        return command, PipeStream(out_r), PipeStream(err_r)

    async def wait(self, command: int) -> int:
        """The exit code of command ``command`` (negative: the signal that killed it)."""
        waiter = self._waiters.get(command)
        if waiter is None:
            return KILLED
        await waiter.done.wait()
        self._waiters.pop(command, None)
        return waiter.code

    def kill(self, command: int) -> None:
        """SIGKILL the command's whole process group (best effort: never blocks)."""
        waiter = self._waiters.get(command)
        if self._gone or waiter is None or waiter.done.is_set():
            return
        # A full or closed channel: the sandbox's end will kill it anyway.
        with contextlib.suppress(OSError):
            self._sock.send(frame({"kill": command}))

    async def listen(self) -> None:
        """Read the init's answers until the channel closes, then end every wait."""
        pending = b""
        try:
            while True:
                try:
                    data = self._sock.recv(65536)
                except BlockingIOError:
                    try:
                        await anyio.wait_readable(self._sock)
                    except anyio.ClosedResourceError:
                        return
                    continue
                except OSError:
                    return
                if not data:
                    return
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    answer = json.loads(line)
                    waiter = self._waiters.get(int(answer["id"]))
                    if waiter is not None:
                        waiter.code = int(answer["exit"])
                        waiter.done.set()
        finally:
            self._gone = True
            for waiter in self._waiters.values():
                waiter.done.set()  # the init is gone, and with it every running command

    def close(self) -> None:
        """Close our end: the init sees EOF and ends (and with it the activity)."""
        if self._sock.fileno() >= 0:
            anyio.notify_closing(self._sock)
            self._sock.close()
        self._gone = True

    async def _send(self, data: bytes, fds: list[int]) -> None:
        sent = 0
        while sent < len(data):
            try:
                if sent == 0:  # the descriptors travel with the frame's first byte
                    sent = socket.send_fds(self._sock, [data], fds)
                else:
                    sent += self._sock.send(data[sent:])
            except BlockingIOError:
                await anyio.wait_writable(self._sock)
