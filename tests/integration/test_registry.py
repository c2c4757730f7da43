"""Images resolve through a registry speaking the Golem registry's protocol (on loopback)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from aiohttp import web

from golem_deploy.engine.registry import RegistryError, resolve

SHA3 = "d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376"
KNOWN = {
    "golem/alpine:latest": {
        "sha3": SHA3,
        "http": "http://files.example/alpine.gvmi",
        "https": "https://files.example/alpine.gvmi",
        "size": 4_300_000,
    }
}


async def with_registry(body):  # type: ignore[no-untyped-def]
    asked: list[dict[str, str]] = []

    async def info(request: web.Request) -> web.Response:
        asked.append(dict(request.query))
        if request.query.get("count") != "true":
            return web.Response(status=400, text="count missing")
        found = KNOWN.get(request.query.get("tag", ""))
        if found is None and request.query.get("hash") == SHA3:
            found = KNOWN["golem/alpine:latest"]
        if found is None:
            return web.Response(status=404, text="image not found")
        return web.json_response(found)

    app = web.Application()
    app.router.add_get("/v1/image/info", info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await body(f"http://127.0.0.1:{port}", asked)
    finally:
        await runner.cleanup()


def test_a_tag_resolves_once_then_comes_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "registry.json"

    async def body(url: str, asked: list[dict[str, str]]) -> None:
        image = await resolve(image_tag="golem/alpine:latest", registry=url, cache=cache)
        assert image.task_package() == f"hash:sha3:{SHA3}:http://files.example/alpine.gvmi"
        assert image.task_package(use_https=True).endswith("https://files.example/alpine.gvmi")
        again = await resolve(image_tag="golem/alpine:latest", registry=url, cache=cache)
        assert again == image and len(asked) == 1  # the second answer came from the cache
        by_hash = await resolve(image_hash=SHA3, registry=url, cache=cache)
        assert by_hash.http == image.http and asked[-1] == {"hash": SHA3, "count": "true"}

    anyio.run(with_registry, body)


def test_an_unknown_tag_or_a_dead_registry_is_one_clear_error(tmp_path: Path) -> None:
    async def body(url: str, asked: list[dict[str, str]]) -> None:
        with pytest.raises(RegistryError, match="does not know image tag 'golem/nope:1'"):
            await resolve(image_tag="golem/nope:1", registry=url, cache=tmp_path / "c.json")
        assert not (tmp_path / "c.json").exists()  # failures are not cached

    anyio.run(with_registry, body)

    async def dead() -> None:
        with pytest.raises(RegistryError, match="cannot ask the image registry") as error:
            await resolve(image_tag="golem/alpine:latest", registry="http://127.0.0.1:9")
        assert error.value.hint is not None and "GOLEM_REGISTRY_URL" in error.value.hint

    anyio.run(dead)
