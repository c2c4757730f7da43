"""Notice at once when a process of the deployment's private local network dies, and heal it.

Why: the supervisor owns its private local network: the requestor yagna daemon, the provider
yagna daemon, and the host process that runs the provider agents and their ExeUnits (the
host stops the whole network when a daemon dies). When one of them dies, every instance on
it lost its activity and nothing may answer at the network's address. Left to the engine's
watchers, that takes 15 s and more to surface, with `status` saying `running` meanwhile.

A pidfd (Linux 5.3+) becomes readable the moment its process exits, so the event loop
learns of a death without polling; where pidfd_open is missing the watch looks at the pids
once a second instead. What follows is machine.py's decision (degraded, restart, or failed);
this module performs it: every instance is told at once that its activity is gone (the
lifecycle's NetworkLost, so `status` shows it and the restart policies decide), the network
starts again on its state folder at the same address (backend.restart), its daemons keeping
their databases, the deployment's VPN is created again in it (Golem.recreate_networks: yagna
keeps networks in memory only), and only then do the lost instances' releases end their agreements
(Golem.network_back): through a dead yagna they would fail and be left for `down`.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from golem_deploy.localnet.node import PROVIDER, REQUESTOR
from golem_deploy.localnet.records import HOST, process_matches, read_pid_file
from golem_deploy.supervisor import machine as dm

if TYPE_CHECKING:
    from golem_deploy.supervisor.daemon import Supervisor

__all__ = ["Part", "first_death", "perform", "recorded_parts", "watch"]

PARTS = {
    REQUESTOR: "requestor yagna daemon",
    PROVIDER: "provider yagna daemon",
    HOST: "provider host process",
}
"""The processes of a local network by pid file name, and what users call them."""

POLL_FALLBACK_S = 1.0
"""Where pidfds are missing: how often the pids are looked at."""


@dataclass(frozen=True)
class Part:
    """One process of the local network, as its pid file records it."""

    name: str  # the pid file's name: requestor, provider or host
    pid: int
    marker: str  # what its command line holds (records.process_matches)

    def died(self) -> str:
        return f"the local network's {PARTS[self.name]} (pid {self.pid}) died"


def recorded_parts(state_dir: Path) -> list[Part]:
    """Every process of the network in `state_dir` its pid files record, daemons first."""
    parts = []
    for name in (REQUESTOR, PROVIDER, HOST):
        entry = read_pid_file(state_dir, name)
        if entry is not None:
            parts.append(Part(name, entry[0], entry[1]))
    return parts


def _exited(fd: int) -> bool:
    """A pidfd is readable once its process exited."""
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


async def first_death(parts: Sequence[Part]) -> Part:
    """Wait until one of `parts` exits and return it. When several are gone by then, a
    daemon is named before the host: the host stops the network *because* a daemon died."""
    fds: dict[Part, int] = {}
    try:
        for part in parts:
            try:
                fd = os.pidfd_open(part.pid)
            except ProcessLookupError:
                return part
            except (AttributeError, OSError):  # no pidfds here (old kernel, not Linux)
                return await _poll_first_death(parts)
            fds[part] = fd
            # Opened after its pid was recorded: make sure the pid is still that process.
            if not process_matches(part.pid, part.marker):
                return part
        woke: list[Part] = []
        async with anyio.create_task_group() as tg:

            async def wait(part: Part, fd: int) -> None:
                await anyio.wait_readable(fd)
                woke.append(part)
                tg.cancel_scope.cancel()

            for part, fd in fds.items():
                tg.start_soon(wait, part, fd)
        gone = [part for part, fd in fds.items() if _exited(fd)] or woke
        return sorted(gone, key=lambda part: part.name == HOST)[0]
    finally:
        for fd in fds.values():
            os.close(fd)


async def _poll_first_death(parts: Sequence[Part]) -> Part:
    while True:
        gone = [part for part in parts if not process_matches(part.pid, part.marker)]
        if gone:
            return sorted(gone, key=lambda part: part.name == HOST)[0]
        await anyio.sleep(POLL_FALLBACK_S)


async def watch(supervisor: Supervisor) -> None:
    """While the deployment lives: notice each death of its private local network, report
    it and restart the network, for as long as the deployment machine says to."""
    from golem_deploy.localnet import LocalnetError

    state_dir = supervisor.folder.localnet
    while True:
        parts = recorded_parts(state_dir)
        if not parts:  # stopped under us (a `down` from outside): nothing to watch
            return
        part = await first_death(parts)
        actions = supervisor.feed(dm.LocalnetDied(part.died()))
        if not any(isinstance(action, dm.RestartLocalnet) for action in actions):
            return  # stopping, or failed: `down` (or its recovery) takes it from here
        try:
            await supervisor.backend.restart()
            if supervisor.golem is not None:  # its VPN is gone with the requestor daemon
                await supervisor.golem.recreate_networks()
        except Exception as error:  # whatever stops it, the deployment fails saying so
            why = str(error) if isinstance(error, LocalnetError) else repr(error)
            supervisor.feed(dm.LocalnetRestartFailed(supervisor.redactor.text(why)))
            return
        finally:  # the lost instances' releases waited for this (bounded), whatever came
            if supervisor.golem is not None:
                supervisor.golem.network_back()
        supervisor.feed(dm.LocalnetRestarted())


def perform(supervisor: Supervisor, action: dm.Action) -> None:
    """Carry out the deployment machine's local network actions (the rest: daemon.feed)."""
    match action:
        case dm.DeploymentDegraded(reason=reason):
            supervisor.note("DeploymentDegraded", reason=reason)
            _tell_every_instance(supervisor, f"deployment degraded: {reason}")
        case dm.RestartLocalnet(reason=reason):
            # Every activity on the network died with it; the restart policies decide, and
            # the releases wait for the network to be back (watch() starts it again).
            if supervisor.golem is not None:
                supervisor.golem.network_lost(reason)
        case dm.DeploymentRecovered(state=state, after=after):
            supervisor.note("DeploymentRecovered", state=state.value, after=after)
            _tell_every_instance(supervisor, f"deployment {state.value} again after: {after}")


def _tell_every_instance(supervisor: Supervisor, text: str) -> None:
    """A deployment-wide line in every instance's log, so `logs` shows it in place."""
    for name, spec in supervisor.manifest.services.items():
        for index in range(spec.instances):
            with contextlib.suppress(OSError):
                supervisor.logs.write(name, index, "state", text)
