"""The JSON Schema check: the shipped schema, its validator, and its errors as Diagnostics.

The schema (schemas/manifest.schema.json, also shipped inside the package) is the contract
editors and CI use, so it is the first judge of a manifest. jsonschema's own messages are
written for schema authors ("'x' is not valid under any of the given schemas"); a user needs
"services.web.instances: must be an integer, not a string" at the exact key or value, with a
hint. `KEYWORDS` is the one table saying, for each JSON Schema keyword, how its failure is
phrased; a keyword missing from it falls back to jsonschema's message.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from golem_deploy.manifest.diagnostics import Diagnostic
from golem_deploy.manifest.durations import DURATION_HINT
from golem_deploy.manifest.load import Document, JsonPath
from golem_deploy.manifest.network import cidr_problem
from golem_deploy.manifest.ports import port_problem
from golem_deploy.manifest.wording import article, dotted, show, type_name, where

SCHEMA_RESOURCE = "schemas/manifest.schema.json"


def schema_text() -> str:
    """The JSON Schema as shipped in the package (the same file as schemas/ in the repo)."""
    from importlib import resources

    try:
        return resources.files("golem_deploy").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    except (FileNotFoundError, NotADirectoryError):  # pragma: no cover - broken install
        repo_copy = Path(__file__).resolve().parents[2] / "schemas" / "manifest.schema.json"
        return repo_copy.read_text("utf-8")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@lru_cache(maxsize=1)
def _validator() -> Any:
    """A validator over the schema with its local `$ref`s inlined: same verdicts, but no
    reference lookups per validated value (about a fifth of the time of `validate`)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_inline_refs(schema(), schema()))


