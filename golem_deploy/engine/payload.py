"""VM payloads: what goes into the demand so that providers run our image.

`await vm.repo(...)` mirrors yapapi's helper of the same name and builds the same demand
parts: resource constraints (memory, storage, threads, capabilities, runtime `vm`) and the
properties `golem.srv.comp.task_package` = "hash:sha3:<hash>:<url>" and
`golem.srv.comp.vm.package_format` = "gvmkit-squash".

Unlike yapapi, `vm.repo` itself never contacts the image registry (it cannot know yet which
network the payload is for): with `image_url` the package is
"hash:sha3:<image_hash>:<image_url>"; with only a hash the URL is the registry's download
URL for that hash, written down without fetching it
(`http://registry.golem.network/download/<hash>`); with only a tag the package names the tag
("hash:sha3::<registry tag URL>"). Without `image_url` the payload also carries an
`ImageLookup`: `Golem.run_service` asks the registry then, unless the network is a local one
(engine/images.py says exactly when), and uses its hash and URL, as yapapi's `vm.repo` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from golem_deploy.errors import GolemDeployError
from golem_deploy.protocol import LOCAL_MOUNTS, PACKAGE_FORMAT, TASK_PACKAGE

__all__ = ["LOCAL_MOUNTS_PROPERTY", "ImageLookup", "PayloadError", "VmPayload", "repo"]

REGISTRY_URL = "http://registry.golem.network"
KNOWN_CAPABILITIES = ("vpn", "inet", "manifest-support", "start-entrypoint")
LOCAL_MOUNTS_PROPERTY = LOCAL_MOUNTS
_HASH_RE = re.compile(r"^[0-9a-fA-F]{56}$|^[0-9a-fA-F]{64}$")


class PayloadError(GolemDeployError):
    """A payload description that cannot work (missing image, bad hash, ...)."""


@dataclass(frozen=True)
class ImageLookup:
    """What the Golem registry must be asked for a payload that names its image by tag, or
    by hash without a URL (engine/images.py asks it once the network is known)."""

    tag: str | None = None
    hash: str | None = None
    use_https: bool = False  # the registry's https URL instead of its http one
    registry: str | None = None  # None: $GOLEM_REGISTRY_URL, else Golem's public registry
    dev_mode: bool = False  # yapapi's: ask with dev=true, so the download is not counted


@dataclass(frozen=True)
class VmPayload:
    """A VM image plus minimum resources; immutable, so one payload serves every instance."""

    task_package: str
    min_mem_gib: float = 0.5
    min_storage_gib: float = 2.0
    min_cpu_threads: int = 1
    capabilities: tuple[str, ...] = ()
    runtime: str = "vm"
    package_format: str = "gvmkit-squash"
    extra_properties: Mapping[str, Any] = field(default_factory=dict)
    image_lookup: ImageLookup | None = None  # set while the registry has not been asked

    def properties(self) -> dict[str, Any]:
        """Demand properties contributed by the payload."""
        props: dict[str, Any] = {
            TASK_PACKAGE: self.task_package,
            PACKAGE_FORMAT: self.package_format,
        }
        props.update(self.extra_properties)
        return props

    def constraints(self) -> str:
        """One constraint group, formatted as yapapi formats it."""
        items = [
            f"(golem.inf.mem.gib>={float(self.min_mem_gib)})",
            f"(golem.inf.storage.gib>={float(self.min_storage_gib)})",
            f"(golem.inf.cpu.threads>={int(self.min_cpu_threads)})",
        ]
        caps = [f"(golem.runtime.capabilities={c})" for c in self.capabilities]
        if len(caps) == 1:
            items.append(caps[0])
        elif caps:
            items.append("(&" + "\n\t".join(caps) + ")")
        items.append(f"(golem.runtime.name={self.runtime})")
        return "(&" + "\n\t".join(items) + ")"

    def with_properties(self, **props: Any) -> VmPayload:
        """A copy with extra demand properties (the compiler adds local mounts this way)."""
        merged = dict(self.extra_properties)
        merged.update(props)
        return replace(self, extra_properties=merged)

    def with_local_mounts(self, mounts: Mapping[str, Path | str]) -> VmPayload:
        """A copy carrying `golem_deploy.local.mounts` (container path -> absolute host path),
        read by the embedded local network's provider; real providers ignore it."""
        if not mounts:
            return self
        as_json = json.dumps({str(k): str(v) for k, v in mounts.items()}, sort_keys=True)
        return self.with_properties(**{LOCAL_MOUNTS_PROPERTY: as_json})


async def repo(
    *,
    image_hash: str | None = None,
    image_url: str | None = None,
    image_tag: str | None = None,
    min_mem_gib: float = 0.5,
    min_storage_gib: float = 2.0,
    min_cpu_threads: int = 1,
    capabilities: Sequence[str] | None = None,
) -> VmPayload:
    """Build a VM payload the way yapapi's `vm.repo` does, without any network access.

    Async only for compatibility with yapapi code (`await vm.repo(...)`).
    """
    if image_url is not None and image_tag is not None:
        raise PayloadError(
            "image_url and image_tag cannot be used together",
            hint="give image_url with image_hash, or image_tag alone",
        )
    if image_url is not None and image_hash is None:
        raise PayloadError("image_url needs image_hash", hint="add the image's sha3 hash")
    if image_hash is None and image_tag is None:
        raise PayloadError(
            "a VM payload needs image_hash or image_tag",
            hint="set image_hash (sha3-224 hex, e.g. from `gvmkit-build --push`) or image_tag",
        )
    if image_hash is not None and not _HASH_RE.match(image_hash):
        raise PayloadError(
            f"image_hash {image_hash!r} is not a sha3 hex digest",
            hint="use the 56-hex-digit sha3-224 hash of the image",
        )
    if min_mem_gib <= 0 or min_storage_gib <= 0 or min_cpu_threads < 1:
        raise PayloadError("minimum resources must be positive")
    caps = tuple(capabilities or ())
    for cap in caps:
        if cap not in KNOWN_CAPABILITIES:
            raise PayloadError(
                f"unknown VM capability {cap!r}",
                hint=f"known capabilities: {', '.join(KNOWN_CAPABILITIES)}",
            )
    if image_hash is not None:
        url = image_url or f"{REGISTRY_URL}/download/{image_hash}"
        package = f"hash:sha3:{image_hash}:{url}"
    else:
        assert image_tag is not None
        package = f"hash:sha3::{REGISTRY_URL}/v1/image/download?tag={quote(image_tag)}"
    lookup = None
    if image_url is None:  # the registry knows the URL (and, for a tag, the hash)
        lookup = ImageLookup(tag=image_tag, hash=None if image_tag is not None else image_hash)
    return VmPayload(
        task_package=package,
        min_mem_gib=min_mem_gib,
        min_storage_gib=min_storage_gib,
        min_cpu_threads=min_cpu_threads,
        capabilities=caps,
        image_lookup=lookup,
    )
