"""Validation: JSON Schema first, then the rules a schema cannot express, then the model.

The schema (schemas/manifest.schema.json, also shipped inside the package) is the contract
editors and CI use, so it is the first judge; every error it finds becomes a Diagnostic at
the exact key or value. Semantic checks add what JSON Schema cannot say clearly: image
reference rules, depends_on that name unknown services or form a cycle, durations that must
be positive, local paths that must exist or must stay inside the manifest's folder, and a
warning when the budget cannot cover the worst case. Only a manifest without errors is turned
into the frozen model, and that conversion is the one place where defaults are applied
(they are the model's dataclass defaults; the schema's `default`s document the same values).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from golem_deploy.manifest.diagnostics import Diagnostic, ManifestError
from golem_deploy.manifest.durations import DURATION_HINT, parse_duration
from golem_deploy.manifest.interpolate import interpolate_document, read_env_file
from golem_deploy.manifest.load import Document, JsonPath, load_document
from golem_deploy.manifest.model import (
    DownloadStep,
    Healthcheck,
    Manifest,
    Market,
    MaxPrice,
    Payload,
    Payment,
    RestartPolicy,
    RunSpec,
    RunStep,
    ServiceSpec,
    Step,
    UploadStep,
)

SCHEMA_RESOURCE = "schemas/manifest.schema.json"


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
                f"a manifest is a mapping of keys, not {_type_name(doc.data)}",
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


# --------------------------------------------------------------------------- schema


def schema_diagnostics(doc: Document) -> list[Diagnostic]:
    """Every JSON Schema violation of `doc.data`, each at its key or value."""
    problems: list[Diagnostic] = []
    for error in _validator().iter_errors(doc.data):
        problems.extend(_from_schema_error(doc, error))
    return problems


def _from_schema_error(doc: Document, error: Any) -> list[Diagnostic]:
    path: JsonPath = tuple(error.absolute_path)
    keyword: str = error.validator
    sub: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    where = _dotted(path)
    hint: str | None = sub.get("x-hint")

    def at(p: JsonPath, message: str, hint: str | None = hint, *, key: bool = False) -> Diagnostic:
        line, column = doc.position(p, key=key)
        return Diagnostic(doc.path, line, column, "error", message, hint)

    if keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = list(sub.get("properties", {}))
        patterns = list(sub.get("patternProperties", {}))
        out = []
        for name in instance:
            if name in allowed or any(_matches(p, name) for p in patterns):
                continue
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            fix: str | None
            if close:
                fix = f"did you mean {close[0]!r}?"
            elif allowed:
                fix = "allowed here: " + ", ".join(allowed)
            else:
                fix = hint
            out.append(at((*path, name), f"{_where(path)}: unknown key {name!r}", fix, key=True))
        return out
    if keyword == "required" and isinstance(instance, dict):
        return [
            at(
                path,
                f"{_where(path)}: missing required key {name!r}",
                _required_hint(name),
                key=True,
            )
            for name in error.validator_value
            if name not in instance
        ]
    if "propertyNames" in error.schema_path:
        # jsonschema reports a bad key with the parent's path; point at the key itself.
        name = str(instance)
        message = sub.get("patternErrorMessage") or error.message
        return [at((*path, name), f"{where}: key {name!r}: {message}", key=True)]
    if keyword == "propertyNames":
        # jsonschema reports the offending name with the parent's path; point at the key.
        name = str(instance)
        message = sub.get("patternErrorMessage") or error.message
        return [at((*path, name), f"{_where(path)}: key {name!r} {message}", key=True)]
    if keyword == "pattern":
        message = sub.get("patternErrorMessage", f"must match {error.validator_value}")
        if "duration" in message:
            hint = hint or DURATION_HINT
        return [at(path, f"{where}: {instance!r} {message}", hint)]
    if keyword == "type":
        expected = error.validator_value
        names = " or ".join(expected) if isinstance(expected, list) else expected
        return [at(path, f"{where}: must be {_article(names)}, not {_type_name(instance)}", hint)]
    if keyword in ("enum", "const"):
        options = error.validator_value if keyword == "enum" else [error.validator_value]
        shown = ", ".join(json.dumps(o) for o in options)
        close = difflib.get_close_matches(str(instance), [str(o) for o in options], n=1)
        choice = f"did you mean {close[0]!r}?" if close else hint
        return [at(path, f"{where}: {_show(instance)} is not one of {shown}", choice)]
    bounds = {
        "minimum": "at least",
        "exclusiveMinimum": "more than",
        "maximum": "at most",
        "exclusiveMaximum": "less than",
    }
    if keyword in bounds:
        return [
            at(
                path,
                f"{where}: must be {bounds[keyword]} {error.validator_value}, "
                f"not {_show(instance)}",
                hint,
            )
        ]
    if keyword in ("minItems", "minLength"):
        return [at(path, f"{where}: must not be empty", hint)]
    if keyword == "minProperties":
        if path == ("services",):
            return [at(path, "services: define at least one service", None, key=True)]
        return [at(path, f"{where}: must not be empty", hint)]
    if keyword == "maxProperties":
        return [at(path, f"{where}: has more than one key", hint)]
    if keyword == "uniqueItems":
        return [at(path, f"{where}: has duplicate items", "list each item once")]
    return [at(path, f"{where}: {error.message}")]


def _matches(pattern: str, name: str) -> bool:
    import re

    return re.search(pattern, name) is not None


def _required_hint(name: str) -> str:
    return {
        "budget": "set the most GLM this deployment may spend, e.g. `budget: 1.0`",
        "services": "define at least one service under `services:`",
        "payload": "give the service a `payload:` with an image_hash",
        "src": "transfers need `src` and `dst`",
        "dst": "transfers need `src` and `dst`",
        "run": "a health check needs the command to `run`",
    }.get(name, f"add `{name}:`")


def _dotted(path: JsonPath) -> str:
    if not path:
        return "manifest"
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _where(path: JsonPath) -> str:
    return "top level" if not path else _dotted(path)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, Decimal | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _article(names: str) -> str:
    words = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "number": "a number",
        "integer": "an integer",
        "boolean": "a boolean",
        "null": "null",
    }
    return " or ".join(words.get(n, n) for n in names.split(" or "))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


# --------------------------------------------------------------------------- semantics


def resolve_local_path(folder: Path, relative: str) -> Path:
    """`relative` resolved inside `folder`; ValueError when it is absolute or escapes it.

    Uploads and downloads may only touch files under the manifest's folder, so a manifest
    from someone else cannot read your ~/.ssh or overwrite files elsewhere.
    """
    if Path(relative).is_absolute() or relative.startswith("~"):
        raise ValueError(f"{relative!r} is an absolute path")
    base = folder.resolve()
    resolved = (base / relative).resolve()
    if not resolved.is_relative_to(base):
        raise ValueError(f"{relative!r} is outside the manifest's folder")
    return resolved


def semantic_diagnostics(doc: Document, folder: Path, stem: str) -> list[Diagnostic]:
    """The rules JSON Schema cannot express well (see the module docstring)."""
    import re

    data = doc.data
    out: list[Diagnostic] = []

    def error(
        path: JsonPath,
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        severity: str = "error",
    ) -> None:
        line, column = doc.position(path, key=key)
        out.append(Diagnostic(doc.path, line, column, severity, message, hint))  # type: ignore[arg-type]

    if "name" not in data and not re.match(r"^[a-z0-9][a-z0-9_.-]{0,62}$", stem):
        error(
            (),
            f"no `name:` and the file name {stem!r} is not a valid deployment name",
            "add `name: my-deployment` (lowercase letters, digits, '.', '_', '-')",
        )

    services = data.get("services")
    if not isinstance(services, dict):
        return out
    for name, service in services.items():
        if not isinstance(service, dict):
            continue
        base: JsonPath = ("services", name)
        _check_payload(service.get("payload"), (*base, "payload"), error)
        _check_durations(service, base, error)
        _check_paths(service, base, folder, error)
        deps = service.get("depends_on")
        if isinstance(deps, list):
            for i, dep in enumerate(deps):
                if not isinstance(dep, str):
                    continue
                if dep == name:
                    error(
                        (*base, "depends_on", i),
                        f"service {name!r} depends on itself",
                        "remove it from its own depends_on",
                    )
                elif dep not in services:
                    close = difflib.get_close_matches(dep, list(services), n=1)
                    error(
                        (*base, "depends_on", i),
                        f"{_dotted((*base, 'depends_on'))}: unknown service {dep!r}",
                        f"did you mean {close[0]!r}?"
                        if close
                        else "services: " + ", ".join(services),
                    )
    _check_cycles(services, error)
    _check_budget(data, services, error)
    return out


def _check_payload(payload: Any, path: JsonPath, error: Any) -> None:
    if not isinstance(payload, dict):
        return
    has_hash = isinstance(payload.get("image_hash"), str)
    has_tag = isinstance(payload.get("image_tag"), str)
    has_url = isinstance(payload.get("image_url"), str)
    if has_tag and (has_hash or has_url):
        other = "image_hash" if has_hash else "image_url"
        error(
            (*path, "image_tag"),
            f"{_dotted(path)}: give either image_tag or {other}, not both",
            "image_tag alone, image_hash alone, or image_url with image_hash",
            key=True,
        )
    elif has_url and not has_hash:
        error(
            (*path, "image_url"),
            f"{_dotted(path)}: image_url needs image_hash",
            "add the image's sha3-224 hash so providers can verify the download",
            key=True,
        )
    elif not (has_hash or has_tag or has_url):
        error(
            path,
            f"{_dotted(path)}: no image given",
            "set image_hash (56 hex digits), image_tag, or image_url with image_hash",
            key=True,
        )


_POSITIVE_DURATIONS = [
    ("expiration",),
    ("run", "every"),
    ("healthcheck", "interval"),
    ("healthcheck", "timeout"),
]


def _check_durations(service: dict[str, Any], base: JsonPath, error: Any) -> None:
    for rel in _POSITIVE_DURATIONS:
        value: Any = service
        for part in rel:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
            try:
                seconds = parse_duration(value)
            except ValueError:
                continue  # the schema reports the malformed duration
            if seconds <= 0:
                error(
                    (*base, *rel),
                    f"{_dotted((*base, *rel))}: must be longer than 0s",
                    DURATION_HINT,
                )


def _check_paths(service: dict[str, Any], base: JsonPath, folder: Path, error: Any) -> None:
    local = service.get("local")
    image = local.get("image") if isinstance(local, dict) else None
    if isinstance(image, str) and image:
        source = (folder / Path(image).expanduser()).resolve()
        if not source.exists():
            error(
                (*base, "local", "image"),
                f"local image {image!r} does not exist (looked for {source})",
                "give a .gvmi file or an unpacked image folder (relative to the manifest)",
            )
    mounts = local.get("mounts") if isinstance(local, dict) else None
    if isinstance(mounts, dict):
        for container, host in mounts.items():
            if not isinstance(host, str) or not host:
                continue
            source = (folder / Path(host).expanduser()).resolve()
            if not source.exists():
                error(
                    (*base, "local", "mounts", container),
                    f"mount source {host!r} does not exist (looked for {source})",
                    "create it, or fix the path (relative to the manifest's folder)",
                )
    for section, steps in _step_lists(service, base):
        for i, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            for kind, local_key in (("upload", "src"), ("download", "dst")):
                transfer = step.get(kind)
                if not isinstance(transfer, dict):
                    continue
                local_path = transfer.get(local_key)
                if not isinstance(local_path, str) or not local_path:
                    continue
                where = (*section, i, kind, local_key)
                try:
                    resolved = resolve_local_path(folder, local_path)
                except ValueError as e:
                    error(
                        where,
                        f"{kind} {local_key}: {e}",
                        "local files of uploads and downloads must be inside the "
                        "manifest's folder; give a relative path without ..",
                    )
                    continue
                if kind == "upload" and not resolved.is_file():
                    error(
                        where,
                        f"upload source {local_path!r} does not exist yet",
                        "create it before deploying",
                        severity="warning",
                    )


def _step_lists(service: dict[str, Any], base: JsonPath) -> list[tuple[JsonPath, list[Any]]]:
    lists: list[tuple[JsonPath, list[Any]]] = []
    for section in ("start", "shutdown"):
        if isinstance(service.get(section), list):
            lists.append(((*base, section), service[section]))
    run = service.get("run")
    if isinstance(run, list):
        lists.append(((*base, "run"), run))
    elif isinstance(run, dict) and isinstance(run.get("steps"), list):
        lists.append(((*base, "run", "steps"), run["steps"]))
    return lists


def _check_cycles(services: dict[str, Any], error: Any) -> None:
    graph = {
        name: [
            d
            for d in (s.get("depends_on") or [])
            if isinstance(d, str) and d in services and d != name
        ]
        for name, s in services.items()
        if isinstance(s, dict) and isinstance(s.get("depends_on") or [], list)
    }
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[frozenset[str]] = set()

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                cycle = [*trail[trail.index(dep) :], dep] if dep in trail else [node, dep]
                members = frozenset(cycle)
                if members not in reported:
                    reported.add(members)
                    index = services[node]["depends_on"].index(dep)
                    error(
                        ("services", node, "depends_on", index),
                        "depends_on forms a cycle: " + " -> ".join(cycle),
                        "services must start in some order; break the cycle",
                    )
            elif state.get(dep) is None:
                visit(dep, [*trail, dep])
        state[node] = 2

    for name in graph:
        if state.get(name) is None:
            visit(name, [name])


def _check_budget(data: dict[str, Any], services: dict[str, Any], error: Any) -> None:
    """Warn when `instances x expiration x max_price` could exceed the budget."""
    budget = data.get("budget")
    market: dict[str, Any] = data["market"] if isinstance(data.get("market"), dict) else {}
    caps: dict[str, Any] = market["max_price"] if isinstance(market.get("max_price"), dict) else {}
    if not isinstance(budget, int | Decimal) or isinstance(budget, bool) or not caps:
        return

    def cap(key: str) -> Decimal:
        value = caps.get(key)
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            return Decimal(value)
        return Decimal(0)

    start, cpu, env = cap("start"), cap("cpu_per_hour"), cap("env_per_hour")
    worst = Decimal(0)
    for service in services.values():
        if not isinstance(service, dict):
            continue
        instances = service.get("instances", 1)
        threads = (service.get("payload") or {}).get("min_cpu_threads", 1)
        try:
            hours = Decimal(str(parse_duration(service.get("expiration", "1h")))) / 3600
        except (ValueError, TypeError):
            return
        if not isinstance(instances, int) or not isinstance(threads, int):
            return
        worst += instances * (start + (cpu * threads + env) * hours)
    if worst > budget:
        error(
            ("budget",),
            f"budget {budget} GLM may not cover the worst case of {worst.normalize():f} GLM "
            "(instances x expiration x max_price)",
            "raise the budget, or lower instances, expiration or max_price; instances "
            "stop when the budget is spent",
            severity="warning",
        )


# --------------------------------------------------------------------------- model


def build_manifest(data: dict[str, Any], path: Path) -> Manifest:
    """The frozen model of valid data: the ONE place where defaults are applied (by
    passing only what the manifest sets, so the model's dataclass defaults fill the rest)."""
    folder = path.parent
    top: dict[str, Any] = {
        "path": path,
        "name": data.get("name", path.stem),
        "budget": _decimal(data["budget"]),
        "services": {name: _service(name, s, folder) for name, s in data["services"].items()},
    }
    if "version" in data:
        top["version"] = str(data["version"])
    if "payment" in data:
        top["payment"] = Payment(**{k: str(v) for k, v in data["payment"].items()})
    if "subnet" in data:
        top["subnet"] = data["subnet"]
    if "market" in data:
        market = data["market"]
        kwargs: dict[str, Any] = {}
        if "max_price" in market:
            kwargs["max_price"] = MaxPrice(
                **{k: _decimal(v) for k, v in market["max_price"].items()}
            )
        if "blacklist" in market:
            kwargs["blacklist"] = tuple(market["blacklist"])
        top["market"] = Market(**kwargs)
    return Manifest(**top)


def _service(name: str, data: dict[str, Any], folder: Path) -> ServiceSpec:
    kwargs: dict[str, Any] = {"name": name, "payload": _payload(data["payload"])}
    for key in ("instances", "respawn_unstarted_instances"):
        if key in data:
            kwargs[key] = data[key]
    if "expiration" in data:
        kwargs["expiration"] = parse_duration(data["expiration"])
    if "restart" in data:
        restart = dict(data["restart"])
        if "backoff" in restart:
            restart["backoff"] = parse_duration(restart["backoff"])
        kwargs["restart"] = RestartPolicy(**restart)
    if "env" in data:
        kwargs["env"] = {k: _env_text(v) for k, v in data["env"].items()}
    if "start" in data:
        kwargs["start"] = _steps(data["start"], folder)
    if "run" in data:
        run = data["run"]
        if isinstance(run, list):
            kwargs["run"] = RunSpec(steps=_steps(run, folder))
        else:
            spec: dict[str, Any] = {"steps": _steps(run.get("steps", []), folder)}
            if "every" in run:
                spec["every"] = parse_duration(run["every"])
            kwargs["run"] = RunSpec(**spec)
    if "shutdown" in data:
        kwargs["shutdown"] = _steps(data["shutdown"], folder)
    if "healthcheck" in data:
        check = dict(data["healthcheck"])
        check["run"] = _command(check["run"])
        for key in ("interval", "timeout", "start_period"):
            if key in check:
                check[key] = parse_duration(check[key])
        kwargs["healthcheck"] = Healthcheck(**check)
    if "depends_on" in data:
        kwargs["depends_on"] = tuple(data["depends_on"])
    image = (data.get("local") or {}).get("image")
    if image:
        kwargs["local_image"] = (folder / Path(image).expanduser()).resolve()
    mounts = (data.get("local") or {}).get("mounts")
    if mounts:
        kwargs["mounts"] = {
            container: (folder / Path(host).expanduser()).resolve()
            for container, host in mounts.items()
        }
    return ServiceSpec(**kwargs)


def _payload(data: dict[str, Any]) -> Payload:
    kwargs: dict[str, Any] = dict(data)
    for key in ("min_mem_gib", "min_storage_gib"):
        if key in kwargs:
            kwargs[key] = float(kwargs[key])
    if "capabilities" in kwargs:
        kwargs["capabilities"] = tuple(kwargs["capabilities"])
    if "image_hash" in kwargs:
        kwargs["image_hash"] = kwargs["image_hash"].lower()
    return Payload(**kwargs)


def _steps(items: list[Any], folder: Path) -> tuple[Step, ...]:
    steps: list[Step] = []
    for item in items:
        if isinstance(item, list):
            steps.append(RunStep(tuple(item)))
        elif "run" in item:
            steps.append(_command(item["run"]))
        elif "upload" in item:
            up = item["upload"]
            steps.append(UploadStep(resolve_local_path(folder, up["src"]), up["dst"]))
        else:
            down = item["download"]
            steps.append(DownloadStep(down["src"], resolve_local_path(folder, down["dst"])))
    return tuple(steps)


def _command(value: list[str] | str) -> RunStep:
    if isinstance(value, str):
        return RunStep(("/bin/sh", "-c", value), shell=True)
    return RunStep(tuple(value))


def _decimal(value: int | Decimal) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


def _env_text(value: str | int | Decimal | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
