"""The manifest layer: YAML file -> interpolated, validated, frozen `Manifest`.

    from golem_deploy.manifest import load_manifest, ManifestError
    manifest = load_manifest("manifests/hello-world.yaml")   # raises ManifestError

Importing this package is cheap: ruamel.yaml and jsonschema are imported only when a
manifest is actually loaded, so CLI start-up (`--help`) does not pay for them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from golem_deploy.manifest.diagnostics import Diagnostic, ManifestError
from golem_deploy.manifest.durations import format_duration, parse_duration
from golem_deploy.manifest.model import (
    DownloadStep,
    Healthcheck,
    HttpProbe,
    Manifest,
    Market,
    MaxPrice,
    NetworkSpec,
    Payload,
    Payment,
    PortSpec,
    RestartPolicy,
    RunSpec,
    RunStep,
    ServiceSpec,
    Step,
    UploadStep,
)

if TYPE_CHECKING:
    from golem_deploy.manifest.validate import CheckResult

__all__ = [
    "CheckResult",
    "Diagnostic",
    "DownloadStep",
    "Healthcheck",
    "HttpProbe",
    "Manifest",
    "ManifestError",
    "Market",
    "MaxPrice",
    "NetworkSpec",
    "Payload",
    "Payment",
    "PortSpec",
    "RestartPolicy",
    "RunSpec",
    "RunStep",
    "ServiceSpec",
    "Step",
    "UploadStep",
    "check_manifest",
    "format_duration",
    "load_manifest",
    "parse_duration",
]


def load_manifest(
    path: str | os.PathLike[str], env_file: str | os.PathLike[str] | None = None
) -> Manifest:
    """Load, interpolate (${VAR} from the environment and `.env` beside the manifest, or
    `env_file`) and validate a manifest; raises ManifestError listing every problem."""
    from golem_deploy.manifest.validate import load_manifest as _load

    return _load(path, env_file)


def check_manifest(
    path: str | os.PathLike[str], env_file: str | os.PathLike[str] | None = None
) -> CheckResult:
    """Like load_manifest, but never raises for bad input: returns the Manifest (None when
    there are errors) and every diagnostic, warnings included."""
    from golem_deploy.manifest.validate import check_manifest as _check

    return _check(path, env_file)
