"""Diagnostics: one problem found in a manifest, and the error that carries all of them.

Everything in the manifest layer reports problems as `Diagnostic`s instead of raising on the
first one, because a user fixing a manifest wants every problem of the file at once, each
pointing at the exact key or value (`path:line:column`), the way compilers report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from golem_deploy.errors import GolemDeployError

if TYPE_CHECKING:
    from golem_deploy.manifest.load import JsonPath

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    """One problem. `line`/`column` are 1-based; 0 means "the file as a whole"."""

    path: str
    line: int
    column: int
    severity: Severity
    message: str
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def location(self) -> str:
        """`path:line:column`, or just `path` when the problem is not at a position."""
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{self.column}"

    def format(self) -> str:
        """The compiler-style text form: `path:line:column: error: message` (+ hint line)."""
        text = f"{self.location()}: {self.severity}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class Report(Protocol):
    """How a semantic rule reports a problem at `path` (at its key when `key`); the rule
    runner turns it into a Diagnostic at that position."""

    def __call__(
        self,
        path: JsonPath,
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        severity: Severity = "error",
    ) -> None: ...


class ManifestError(GolemDeployError):
    """A manifest that cannot be used; `diagnostics` lists every problem found, in file
    order (warnings included), not just the first."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=_order)
        errors = [d for d in self.diagnostics if d.is_error] or self.diagnostics
        summary = errors[0].format() if errors else "invalid manifest"
        more = len(errors) - 1
        if more > 0:
            summary += f"\n(and {more} more error{'s' if more > 1 else ''})"
        super().__init__(summary)

    def __str__(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


def _order(d: Diagnostic) -> tuple[str, int, int]:
    return (d.path, d.line, d.column)
