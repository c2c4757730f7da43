"""Images resolve through a registry speaking the Golem registry's protocol (on loopback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from _engine_helpers import Recorder, golem_for, wait_for
from _gvmi import serve_app
from aiohttp import web

from golem_deploy.engine import Service, ServiceState, vm
from golem_deploy.engine import events as ev
from golem_deploy.engine.images import resolve_payload
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo
from golem_deploy.manifest import Manifest, load_manifest
from golem_deploy.preflight import images
from golem_deploy.preflight.images import Resolved, resolve_images
from golem_deploy.preflight.registry import RegistryError, resolve
from golem_deploy.protocol import LOCAL_SUBNET

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
        if "true" not in (request.query.get("count"), request.query.get("dev")):
            return web.Response(status=400, text="count (or dev) missing")
        found = KNOWN.get(request.query.get("tag", ""))
        if found is None and request.query.get("hash") == SHA3:
            found = KNOWN["golem/alpine:latest"]
        if found is None:
            return web.Response(status=404, text="image not found")
        return web.json_response(found)

    app = web.Application()
    app.router.add_get("/v1/image/info", info)
    async with serve_app(app) as url:
        await body(url, asked)


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
        dev = await resolve(image_tag="golem/alpine:latest", registry=url, dev=True)
        assert dev == image and asked[-1] == {"tag": "golem/alpine:latest", "dev": "true"}

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


def _manifest(tmp_path: Path) -> Manifest:
    path = tmp_path / "app.yaml"
    path.write_text(
        "name: app\nbudget: 1\nservices:\n"
        '  tagged:\n    payload: {image_tag: "golem/alpine:latest"}\n'
        f"  hashed:\n    payload: {{image_hash: {SHA3}}}\n"
        f'  pinned:\n    payload: {{image_hash: {SHA3}, image_url: "http://x.example/i"}}\n'
    )
    return load_manifest(path)


def test_a_manifest_resolves_service_by_service(tmp_path: Path, monkeypatch: Any) -> None:
    manifest = _manifest(tmp_path)

    async def body(url: str, asked: list[dict[str, str]]) -> None:
        monkeypatch.setenv("GOLEM_REGISTRY_URL", url)
        warnings: list[str] = []
        found = await resolve_images(
            manifest, subnet="public", warn=warnings.append, cache=tmp_path / "c.json"
        )
        image = Resolved(SHA3, "http://files.example/alpine.gvmi")
        assert found == {"tagged": image, "hashed": image} and warnings == []
        assert len(asked) == 2  # the pinned service needs no registry

    anyio.run(with_registry, body)


def test_an_unreachable_registry_is_an_error_except_on_local_dev(
    tmp_path: Path, monkeypatch: Any
) -> None:
    manifest = _manifest(tmp_path)
    monkeypatch.setenv("GOLEM_REGISTRY_URL", "http://127.0.0.1:9")
    warnings: list[str] = []

    async def body() -> None:
        with pytest.raises(RegistryError, match="service 'tagged': cannot ask the image registry"):
            await resolve_images(manifest, subnet="public", warn=warnings.append)
        found = await resolve_images(manifest, subnet=LOCAL_SUBNET, warn=warnings.append)
        assert found == {}

    anyio.run(body)
    assert [w.split(":")[0] for w in warnings] == ["service 'tagged'", "service 'hashed'"]
    assert all("left unresolved on local-dev" in w for w in warnings)


def test_an_unknown_tag_names_its_service(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "app.yaml"
    path.write_text('name: app\nbudget: 1\nservices:\n  web:\n    payload: {image_tag: "a/b:1"}\n')
    manifest = load_manifest(path)

    async def body(url: str, asked: list[dict[str, str]]) -> None:
        monkeypatch.setenv("GOLEM_REGISTRY_URL", url)
        with pytest.raises(
            RegistryError, match=r"service 'web': .* does not know image tag 'a/b:1'"
        ):
            # not even local-dev excuses an image the registry does not know
            await resolve_images(manifest, subnet=LOCAL_SUBNET, warn=lambda _: None)

    anyio.run(with_registry, body)


def test_a_local_network_asks_no_registry_unless_one_is_named(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """On `local-dev` (`golem-deploy localnet start` as "your yagna") nothing leaves the
    machine: the public registry is never asked; GOLEM_REGISTRY_URL opts in."""
    manifest = _manifest(tmp_path)
    monkeypatch.delenv("GOLEM_REGISTRY_URL", raising=False)
    asked: list[object] = []

    async def no_lookup(**kwargs: object) -> None:
        asked.append(kwargs)
        raise AssertionError("the registry was asked")

    monkeypatch.setattr(images, "resolve", no_lookup)
    warnings: list[str] = []
    found = anyio.run(lambda: resolve_images(manifest, subnet=LOCAL_SUBNET, warn=warnings.append))
    assert (found, asked, warnings) == ({}, [], [])


# ------------------------------------------------ vm.repo(image_tag=...) on the engine


class Tagged(Service):
    """A program using the engine directly, naming its image by tag as yapapi allows."""

    tag = "golem/alpine:latest"

    @staticmethod
    async def get_payload() -> VmPayload:
        return await vm.repo(image_tag=Tagged.tag)


LOOPBACK_IMAGE = {"sha3": SHA3, "http": "http://127.0.0.1:9/a.gvmi", "https": "", "size": 1}


async def with_loopback_registry(body):  # type: ignore[no-untyped-def]
    """A registry knowing one tag, whose image URL refuses connections (so the local
    provider runs the activity in its sealed host root, as for any image offline)."""
    asked: list[dict[str, str]] = []

    async def info(request: web.Request) -> web.Response:
        asked.append(dict(request.query))
        if request.query.get("tag") == "golem/alpine:latest":
            return web.json_response(LOOPBACK_IMAGE)
        return web.Response(status=404, text="image not found")

    app = web.Application()
    app.router.add_get("/v1/image/info", info)
    async with serve_app(app) as url:
        await body(url, asked)


@pytest.mark.localnet
def test_the_engine_resolves_vm_repo_image_tag_through_the_registry(
    shared_localnet: LocalNetInfo, monkeypatch: Any
) -> None:
    """GOLEM_REGISTRY_URL set: even the local network asks it (as `up` does), and the
    demand carries the registry's hash and URL; an unknown tag fails run_service first."""

    async def body(url: str, asked: list[dict[str, str]]) -> None:
        monkeypatch.setenv("GOLEM_REGISTRY_URL", url)
        rec = Recorder()
        async with golem_for(shared_localnet, rec) as golem:
            cluster = await golem.run_service(Tagged, num_instances=1)
            assert cluster.payload.task_package == f"hash:sha3:{SHA3}:http://127.0.0.1:9/a.gvmi"
            assert asked == [{"tag": "golem/alpine:latest", "count": "true"}]
            await wait_for(
                lambda: cluster.instances[0].state is ServiceState.running, 60, "running"
            )
            cluster.stop()
            with anyio.fail_after(60):
                await cluster.wait_finished()

            demands = len(rec.of(ev.DemandSubscribed))
            Tagged.tag = "golem/nope:1"
            try:
                with pytest.raises(RegistryError, match="does not know image tag 'golem/nope:1'"):
                    await golem.run_service(Tagged, num_instances=1)
            finally:
                Tagged.tag = "golem/alpine:latest"
            assert len(rec.of(ev.DemandSubscribed)) == demands  # nothing was published

        # without GOLEM_REGISTRY_URL the local network never asks; resolve_images=False
        # (what the supervisor passes) never asks either
        asked.clear()
        for env, flag in ((None, True), (url, False)):
            if env is None:
                monkeypatch.delenv("GOLEM_REGISTRY_URL")
            else:
                monkeypatch.setenv("GOLEM_REGISTRY_URL", env)
            async with golem_for(shared_localnet, Recorder(), resolve_images=flag) as golem:
                cluster = await golem.run_service(Tagged, num_instances=0)
                assert cluster.payload.task_package.startswith("hash:sha3::")
        assert asked == []

    anyio.run(with_loopback_registry, body)


def test_off_the_local_network_an_unreachable_registry_fails_the_payload(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("GOLEM_REGISTRY_URL", "http://127.0.0.1:9")
    tagged = anyio.run(lambda: vm.repo(image_tag="golem/alpine:latest"))
    warnings: list[str] = []

    async def body() -> None:
        with pytest.raises(RegistryError, match="cannot ask the image registry"):
            await resolve_payload(tagged, subnet="public", warn=warnings.append)
        same = await resolve_payload(tagged, subnet=LOCAL_SUBNET, warn=warnings.append)
        assert same is tagged

    anyio.run(body)
    assert len(warnings) == 1 and "left unresolved on local-dev" in warnings[0]
