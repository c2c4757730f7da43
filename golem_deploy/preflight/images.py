"""Which manifest images need the Golem registry, and resolving them before any demand.

A real provider only runs `hash:sha3:<sha3>:<url>` it can download and verify, so on the
user's own yagna every service whose payload gives `image_tag`, or `image_hash` without
`image_url`, is resolved through the registry (golem_deploy.preflight.registry, cached in the
state folder) before anything is published; the compiler then builds the payload from the
answer. The embedded local network never calls this (it must stay offline).

One exception keeps `golem-deploy localnet start` used as "your yagna" offline: on its
`local-dev` subnet the local providers accept the payload as written, so no registry is
asked unless GOLEM_REGISTRY_URL names one (tests, a private registry), and then an
unreachable one is only a warning. Everywhere else it is an error: a deployment the
providers cannot verify would only fail later, after money was allocated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from golem_deploy import paths
from golem_deploy.manifest.model import Manifest
from golem_deploy.preflight.registry import RegistryError, RegistryUnreachable, resolve
from golem_deploy.protocol import LOCAL_SUBNET

__all__ = ["Resolved", "ResolvedImages", "cache_file", "needs_registry", "resolve_images"]


@dataclass(frozen=True)
class Resolved:
    """What the compiler builds a payload from: `vm.repo(image_hash=sha3, image_url=url)`."""

    sha3: str
    url: str


ResolvedImages = Mapping[str, Resolved]
"""Service name -> its resolved image (services that need no registry are absent)."""


def cache_file() -> Path:
    """The registry answers, kept across deployments (one lookup per image per machine)."""
    return paths.home() / "registry-cache.json"


def needs_registry(manifest: Manifest) -> dict[str, tuple[str | None, str | None]]:
    """Service -> (image_tag, image_hash) for every service whose image the registry names."""
    wanted = {}
    for name, spec in manifest.services.items():
        p = spec.payload
        if p.image_tag is not None or (p.image_hash is not None and p.image_url is None):
            wanted[name] = (p.image_tag, None if p.image_tag is not None else p.image_hash)
    return wanted


async def resolve_images(
    manifest: Manifest,
    *,
    subnet: str,
    warn: Callable[[str], None],
    cache: Path | None = None,
) -> dict[str, Resolved]:
    """Resolve every image the registry names; RegistryError (with the reason) when one
    cannot be, except an unreachable registry on `local-dev` (warned, left unresolved)."""
    resolved: dict[str, Resolved] = {}
    if subnet == LOCAL_SUBNET and not os.environ.get("GOLEM_REGISTRY_URL"):
        return resolved  # a local network: nothing leaves the machine for it
    cache = cache if cache is not None else cache_file()
    for name, (tag, image_hash) in needs_registry(manifest).items():
        try:
            image = await resolve(image_tag=tag, image_hash=image_hash, cache=cache)
        except RegistryUnreachable as error:
            if subnet != LOCAL_SUBNET:
                message = f"service {name!r}: {error.message}"
                raise RegistryUnreachable(message, hint=error.hint) from None
            warn(f"service {name!r}: image left unresolved on {LOCAL_SUBNET}: {error.message}")
            continue
        except RegistryError as error:
            raise RegistryError(f"service {name!r}: {error.message}", hint=error.hint) from None
        resolved[name] = Resolved(sha3=image.sha3, url=image.http)
    return resolved
