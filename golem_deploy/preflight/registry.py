"""Resolve payload images through the Golem registry, as yapapi's ``vm.repo`` does.

A real provider downloads the image named by ``golem.srv.comp.task_package`` =
``hash:sha3:<sha3-224>:<url>`` and refuses it unless its hash matches, so on the real network
an ``image_tag`` (and an ``image_hash`` without ``image_url``) must become a concrete hash
and URL before the demand is published. The registry answers
``GET {registry}/v1/image/info?tag=<owner/name:tag>|hash=<sha3>&count=true`` with
``{"sha3", "http", "https", "size"}`` (``count`` records a download).

Answers are cached in a JSON file (the caller picks it, under the state folder): a tag or a
hash resolves once per machine, and an unknown tag is a clear error before any agreement.
The embedded local network never calls this: it must stay offline.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from golem_deploy.errors import GolemDeployError

__all__ = [
    "DEFAULT_REGISTRY_URL",
    "RegistryError",
    "RegistryUnreachable",
    "ResolvedImage",
    "registry_url",
    "resolve",
]

DEFAULT_REGISTRY_URL = "https://registry.golem.network"


def registry_url() -> str:
    """The registry to ask: ``$GOLEM_REGISTRY_URL``, else Golem's public one."""
    return os.environ.get("GOLEM_REGISTRY_URL", "").rstrip("/") or DEFAULT_REGISTRY_URL


class RegistryError(GolemDeployError):
    """The registry does not know the image, or cannot be asked."""


class RegistryUnreachable(RegistryError):
    """No answer from the registry at all: the image may well exist (an offline machine
    can go on with what it has; see golem_deploy.preflight.images)."""


@dataclass(frozen=True)
class ResolvedImage:
    sha3: str
    http: str
    https: str
    size: int

    def task_package(self, use_https: bool = False) -> str:
        return f"hash:sha3:{self.sha3}:{self.https if use_https else self.http}"


async def resolve(
    *,
    image_hash: str | None = None,
    image_tag: str | None = None,
    registry: str | None = None,
    cache: Path | None = None,
    timeout: float = 15.0,
    dev: bool = False,
) -> ResolvedImage:
    """The registry's answer for a tag or a hash (exactly one), from ``cache`` if known.
    ``dev``: ask with ``dev=true`` instead of ``count=true`` (yapapi's ``dev_mode``: the
    download is not counted in the registry's statistics)."""
    if (image_hash is None) == (image_tag is None):
        raise ValueError("resolve needs exactly one of image_hash and image_tag")
    base = (registry or registry_url()).rstrip("/")
    key = f"{base} tag={image_tag}" if image_tag is not None else f"{base} hash={image_hash}"
    known = _read_cache(cache)
    if key in known:
        return known[key]
    which = {"tag": image_tag} if image_tag else {"hash": str(image_hash)}
    params = {**which, "dev" if dev else "count": "true"}
    what = f"image tag {image_tag!r}" if image_tag else f"image hash {image_hash}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(f"{base}/v1/image/info", params=params, ssl=_tls(base)) as response,
        ):
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as e:
        raise RegistryUnreachable(
            f"cannot ask the image registry {base} about {what}: {e or type(e).__name__}",
            hint="check the network, or set GOLEM_REGISTRY_URL; with image_url and "
            "image_hash no registry is needed",
        ) from e
    if status == 404:
        raise RegistryError(
            f"the image registry {base} does not know {what}",
            hint="check the spelling (`gvmkit-build --push` prints the tag and hash), "
            "or give image_hash with image_url",
        )
    if status != 200:
        raise RegistryError(f"the image registry {base} answered HTTP {status}: {text[:200]}")
    try:
        answer = json.loads(text)
        image = ResolvedImage(
            sha3=str(answer["sha3"]),
            http=str(answer["http"]),
            https=str(answer.get("https") or answer["http"]),
            size=int(answer.get("size") or 0),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise RegistryError(f"the image registry {base} answered nonsense: {text[:200]}") from e
    if image_hash is not None and image.sha3.lower() != image_hash.lower():
        raise RegistryError(f"the image registry {base} answered {image.sha3} for {what}")
    known[key] = image
    _write_cache(cache, known)
    return image


def _read_cache(cache: Path | None) -> dict[str, ResolvedImage]:
    if cache is None:
        return {}
    try:
        raw = json.loads(cache.read_text(encoding="utf-8"))
        return {key: ResolvedImage(**value) for key, value in raw.items()}
    except (OSError, ValueError, TypeError):
        return {}  # missing or damaged: ask again


def _write_cache(cache: Path | None, known: dict[str, ResolvedImage]) -> None:
    if cache is None:
        return
    with contextlib.suppress(OSError):  # a cache that cannot be written costs a request
        cache.parent.mkdir(parents=True, exist_ok=True)
        temp = cache.with_suffix(".tmp")
        temp.write_text(json.dumps({k: asdict(v) for k, v in known.items()}, indent=1))
        temp.replace(cache)


def _tls(url: str) -> ssl.SSLContext | bool:
    """A context with the system's CA store for https: the supervisor imports aiohttp with
    bare default contexts (supervisor/tls_deferred.py), and a change it applies may ask the
    registry about an image."""
    return ssl.create_default_context() if url.startswith("https://") else True
