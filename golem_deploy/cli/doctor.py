"""`golem-deploy doctor [FILE]` and `golem-deploy plan FILE`: look at the user's yagna and
its market before deploying (golem_deploy.preflight does the looking; this prints it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from golem_deploy.cli.common import DeployError, console, load_manifest, parse_duration

if TYPE_CHECKING:
    from golem_deploy.manifest.model import Manifest
    from golem_deploy.preflight.checks import Check

_ENV_FILE_HELP = "A .env file for ${VAR} interpolation in the manifest."


def register(app: typer.Typer) -> None:
    """Add `doctor` and `plan` to the root app."""
    app.command("doctor")(doctor)
    app.command("plan")(plan)


def doctor(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="The manifest to check funds, images and offers for.", show_default=False
        ),
    ] = None,
    wait: Annotated[
        str, typer.Option("--wait", help="How long to look for offers (with FILE).")
    ] = "5s",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list of the checks.")] = False,
    env_file: Annotated[Path | None, typer.Option("--env-file", help=_ENV_FILE_HELP)] = None,
) -> None:
    """Check that your yagna (YAGNA_APPKEY, YAGNA_API_URL) is ready to deploy FILE.

    Nothing stays allocated or subscribed. Exit code 1 when a check fails."""
    from golem_deploy.supervisor.tls_deferred import import_aiohttp_without_ca_store

    # `up` waits on these checks. Their https clients bring their own CA store (yagna/
    # client.py, preflight/registry.py), as in the supervisor: aiohttp's two shared
    # contexts need not load it at import (tls_deferred.py), 30-200 ms by the machine's load.
    import_aiohttp_without_ca_store()
    import anyio

    from golem_deploy.preflight.checks import Target, run_checks

    seconds = parse_duration(wait, "--wait")
    manifest = load_manifest(file, env_file) if file is not None else None
    checks = anyio.run(lambda: run_checks(Target.from_env(manifest), offers_wait=seconds))
    if as_json:
        print(json.dumps([check.plain() for check in checks], indent=2))
    else:
        print_checks(checks)
    if any(check.status == "FAIL" for check in checks):
        raise typer.Exit(1)


def print_checks(checks: list[Check], *, stderr: bool = False) -> None:
    out = console(stderr=stderr)
    colour = {"ok": "green", "FAIL": "bold red", "skip": "yellow"}
    for check in checks:
        out.print(
            f"[{colour[check.status]}]{check.status:>4}[/] {check.name}: {check.detail}",
            soft_wrap=True,
        )
        if check.status == "FAIL" and check.fix:
            out.print(f"      fix: {check.fix}", soft_wrap=True)


def preflight(manifest: Manifest, file: Path) -> None:
    """`up` on the user's yagna: the doctor's checks but the offers wait, before anything
    starts; a failure ends `up` with the checks printed (nothing was allocated)."""
    from golem_deploy.supervisor.tls_deferred import import_aiohttp_without_ca_store

    # `up` waits on these checks. Their https clients bring their own CA store (yagna/
    # client.py, preflight/registry.py), as in the supervisor: aiohttp's two shared
    # contexts need not load it at import (tls_deferred.py), 30-200 ms by the machine's load.
    import_aiohttp_without_ca_store()
    import anyio

    from golem_deploy.preflight.checks import Target, run_checks

    checks = anyio.run(lambda: run_checks(Target.from_env(manifest), offers_wait=None))
    failed = [check for check in checks if check.status == "FAIL"]
    if failed:
        print_checks(checks, stderr=True)
        raise DeployError(
            f"your yagna is not ready to deploy {manifest.name!r}: "
            + ", ".join(check.name for check in failed)
            + " failed (see above)",
            hint=f"fix what is listed, then `golem-deploy doctor {file}` to check again",
        )


def plan(
    file: Annotated[Path, typer.Argument(help="The manifest to price.", show_default=False)],
    wait: Annotated[str, typer.Option("--wait", help="How long to collect offers.")] = "5s",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    env_file: Annotated[Path | None, typer.Option("--env-file", help=_ENV_FILE_HELP)] = None,
) -> None:
    """What the market offers for FILE's services and what they would cost.

    On your yagna (YAGNA_APPKEY set) or, without it, on a private local network started
    for the look and stopped after it."""
    from golem_deploy.preflight.plan import make_plan, plan_lines

    seconds = parse_duration(wait, "--wait")
    manifest = load_manifest(file, env_file)
    result = make_plan(manifest, seconds)
    if as_json:
        print(json.dumps(result.plain(), indent=2))
    else:
        for line in plan_lines(result):
            print(line)
