"""The rules JSON Schema cannot express well, checked on the raw (interpolated) data.

A schema says what shape a value has; these rules look across values: an image given as
either image_tag or image_hash (image_url needs a hash), depends_on that names unknown
services, the service itself, or forms a cycle; durations that must be positive; local paths
that must exist or must stay inside the manifest's folder; and a warning when the budget
cannot cover the worst case. The networking rules (ports, the range, what needs the VPN)
live in network_rules.py and run from here. The data may still be ill-typed here (the
schema reports that), so every rule reads it defensively and skips what it cannot judge.
"""

from __future__ import annotations

import difflib
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from golem_deploy.manifest.diagnostics import Diagnostic, Report, Severity
from golem_deploy.manifest.durations import DURATION_HINT, parse_duration
from golem_deploy.manifest.load import Document, JsonPath
from golem_deploy.manifest.network_rules import network_diagnostics
from golem_deploy.manifest.sizes import MIN_LOG_SIZE, parse_size
from golem_deploy.manifest.wording import dotted


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
    data = doc.data
    out: list[Diagnostic] = []

    def error(
        path: JsonPath,
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        severity: Severity = "error",
    ) -> None:
        line, column = doc.position(path, key=key)
        out.append(Diagnostic(doc.path, line, column, severity, message, hint))

    if "name" not in data and not re.match(r"^[a-z0-9][a-z0-9_.-]{0,62}$", stem):
        error(
            (),
            f"no `name:` and the file name {stem!r} is not a valid deployment name",
            "add `name: my-deployment` (lowercase letters, digits, '.', '_', '-')",
        )

    services = data.get("services")
    if not isinstance(services, dict):
        network_diagnostics(data, error)
        return out
    for name, service in services.items():
        if not isinstance(service, dict):
            continue
        base: JsonPath = ("services", name)
        _check_payload(service.get("payload"), (*base, "payload"), error)
        _check_durations(service, base, error)
        _check_log_size(service, base, error)
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
                        f"{dotted((*base, 'depends_on'))}: unknown service {dep!r}",
                        f"did you mean {close[0]!r}?"
                        if close
                        else "services: " + ", ".join(services),
                    )
    _check_cycles(services, error)
    _check_payment_terms(data.get("payment"), error)
    _check_budget(data, services, error)
    network_diagnostics(data, error)
    return out


def _check_payload(payload: Any, path: JsonPath, error: Report) -> None:
    if not isinstance(payload, dict):
        return
    has_hash = isinstance(payload.get("image_hash"), str)
    has_tag = isinstance(payload.get("image_tag"), str)
    has_url = isinstance(payload.get("image_url"), str)
    if has_tag and (has_hash or has_url):
        other = "image_hash" if has_hash else "image_url"
        error(
            (*path, "image_tag"),
            f"{dotted(path)}: give either image_tag or {other}, not both",
            "image_tag alone, image_hash alone, or image_url with image_hash",
            key=True,
        )
    elif has_url and not has_hash:
        error(
            (*path, "image_url"),
            f"{dotted(path)}: image_url needs image_hash",
            "add the image's sha3-224 hash so providers can verify the download",
            key=True,
        )
    elif not (has_hash or has_tag or has_url):
        error(
            path,
            f"{dotted(path)}: no image given",
            "set image_hash (56 hex digits), image_tag, or image_url with image_hash",
            key=True,
        )


_POSITIVE_DURATIONS = [
    ("expiration",),
    ("lifetime",),
    ("run", "every"),
    ("healthcheck", "interval"),
    ("healthcheck", "timeout"),
]


def _check_durations(service: dict[str, Any], base: JsonPath, error: Report) -> None:
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
                    f"{dotted((*base, *rel))}: must be longer than 0s",
                    DURATION_HINT,
                )


def _check_payment_terms(payment: Any, error: Report) -> None:
    """Debit notes and payment deadlines come in whole seconds: at least one."""
    if not isinstance(payment, dict):
        return
    for key in ("debit_note_interval", "payment_timeout"):
        value = payment.get(key)
        if not isinstance(value, str | int | Decimal) or isinstance(value, bool):
            continue
        try:
            seconds = parse_duration(value)
        except ValueError:
            continue  # the schema reports the malformed duration
        if seconds < 1:
            error(
                ("payment", key),
                f"payment.{key}: {value!r} is shorter than 1s",
                "providers count it in whole seconds; write e.g. 10s (or leave it out for "
                "the negotiated default)",
            )


def _check_log_size(service: dict[str, Any], base: JsonPath, error: Report) -> None:
    """A size string the schema's pattern admits may still be too small to be useful."""
    logs = service.get("logs")
    value = logs.get("max_size") if isinstance(logs, dict) else None
    if not isinstance(value, str):
        return  # numbers: the schema's minimum; other types: the schema's type
    try:
        size = parse_size(value)
    except ValueError:
        return  # the schema reports the malformed size
    if size < MIN_LOG_SIZE:
        error(
            (*base, "logs", "max_size"),
            f"{dotted((*base, 'logs', 'max_size'))}: {value!r} is less than 1KB",
            "a log file rotated every few lines keeps nothing useful; use e.g. 10MB",
        )


def _check_paths(service: dict[str, Any], base: JsonPath, folder: Path, error: Report) -> None:
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


def _check_cycles(services: dict[str, Any], error: Report) -> None:
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


def _check_budget(data: dict[str, Any], services: dict[str, Any], error: Report) -> None:
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
