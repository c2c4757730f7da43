"""Where a deployment's files live and how the CLI finds out whether its supervisor lives.

Layout of one deployment folder ($GOLEM_DEPLOY_HOME/deployments/<name>, mode 0700):
  journal.jsonl     the append-only journal (truth after a crash)
  supervisor.lock   flock()ed by the live supervisor for its whole life
  supervisor.pid    its pid (informational; liveness is the lock, immune to pid reuse)
  supervisor.log    its stdout/stderr
  control.sock      the control API (0600)
  logs/             one file per instance
  localnet/         the private local network's state folder, when it has one

Why a lock for liveness: a pid can be reused after a crash, a socket file can be left behind
by SIGKILL; an flock() is released by the kernel exactly when the supervisor dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from golem_deploy import paths
from golem_deploy.errors import GolemDeployError
from golem_deploy.supervisor import journal, snapshot
from golem_deploy.supervisor.journal import Held

# The supervisor's exit code when another supervisor already holds the deployment's lock.
EXIT_ALREADY_RUNNING = 3
# The supervisor's exit code when the previous run's journal still holds something.
EXIT_PREVIOUS_RUN_HOLDS = 4

# sun_path holds 108 bytes on Linux; stay clearly below it.
_MAX_SOCKET_PATH = 100


class DeploymentNotFound(GolemDeployError):
    pass


@dataclass(frozen=True)
class DeploymentDir:
    """The files of one deployment (see the module docstring)."""

    name: str
    root: Path

    @property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / "supervisor.lock"

    @property
    def pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def localnet(self) -> Path:
        return self.root / "localnet"

    @property
    def socket(self) -> Path:
        """The control socket; moved to a short private temp path when the folder is deep."""
        path = self.root / "control.sock"
        if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:16]
        short = Path(tempfile.gettempdir()) / f"golem-deploy-{os.getuid()}"
        short.mkdir(mode=0o700, exist_ok=True)
        return short / f"{digest}.sock"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def supervisor_alive(self) -> bool:
        """True while a supervisor holds the lock (the kernel drops it when it dies)."""
        try:
            fd = os.open(self.lock, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing also releases a lock we may have taken
        return False


def deployments_root() -> Path:
    return paths.home() / "deployments"


def of(name: str) -> DeploymentDir:
    """The folder of deployment `name` (created 0700)."""
    return DeploymentDir(name, paths.deployment_dir(name))


def existing(name: str) -> DeploymentDir | None:
    root = deployments_root() / name
    return DeploymentDir(name, root) if root.is_dir() else None


def known() -> list[DeploymentDir]:
    """Every deployment with a journal, sorted by name."""
    root = deployments_root()
    if not root.is_dir():
        return []
    found = [
        DeploymentDir(child.name, child)
        for child in sorted(root.iterdir())
        if child.is_dir() and (child / "journal.jsonl").exists()
    ]
    return found


def resolve(name: str | None) -> DeploymentDir:
    """The deployment a command means: `name`, or the only one there is."""
    if name:
        found = existing(name)
        if found is None or not found.journal.exists():
            names = [d.name for d in known()]
            raise DeploymentNotFound(
                f"no deployment named {name!r}",
                hint=("known deployments: " + ", ".join(names))
                if names
                else "start one with `golem-deploy up FILE`",
            )
        return found
    all_known = known()
    if not all_known:
        raise DeploymentNotFound(
            "there is no deployment", hint="start one with `golem-deploy up FILE`"
        )
    # Deployments that are down stay listed (for their logs), but when exactly one is
    # still up (or still holds something), that is the one meant.
    active = [d for d in all_known if d.supervisor_alive() or not journal.load(d.journal).empty]
    if len(active) == 1:
        return active[0]
    if len(all_known) > 1:
        raise DeploymentNotFound(
            f"{len(all_known)} deployments exist; say which one with -n NAME or -f FILE",
            hint="known deployments: " + ", ".join(d.name for d in all_known),
        )
    return all_known[0]


def journal_snapshot(
    deployment: DeploymentDir, held: Held | None = None
) -> snapshot.DeploymentSnapshot:
    """The journal's account of a deployment whose supervisor does not answer; see
    snapshot.from_journal."""
    held = held if held is not None else journal.load(deployment.journal)
    pid = held.supervisor_pid or deployment.pid()
    return snapshot.from_journal(held, name=deployment.name, pid=pid)
