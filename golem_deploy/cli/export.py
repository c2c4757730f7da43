"""`golem-deploy export FILE [-o OUT.py]`: eject a manifest to a yapapi 0.13 program.

For users who outgrow the manifest: the output defines the same services as Service
subclasses (get_payload with vm.repo, start/run/shutdown) and a main() that runs them with
the manifest's budget, subnet, payment platform, instances, expiration and price caps.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add `export` to the root app."""
    app.command("export")(export)


def export(
    file: Annotated[
        Path, typer.Argument(help="The manifest to export.", show_default=False, metavar="FILE")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the program here instead of to stdout."),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Read ${VAR} values from this file instead of the .env beside the manifest.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Print the manifest's services as a runnable yapapi 0.13 Python program."""
    from golem_deploy.compiler import export_source
    from golem_deploy.manifest import check_manifest

    result = check_manifest(file, env_file)
    for d in result.diagnostics:
        sys.stderr.write(d.format() + "\n")
    if result.manifest is None:
        raise typer.Exit(1)
    source = export_source(result.manifest, output=output)
    if output is None:
        sys.stdout.write(source)
        return
    try:
        output.write_text(source)
        output.chmod(0o755)
    except OSError as e:
        sys.stderr.write(f"error: cannot write {output}: {e.strerror or e}\n")
        raise typer.Exit(1) from None
    sys.stderr.write(f"wrote {output}\n")
