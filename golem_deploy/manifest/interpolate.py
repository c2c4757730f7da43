"""`${VAR}` interpolation in manifest values, with the syntax users know from docker compose.

    ${VAR}            the value of VAR; an error when VAR is unset
    ${VAR:-default}   default when VAR is unset or empty   (${VAR-default}: only when unset)
    ${VAR:?message}   an error with `message` when VAR is unset or empty (${VAR?message}: unset)
    $$                a literal `$`

A `$` followed by anything else stays as written, so shell strings such as
`run: "echo $HOME $(date)"` reach the provider's shell untouched. Defaults may themselves
contain `${...}`. Variables come from the process environment, which wins over the `.env`
file beside the manifest (or the file given with --env-file), as in compose.

Why an error for an unset `${VAR}` instead of compose's empty string with a warning: a
manifest spends money; a silently empty image hash or budget is worse than a clear stop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golem_deploy.manifest.diagnostics import Diagnostic
from golem_deploy.manifest.load import Document, JsonPath, resolve_plain

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$")


class InterpolationError(ValueError):
    """A `${...}` that cannot be resolved; `offset` is where it starts in the string."""

    def __init__(self, message: str, offset: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Resolve every `${...}` and `$$` in `text` (see the module docstring)."""
    value, end = _expand(text, 0, env, closing=False)
    assert end == len(text)
    return value


def _expand(text: str, pos: int, env: Mapping[str, str], *, closing: bool) -> tuple[str, int]:
    """Expand from `pos` until the end (or, inside a default, until the matching `}`)."""
    out: list[str] = []
    n = len(text)
    while pos < n:
        ch = text[pos]
        if closing and ch == "}":
            return "".join(out), pos
        if ch != "$":
            out.append(ch)
            pos += 1
            continue
        nxt = text[pos + 1] if pos + 1 < n else ""
        if nxt == "$":
            out.append("$")
            pos += 2
        elif nxt == "{":
            value, pos = _substitution(text, pos, env)
            out.append(value)
        else:
            out.append("$")
            pos += 1
    if closing:
        raise InterpolationError("unterminated ${...}", pos, "close it with `}`")
    return "".join(out), pos


def _substitution(text: str, start: int, env: Mapping[str, str]) -> tuple[str, int]:
    """One `${...}` starting at `start` (the `$`); returns its value and the index after `}`."""
    pos = start + 2
    match = _NAME.match(text, pos)
    if match is None:
        raise InterpolationError(
            f"invalid variable name in {text[start : start + 20]!r}",
            start,
            "use ${NAME} with letters, digits and _; write $$ for a literal $",
        )
    name = match.group()
    pos = match.end()
    value = env.get(name)
    if text.startswith("}", pos):
        if value is None:
            raise InterpolationError(
                f"variable {name} is not set",
                start,
                f"export {name}=..., add it to the .env file, or write ${{{name}:-default}}",
            )
        return value, pos + 1
    for operator in (":-", "-", ":?", "?"):
        if text.startswith(operator, pos):
            break
    else:
        raise InterpolationError(
            f"invalid interpolation {text[start : pos + 1]!r}",
            start,
            "use ${NAME}, ${NAME:-default} or ${NAME:?message}",
        )
    argument, end = _expand(text, pos + len(operator), env, closing=True)
    missing = value is None or (operator.startswith(":") and value == "")
    if operator.endswith("-"):
        return (argument if missing else value or ""), end + 1
    if missing:
        raise InterpolationError(
            argument or f"variable {name} is not set",
            start,
            f"set {name} in the environment or the .env file",
        )
    return value or "", end + 1


@dataclass(frozen=True)
class EnvFile:
    """Variables read from a .env file, plus problems found in it."""

    values: dict[str, str]
    diagnostics: list[Diagnostic]


def read_env_file(path: Path, display: str | None = None) -> EnvFile:
    """Parse a .env file: `KEY=value` lines, `#` comments, optional `export `, and values
    in single quotes (literal) or double quotes (with \\n, \\t, \\" and \\\\ escapes)."""
    shown = display if display is not None else str(path)
    values: dict[str, str] = {}
    problems: list[Diagnostic] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        problems.append(
            Diagnostic(
                shown, 0, 0, "error", f"cannot read env file: {reason}", "check the --env-file path"
            )
        )
        return EnvFile(values, problems)
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            problems.append(
                Diagnostic(
                    shown,
                    number,
                    1,
                    "error",
                    "expected KEY=value",
                    "each line of a .env file is KEY=value or # comment",
                )
            )
            continue
        key, raw = match.group(1), match.group(2).strip()
        values[key] = _env_value(raw)
    return EnvFile(values, problems)


def _env_value(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "$": "$"}
        out: list[str] = []
        body = raw[1:-1]
        i = 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body) and body[i + 1] in escapes:
                out.append(escapes[body[i + 1]])
                i += 2
            else:
                out.append(body[i])
                i += 1
        return "".join(out)
    # unquoted: an inline comment starts at " #"
    comment = raw.find(" #")
    return (raw[:comment] if comment >= 0 else raw).rstrip()


def interpolate_document(doc: Document, env: Mapping[str, str]) -> list[Diagnostic]:
    """Interpolate every string value of `doc` in place (keys are left alone).

    An unquoted value is re-typed after interpolation (`instances: ${N:-2}` is the number 2),
    a quoted one stays a string, as the YAML author wrote it.
    """
    problems: list[Diagnostic] = []

    def visit(value: Any, path: JsonPath) -> Any:
        if isinstance(value, dict):
            for key, child in value.items():
                value[key] = visit(child, (*path, key))
            return value
        if isinstance(value, list):
            return [visit(child, (*path, i)) for i, child in enumerate(value)]
        if not isinstance(value, str) or "$" not in value:
            return value
        line, column = doc.position(path)
        try:
            result = interpolate(value, env)
        except InterpolationError as e:
            problems.append(Diagnostic(doc.path, line, column, "error", e.message, e.hint))
            return value
        if path in doc.plain:
            try:
                return resolve_plain(result)
            except ValueError as e:
                problems.append(Diagnostic(doc.path, line, column, "error", str(e)))
        return result

    doc.data = visit(doc.data, ())
    return problems
