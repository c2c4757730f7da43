"""`golem-deploy status`, `logs` and `ls`: read a deployment (live, or from its journal when
its supervisor is gone) and render it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from golem_deploy.cli.common import DeployError, console, print_snapshot, snapshot, target
from golem_deploy.errors import GolemDeployError


def status(
    name: Annotated[str | None, typer.Option("-n", "--name", help="The deployment's name.")] = None,
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="The deployment's manifest.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep the table updated until Ctrl-C.")
    ] = False,
) -> None:
    """Show a deployment: every instance, its provider, uptime, cost, last output."""
    deployment = target(name, file)
    if as_json:
        from golem_deploy.supervisor.snapshot import public_status

        sys.stdout.write(json.dumps(public_status(snapshot(deployment)), indent=2) + "\n")
        return
    if not watch:
        print_snapshot(snapshot(deployment))
        return
    from rich.live import Live

    from golem_deploy.ui.table import deployment_table

    out = console()
    with Live(console=out, refresh_per_second=2) as live:
        try:
            while True:
                live.update(
                    deployment_table(snapshot(deployment), max_rows=max(5, out.size.height - 6))
                )
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass


def logs(
    selector: Annotated[
        str | None,
        typer.Argument(
            help="SERVICE or SERVICE.INDEX; all instances when omitted.", show_default=False
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("-n", "--name", help="The deployment's name.")] = None,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", min=0, help="Only the last N lines.")
    ] = None,
) -> None:
    """Print the instances' output, merged in time order and prefixed `service.index |`."""
    from golem_deploy.supervisor import deployments
    from golem_deploy.supervisor import logs as logfiles

    deployment = deployments.resolve(name)
    files = logfiles.log_files(deployment.logs, selector)
    if selector and not files and not follow:
        raise DeployError(
            f"no logs for {selector!r} in deployment {deployment.name}",
            hint="use SERVICE or SERVICE.INDEX as `golem-deploy status` lists them",
        )
    width = max((len(f"{s}.{i}") for s, i, _ in files), default=0)
    try:
        for line in logfiles.read_merged(files, tail):
            print(line.format(width=width), flush=False)
        sys.stdout.flush()
        if not follow:
            return
        for line in logfiles.follow(deployment.logs, selector, alive=deployment.supervisor_alive):
            print(line.format(width=width), flush=True)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        pass


def ls(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List known deployments and their states."""
    from golem_deploy.supervisor import deployments
    from golem_deploy.supervisor.snapshot import instances

    rows = []
    for deployment in deployments.known():
        try:
            snap = snapshot(deployment)
        except GolemDeployError:
            snap = deployments.journal_snapshot(deployment)
        rows.append(
            {
                "name": deployment.name,
                "state": snap.state,
                "pid": snap.supervisor_pid,
                "alive": snap.supervisor_alive,
                "network": snap.network_kind,
                "instances": len(instances(snap)),
                "spent": str(snap.spent),
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        print("no deployments")
        return
    from golem_deploy.ui.table import deployments_table

    console().print(deployments_table(rows))
