"""The Golem registry for payloads built by `vm.repo(image_tag=...)`, or `image_hash`
without `image_url`, in a Python program using the engine directly.

A real provider only runs `hash:sha3:<sha3>:<url>` it can download and verify, so yapapi's
`vm.repo` asks the registry (`GET {registry}/v1/image/info?tag=|hash=&count=true`). Our
`vm.repo` cannot: it does not know the network yet. `Golem.run_service` calls
`resolve_payload` instead, before anything is published, with the same client and cache as
`golem-deploy up` (golem_deploy/preflight/registry.py, `$GOLEM_DEPLOY_HOME/registry-cache.json`).

When the registry is asked, decided by the Golem's subnet, as `up` decides it:
- subnet `local-dev` (a golem-deploy local network, embedded or `localnet start`): never,
  unless `$GOLEM_REGISTRY_URL` names one (a test, a private registry); the local providers
  accept the payload as written. An unreachable registry there is only a warning.
- any other subnet: always; an unknown image or an unreachable registry fails
  `run_service` with the registry's reason, before any demand or agreement.
- `Golem(resolve_images=False)`: never (the supervisor passes it: `up` resolved the
  manifest's images already, and its embedded network must stay offline).

The payload's `ImageLookup` carries yapapi's registry choices: which registry
(`repository_url`; None: `$GOLEM_REGISTRY_URL`, else Golem's), its `https` or `http` link
(`image_use_https`), and `dev=true` instead of `count=true` in the query (`dev_mode`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from golem_deploy import paths
from golem_deploy.engine.payload import VmPayload
from golem_deploy.preflight.registry import RegistryUnreachable, resolve
from golem_deploy.protocol import LOCAL_SUBNET

__all__ = ["asks_registry", "registry_cache", "resolve_payload"]


def registry_cache() -> Path:
    """The registry answers kept across runs (the file `golem-deploy up` uses too)."""
    return paths.home() / "registry-cache.json"


def asks_registry(subnet: str) -> bool:
    """Whether a payload on `subnet` is resolved through the registry (module doc)."""
    return subnet != LOCAL_SUBNET or bool(os.environ.get("GOLEM_REGISTRY_URL"))


async def resolve_payload(
    payload: VmPayload,
    *,
    subnet: str,
    warn: Callable[[str], None],
    cache: Path | None = None,
) -> VmPayload:
    """`payload` with the registry's hash and URL as its task package, or unchanged when
    it needs no registry or the network does not ask one. RegistryError otherwise."""
    lookup = payload.image_lookup
    if lookup is None or not asks_registry(subnet):
        return payload
    try:
        image = await resolve(
            image_tag=lookup.tag,
            image_hash=lookup.hash,
            registry=lookup.registry,
            cache=cache if cache is not None else registry_cache(),
            dev=lookup.dev_mode,
        )
    except RegistryUnreachable as error:
        if subnet != LOCAL_SUBNET:
            raise
        warn(f"image left unresolved on {LOCAL_SUBNET}: {error.message}")
        return payload
    return replace(payload, task_package=image.task_package(lookup.use_https), image_lookup=None)
