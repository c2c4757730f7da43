"""gftp over the service bus: how files travel between a requestor node and an ExeUnit.

A ``gftp://<nodeId>/<hash>`` URL names a file published by node ``<nodeId>`` at the bus
address ``/public/gftp/<hash>`` of that node; from any other node it is reachable as
``/net/<nodeId>/gftp/<hash>`` (yagna's net module routes it through the hub). Messages
(yagna ``core/model/src/gftp.rs``; serde camelCase, flexbuffers):

* download: ``GetMetadata`` (unit payload) -> ``{"Ok": {"fileSize": n}}``, then
  ``GetChunk {offset, size}`` -> ``{"Ok": {"offset", "content": <blob>}}``;
* upload (the requestor published an *upload slot*): ``UploadChunk {chunk: {offset,
  content}}`` -> ``{"Ok": null}`` for each chunk, then ``UploadFinished {hash}``;
* errors are ``{"Err": {"ReadError": "..."}}`` and similar.

This module has both sides: the client the ExeUnit uses for transfers, and
:class:`GftpPublisher`, a small server a requestor-side process can run on its own node's
bus (yagna's wheel ships no gftp binary) to publish files and receive uploads.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from golem_deploy.errors import GolemDeployError
from golem_deploy.localnet.gsb import GsbClient, GsbError, IncomingCall

CHUNK_SIZE = 40 * 1024
"""yagna's gftp reads files in 40 KiB chunks."""


class GftpError(GolemDeployError):
    """A gftp transfer failed (bad URL, the publisher is unreachable or answered an error)."""


def parse_url(url: str) -> tuple[str, str]:
    """(node id, hash) of a ``gftp://<nodeId>/<hash>`` URL."""
    parts = urlsplit(url)
    node_id, file_hash = parts.netloc, parts.path.strip("/")
    if parts.scheme != "gftp" or not node_id or not file_hash or "/" in file_hash:
        raise GftpError(f"bad gftp URL {url!r}: expected gftp://<nodeId>/<hash>")
    return node_id.lower(), file_hash


def make_url(node_id: str, file_hash: str) -> str:
    return f"gftp://{node_id.lower()}/{file_hash}"


def _address(url: str) -> str:
    node_id, file_hash = parse_url(url)
    return f"/net/{node_id}/gftp/{file_hash}"


def _ok(reply: Any, what: str) -> Any:
    if isinstance(reply, dict) and "Ok" in reply:
        return reply["Ok"]
    if isinstance(reply, dict) and "Err" in reply:
        raise GftpError(f"gftp {what} failed: {reply['Err']}")
    raise GftpError(f"gftp {what}: unexpected reply {reply!r}")


async def download(bus: GsbClient, url: str, dest: Path) -> int:
    """Fetch the file behind ``url`` into ``dest``; returns its size in bytes."""
    address = _address(url)
    try:
        meta = _ok(await bus.call(f"{address}/GetMetadata", None), "GetMetadata")
        size = int(meta["fileSize"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as out:
            offset = 0
            while offset < size:
                want = min(CHUNK_SIZE, size - offset)
                chunk = _ok(
                    await bus.call(f"{address}/GetChunk", {"offset": offset, "size": want}),
                    "GetChunk",
                )
                content = bytes(chunk["content"])
                if not content:
                    raise GftpError(f"gftp {url}: empty chunk at offset {offset} of {size}")
                out.write(content)
                offset += len(content)
    except GsbError as exc:
        raise GftpError(f"cannot download {url}: {exc}") from exc
    return size


async def upload(bus: GsbClient, src: Path, url: str) -> int:
    """Send the file ``src`` to the upload slot ``url``; returns the bytes sent."""
    address = _address(url)
    digest = hashlib.sha3_256()
    offset = 0
    try:
        with open(src, "rb") as f:
            while content := f.read(CHUNK_SIZE):
                digest.update(content)
                _ok(
                    await bus.call(
                        f"{address}/UploadChunk", {"chunk": {"offset": offset, "content": content}}
                    ),
                    "UploadChunk",
                )
                offset += len(content)
        _ok(await bus.call(f"{address}/UploadFinished", {"hash": digest.hexdigest()}), "finish")
    except GsbError as exc:
        raise GftpError(f"cannot upload to {url}: {exc}") from exc
    return offset


@dataclass
class _Slot:
    path: Path
    upload: bool
    finished: anyio.Event


class GftpPublisher:
    """Serve files (and upload slots) on a node's bus as gftp URLs of ``node_id``.

    ``bus`` must be connected to the router of the node whose identity is ``node_id``.
    """

    def __init__(self, bus: GsbClient, node_id: str) -> None:
        self._bus = bus
        self._node_id = node_id
        self._slots: dict[str, _Slot] = {}

    async def publish(self, path: Path) -> str:
        """Offer ``path`` for download; returns its gftp URL (hash = sha3-256 of content)."""
        digest = hashlib.sha3_256(path.read_bytes()).hexdigest()
        return await self._bind(digest, _Slot(path, False, anyio.Event()))

    async def receive(self, dest: Path) -> tuple[str, anyio.Event]:
        """An upload slot writing into ``dest``; the event fires on UploadFinished."""
        slot = _Slot(dest, True, anyio.Event())
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"")
        return await self._bind(secrets.token_hex(32), slot), slot.finished

    async def release(self, url: str) -> bool:
        """Stop serving one URL of ours; False when it is not one being served."""
        try:
            node_id, file_hash = parse_url(url)
        except GftpError:
            return False
        if node_id != self._node_id.lower() or file_hash not in self._slots:
            return False
        del self._slots[file_hash]
        await self._bus.unregister(f"/public/gftp/{file_hash}")
        return True

    async def close(self) -> None:
        for file_hash in list(self._slots):
            await self._bus.unregister(f"/public/gftp/{file_hash}")
            del self._slots[file_hash]

    async def _bind(self, file_hash: str, slot: _Slot) -> str:
        if file_hash not in self._slots:
            self._slots[file_hash] = slot
            await self._bus.register(f"/public/gftp/{file_hash}", self._handle)
        return make_url(self._node_id, file_hash)

    async def _handle(self, call: IncomingCall) -> None:
        file_hash = call.address.removeprefix("/public/gftp/").split("/")[0]
        slot = self._slots.get(file_hash)
        if slot is None:
            await call.reply({"Err": {"ReadError": "no such file"}})
            return
        payload = call.payload()
        try:
            await call.reply({"Ok": self._answer(slot, call.method, payload)})
        except (OSError, KeyError, TypeError, ValueError) as exc:
            await call.reply({"Err": {"ReadError": str(exc)}})

    def _answer(self, slot: _Slot, method: str, payload: Any) -> Any:
        if method == "GetMetadata" and not slot.upload:
            return {"fileSize": slot.path.stat().st_size}
        if method == "GetChunk" and not slot.upload:
            with open(slot.path, "rb") as f:
                f.seek(int(payload["offset"]))
                return {"offset": int(payload["offset"]), "content": f.read(int(payload["size"]))}
        if method == "UploadChunk" and slot.upload:
            chunk = payload["chunk"]
            with open(slot.path, "r+b") as f:
                f.seek(int(chunk["offset"]))
                f.write(bytes(chunk["content"]))
            return None
        if method == "UploadFinished" and slot.upload:
            slot.finished.set()
            return None
        raise ValueError(f"unsupported gftp request {method}")
