"""The pure parts of the real-network preparation: which images need the registry, payloads
built from what it resolved, the demand `doctor`/`plan` look with, and `plan`'s pricing."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import anyio

from golem_deploy.compiler import compile_manifest
from golem_deploy.engine.payload import VmPayload
from golem_deploy.manifest import Manifest, load_manifest
from golem_deploy.preflight.checks import _why_refused
from golem_deploy.preflight.images import needs_registry
from golem_deploy.preflight.market import Offer, service_demands
from golem_deploy.preflight.plan import Plan, plan_lines, price_service
from golem_deploy.protocol import TASK_PACKAGE

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
SHA3 = "d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376"


def manifest(tmp_path: Path, body: str) -> Manifest:
    path = tmp_path / "app.yaml"
    path.write_text("budget: 1\n" + textwrap.dedent(body))
    return load_manifest(path)


SERVICES = f"""\
services:
  tagged:
    payload: {{image_tag: "golem/alpine:latest"}}
  hashed:
    payload: {{image_hash: {HASH}}}
  pinned:
    payload: {{image_hash: {HASH}, image_url: "http://files.example/i.gvmi"}}
"""


def test_tags_and_bare_hashes_need_the_registry_pinned_urls_do_not(tmp_path: Path) -> None:
    m = manifest(tmp_path, SERVICES)
    assert needs_registry(m) == {"tagged": ("golem/alpine:latest", None), "hashed": (None, HASH)}


def test_a_resolved_image_becomes_the_payload_hash_and_url(tmp_path: Path) -> None:
    m = manifest(tmp_path, SERVICES)
    url = "http://files.example/alpine.gvmi"
    classes = compile_manifest(m, images={"tagged": (SHA3, url)})

    async def packages() -> dict[str, str]:
        found = {}
        for name, cls in classes.items():
            payload = await cls.get_payload()
            assert isinstance(payload, VmPayload)
            found[name] = payload.task_package
        return found

    found = anyio.run(packages)
    assert found["tagged"] == f"hash:sha3:{SHA3}:{url}"
    assert found["pinned"] == f"hash:sha3:{HASH}:http://files.example/i.gvmi"  # untouched
    assert found["hashed"].startswith(f"hash:sha3:{HASH}:")  # not resolved: as before


def test_the_looking_demand_carries_subnet_payment_and_payload(tmp_path: Path) -> None:
    m = manifest(tmp_path, SERVICES)

    async def build() -> None:
        demands = await service_demands(
            m,
            subnet="public",
            platform="erc20-polygon-glm",
            address="0xabc",
            images={"tagged": (SHA3, "http://x/y")},
        )
        demand = demands["tagged"]
        assert demand.properties[TASK_PACKAGE] == f"hash:sha3:{SHA3}:http://x/y"
        assert demand.properties["golem.com.payment.platform.erc20-polygon-glm.address"] == "0xabc"
        assert "(golem.node.debug.subnet=public)" in demand.constraints
        assert "(golem.com.payment.platform.erc20-polygon-glm.address=*)" in demand.constraints

    anyio.run(build)


def test_yagnas_refusal_is_shown_without_its_wrapping() -> None:
    cut = (
        '{"type":"/payment-api/v1/allocations/internal-error","detail":"Unhandled internal '
        'error","internalError":"RPC error: Error getting balance for account: 0x12 - Server is '
        'unreachable, /home/x/.cargo/git/checkouts/lib/src/eth.rs:547:21","requestBody":{"addr'
    )
    assert (
        _why_refused(cut)
        == "RPC error: Error getting balance for account: 0x12 - Server is unreachable"
    )
    assert _why_refused("Insufficient funds") == "Insufficient funds"


def offer(provider: str, coeffs: list[float]) -> Offer:
    return Offer(
        provider,
        {
            "golem.com.pricing.model": "linear",
            "golem.com.pricing.model.linear.coeffs": coeffs,
            "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
            "golem.com.payment.platform.erc20-holesky-tglm.address": provider,
        },
    )


def test_plan_prices_acceptable_offers_for_every_instance(tmp_path: Path) -> None:
    m = manifest(
        tmp_path,
        f"""\
        market:
          max_price: {{cpu_per_hour: 1.0}}
        services:
          web:
            payload: {{image_hash: {HASH}, min_cpu_threads: 2}}
            instances: 3
            expiration: 2h
        """,
    )
    offers = [
        offer("0xcheap", [0.0001, 0.00002, 0.01]),  # 0.36/CPU-h, 0.072/h, start 0.01
        offer("0xdear", [0.0002, 0.00004, 0.02]),  # 0.72/CPU-h, 0.144/h, start 0.02
        offer("0xover", [0.001, 0.0, 0.0]),  # 3.6/CPU-h: over the cap
    ]
    s = price_service(m, "web", offers, "erc20-holesky-tglm")
    assert (s.offers, s.acceptable, s.instances) == (3, 2, 3)
    assert s.cpu_per_hour is not None and s.cpu_per_hour.high == Decimal("3.6")
    # per instance-hour: 2 busy threads * CPU-hour + env-hour; three instances
    assert s.per_hour is not None
    assert s.per_hour.low == 3 * (2 * Decimal("0.36") + Decimal("0.072"))
    assert s.per_hour.high == 3 * (2 * Decimal("0.72") + Decimal("0.144"))
    assert s.to_expiration is not None
    assert s.to_expiration.low == 3 * (
        Decimal("0.01") + 2 * (2 * Decimal("0.36") + Decimal("0.072"))
    )
    plan = Plan("local", "local-dev", m.budget, 5.0, [s])
    assert plan.plain()["fits_budget"] is False
    assert "OVER the budget of 1" in plan_lines(plan)[-1]


def test_plan_says_when_nothing_can_be_projected(tmp_path: Path) -> None:
    m = manifest(tmp_path, f"services:\n  web:\n    payload: {{image_hash: {HASH}}}\n")
    s = price_service(m, "web", [], "erc20-holesky-tglm")
    assert (s.offers, s.per_hour, s.to_expiration) == (0, None, None)
    lines = plan_lines(Plan("yagna", "public", m.budget, 5.0, [s]))
    assert "no priced offer" in lines[2] and "cannot project" in lines[-1]
