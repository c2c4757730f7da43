"""Acting on a deployment's supervisor from outside: start it, ask it, take it down.

Why here and not in the CLI: these are the rules of how a supervisor is driven (it is
started detached in its own session; a starting or exiting one holds its lock a moment
before its socket answers or after it closed it; `down` asks gracefully, then forces after
its timeout plus a margin for the engine's own cleanup), and they hold for any client. The
CLI only parses arguments and renders what these functions report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from golem_deploy.errors import GolemDeployError
from golem_deploy.supervisor import client, deployments, journal, lock, reach
from golem_deploy.supervisor.deployments import DeploymentDir
from golem_deploy.supervisor.snapshot import DeploymentSnapshot
from golem_deploy.supervisor.snapshot_plain import from_plain
from golem_deploy.supervisor.start import SupervisorProcess

SOCKET_WAIT = 30.0  # how long a fresh supervisor may take to answer on its socket
SOCKET_POLL = 0.02  # how often a fresh supervisor's socket is tried: `up` waits on it
POLL = 0.02  # how often the lock is polled while a supervisor exits: the user waits on it
SETTLE_WAIT = 3.0  # how long a live supervisor's socket may stay silent before it is an error
FORCE_MARGIN = 15.0  # down: beyond the graceful timeout, time for the engine's own cleanup
PROBE_EVERY = 1.0  # down: how often the deployment's yagna is checked for refusing connections


class ControlError(GolemDeployError):
    pass


def current_snapshot(deployment: DeploymentDir) -> DeploymentSnapshot:
    """The live snapshot when the supervisor answers, else the journal's account.

    A supervisor that is starting or exiting holds its lock a moment before its socket
    answers or after it closed it; that moment is waited out, not reported as an error.
    A `down` releasing what a dead supervisor left holds the lock with no socket at all:
    the journal's account is the answer then.
    """
    deadline = time.monotonic() + SETTLE_WAIT
    while deployment.supervisor_alive() and lock.holder_role(deployment.lock) != lock.DOWN:
        try:
            snap = client.request(deployment.socket, "GET", "/snapshot", timeout=5.0)
        except client.SupervisorUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        if isinstance(snap, dict):
            return from_plain(snap)
    return deployments.journal_snapshot(deployment)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_for_socket(process: SupervisorProcess, deployment: DeploymentDir) -> None:
    """Until the fresh supervisor answers; ControlError when it exited or stays silent."""
    deadline = time.monotonic() + SOCKET_WAIT
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None and code in (0, 1) and _journaled_by(process.pid, deployment):
            # It ran and already ended (e.g. its deployment failed at once, before we
            # looked): the journal tells what happened, as for any supervisor that is gone.
            return
        if code is not None:
            tail = _log_tail(deployment.supervisor_log)
            if code == deployments.EXIT_ALREADY_RUNNING:
                raise ControlError(f"deployment {deployment.name!r} is already up")
            raise ControlError(
                f"the supervisor of {deployment.name!r} exited at start (code {code})",
                hint=f"its log ({deployment.supervisor_log}) ends with:\n{tail}" if tail else None,
            )
        if deployment.socket.exists():
            try:
                client.request(deployment.socket, "GET", "/snapshot", timeout=2.0)
                return
            except (client.SupervisorUnreachable, GolemDeployError):
                pass
        time.sleep(SOCKET_POLL)
    raise ControlError(
        f"the supervisor of {deployment.name!r} did not answer within {SOCKET_WAIT:g}s",
        hint=f"see {deployment.supervisor_log}",
    )


def _journaled_by(pid: int, deployment: DeploymentDir) -> bool:
    """Whether the deployment's journal is the one supervisor `pid` wrote."""
    from golem_deploy.supervisor.journal import load

    return load(deployment.journal).supervisor_pid == pid


def request_down(deployment: DeploymentDir, timeout: float) -> None:
    """Ask for a graceful down (answered at once); a supervisor that just exited is fine."""
    with contextlib.suppress(client.SupervisorUnreachable):
        client.request(deployment.socket, "POST", "/down", {"timeout": timeout}, timeout=5.0)


def kill(deployment: DeploymentDir) -> None:
    """SIGKILL the live supervisor (the pid that holds the deployment's lock) and wait."""
    pid = deployment.pid()
    if pid is None or not deployment.supervisor_alive():
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while deployment.supervisor_alive() and time.monotonic() < deadline:
        time.sleep(0.05)


def graceful_down(
    deployment: DeploymentDir,
    timeout: float,
    *,
    on_record: Callable[[Mapping[str, object]], None],
    on_forcing: Callable[[], None],
    on_yagna_dead: Callable[[str], None] = lambda url: None,
) -> None:
    """Ask for a graceful down and report every supervisor record until it exits.

    Past `timeout` plus FORCE_MARGIN the supervisor is killed (`on_forcing` says so first);
    recover.finish_down then releases whatever the journal still lists. When the
    deployment's yagna refuses connections while the journal still holds market state, a
    graceful stop cannot release it: the supervisor is killed at once (`on_yagna_dead`
    says so) instead of waiting out the timeout -- recovery does the rest."""
    if _yagna_dead(deployment, on_yagna_dead):
        return
    try:
        events = client.EventStream(deployment.socket)  # subscribe first: miss nothing
    except client.SupervisorUnreachable:
        events = None
    request_down(deployment, timeout)
    deadline = time.monotonic() + timeout + FORCE_MARGIN
    next_probe = time.monotonic() + PROBE_EVERY
    for record in events or ():  # heartbeats arrive about once a second
        on_record(record)
        now = time.monotonic()
        if now > deadline:
            break
        if now >= next_probe:
            next_probe = now + PROBE_EVERY
            if _yagna_dead(deployment, on_yagna_dead):
                if events is not None:
                    events.close()
                return
    # The stream ended: the supervisor exited, or it is stuck; give it a moment, then force.
    while deployment.supervisor_alive() and time.monotonic() < deadline:
        time.sleep(POLL)
    if deployment.supervisor_alive():
        on_forcing()
        kill(deployment)


def _yagna_dead(deployment: DeploymentDir, say: Callable[[str], None]) -> bool:
    """Kill the supervisor when its yagna refuses connections while the journal still
    holds what only that yagna can release; True when it did.

    The journal is read first (it is written before anything is published): once the
    market state is released, yagna going away is the supervisor stopping its own local
    network, which is no reason to interrupt it."""
    held = journal.load(deployment.journal)
    market = held.agreements or held.activities or held.allocations or held.networks
    if not market or not held.api_url or not reach.refuses(held.api_url):
        return False
    say(held.api_url)
    kill(deployment)
    return True
