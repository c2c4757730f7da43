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
yapapi's registry options are taken: `repository_url` and `image_use_https` pick the
registry and the scheme of the URL, and `dev_mode` asks the registry with `dev=true`
instead of `count=true`, keeping the download out of its statistics.

`await vm.manifest(...)` is yapapi's computation payload manifest (for outbound internet
access): the same demand properties yapapi builds (`golem.srv.comp.payload` and its
signature, certificate and algorithm, or a GAP-31 node descriptor) and the same
constraints as `repo`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from golem_deploy.errors import GolemDeployError
from golem_deploy.protocol import LOCAL_MOUNTS, PACKAGE_FORMAT, TASK_PACKAGE

__all__ = [
    "DEFAULT_REPOSITORY_URL",
    "LOCAL_MOUNTS_PROPERTY",
    "VM_CAPS_MANIFEST_SUPPORT",
    "VM_CAPS_VPN",
    "ImageLookup",
    "PayloadError",
    "VmPayload",
    "manifest",
    "repo",
]

REGISTRY_URL = "http://registry.golem.network"
#: yapapi's default `repository_url`.
DEFAULT_REPOSITORY_URL = "https://registry.golem.network"
#: yapapi's names of the capabilities a VPN / a manifest payload needs.
VM_CAPS_VPN = "vpn"
VM_CAPS_MANIFEST_SUPPORT = "manifest-support"
KNOWN_CAPABILITIES = ("vpn", "inet", "manifest-support", "start-entrypoint")
#: The demand properties of a computation payload manifest (yapapi's ExeUnitManifestRequest).
MANIFEST = "golem.srv.comp.payload"
MANIFEST_SIG = "golem.srv.comp.payload.sig"
MANIFEST_SIG_ALGORITHM = "golem.srv.comp.payload.sig.algorithm"
MANIFEST_CERT = "golem.srv.comp.payload.cert"
NODE_DESCRIPTOR = "golem.!exp.gap-31.v0.node.descriptor"
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
    """A VM image plus minimum resources; immutable, so one payload serves every instance.

    `task_package` is None for a manifest payload (`vm.manifest`): the image is named in the
    manifest, which travels in `extra_properties`."""

    task_package: str | None
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
        props: dict[str, Any] = {}
        if self.task_package is not None:
            props[TASK_PACKAGE] = self.task_package
        props[PACKAGE_FORMAT] = self.package_format
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
    image_use_https: bool = False,
    repository_url: str = DEFAULT_REPOSITORY_URL,
    dev_mode: bool = False,
    min_mem_gib: float = 0.5,
    min_storage_gib: float = 2.0,
    min_cpu_threads: int = 1,
    capabilities: Sequence[str] | None = None,
) -> VmPayload:
    """Build a VM payload the way yapapi's `vm.repo` does, without any network access.

    Async only for compatibility with yapapi code (`await vm.repo(...)`). `repository_url`
    and `image_use_https` choose the registry host and the scheme of the download URL
    written for a hash or a tag alone; `dev_mode` is yapapi's registry statistics flag,
    used when `Golem.run_service` asks the registry (engine/images.py).
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
    caps = _resources(min_mem_gib, min_storage_gib, min_cpu_threads, capabilities)
    registry = _download_base(repository_url, image_use_https)
    if image_hash is not None:
        url = image_url or f"{registry}/download/{image_hash}"
        package = f"hash:sha3:{image_hash}:{url}"
    else:
        assert image_tag is not None
        package = f"hash:sha3::{registry}/v1/image/download?tag={quote(image_tag)}"
    lookup = None
    if image_url is None:  # the registry knows the URL (and, for a tag, the hash)
        lookup = ImageLookup(
            tag=image_tag,
            hash=None if image_tag is not None else image_hash,
            use_https=image_use_https,
            registry=None if repository_url == DEFAULT_REPOSITORY_URL else repository_url,
            dev_mode=dev_mode,
        )
    return VmPayload(
        task_package=package,
        min_mem_gib=min_mem_gib,
        min_storage_gib=min_storage_gib,
        min_cpu_threads=min_cpu_threads,
        capabilities=caps,
        image_lookup=lookup,
    )


def _resources(
    min_mem_gib: float,
    min_storage_gib: float,
    min_cpu_threads: int,
    capabilities: Sequence[str] | None,
) -> tuple[str, ...]:
    """Check the minimum resources and capabilities; the capabilities as a tuple."""
    if min_mem_gib <= 0 or min_storage_gib <= 0 or min_cpu_threads < 1:
        raise PayloadError("minimum resources must be positive")
    caps = tuple(capabilities or ())
    for cap in caps:
        if cap not in KNOWN_CAPABILITIES:
            raise PayloadError(
                f"unknown VM capability {cap!r}",
                hint=f"known capabilities: {', '.join(KNOWN_CAPABILITIES)}",
            )
    return caps


def _download_base(repository_url: str, use_https: bool) -> str:
    """The registry's base for download URLs: its host, over https or http as asked (the
    registry serves both; yapapi picks the one `image_use_https` names)."""
    parts = urlsplit(repository_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PayloadError(
            f"repository_url {repository_url!r} is not an http(s) URL",
            hint=f"e.g. {DEFAULT_REPOSITORY_URL}",
        )
    scheme = "https" if use_https else "http"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


async def manifest(
    *,
    manifest: str | bytes,
    manifest_sig: str | bytes | None = None,
    manifest_sig_algorithm: str | None = None,
    manifest_cert: str | bytes | None = None,
    node_descriptor: Mapping[str, Any] | None = None,
    min_mem_gib: float = 0.5,
    min_storage_gib: float = 2.0,
    min_cpu_threads: int = 1,
    capabilities: Sequence[str] | None = None,
) -> VmPayload:
    """A computation payload manifest payload, as yapapi's `vm.manifest` builds it.

    Two schemes, as in yapapi: a signed GAP-31 `node_descriptor` with the manifest alone
    (capabilities `["inet"]`), or the manifest with its signature, the algorithm and the
    signer's certificate (capabilities `["inet", "manifest-support"]`). `manifest`,
    `manifest_sig` and `manifest_cert` are bytes (base64-encoded here) or base64 text (sent
    as given, as yapapi does; text that is not base64 is refused here, where yapapi would
    send it and every provider would reject it).
    """
    encoded = _base64("manifest", manifest)
    sig = _base64("manifest_sig", manifest_sig)
    cert = _base64("manifest_cert", manifest_cert)
    if node_descriptor is not None:
        if sig or manifest_sig_algorithm or cert:
            raise PayloadError(
                "with node_descriptor, give the manifest alone",
                hint="drop manifest_sig, manifest_sig_algorithm and manifest_cert",
            )
    elif not (sig and manifest_sig_algorithm and cert):
        raise PayloadError(
            "a manifest without node_descriptor needs manifest_sig, manifest_sig_algorithm "
            "and manifest_cert",
            hint="sign the manifest (e.g. algorithm sha256) or use a signed node descriptor",
        )
    caps = _resources(min_mem_gib, min_storage_gib, min_cpu_threads, capabilities)
    props: dict[str, Any] = {MANIFEST: encoded}
    if node_descriptor is not None:
        props[NODE_DESCRIPTOR] = dict(node_descriptor)
    else:
        props.update(
            {MANIFEST_SIG: sig, MANIFEST_SIG_ALGORITHM: manifest_sig_algorithm, MANIFEST_CERT: cert}
        )
    return VmPayload(
        task_package=None,
        min_mem_gib=min_mem_gib,
        min_storage_gib=min_storage_gib,
        min_cpu_threads=min_cpu_threads,
        capabilities=caps,
        extra_properties=props,
    )


def _base64(name: str, data: str | bytes | None) -> str | None:
    """bytes -> their base64 text; text -> itself when it is base64 (padding optional)."""
    if data is None or isinstance(data, bytes):
        return None if data is None else base64.b64encode(data).decode("ascii")
    try:
        base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(
            f"{name} is text but not base64",
            hint=f"pass the file's bytes (open(path, 'rb').read()) or base64 text as {name}",
        ) from None
    return data
