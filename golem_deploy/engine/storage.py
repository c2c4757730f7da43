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

Publishing serves GetMetadata / GetChunk; receiving (downloads from the provider) serves
UploadChunk / UploadFinished and checks the sha3-256 hash the uploader reports.
`DELETE /gsb-api/v1/services/<servicesId>` unbinds when the transfer is done.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
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
MAX_RECEIVE = 1 << 31  # 2 GiB: refuse absurd uploads instead of filling memory


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

    async def publish(self, data: bytes) -> tuple[str, Callable[[], Awaitable[None]]]:
        size = len(data)

        def answer(component: str, payload: Any) -> Any:
            if component == "GetMetadata":
                return {"fileSize": size}
            if component == "GetChunk":
                offset, want = int(payload["offset"]), int(payload["size"])
                if offset < 0 or offset > size or want < 0:
                    raise ValueError(f"chunk {offset}+{want} outside a {size}-byte file")
                return {"offset": offset, "content": bytes(data[offset : offset + want])}
            raise ValueError(f"unsupported component {component}")

        url, release = await self._bind(["GetMetadata", "GetChunk"], answer)
        return url, release

    async def receive(
        self,
    ) -> tuple[str, Callable[[], Awaitable[bytes]], Callable[[], Awaitable[None]]]:
        chunks: dict[int, bytes] = {}
        finished = anyio.Event()
        result: list[bytes | BaseException] = []

        def answer(component: str, payload: Any) -> Any:
            if component == "UploadChunk":
                chunk = payload["chunk"]
                content = bytes(chunk["content"])
                if sum(map(len, chunks.values())) + len(content) > MAX_RECEIVE:
                    raise ValueError("upload too large")
                chunks[int(chunk["offset"])] = content
                return None
            if component == "UploadFinished":
                data = _assemble(chunks)
                expected = payload.get("hash") if isinstance(payload, dict) else None
                if expected and hashlib.sha3_256(data).hexdigest() != str(expected).lower():
                    result.append(TransferError("downloaded file is corrupted (hash mismatch)"))
                else:
                    result.append(data)
                finished.set()
                return None
            raise ValueError(f"unsupported component {component}")

        url, release = await self._bind(["UploadChunk", "UploadFinished"], answer)

        async def wait() -> bytes:
            with anyio.move_on_after(self.receive_timeout):
                await finished.wait()
            if not result:
                raise TransferError(f"the provider did not finish uploading to {url}")
            outcome = result[0]
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return url, wait, release

    async def _bind(
        self, components: list[str], answer: Callable[[str, Any], Any]
    ) -> tuple[str, Callable[[], Awaitable[None]]]:
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


async def _serve(ws: aiohttp.ClientWebSocketResponse, answer: Callable[[str, Any], Any]) -> None:
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
            reply: dict[str, Any] = {"id": call_id, "payload": answer(component, payload)}
        except Exception as e:
            reply = {"id": call_id, "error": {"ReadError": str(e)}}
        await ws.send_bytes(bytes(flexbuffers.Dumps(reply)))


def _assemble(chunks: dict[int, bytes]) -> bytes:
    out = bytearray()
    for offset in sorted(chunks):
        if offset != len(out):
            raise TransferError(f"upload has a gap or overlap at byte {offset}")
        out += chunks[offset]
    return bytes(out)
