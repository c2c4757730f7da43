"""yagna's gsb-api (`/gsb-api/v1`): bind a bus address and answer its calls on a websocket.

The engine's file transfer (engine/storage.py) binds `/public/gftp/<id>` this way, so a
provider's ExeUnit can fetch from / upload to the requestor without a `gftp` binary.
"""

from __future__ import annotations

import aiohttp

from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import YagnaBadAnswer, YagnaUnreachable

__all__ = ["GSB_API", "bind_service", "connect_service", "unbind_service"]

GSB_API = "/gsb-api/v1"
MAX_MESSAGE = 64 * 1024 * 1024


async def bind_service(client: YagnaClient, address: str, components: list[str]) -> str:
    """Bind `address` with `components` (method names); returns the services id."""
    path = f"{GSB_API}/services"
    body = {"listen": {"on": address, "components": list(components)}}
    _, answer = await client.request("POST", path, body=body)
    services_id = answer.get("servicesId") if isinstance(answer, dict) else None
    if not isinstance(services_id, str):
        raise YagnaBadAnswer("bind answered without servicesId", f"POST {path}")
    return services_id


async def connect_service(client: YagnaClient, services_id: str) -> aiohttp.ClientWebSocketResponse:
    """The websocket carrying the bound address's calls (subprotocol gsb+flexbuffers)."""
    path = f"{GSB_API}/services/{services_id}"
    try:
        return await client.session.ws_connect(
            f"{client.config.api_url}{path}",
            protocols=("gsb+flexbuffers",),
            heartbeat=20,
            max_msg_size=MAX_MESSAGE,
        )
    except aiohttp.ClientError as e:
        raise YagnaUnreachable(f"websocket failed ({type(e).__name__}: {e})", f"GET {path}") from e


async def unbind_service(client: YagnaClient, services_id: str) -> None:
    await client.request("DELETE", f"{GSB_API}/services/{services_id}", ok=(200, 204, 404))
