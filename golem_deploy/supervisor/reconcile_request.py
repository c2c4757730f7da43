"""What a change request asks for: the wanted manifest and the instances to restart.

POST /reconcile carries one of `up FILE` (a manifest path, maybe an env file), `scale`
(`{"web": 3}`) or `restart` (`["web", "db.0"]`); this module turns it into the manifest
the deployment should run and the indices to replace, or refuses it with a message the
CLI prints as is (an invalid manifest with every problem, an unknown service with the
closest name). Reading the manifest file is the only I/O.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

from golem_deploy.errors import GolemDeployError
from golem_deploy.manifest.model import Manifest, ServiceSpec

__all__ = ["ReconcileRefused", "ask", "parse", "wanted"]


class ReconcileRefused(GolemDeployError):
    """A request the reconciler cannot take (an invalid manifest, an unknown service)."""


def parse(
    body: Mapping[str, object], current: Manifest
) -> tuple[Manifest, dict[str, tuple[int, ...]]]:
    """The request body's manifest (loaded and validated), scale and restart, against the
    manifest the deployment runs now (`current`)."""
    manifest = None
    path, env_file = body.get("manifest"), body.get("env_file")
    if isinstance(path, str):
        manifest = _load(Path(path), Path(env_file) if isinstance(env_file, str) else None)
    scale = body.get("scale") or {}
    restart = body.get("restart") or []
    if not isinstance(scale, dict) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in scale.values()
    ):
        raise ReconcileRefused("scale: give SERVICE=COUNT with a count of 0 or more")
    if not isinstance(restart, list) or not all(isinstance(r, str) for r in restart):
        raise ReconcileRefused("restart: give SERVICE or SERVICE.INDEX")
    return wanted(current, manifest, scale, restart)


def wanted(
    current: Manifest,
    manifest: Manifest | None,
    scale: Mapping[str, int],
    restart: Sequence[str],
) -> tuple[Manifest, dict[str, tuple[int, ...]]]:
    """The manifest a request asks for and the instances it restarts.

    `manifest` (from `up FILE`) replaces the running one; `scale` (`web=3`) and
    `restart` (`web`, `web.1`) change the running one. Unknown names are refused with
    the closest running name."""
    if manifest is not None and manifest.name != current.name:
        raise ReconcileRefused(f"the manifest is {manifest.name!r}, not {current.name!r}")
    base = manifest or current
    services = dict(base.services)
    for name, count in scale.items():
        spec = services.get(_known(name, services, current.name))
        assert spec is not None
        services[name] = dataclasses.replace(spec, instances=count)
    result = dataclasses.replace(base, services=services)
    restarts: dict[str, set[int]] = {}
    for target in restart:
        name, _, index = target.partition(".")
        spec = current.services.get(_known(name, current.services, current.name))
        assert spec is not None
        if index and not (index.isdigit() and int(index) < spec.instances):
            raise ReconcileRefused(
                f"{target}: {name} has instances 0 to {spec.instances - 1}"
                if spec.instances
                else f"{target}: {name} has no instances"
            )
        chosen = {int(index)} if index else set(range(spec.instances))
        restarts.setdefault(name, set()).update(chosen)
    return result, {name: tuple(sorted(i)) for name, i in restarts.items()}


def _known(name: str, services: Mapping[str, ServiceSpec], deployment: str) -> str:
    if name in services:
        return name
    close = difflib.get_close_matches(name, list(services), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ReconcileRefused(
        f"no service {name!r} in deployment {deployment!r}{hint}",
        hint="its services: " + ", ".join(services),
    )


def _load(path: Path, env_file: Path | None) -> Manifest:
    """The wanted manifest, validated as `up` validates it (every problem in the error)."""
    from golem_deploy.manifest import load_manifest
    from golem_deploy.manifest.diagnostics import ManifestError

    try:
        return load_manifest(path, env_file=env_file)
    except ManifestError as error:
        problems = "\n".join(d.format() for d in error.diagnostics)
        raise ReconcileRefused(f"{path} is not a valid manifest:\n{problems}") from None
    except OSError as error:
        raise ReconcileRefused(f"{path}: {error.strerror or error}") from None


def ask(socket: Path, method: str, body: Mapping[str, object] | None = None) -> dict[str, object]:
    """One /reconcile request to a supervisor (the CLI's side); its JSON object answer."""
    from golem_deploy.supervisor import client

    answer = client.request(socket, method, "/reconcile", body, timeout=60.0)
    if not isinstance(answer, dict):
        raise GolemDeployError(f"the supervisor answered {answer!r}")
    return answer