def _inline_refs(node: Any, root: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline_refs(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    result = {k: _inline_refs(v, root) for k, v in node.items() if k not in ("$ref", "$defs")}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = _inline_refs(root["$defs"][ref.removeprefix("#/$defs/")], root)
        # A $ref next to other keywords: both apply, so merge (the local ones are only
        # descriptions and defaults, which never conflict with validation keywords).
        result = {**target, **result}
    return result


def schema_diagnostics(doc: Document) -> list[Diagnostic]:
    """Every JSON Schema violation of `doc.data`, each at its key or value."""
    problems: list[Diagnostic] = []
    for error in _validator().iter_errors(doc.data):
        problems.extend(_translate(doc, error))
    return problems


@dataclass(frozen=True)
class Failure:
    """One jsonschema error, with what every phrasing needs: where it is, the failing
    keyword's value in the schema, the schema node (for `x-hint` and custom messages), and
    the offending value."""

    doc: Document
    path: JsonPath
    keyword: str
    expected: Any  # the keyword's value in the schema, e.g. the list of a `required`
    schema: dict[str, Any]
    instance: Any
    message: str  # jsonschema's own wording, the fallback
    hint: str | None  # the schema's `x-hint` for this node

    @property
    def place(self) -> str:
        """The failing value's place, `services.web.instances`."""
        return dotted(self.path)

    def at(
        self, path: JsonPath, message: str, hint: str | None, *, key: bool = False
    ) -> Diagnostic:
        line, column = self.doc.position(path, key=key)
        return Diagnostic(self.doc.path, line, column, "error", message, hint)

    def here(self, message: str) -> list[Diagnostic]:
        """The usual case: one error at the value, with the node's hint."""
        return [self.at(self.path, f"{self.place}: {message}", self.hint)]


def _translate(doc: Document, error: Any) -> list[Diagnostic]:
    sub: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    failure = Failure(
        doc=doc,
        path=tuple(error.absolute_path),
        keyword=error.validator,
        expected=error.validator_value,
        schema=sub,
        instance=error.instance,
        message=error.message,
        hint=sub.get("x-hint"),
    )
    about_a_mapping = failure.keyword in _MAPPING_KEYWORDS and isinstance(failure.instance, dict)
    if "propertyNames" in error.schema_path and not about_a_mapping:
        # Whatever keyword failed inside `propertyNames`, the problem is a key's name.
        return _bad_key_name(failure)
    return KEYWORDS.get(failure.keyword, _fallback)(failure)


# --------------------------------------------------------------------------- the table


def _unknown_keys(f: Failure) -> list[Diagnostic]:
    if not isinstance(f.instance, dict):
        return _fallback(f)
    allowed = list(f.schema.get("properties", {}))
    patterns = list(f.schema.get("patternProperties", {}))
    out = []
    for name in f.instance:
        if name in allowed or any(re.search(p, name) is not None for p in patterns):
            continue
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        fix: str | None
        if close:
            fix = f"did you mean {close[0]!r}?"
        elif allowed:
            fix = "allowed here: " + ", ".join(allowed)
        else:
            fix = f.hint
        out.append(f.at((*f.path, name), f"{where(f.path)}: unknown key {name!r}", fix, key=True))
    return out


def _missing_keys(f: Failure) -> list[Diagnostic]:
    if not isinstance(f.instance, dict):
        return _fallback(f)
    return [
        f.at(f.path, f"{where(f.path)}: missing required key {name!r}", _add(name), key=True)
        for name in f.expected
        if name not in f.instance
    ]


_MAPPING_KEYWORDS = ("additionalProperties", "required")

_REQUIRED_HINTS = {
    "budget": "set the most GLM this deployment may spend, e.g. `budget: 1.0`",
    "services": "define at least one service under `services:`",
    "payload": "give the service a `payload:` with an image_hash",
    "src": "transfers need `src` and `dst`",
    "dst": "transfers need `src` and `dst`",
}


def _add(name: str) -> str:
    return _REQUIRED_HINTS.get(name, f"add `{name}:`")


def _bad_key_name(f: Failure) -> list[Diagnostic]:
    # jsonschema reports a bad key with the parent's path; point at the key itself.
    name = str(f.instance)
    message = f.schema.get("patternErrorMessage") or f.message
    return [f.at((*f.path, name), f"{f.place}: key {name!r}: {message}", f.hint, key=True)]


def _property_names(f: Failure) -> list[Diagnostic]:
    # `propertyNames: false` and the like: the offending name, again at the key.
    name = str(f.instance)
    message = f.schema.get("patternErrorMessage") or f.message
    return [f.at((*f.path, name), f"{where(f.path)}: key {name!r} {message}", f.hint, key=True)]


# Values whose mistakes deserve more than one message: the schema's pattern (for editors)
# says only "invalid", the parser says which part is wrong and how to fix it.
_EXPLAIN: dict[str, Callable[[str], tuple[str, str] | None]] = {
    "port": port_problem,
    "cidr": cidr_problem,
}


def _pattern(f: Failure) -> list[Diagnostic]:
    explain = _EXPLAIN.get(f.schema.get("x-explain", ""))
    problem = explain(f.instance) if explain and isinstance(f.instance, str) else None
    if problem is not None:
        return [f.at(f.path, f"{f.place}: {problem[0]}", problem[1])]
    message = f.schema.get("patternErrorMessage", f"must match {f.expected}")
    hint = (f.hint or DURATION_HINT) if "duration" in message else f.hint
    return [f.at(f.path, f"{f.place}: {f.instance!r} {message}", hint)]


def _wrong_type(f: Failure) -> list[Diagnostic]:
    names = " or ".join(f.expected) if isinstance(f.expected, list) else f.expected
    return f.here(f"must be {article(names)}, not {type_name(f.instance)}")


def _not_one_of(f: Failure) -> list[Diagnostic]:
    options = f.expected if f.keyword == "enum" else [f.expected]
    shown = ", ".join(json.dumps(o) for o in options)
    close = difflib.get_close_matches(str(f.instance), [str(o) for o in options], n=1)
    choice = f"did you mean {close[0]!r}?" if close else f.hint
    return [f.at(f.path, f"{f.place}: {show(f.instance)} is not one of {shown}", choice)]


def _bound(comparison: str) -> Callable[[Failure], list[Diagnostic]]:
    def phrase(f: Failure) -> list[Diagnostic]:
        return f.here(f"must be {comparison} {f.expected}, not {show(f.instance)}")

    return phrase


def _empty(f: Failure) -> list[Diagnostic]:
    return f.here("must not be empty")


def _too_few_keys(f: Failure) -> list[Diagnostic]:
    if f.path == ("services",):
        return [f.at(f.path, "services: define at least one service", None, key=True)]
    return _empty(f)


def _one_of(f: Failure) -> list[Diagnostic]:
    """`oneOf: [{required: [a]}, {required: [b]}, ...]`: exactly one of these keys."""
    names = [b["required"][0] for b in f.expected if list(b) == ["required"]]
    if len(names) != len(f.expected):
        return _fallback(f)
    if not isinstance(f.instance, dict):
        return []  # the type error says what is wrong
    listed = ", ".join(f"`{n}`" for n in names[:-1]) + f" or `{names[-1]}`"
    given = [n for n in names if n in f.instance]
    if not given:
        return [f.at(f.path, f"{where(f.path)}: needs one of {listed}", f.hint, key=True)]
    both = " and ".join(f"`{n}`" for n in given)
    return [
        f.at(
            (*f.path, given[1]),
            f"{f.place}: give only one of {listed}, not {both}",
            f.hint,
            key=True,
        )
    ]


def _fallback(f: Failure) -> list[Diagnostic]:
    return [f.at(f.path, f"{f.place}: {f.message}", f.hint)]


KEYWORDS: dict[str, Callable[[Failure], list[Diagnostic]]] = {
    "additionalProperties": _unknown_keys,
    "required": _missing_keys,
    "propertyNames": _property_names,
    "pattern": _pattern,
    "type": _wrong_type,
    "enum": _not_one_of,
    "const": _not_one_of,
    "oneOf": _one_of,
    "minimum": _bound("at least"),
    "exclusiveMinimum": _bound("more than"),
    "maximum": _bound("at most"),
    "exclusiveMaximum": _bound("less than"),
    "minItems": _empty,
    "minLength": _empty,
    "minProperties": _too_few_keys,
    "maxProperties": lambda f: f.here("has more than one key"),
    "uniqueItems": lambda f: [
        f.at(f.path, f"{f.place}: has duplicate items", "list each item once")
    ],
}
"""How each JSON Schema keyword's failure is phrased (anything else: jsonschema's text)."""
