"""The ``.gvmi`` image format and the ``task_package`` property: pure parsing, no I/O policy.

A ``.gvmi`` (what ``gvmkit-build`` makes and a Golem VM provider runs) is a squashfs file
system with the Docker image's config appended (layout as ``gvmkit-build``'s metadata.rs
writes it and ``ya-runtime-vm``'s deploy.rs reads it)::

    [squashfs image][crc32 of JSON: u32 little-endian][JSON][len(JSON): 8 ASCII decimal digits]

The JSON is a Docker ``ContainerConfig``: ``Env`` (["K=V", ...]), ``WorkingDir``,
``Entrypoint``, ``Cmd``, ``Volumes`` ({path: {}}), ``User``. The squashfs part is read by
unsquashfs, which ignores the bytes after the file system's end.

A demand names its image as ``golem.srv.comp.task_package = "hash:sha3:<hex>:<url>"``: the
hex digest is sha3-224 (56 digits) -- or sha3-256 (64) -- of the whole ``.gvmi`` file.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golem_deploy.errors import GolemDeployError

TRAILER_DIGITS = 8
CRC_BYTES = 4


class ImageError(GolemDeployError):
    """The image cannot be used: bad package string, download or hash failure, bad file."""


@dataclass(frozen=True)
class TaskPackage:
    """``hash:sha3:<digest>:<url>``; ``digest`` is "" when the package names only a tag."""

    digest: str
    url: str

    @property
    def short(self) -> str:
        return self.digest[:8] + "…" if self.digest else self.url

    def hasher(self) -> Any:
        """A fresh hashlib object of the algorithm the digest's length says."""
        return hashlib.sha3_256() if len(self.digest) == 64 else hashlib.sha3_224()


_PACKAGE_RE = re.compile(r"^hash:sha3:([0-9a-fA-F]{56}|[0-9a-fA-F]{64}|):(.+)$")


def parse_task_package(value: str) -> TaskPackage:
    """Parse ``golem.srv.comp.task_package`` (as golem-deploy's payloads and yapapi write it)."""
    match = _PACKAGE_RE.match(value.strip())
    if match is None:
        raise ImageError(
            f"task package {value!r} is not hash:sha3:<sha3 hex>:<url>",
            hint="give the payload an image_hash (and image_url) of a gvmkit-build image",
        )
    return TaskPackage(match.group(1).lower(), match.group(2))


@dataclass(frozen=True)
class ImageConfig:
    """What the VM takes from an image's metadata."""

    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    user: str | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ImageConfig:
        env: dict[str, str] = {}
        for item in raw.get("Env") or []:
            key, _, value = str(item).partition("=")
            if key:
                env[key] = value
        workdir = raw.get("WorkingDir") or None
        return cls(
            env=env,
            workdir=str(workdir) if workdir else None,
            entrypoint=tuple(str(a) for a in raw.get("Entrypoint") or []),
            cmd=tuple(str(a) for a in raw.get("Cmd") or []),
            volumes=tuple(sorted(str(v) for v in raw.get("Volumes") or {})),
            user=str(raw["User"]) if raw.get("User") else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The same config in ContainerConfig keys (round-trips through from_json)."""
        return {
            "Env": [f"{k}={v}" for k, v in self.env.items()],
            "WorkingDir": self.workdir or "",
            "Entrypoint": list(self.entrypoint) or None,
            "Cmd": list(self.cmd) or None,
            "Volumes": {v: {} for v in self.volumes} or None,
            "User": self.user,
        }


def read_config(path: Path) -> ImageConfig:
    """The metadata appended to a ``.gvmi`` file (checks length field and crc32)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size < TRAILER_DIGITS + CRC_BYTES:
            raise ImageError(f"{path.name} is too small to be a .gvmi image")
        f.seek(size - TRAILER_DIGITS)
        digits = f.read(TRAILER_DIGITS)
        if not digits.isdigit():
            raise ImageError(f"{path.name} has no gvmi metadata (not a gvmkit-build image)")
        length = int(digits)
        if length + TRAILER_DIGITS + CRC_BYTES > size:
            raise ImageError(f"{path.name}: .gvmi metadata length {length} exceeds the file")
        f.seek(size - TRAILER_DIGITS - length - CRC_BYTES)
        crc = int.from_bytes(f.read(CRC_BYTES), "little")
        blob = f.read(length)
    if zlib.crc32(blob) != crc:
        raise ImageError(f"{path.name}: .gvmi metadata crc32 mismatch (damaged image)")
    try:
        raw = json.loads(blob)
    except ValueError as exc:
        raise ImageError(f"{path.name}: .gvmi metadata is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ImageError(f"{path.name}: .gvmi metadata is not a JSON object")
    return ImageConfig.from_json(raw)


def metadata_trailer(config: ImageConfig) -> bytes:
    """The bytes gvmkit-build appends to a squashfs image to make it a ``.gvmi``."""
    blob = json.dumps(config.to_json()).encode()
    return zlib.crc32(blob).to_bytes(CRC_BYTES, "little") + blob + b"%08d" % len(blob)


def file_digest(path: Path, package: TaskPackage | None = None) -> str:
    """sha3-224 (or the package's algorithm) hex digest of a file."""
    hasher = package.hasher() if package is not None else hashlib.sha3_224()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return str(hasher.hexdigest())
