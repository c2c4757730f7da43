"""Model building: valid raw data -> the frozen `Manifest` dataclasses.

Runs only on a manifest the schema and the rules found no error in, so it reads the data
without checks. It is the ONE place where defaults are applied: it passes only what the
manifest sets, and the model's dataclass defaults fill the rest (the schema's `default`s
document the same values). Durations become seconds, money `Decimal`, local paths absolute.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from golem_deploy.manifest.durations import parse_duration
from golem_deploy.manifest.model import (
    DownloadStep,
    Healthcheck,
    HttpProbe,
    LogRotation,
    Manifest,
    Market,
    MaxPrice,
    NetworkSpec,
    Payload,
    Payment,
    RestartPolicy,
    RunSpec,
    RunStep,
    ServiceSpec,
    Step,
    UpdatePolicy,
    UploadStep,
)
from golem_deploy.manifest.network import resolve_cidr
from golem_deploy.manifest.ports import parse_port
from golem_deploy.manifest.rules import resolve_local_path
from golem_deploy.manifest.sizes import parse_size

_PAYMENT_DURATIONS = ("debit_note_interval", "payment_timeout")


def build_manifest(data: dict[str, Any], path: Path) -> Manifest:
    """The frozen model of valid data: the ONE place where defaults are applied (by
    passing only what the manifest sets, so the model's dataclass defaults fill the rest)."""
    folder = path.parent
    cidr = resolve_cidr(data)
    top: dict[str, Any] = {
        "path": path,
        "name": data.get("name", path.stem),
        "budget": _decimal(data["budget"]),
        "services": {
            name: _service(name, s, folder, vpn=cidr is not None)
            for name, s in data["services"].items()
        },
    }
    if cidr is not None:
        top["network"] = NetworkSpec(cidr)
    if "version" in data:
        top["version"] = str(data["version"])
    if "payment" in data:
        payment: dict[str, Any] = {
            k: parse_duration(v) if k in _PAYMENT_DURATIONS else str(v)
            for k, v in data["payment"].items()
        }
        top["payment"] = Payment(**payment)
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


def _service(name: str, data: dict[str, Any], folder: Path, *, vpn: bool) -> ServiceSpec:
    kwargs: dict[str, Any] = {"name": name, "payload": _payload(data["payload"], vpn=vpn)}
    for key in ("instances", "respawn_unstarted_instances"):
        if key in data:
            kwargs[key] = data[key]
    if "expiration" in data:
        kwargs["expiration"] = parse_duration(data["expiration"])
    if "lifetime" in data:
        kwargs["lifetime"] = parse_duration(data["lifetime"])
    if "restart" in data:
        restart = dict(data["restart"])
        if "backoff" in restart:
            restart["backoff"] = parse_duration(restart["backoff"])
        kwargs["restart"] = RestartPolicy(**restart)
    if "update" in data:
        kwargs["update"] = UpdatePolicy(**data["update"])
    if "logs" in data:
        logs = dict(data["logs"])
        if "max_size" in logs:
            logs["max_size"] = parse_size(logs["max_size"])
        kwargs["logs"] = LogRotation(**logs)
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
        if "run" in check:
            check["run"] = _command(check["run"])
        if "http" in check:
            check["http"] = HttpProbe(**check["http"])
        for key in ("interval", "timeout", "start_period"):
            if key in check:
                check[key] = parse_duration(check[key])
        kwargs["healthcheck"] = Healthcheck(**check)
    if "depends_on" in data:
        kwargs["depends_on"] = tuple(data["depends_on"])
    if "ports" in data:
        kwargs["ports"] = tuple(parse_port(p) for p in data["ports"])
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


def _payload(data: dict[str, Any], *, vpn: bool) -> Payload:
    """The payload; on a network, its capabilities include "vpn" (added last unless the
    manifest lists it), so the demand only matches providers that can join the VPN."""
    kwargs: dict[str, Any] = dict(data)
    for key in ("min_mem_gib", "min_storage_gib"):
        if key in kwargs:
            kwargs[key] = float(kwargs[key])
    capabilities = tuple(kwargs.get("capabilities", ()))
    if vpn and "vpn" not in capabilities:
        capabilities += ("vpn",)
    if capabilities or "capabilities" in kwargs:
        kwargs["capabilities"] = capabilities
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
