"""The GSB client against a real yagna router (the local network's provider node)."""

from __future__ import annotations

import json
import secrets

import anyio
import pytest

from golem_deploy.localnet import LocalNetInfo
from golem_deploy.localnet.gsb import GsbClient, GsbError, IncomingCall

pytestmark = pytest.mark.localnet


def provider_gsb_url(info: LocalNetInfo) -> str:
    return str(json.loads((info.state_dir / "ready.json").read_text())["provider_gsb_url"])


def test_register_call_conflicts_and_cleanup_on_the_real_router(
    shared_localnet: LocalNetInfo,
) -> None:
    url = provider_gsb_url(shared_localnet)
    service = f"/public/gd-test-{secrets.token_hex(4)}"

    async def handler(call: IncomingCall) -> None:
        await call.reply({"Ok": {"method": call.method, "got": call.payload()}})

    async def main() -> None:
        with anyio.fail_after(20):
            await scenario()

    async def scenario() -> None:
        async with GsbClient.connect(url) as server, GsbClient.connect(url) as client:
            await server.register(service, handler)
            reply = await client.call(f"{service}/Echo", {"x": [1, 2.5, "three", None]})
            assert reply == {"Ok": {"method": "Echo", "got": {"x": [1, 2.5, "three", None]}}}

            # The same address from another connection is a conflict.
            with pytest.raises(GsbError) as taken:
                await client.register(service, handler)
            assert taken.value.code == 409

            with pytest.raises(GsbError) as missing:
                await client.call("/public/gd-test-nobody/X", None)
            assert missing.value.code == 400 and "endpoint address not found" in str(missing.value)

            await server.unregister(service)
            with pytest.raises(GsbError) as again:
                await server.unregister(service)
            assert again.value.code == 404
            await server.register(service, handler)

        # Hello was sent, so the router released the address when the connection closed.
        async with GsbClient.connect(url) as fresh:
            await fresh.register(service, handler)
            await fresh.unregister(service)

    anyio.run(main)
