"""What the deployment commands (`up`, `status`, `down`, `logs`, `ls`) share: argument
parsing (durations, which deployment is meant) and rendering (consoles, the snapshot).

Imports of heavy modules (rich, the manifest loader, the supervisor client with its
http.client) happen inside the functions that need them, so that `status --json` answers
fast and `--help` or `validate` never pay for what they don't use.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from golem_deploy.errors import GolemDeployError
from golem_deploy.manifest import durations

if TYPE_CHECKING:
    from rich.console import Console

    from golem_deploy.manifest.model import Manifest
    from golem_deploy.supervisor.deployments import DeploymentDir
    from golem_deploy.supervisor.snapshot import DeploymentSnapshot

DEFAULT_DOWN_TIMEOUT = 120.0  # attached `up`: Ctrl-C asks for a graceful down this long


class DeployError(GolemDeployError):
    pass


def parse_duration(text: str, option: str) -> float:
    """'90', '500ms', '10s', '15m', '1h30m', '2d' -> seconds (more than zero).

    The manifest's own duration syntax (manifest/durations.py), plus a bare number of
    seconds as a command line writes it."""
    value: str | float = text
    with contextlib.suppress(ValueError):
        value = float(text.strip())
    try:
        seconds = durations.parse_duration(value)
    except ValueError:
        raise DeployError(
            f"{option}: {text!r} is not a duration", hint=durations.DURATION_HINT
        ) from None
    if seconds <= 0:
        raise DeployError(f"{option}: the duration must be more than zero")
    return seconds


def load_manifest(path: Path, env_file: Path | None = None) -> Manifest:
    from golem_deploy.manifest import load_manifest
    from golem_deploy.manifest.diagnostics import ManifestError

    if not path.exists():
        raise DeployError(f"{path}: no such file", hint="give the path of a manifest YAML file")
    try:
        return load_manifest(path, env_file=env_file)
    except ManifestError as error:
        # Exactly what `golem-deploy validate` prints: every problem, file:line:column.
        sys.stderr.write("".join(d.format() + "\n" for d in error.diagnostics))
        raise typer.Exit(1) from None


def target(name: str | None, file: Path | None) -> DeploymentDir:
    """The deployment `-n NAME` or `-f FILE` means (or the only one there is)."""
    from golem_deploy.supervisor import deployments

    if name and file:
        raise DeployError("give either -n NAME or -f FILE, not both")
    if file is not None:
        name = load_manifest(file).name
    return deployments.resolve(name)


def snapshot(deployment: DeploymentDir) -> DeploymentSnapshot:
    from golem_deploy.supervisor import control

    return control.current_snapshot(deployment)


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_snapshot(snap: DeploymentSnapshot) -> None:
    from golem_deploy.ui.table import deployment_table, plain_lines

    out = console()
    if out.is_terminal:
        out.print(deployment_table(snap))
    else:
        for line in plain_lines(snap):
            print(line)


def finish_down(deployment: DeploymentDir, out: Console) -> None:
    """After the supervisor ended: release leftovers from the journal; exit non-zero if any."""
    from golem_deploy.supervisor import recover

    recover.finish_down(deployment, progress=out.print)
    for missing in recover.missing_invoices(deployment):
        out.print(missing)
    out.print(f"[green]deployment {deployment.name} is down; everything released[/]")


UNSAFE_HOST_EXEC_HELP = (
    "Local network only: run commands unsealed on this host, as you "
    "(for machines that cannot seal activities; only for manifests you trust)."
)


def allow_unsafe_host_exec() -> None:
    """--unsafe-host-exec: the local network's processes inherit the opt-out (see
    golem_deploy.localnet.sandbox); said in red every time."""
    import os

    from golem_deploy.localnet.sandbox import UNSAFE_HOST_EXEC_ENV

    os.environ[UNSAFE_HOST_EXEC_ENV] = "1"
    console(stderr=True).print(
        "[bold red]--unsafe-host-exec: activities run UNSEALED on this host, as "
        f"uid {os.geteuid()}, with its files and network: only for manifests you trust[/]"
    )
