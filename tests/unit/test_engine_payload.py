"""vm.repo builds yapapi's payload without touching the network."""

from __future__ import annotations

import pytest

from golem_deploy.engine import vm
from golem_deploy.engine.payload import PayloadError

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


pytestmark = pytest.mark.anyio


async def test_image_url_is_used_verbatim() -> None:
    p = await vm.repo(image_hash=HASH, image_url="http://example.invalid/x.gvmi")
    assert p.properties() == {
        "golem.srv.comp.task_package": f"hash:sha3:{HASH}:http://example.invalid/x.gvmi",
        "golem.srv.comp.vm.package_format": "gvmkit-squash",
    }


async def test_hash_only_names_the_registry_download_url() -> None:
    p = await vm.repo(image_hash=HASH)
    assert p.task_package == f"hash:sha3:{HASH}:http://registry.golem.network/download/{HASH}"


async def test_constraints_defaults_like_yapapi() -> None:
    p = await vm.repo(image_hash=HASH)
    assert p.constraints() == (
        "(&(golem.inf.mem.gib>=0.5)\n\t(golem.inf.storage.gib>=2.0)\n\t"
        "(golem.inf.cpu.threads>=1)\n\t(golem.runtime.name=vm))"
    )
    two = await vm.repo(image_hash=HASH, capabilities=["vpn", "inet"])
    assert "(&(golem.runtime.capabilities=vpn)\n\t(golem.runtime.capabilities=inet))" in (
        two.constraints()
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "needs image_hash or image_tag"),
        ({"image_url": "http://x"}, "image_url needs image_hash"),
        ({"image_hash": HASH, "image_url": "u", "image_tag": "t"}, "cannot be used together"),
        ({"image_hash": "xyz"}, "not a sha3 hex digest"),
        ({"image_hash": HASH, "capabilities": ["gpu"]}, "unknown VM capability"),
        ({"image_hash": HASH, "min_mem_gib": 0}, "must be positive"),
    ],
)
async def test_bad_payloads_are_refused_clearly(kwargs: dict, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        await vm.repo(**kwargs)


async def test_extra_properties_do_not_mutate_the_original() -> None:
    p = await vm.repo(image_tag="golem/alpine:latest")
    q = p.with_properties(**{"x.y": 1})
    assert "x.y" not in p.properties() and q.properties()["x.y"] == 1
    assert p.task_package.startswith("hash:sha3::")
