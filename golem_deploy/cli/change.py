"""Changing a running deployment: `up FILE` again, `scale`, `restart`, and `up --dry-run`.

All three ask the deployment's supervisor (POST /reconcile) for one reconciler: it plans
the change (supervisor/changes.py), refuses what the running deployment cannot take, and
applies the rest while this command waits (GET /reconcile) and reports how it ended.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from golem_deploy.cli.common import DeployError, console, parse_duration, target

if TYPE_CHECKING:
    from golem_deploy.manifest.model import Manifest
    from golem_deploy.supervisor.deployments import DeploymentDir

POLL = 0.2  # how often a change's progress is asked for: the user waits on it
_NAME_HELP = "The deployment's name (default: the only one there is)."
_TIMEOUT_HELP = "How long the change may take before it is reported failed."
# The options `scale` and `restart` share.
_Name = Annotated[str | None, typer.Option("-n", "--name", help=_NAME_HELP)]
_File = Annotated[Path | None, typer.Option("-f", "--file", help="The deployment's manifest.")]
_DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]
_Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
_Timeout = Annotated[str, typer.Option("--timeout", help=_TIMEOUT_HELP)]


def scale(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="SERVICE=COUNT, one or more (web=5 db=1).",
            metavar="SERVICE=COUNT...",
            show_default=False,
        ),
    ],
    name: _Name = None,
    file: _File = None,
    dry_run: _DryRun = False,
    as_json: _Json = False,
    timeout: _Timeout = "10m",
) -> None:
    """Run COUNT instances of SERVICE: more start under the next indices, fewer stop the
    highest indices first (their shutdown steps run). Other services are untouched."""
    counts: dict[str, int] = {}
    for item in targets:
        service, equals, count = item.partition("=")
        if not equals or not service or not count.isdigit():
            raise DeployError(
                f"{item!r} is not SERVICE=COUNT", hint="e.g. `golem-deploy scale web=5`"
            )
        counts[service] = int(count)
    deployment = _running(name, file)
    body = {"scale": counts, "dry_run": dry_run}
    apply_change(deployment, body, dry_run=dry_run, as_json=as_json, timeout=_wait(timeout))


def restart(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="SERVICE (every instance) or SERVICE.INDEX (one), one or more.",
            metavar="SERVICE[.INDEX]...",
            show_default=False,
        ),
    ],
    name: _Name = None,
    file: _File = None,
    dry_run: _DryRun = False,
    as_json: _Json = False,
    timeout: _Timeout = "10m",
) -> None:
    """Replace instances with fresh ones, rolling: each new instance runs (and passes its
    health check) before the one it replaces stops; `update.parallelism` at a time."""
    deployment = _running(name, file)
    body = {"restart": list(targets), "dry_run": dry_run}
    apply_change(deployment, body, dry_run=dry_run, as_json=as_json, timeout=_wait(timeout))


def _wait(timeout: str) -> float:
    return parse_duration(timeout, "--timeout")


def _running(name: str | None, file: Path | None) -> DeploymentDir:
    deployment = target(name, file)
    if not deployment.supervisor_alive():
        raise DeployError(
            f"deployment {deployment.name!r} is not up",
            hint=f"`golem-deploy up` it first (`golem-deploy status -n {deployment.name}`)",
        )
    return deployment


def up_change(
    deployment: DeploymentDir,
    manifest: Manifest,
    env_file: Path | None,
    *,
    dry_run: bool,
    as_json: bool,
    timeout: float,
) -> None:
    """`up FILE` on a deployment that is up: apply the manifest as a change."""
    body = {
        "manifest": str(Path(manifest.path).resolve()),
        "env_file": str(env_file.resolve()) if env_file is not None else None,
        "dry_run": dry_run,
    }
    apply_change(deployment, body, dry_run=dry_run, as_json=as_json, timeout=timeout)


def dry_run_fresh(manifest: Manifest, *, as_json: bool) -> None:
    """`up --dry-run` on a deployment that is not up: everything would be added."""
    from golem_deploy.supervisor.changes import plan

    p = plan(dataclasses.replace(manifest, services={}), manifest)
    p = dataclasses.replace(p, refused=())  # nothing runs: nothing to refuse
    if as_json:
        sys.stdout.write(json.dumps(p.plain(), indent=2) + "\n")
        return
    print(f"deployment {manifest.name} is not up; `up` would start:")
    for line in p.lines():
        print(f"  {line}")


def apply_change(
    deployment: DeploymentDir,
    body: Mapping[str, object],
    *,
    dry_run: bool,
    as_json: bool,
    timeout: float,
) -> None:
    """Ask for the change, print its plan, and (unless dry) wait until it is applied."""
    from golem_deploy.supervisor.reconcile_request import ask

    answer = ask(deployment.socket, "POST", {**body, "timeout": timeout})
    if "error" in answer:
        raise DeployError(str(answer["error"]), hint=str(answer.get("hint") or "") or None)
    plan, lines = answer.get("plan"), answer.get("lines")
    if not isinstance(plan, dict) or not isinstance(lines, list):
        raise DeployError(f"the supervisor answered {answer!r}")
    refused = [str(reason) for reason in plan.get("refused") or []]
    empty = bool(plan.get("empty"))
    if as_json and (dry_run or refused or empty):
        sys.stdout.write(json.dumps(plan, indent=2) + "\n")
    elif not as_json and not refused:  # a refusal: the error says why
        _print_plan(deployment.name, [str(line) for line in lines], empty, dry_run=dry_run)
    if refused:
        raise DeployError(
            f"deployment {deployment.name} cannot take this change: " + "; ".join(refused),
            hint="nothing was changed",
        )
    if dry_run or empty:
        return
    status = _wait_for(deployment, answer["change"], timeout)
    if as_json:
        sys.stdout.write(json.dumps(status, indent=2) + "\n")
    if not status.get("ok"):
        raise DeployError(
            f"the change of {deployment.name} failed: {status.get('reason') or 'unknown'}",
            hint=f"`golem-deploy status -n {deployment.name}` shows what runs; "
            f"`golem-deploy logs -n {deployment.name}` why",
        )
    if not as_json:
        console(stderr=True).print(f"[green]deployment {deployment.name} changed[/]")


def _print_plan(name: str, lines: list[str], empty: bool, *, dry_run: bool) -> None:
    if empty:
        print(f"deployment {name}: nothing to change")
        return
    print(f"deployment {name}: {'would change' if dry_run else 'changing'}")
    for line in lines:
        print(f"  {line}")


def _wait_for(deployment: DeploymentDir, change: object, timeout: float) -> dict[str, object]:
    """Until the supervisor reports change `change` done (it bounds the change itself)."""
    from golem_deploy.supervisor.client import SupervisorUnreachable
    from golem_deploy.supervisor.reconcile_request import ask

    deadline = time.monotonic() + timeout + 30.0
    while True:
        try:
            status = ask(deployment.socket, "GET")
        except SupervisorUnreachable:
            raise DeployError(
                f"the supervisor of {deployment.name} went away during the change",
                hint=f"`golem-deploy down -n {deployment.name}` releases what it held",
            ) from None
        if status.get("id") == change and status.get("done"):
            return status
        if time.monotonic() > deadline:
            raise DeployError(f"the change of {deployment.name} did not finish in {timeout:g}s")
        time.sleep(POLL)


def register(app: typer.Typer) -> None:
    """Add scale / restart to the root app (`up` reaches this module itself)."""
    app.command(no_args_is_help=True)(scale)
    app.command(no_args_is_help=True)(restart)
