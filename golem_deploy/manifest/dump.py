"""The normalized manifest as plain data: every default filled in, durations spelled out,
paths resolved. `golem-deploy config` prints it; it is itself a valid manifest (placed in
the same folder it loads back to the same Manifest), so users can see -- and keep -- exactly
what golem-deploy will do.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from golem_deploy.manifest.durations import format_duration
from golem_deploy.manifest.model import (
    DownloadStep,
    Healthcheck,
    Manifest,
    RunStep,
    ServiceSpec,
    Step,
    UploadStep,
)
from golem_deploy.manifest.ports import format_port
from golem_deploy.manifest.sizes import format_size


def manifest_to_data(manifest: Manifest) -> dict[str, Any]:
    """The manifest as JSON/YAML-ready data (numbers are int/float; money keeps its exact
    value whenever a float can carry it, else it is written as a string)."""
    prices = manifest.market.max_price
    max_price = {
        key: _money(value)
        for key, value in (
            ("start", prices.start),
            ("cpu_per_hour", prices.cpu_per_hour),
            ("env_per_hour", prices.env_per_hour),
        )
        if value is not None
    }
    market: dict[str, Any] = {"blacklist": list(manifest.market.blacklist)}
    if max_price:
        market = {"max_price": max_price, **market}
    data = {
        "version": manifest.version,
        "name": manifest.name,
        "budget": _money(manifest.budget),
        "payment": _payment(manifest),
        "subnet": manifest.subnet,
        "market": market,
        "network": False if manifest.network is None else {"cidr": manifest.network.cidr},
        "services": {
            name: _service(spec, manifest.folder) for name, spec in manifest.services.items()
        },
    }
    escaped: dict[str, Any] = _escape(data)
    return escaped


def _payment(manifest: Manifest) -> dict[str, Any]:
    """Driver and network; the payment terms only when set (their default is negotiated)."""
    payment = manifest.payment
    out: dict[str, Any] = {"driver": payment.driver, "network": payment.network}
    for key, seconds in (
        ("debit_note_interval", payment.debit_note_interval),
        ("payment_timeout", payment.payment_timeout),
    ):
        if seconds is not None:
            out[key] = format_duration(seconds)
    return out


def _escape(value: Any) -> Any:
    """Write `$` as `$$` in strings that interpolation would otherwise change again."""
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, str) and ("${" in value or "$$" in value):
        return value.replace("$", "$$")
    return value


def _service(spec: ServiceSpec, folder: Path) -> dict[str, Any]:
    p = spec.payload
    payload: dict[str, Any] = {"runtime": p.runtime}
    for key in ("image_hash", "image_tag", "image_url"):
        if getattr(p, key) is not None:
            payload[key] = getattr(p, key)
    payload.update(
        min_mem_gib=p.min_mem_gib,
        min_storage_gib=p.min_storage_gib,
        min_cpu_threads=p.min_cpu_threads,
        capabilities=list(p.capabilities),
    )
    run: dict[str, Any] = {"steps": _steps(spec.run.steps, folder)}
    if spec.run.every is not None:
        run = {"every": format_duration(spec.run.every), **run}
    data: dict[str, Any] = {
        "payload": payload,
        "instances": spec.instances,
        "expiration": format_duration(spec.expiration),
        **({"lifetime": format_duration(spec.lifetime)} if spec.lifetime is not None else {}),
        "respawn_unstarted_instances": spec.respawn_unstarted_instances,
        "restart": {
            "policy": spec.restart.policy,
            "max_restarts": spec.restart.max_restarts,
            "backoff": format_duration(spec.restart.backoff),
        },
        "update": {"parallelism": spec.update.parallelism},
        "logs": {"max_size": format_size(spec.logs.max_size), "max_files": spec.logs.max_files},
        "env": dict(spec.env),
        "start": _steps(spec.start, folder),
        "run": run,
        "shutdown": _steps(spec.shutdown, folder),
    }
    if spec.healthcheck is not None:
        data["healthcheck"] = _healthcheck(spec.healthcheck)
    data["depends_on"] = list(spec.depends_on)
    data["ports"] = [format_port(p) for p in spec.ports]
    data["local"] = {"mounts": {c: str(h) for c, h in spec.mounts.items()}}
    if spec.local_image is not None:
        data["local"]["image"] = str(spec.local_image)
    return data


def _healthcheck(hc: Healthcheck) -> dict[str, Any]:
    probe: dict[str, Any] = {}
    if hc.run is not None:
        probe["run"] = _command(hc.run)
    if hc.http is not None:
        probe["http"] = {"port": hc.http.port, "path": hc.http.path}
    if hc.tcp is not None:
        probe["tcp"] = hc.tcp
    return {
        **probe,
        "interval": format_duration(hc.interval),
        "timeout": format_duration(hc.timeout),
        "retries": hc.retries,
        "start_period": format_duration(hc.start_period),
    }


def _steps(steps: tuple[Step, ...], folder: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for step in steps:
        if isinstance(step, RunStep):
            out.append({"run": _command(step)})
        elif isinstance(step, UploadStep):
            out.append({"upload": {"src": _relative(step.src, folder), "dst": step.dst}})
        elif isinstance(step, DownloadStep):
            out.append({"download": {"src": step.src, "dst": _relative(step.dst, folder)}})
    return out


def _command(step: RunStep) -> list[str] | str:
    if step.shell and len(step.argv) == 3 and step.argv[:2] == ("/bin/sh", "-c"):
        return step.argv[2]
    return list(step.argv)


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path, folder)).as_posix()


def _money(value: Decimal) -> float | int | str:
    if value == value.to_integral_value() and abs(value) < 2**53:
        return float(value) if "." in str(value) else int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)
