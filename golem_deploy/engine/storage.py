"""File transfer the way real requestors do it: GFTP resources bound through yagna's gsb-api.

yapapi runs a `gftp` binary; golem-js binds the same bus services through yagna's gsb-api
(core/gsb-api), which needs nothing but the REST port. We do what golem-js does:

1. `POST /gsb-api/v1/services` `{"listen": {"on": "/public/gftp/<id>", "components": [...]}}`
   -> 201 `{"servicesId": ...}`: yagna now answers bus calls to /public/gftp/<id>/<component>
   on our node, reachable from providers as `/net/<our node id>/gftp/<id>/<component>`;
2. open the websocket `GET /gsb-api/v1/services/<servicesId>` (subprotocol
   `gsb+flexbuffers`); every call arrives as a flexbuffers map
   `{id, component, payload}` and is answered with `{id, payload}` (yagna wraps it as Ok)
   or `{id, error}`;
3. the provider's ExeUnit gets `gftp://<our node id>/<id>` in a `transfer` command.

Publishing serves GetMetadata / GetChunk, from memory (`publish`) or from a file read one
chunk per GetChunk (`publish_file`: large uploads never sit in memory). Receiving (downloads
from the provider) serves UploadChunk / UploadFinished: chunks are written at their offsets
into a hidden part file next to the destination, and at the end the part file is checked
(no gap, the sha3-256 the uploader reports) and renamed into place, so a destination is
complete or absent.
`DELETE /gsb-api/v1/services/<servicesId>` unbinds when the transfer is done.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from anyio.abc import TaskGroup, TaskStatus
from flatbuffers import flexbuffers

from golem_deploy.errors import GolemDeployError
from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import YagnaBadAnswer, YagnaError
from golem_deploy.yagna.gsb_api import bind_service, connect_service, unbind_service

__all__ = ["GsbApiStorage", "TransferError"]

log = logging.getLogger(__name__)
GSB_API = "/gsb-api/v1"
MAX_RECEIVE = 1 << 40  # 1 TiB: refuse absurd uploads instead of filling the disk
MAX_CHUNK = 16 << 20  # never read more than this for one GetChunk (gftp asks for 40 KiB)
Answer = Callable[[str, Any], Awaitable[Any]]
Release = Callable[[], Awaitable[None]]


class TransferError(GolemDeployError):
    """A file could not be published to or received from a provider."""


class GsbApiStorage:
    """Publishes data and receives uploads over yagna's gsb-api websocket (see module doc).

    `run()` must be started in a task group first (it owns the websocket tasks)."""

    def __init__(self, client: YagnaClient, node_id: str, receive_timeout: float = 300.0):
        self.client = client
        self.node_id = node_id.lower()
        self.receive_timeout = receive_timeout
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    async def publish(self, data: bytes) -> tuple[str, Release]:
        size = len(data)

        async def answer(component: str, payload: Any) -> Any:
            if component == "GetMetadata":
                return {"fileSize": size}
            if component == "GetChunk":
                offset, want = _chunk_request(payload, size)
                return {"offset": offset, "content": bytes(data[offset : offset + want])}
            raise ValueError(f"unsupported component {component}")

        return await self._bind(["GetMetadata", "GetChunk"], answer)

    async def publish_file(self, path: Path) -> tuple[str, Release]:
        """Serve `path` as it is now, one chunk read per GetChunk (never whole in memory)."""
        fd = await anyio.to_thread.run_sync(os.open, path, os.O_RDONLY)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # a folder opens fine, then cannot be read
                raise IsADirectoryError(errno.EISDIR, "not a regular file", str(path))
            size = info.st_size
        except OSError:
            os.close(fd)
            raise

        async def answer(component: str, payload: Any) -> Any:
            if component == "GetMetadata":
                return {"fileSize": size}
            if component == "GetChunk":
                offset, want = _chunk_request(payload, size)
                content = await anyio.to_thread.run_sync(os.pread, fd, want, offset)
                return {"offset": offset, "content": content}
            raise ValueError(f"unsupported component {component}")

        try:
            url, unbind = await self._bind(["GetMetadata", "GetChunk"], answer)
        except BaseException:
            os.close(fd)
            raise

        closed = False

        async def release() -> None:
            nonlocal closed
            await unbind()
            if not closed:  # a second close could hit a reused descriptor
                closed = True
                with contextlib.suppress(OSError):
                    os.close(fd)

        return url, release

    async def receive_file(self, path: Path) -> tuple[str, Callable[[], Awaitable[int]], Release]:
        """Write what the provider uploads into a hidden part file next to `path`, check
        the sha3-256 the uploader reports, then rename it to `path` (all or nothing)."""
        part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        fd = await anyio.to_thread.run_sync(
            partial(os.open, part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        )
        pieces: dict[int, int] = {}  # offset -> length written
        finished = anyio.Event()
        outcome: list[int | BaseException] = []

        async def answer(component: str, payload: Any) -> Any:
            if component == "UploadChunk":
                chunk = payload["chunk"]
                offset, content = int(chunk["offset"]), bytes(chunk["content"])
                if offset < 0 or offset + len(content) > MAX_RECEIVE:
                    raise ValueError("upload too large")
                await anyio.to_thread.run_sync(os.pwrite, fd, content, offset)
                pieces[offset] = len(content)
                return None
            if component == "UploadFinished":
                expected = payload.get("hash") if isinstance(payload, dict) else None
                try:
                    size = _contiguous(pieces)
                    await anyio.to_thread.run_sync(_finish, fd, part, path, expected)
                    outcome.append(size)
                except (TransferError, OSError) as e:
                    outcome.append(e if isinstance(e, TransferError) else TransferError(str(e)))
                finished.set()
                return None
            raise ValueError(f"unsupported component {component}")

        try:
            url, unbind = await self._bind(["UploadChunk", "UploadFinished"], answer)
        except BaseException:
            _discard(fd, part)
            raise

        async def wait() -> int:
            with anyio.move_on_after(self.receive_timeout):
                await finished.wait()
            if not outcome:
                raise TransferError(f"the provider did not finish uploading to {url}")
            if isinstance(outcome[0], BaseException):
                raise outcome[0]
            return outcome[0]

        closed = False

        async def release() -> None:
            nonlocal closed
            await unbind()
            if not closed:  # a second close could hit a reused descriptor
                closed = True
                _discard(fd, part)  # no part file is left once it was renamed into place

        return url, wait, release

    async def _bind(self, components: list[str], answer: Answer) -> tuple[str, Release]:
        """Bind /public/gftp/<id>, connect its websocket, serve it until released."""
        if self._tg is None:
            raise TransferError("file transfer is not running (GsbApiStorage.run)")
        resource = uuid.uuid4().hex
        try:
            services_id = await bind_service(self.client, f"/public/gftp/{resource}", components)
        except YagnaBadAnswer as e:
            raise TransferError(f"gsb-api bind: {e.detail}") from e
        except YagnaError as e:
            raise TransferError(
                f"cannot publish a file through yagna's gsb-api: {e.detail}",
                hint="file transfer needs yagna >= 0.13 (gsb-api)",
            ) from e
        ws = await connect_service(self.client, services_id)
        scope = anyio.CancelScope()

        async def serve() -> None:
            with scope:
                try:
                    await _serve(ws, answer)
                finally:
                    with anyio.CancelScope(shield=True):
                        await ws.close()

        self._tg.start_soon(serve)
        released = False

        async def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            scope.cancel()
            with anyio.move_on_after(10):
                try:
                    await unbind_service(self.client, services_id)
                except YagnaError as e:
                    log.debug("unbind %s: %s", services_id, e)

        return f"gftp://{self.node_id}/{resource}", release


async def _serve(ws: aiohttp.ClientWebSocketResponse, answer: Answer) -> None:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.BINARY:
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return
            continue
        try:
            request = flexbuffers.Loads(msg.data)
            call_id = str(request["id"])
            component = str(request["component"])
            payload = request.get("payload")
        except Exception as e:
            log.warning("gsb-api: unreadable request: %s", e)
            continue
        try:
            reply: dict[str, Any] = {"id": call_id, "payload": await answer(component, payload)}
        except Exception as e:
            reply = {"id": call_id, "error": {"ReadError": str(e)}}
        await ws.send_bytes(bytes(flexbuffers.Dumps(reply)))


def _chunk_request(payload: Any, size: int) -> tuple[int, int]:
    """(offset, length) of a GetChunk within a `size`-byte file (length cut at its end)."""
    offset, want = int(payload["offset"]), int(payload["size"])
    if offset < 0 or offset > size or want < 0:
        raise ValueError(f"chunk {offset}+{want} outside a {size}-byte file")
    return offset, min(want, MAX_CHUNK, size - offset)


def _contiguous(pieces: dict[int, int]) -> int:
    """The size of an upload whose chunks cover it from 0 without gap or overlap."""
    end = 0
    for offset in sorted(pieces):
        if offset != end:
            raise TransferError(f"upload has a gap or overlap at byte {offset}")
        end += pieces[offset]
    return end


def _finish(fd: int, part: Path, path: Path, expected: object) -> None:
    """Flush the part file, check its sha3-256 against `expected` (if the uploader sent
    one) reading it back in blocks, and rename it into place."""
    os.fsync(fd)
    if expected:
        digest = hashlib.sha3_256()
        with part.open("rb") as f:
            for block in iter(partial(f.read, 1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != str(expected).lower():
            raise TransferError("downloaded file is corrupted (hash mismatch)")
    os.replace(part, path)


def _discard(fd: int, part: Path) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    part.unlink(missing_ok=True)
