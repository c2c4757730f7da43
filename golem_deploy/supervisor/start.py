"""Starting a deployment's supervisor process, detached in its own session.

Three ways, the first that applies:
1. The child `cli/entry.py` forked for this `up` before anything else (prefork.py) gets
   the validated manifest through a pipe: its imports ran beside the CLI's.
2. A fork now. Why not a fresh interpreter: that would import again what the CLI already
   has in memory (the manifest loader and its schema validator, anyio, aiohttp after the
   checks of your yagna) and load and validate the manifest a second time, while `up`
   waits.
3. `python -m golem_deploy.supervisor`, where a fork is not safe: off Linux (macOS
   forbids a fork after some system frameworks were used, which an https request's proxy
   lookup does), or in a process with other threads (a lock another thread held at the
   fork stays held forever in the child).

Whichever way, the child is what `subprocess.Popen(..., start_new_session=True)` made:
its own session (a Ctrl-C or a closed terminal reaches the CLI, never the supervisor),
stdin from /dev/null, stdout and stderr into supervisor.log, the manifest's folder as its
working directory, no signal handler of the CLI's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from golem_deploy.manifest.model import Manifest
from golem_deploy.supervisor import prefork
from golem_deploy.supervisor.deployments import DeploymentDir

__all__ = ["SupervisorProcess", "spawn"]


class SupervisorProcess:
    """The started supervisor, as its parent sees it (the few `Popen` calls `up` uses)."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self._popen = popen
        self._code: int | None = None

    @classmethod
    def of(cls, popen: subprocess.Popen[bytes]) -> SupervisorProcess:
        return cls(popen.pid, popen)

    def poll(self) -> int | None:
        """Its exit code once it has exited (and is reaped), else None."""
        if self._popen is not None:
            return self._popen.poll()
        if self._code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self._code = os.waitstatus_to_exitcode(status)
        return self._code

    def terminate(self) -> None:
        """SIGTERM: its graceful down (or, before it answers, its end)."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)

    def wait(self) -> int:
        if self._popen is not None:
            return self._popen.wait()
        if self._code is None:
            _, status = os.waitpid(self.pid, 0)
            self._code = os.waitstatus_to_exitcode(status)
        return self._code


def spawn(
    manifest: Manifest,
    deployment: DeploymentDir,
    *,
    providers: int,
    faults: Path | None,
    env_file: Path | None,
) -> SupervisorProcess:
    """Start the supervisor of `manifest` (already loaded and validated by the caller):
    the child prestarted for this `up` (prefork.py), else a fork now, else a fresh
    interpreter."""
    faults = faults.resolve() if faults is not None else None  # the child changes folder
    order = prefork.Order(manifest, providers, faults, deployment.supervisor_log, dict(os.environ))
    pid = prefork.claim(order)
    if pid is not None:
        return SupervisorProcess(pid)
    if prefork.fork_is_safe():
        return SupervisorProcess(prefork.fork_now(order))
    return SupervisorProcess.of(_exec(order, env_file))


def _exec(order: prefork.Order, env_file: Path | None) -> subprocess.Popen[bytes]:
    """`python -m golem_deploy.supervisor`: where a fork is not safe."""
    path = Path(order.manifest.path).resolve()
    argv = [sys.executable, "-m", "golem_deploy.supervisor", "--manifest", str(path)]
    argv += ["--providers", str(order.providers)]
    if order.faults is not None:
        argv += ["--faults", str(order.faults)]
    if env_file is not None:
        argv += ["--env-file", str(env_file.resolve())]
    log = os.open(order.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C in this terminal must not reach it directly
            cwd=str(path.parent),
            close_fds=True,
        )
    finally:
        os.close(log)
