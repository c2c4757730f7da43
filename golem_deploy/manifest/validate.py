"""Validation: JSON Schema first, then the rules a schema cannot express, then the model.

`check_manifest` is the whole pipeline for one file, and never raises for bad input:

1. load.py parses the YAML, remembering where every key and value is;
2. interpolate.py substitutes ${VAR}s (from `.env` and the environment);
3. schema_check.py runs the JSON Schema and phrases each failure as a Diagnostic;
4. rules.py adds what JSON Schema cannot say (cycles, paths leaving the folder, budget...);
5. only a manifest without errors is handed to build.py, which makes the frozen model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from golem_deploy.manifest.build import build_manifest
from golem_deploy.manifest.diagnostics import Diagnostic, ManifestError
from golem_deploy.manifest.interpolate import interpolate_document, read_env_file
from golem_deploy.manifest.load import load_document
from golem_deploy.manifest.model import Manifest
from golem_deploy.manifest.rules import semantic_diagnostics
from golem_deploy.manifest.schema_check import schema, schema_diagnostics, schema_text
from golem_deploy.manifest.wording import type_name

__all__ = ["CheckResult", "check_manifest", "load_manifest", "schema", "schema_text"]


@dataclass
class CheckResult:
    """What checking one manifest found: the model when there is no error, and every
    diagnostic (errors and warnings) in file order."""

    manifest: Manifest | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]


def check_manifest(
    path: str | os.PathLike[str],
    env_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> CheckResult:
    """Load, interpolate and validate one manifest; never raises for bad input."""
    display = os.fspath(path)
    file = Path(display)
    try:
        doc = load_document(file, display)
    except ManifestError as e:
        return CheckResult(None, e.diagnostics)
    diagnostics: list[Diagnostic] = []
    env = _environment(file, env_file, environ, diagnostics)
    diagnostics += interpolate_document(doc, env)
    if not isinstance(doc.data, dict):
        diagnostics.append(
            Diagnostic(
                display,
                *doc.position(()),
                "error",
                f"a manifest is a mapping of keys, not {type_name(doc.data)}",
                "start with `name:`, `budget:` and `services:`",
            )
        )
        return CheckResult(None, _sorted(diagnostics))
    schema_problems = schema_diagnostics(doc)
    diagnostics += schema_problems
    folder = file.resolve().parent
    try:
        diagnostics += semantic_diagnostics(doc, folder, file.stem)
    except (TypeError, ValueError, AttributeError, KeyError):
        # Semantic checks read the data defensively; if ill-typed data still trips them,
        # the schema has already said what is wrong with it.
        if not schema_problems:
            raise
    if any(d.is_error for d in diagnostics):
        return CheckResult(None, _sorted(diagnostics))
    return CheckResult(build_manifest(doc.data, file.resolve()), _sorted(diagnostics))


def load_manifest(
    path: str | os.PathLike[str], env_file: str | os.PathLike[str] | None = None
) -> Manifest:
    """The validated Manifest, or ManifestError listing every problem of the file."""
    result = check_manifest(path, env_file)
    if result.manifest is None:
        raise ManifestError(result.diagnostics)
    return result.manifest


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: (d.path, d.line, d.column))


def _environment(
    file: Path,
    env_file: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None,
    diagnostics: list[Diagnostic],
) -> dict[str, str]:
    """Variables for interpolation: the .env file (beside the manifest, or the one given),
    overridden by the process environment."""
    values: dict[str, str] = {}
    if env_file is not None:
        chosen = Path(env_file)
        loaded = read_env_file(chosen, os.fspath(env_file))
        values.update(loaded.values)
        diagnostics += loaded.diagnostics
    else:
        beside = file.parent / ".env"
        if beside.is_file():
            loaded = read_env_file(beside)
            values.update(loaded.values)
            diagnostics += loaded.diagnostics
    values.update(os.environ if environ is None else environ)
    return values
