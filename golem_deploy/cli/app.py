"""The `golem-deploy` command: a typer app whose command groups live in sibling modules.

Each sibling module exposes `register(app)`. Modules import their heavy dependencies inside
the command functions, so `golem-deploy --help` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from golem_deploy import __version__
from golem_deploy.errors import GolemDeployError

app = typer.Typer(
    name="golem-deploy",
    help="Declarative service deployments on the Golem Network.\n\n"
    "Write a manifest, then `golem-deploy up manifest.yaml`. With no yagna configured "
    "(YAGNA_APPKEY unset) it runs on an embedded, offline local Golem network.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"golem-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks for errors (for bug reports)."
    ),
) -> None:
    if debug:
        os.environ["GOLEM_DEPLOY_DEBUG"] = "1"


def _register_commands() -> None:
    from golem_deploy.cli import change, deploy, doctor, export, localnet, validate

    for module in (validate, deploy, change, localnet, export, doctor):
        module.register(app)


_register_commands()


def main() -> None:
    """Console entry point: run the app, mapping our typed errors to one clean message."""
    from golem_deploy.cli import signals

    signals.install()  # SIGTERM and SIGHUP take Ctrl-C's path (cli/signals.py)
    try:
        app()
    except GolemDeployError as error:
        if os.environ.get("GOLEM_DEPLOY_DEBUG"):
            raise
        from rich.console import Console
        from rich.text import Text

        # soft_wrap: a long path stays one line the user can copy (the terminal wraps it);
        # the message is plain text, never markup (a "[...]" in it prints as it is).
        message = Text.assemble(("error:", "bold red"), " ", str(error))
        Console(stderr=True).print(message, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt as interrupt:
        sys.exit(signals.exit_code(interrupt))  # 130 for Ctrl-C, 143 SIGTERM, 129 SIGHUP
    except SystemExit as end:  # typer's exit 130 for any interrupt: which signal was it?
        sys.exit(signals.exit_status(end))
