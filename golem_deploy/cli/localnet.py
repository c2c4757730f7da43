"""`golem-deploy localnet start|status|stop`: a standalone local Golem network.

`start` prints only what a requestor needs on stdout (shell `export` lines, or one JSON
object with --json), so `eval "$(golem-deploy localnet start)"` points yapapi, golem-deploy
or any other SDK at it. Everything for humans goes to stderr.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from golem_deploy.cli.common import UNSAFE_HOST_EXEC_HELP, allow_unsafe_host_exec

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where the network keeps its daemons' data, pids and logs "
        "(default: $GOLEM_DEPLOY_HOME/localnet/default).",
        file_okay=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _state_dir(explicit: Path | None) -> Path:
    from golem_deploy.paths import localnet_dir

    return explicit.expanduser().resolve() if explicit is not None else localnet_dir()


def start(
    providers: Annotated[
        int, typer.Option("--providers", min=1, max=50, help="Number of local providers.")
    ] = 3,
    faults: Annotated[
        Path | None,
        typer.Option(
            "--faults",
            help="YAML file of injected provider faults (see the README, Faults).",
            dir_okay=False,
        ),
    ] = None,
    as_json: Json = False,
    state_dir: StateDir = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the network.")
    ] = 30.0,
    unsafe_host_exec: Annotated[
        bool, typer.Option("--unsafe-host-exec", help=UNSAFE_HOST_EXEC_HELP)
    ] = False,
) -> None:
    """Start a local network in the background (or reuse the running one) and print its env.

    Use it with: eval "$(golem-deploy localnet start)". Besides the YAGNA_* variables it puts
    a `gftp` first on PATH, which yapapi needs for every Golem it starts.
    """
    from golem_deploy import localnet

    directory = _state_dir(state_dir)
    if unsafe_host_exec:
        if localnet.status(directory) is not None:
            raise typer.BadParameter(
                "a local network is already running here and keeps its mode; "
                "run `golem-deploy localnet stop` first",
                param_hint="--unsafe-host-exec",
            )
        allow_unsafe_host_exec()
    info = localnet.start(directory, providers=providers, faults=faults, timeout=timeout)
    env = info.env()
    if as_json:
        env["PATH"] = info.path_with_gftp(os.environ.get("PATH", ""))
        typer.echo(json.dumps(env))
    else:
        for key, value in env.items():
            typer.echo(f"export {key}={shlex.quote(value)}")
        # yapapi runs `gftp server`, which the golem-node wheel lacks: ours comes first.
        typer.echo(f'export PATH={shlex.quote(str(info.gftp_dir))}:"$PATH"')
    if len(info.providers) != providers:
        print(
            f"note: a network with {len(info.providers)} providers was already running and is "
            "reused; run `golem-deploy localnet stop` first to change it",
            file=sys.stderr,
        )
    names = ", ".join(name for name, _ in info.providers)
    print(
        f"local network running in {info.state_dir} with {len(info.providers)} providers "
        f"({names}); stop it with: golem-deploy localnet stop",
        file=sys.stderr,
    )


def status(as_json: Json = False, state_dir: StateDir = None) -> None:
    """Show whether the local network runs, where, and its providers (exit 1 if not running)."""
    from golem_deploy import localnet

    directory = _state_dir(state_dir)
    info = localnet.status(directory)
    if as_json:
        if info is None:
            typer.echo(json.dumps({"running": False, "state_dir": str(directory)}))
        else:
            typer.echo(
                json.dumps(
                    {
                        "running": True,
                        "state_dir": str(info.state_dir),
                        "env": info.env(),
                        "providers": [
                            {"name": name, "node_id": node_id} for name, node_id in info.providers
                        ],
                    }
                )
            )
    elif info is None:
        typer.echo(f"no local network running in {directory}")
        if any((directory / "pids").glob("*.json")):
            typer.echo(
                "  it did not stop cleanly; `golem-deploy localnet stop` ends what is left",
                err=True,
            )
    else:
        typer.echo(f"local network running in {info.state_dir}")
        typer.echo(f"  api: {info.api_url}  subnet: {info.subnet}")
        typer.echo(f"  payment: {info.payment_driver}/{info.payment_network}")
        for name, node_id in info.providers:
            typer.echo(f"  {name}  {node_id}")
    if info is None:
        raise typer.Exit(1)


def stop(state_dir: StateDir = None) -> None:
    """Stop the local network: ends exactly the processes it recorded (also after a crash)."""
    from golem_deploy import localnet

    directory = _state_dir(state_dir)
    localnet.stop(directory)
    print(f"local network in {directory} stopped", file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add the `localnet` command group to the root app."""
    group = typer.Typer(
        name="localnet",
        help="A local, offline Golem network (real yagna daemons + local providers).",
        no_args_is_help=True,
    )
    group.command("start")(start)
    group.command("status")(status)
    group.command("stop")(stop)
    app.add_typer(group, name="localnet")
