"""`golem-deploy down`: stop a deployment and release everything it holds.

A live supervisor is asked for a graceful down (its progress printed as it happens) and
forced past the timeout -- or at once when the deployment's yagna refuses connections, since
then nothing graceful can happen; then whatever its journal still lists is released (the
only way after a crash). The rules live in supervisor/control.py and supervisor/recover.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from golem_deploy.cli.common import console, finish_down, parse_duration, target


def down(
    name: Annotated[str | None, typer.Option("-n", "--name", help="The deployment's name.")] = None,
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="The deployment's manifest.")
    ] = None,
    timeout: Annotated[
        str,
        typer.Option("--timeout", help="How long the graceful stop may take before it is forced."),
    ] = "2m",
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Skip shutdown steps: kill the supervisor, release everything."
        ),
    ] = False,
) -> None:
    """Stop a deployment and release everything it holds (exit 0 when all is released)."""
    from golem_deploy.cli.signals import carry_on_after_hangup
    from golem_deploy.supervisor import control

    carry_on_after_hangup()  # a closed terminal does not cut a `down` short
    limit = parse_duration(timeout, "--timeout")
    deployment = target(name, file)
    out = console()
    if deployment.supervisor_alive():
        if force:
            out.print(f"{deployment.name}: killing the supervisor (--force)")
            control.kill(deployment)
        else:
            out.print(f"{deployment.name}: going down (timeout {timeout})")

            def show(record: Mapping[str, object]) -> None:
                line = progress_line(record)
                if line is not None:
                    out.print(line, highlight=False)

            control.graceful_down(
                deployment,
                limit,
                on_record=show,
                on_forcing=lambda: out.print(
                    "[red]the supervisor did not finish in time; forcing[/]"
                ),
                on_yagna_dead=lambda url: out.print(
                    f"[red]yagna at {url} refuses connections: a graceful stop cannot release "
                    "anything; stopping the supervisor and recovering from the journal[/]",
                    highlight=False,
                ),
            )
    finish_down(deployment, out)


def progress_line(record: Mapping[str, object]) -> str | None:
    """What `down` prints for one supervisor record (None: not worth a line)."""
    kind = record.get("kind")
    short = str(record.get("agreement_id") or "")[:12] + "…"
    if kind == "InstanceStateChanged":
        return f"  {record.get('service')}.{record.get('index')}: {record.get('new')}"
    if kind == "AgreementTerminated":
        return f"  agreement {short} terminated"
    if kind == "InvoiceAccepted":
        return f"  invoice for agreement {short} accepted: {record.get('amount')} GLM"
    if kind == "AllocationReleased":
        return f"  allocation {record.get('allocation_id')} released"
    if kind == "LocalnetStopped":
        return "  local network stopped"
    if kind == "DownTimedOut":
        return f"  [red]the graceful stop timed out after {record.get('timeout')}s[/]"
    return None
