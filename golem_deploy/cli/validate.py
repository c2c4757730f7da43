"""`golem-deploy validate` and `golem-deploy config`: the manifest commands CI and editors use.

validate FILE...   every problem of every file, as `path:line:column: error: message` plus a
                   hint line (or JSON, or GitHub Actions annotations); exit 0 when all files
                   are valid, 1 when any is not, 2 for a usage error. Warnings fail only with
                   --strict.
config FILE        the resolved, normalized manifest (defaults applied, ${VAR} resolved) as
                   YAML or JSON.

The manifest layer is imported inside the commands, so registering them costs nothing at
start-up (`golem-deploy --help` stays fast).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from golem_deploy.manifest import CheckResult, Diagnostic


class ReportFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


class ConfigFormat(StrEnum):
    yaml = "yaml"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add `validate` and `config` to the root app."""
    app.command("validate")(validate)
    app.command("config")(config)


_ENV_FILE_HELP = "Read ${VAR} values from this file instead of the .env beside each manifest."


def validate(
    files: Annotated[
        list[Path],
        typer.Argument(help="Manifest files to check.", show_default=False, metavar="FILE"),
    ],
    output_format: Annotated[
        ReportFormat,
        typer.Option("--format", "-f", help="text, json, or github (Actions annotations)."),
    ] = ReportFormat.text,
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help=_ENV_FILE_HELP, exists=True, dir_okay=False),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print problems only.")] = False,
) -> None:
    """Check manifests against the schema and the semantic rules; report every problem.

    Exit status: 0 all valid, 1 some file invalid, 2 usage error.
    """
    from golem_deploy.manifest import check_manifest

    results = [check_manifest(file, env_file) for file in files]
    failed = [r for r in results if _fails(r, strict)]
    out = sys.stdout
    if output_format is ReportFormat.json:
        report = {
            "valid": not failed,
            "files": [
                {
                    "path": str(file),
                    "valid": not _fails(result, strict),
                    "errors": len(result.errors),
                    "warnings": len(result.warnings),
                    "diagnostics": [_as_json(d) for d in result.diagnostics],
                }
                for file, result in zip(files, results, strict=True)
            ],
        }
        out.write(json.dumps(report, indent=2) + "\n")
    elif output_format is ReportFormat.github:
        for result in results:
            for d in result.diagnostics:
                out.write(_github(d, strict) + "\n")
    else:
        lines: list[str] = []
        for file, result in zip(files, results, strict=True):
            lines.extend(d.format() for d in result.diagnostics)
            if not quiet and not _fails(result, strict):
                warned = f" ({len(result.warnings)} warning(s))" if result.warnings else ""
                lines.append(f"{file}: valid{warned}")
        if len(files) > 1 and not quiet:
            lines.append(f"{len(files) - len(failed)} of {len(files)} manifests valid")
        if lines:
            out.write("\n".join(lines) + "\n")
    out.flush()
    raise typer.Exit(1 if failed else 0)


def config(
    file: Annotated[
        Path, typer.Argument(help="The manifest to resolve.", show_default=False, metavar="FILE")
    ],
    output_format: Annotated[
        ConfigFormat, typer.Option("--format", "-f", help="yaml or json.")
    ] = ConfigFormat.yaml,
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help=_ENV_FILE_HELP, exists=True, dir_okay=False),
    ] = None,
) -> None:
    """Print the resolved manifest: defaults applied, ${VAR} resolved, durations normalized."""
    from golem_deploy.manifest import check_manifest
    from golem_deploy.manifest.dump import manifest_to_data

    result = check_manifest(file, env_file)
    for d in result.diagnostics:
        sys.stderr.write(d.format() + "\n")
    if result.manifest is None:
        raise typer.Exit(1)
    data = manifest_to_data(result.manifest)
    if output_format is ConfigFormat.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(to_yaml(data))


def to_yaml(data: Any) -> str:
    """Block-style YAML in the data's own key order, long strings kept on one line."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 4096
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue()


def _fails(result: CheckResult, strict: bool) -> bool:
    return bool(result.errors) or (strict and bool(result.warnings))


def _as_json(d: Diagnostic) -> dict[str, Any]:
    return {
        "path": d.path,
        "line": d.line,
        "column": d.column,
        "severity": d.severity,
        "message": d.message,
        "hint": d.hint,
    }


def _github(d: Diagnostic, strict: bool) -> str:
    """A GitHub Actions workflow command, so problems appear as annotations on the PR."""
    level = "error" if d.is_error or strict else "warning"
    props = [f"file={_escape_property(d.path)}"]
    if d.line > 0:
        props += [f"line={d.line}", f"col={d.column}"]
    message = d.message + (f" (hint: {d.hint})" if d.hint else "")
    return f"::{level} {','.join(props)}::{_escape_data(message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
