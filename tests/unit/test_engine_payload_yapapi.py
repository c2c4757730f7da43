"""A.6: yapapi's payload options and `vm.manifest` build the demand yapapi 0.13.1 builds.

The reference is yapapi itself, run as a subprocess with $GOLEM_DEPLOY_TEST_YAPAPI_PYTHON
(tests/conftest.py prepares it): for each call it prints the properties and constraints its
`decorate_demand` produces. yapapi's only I/O in `vm.repo` (a HEAD of `image_url`, or the
registry query) is replaced there by what a successful answer gives, so what is compared is
how the demand is built. With a hash or tag alone yapapi's URL comes from the registry's
answer and ours is written offline, so those compare everything but the URL's host.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from typing import Any

import pytest

from golem_deploy.engine import vm
from golem_deploy.engine.payload import PayloadError, VmPayload

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
MANIFEST = b'{"version": "0.1.0", "payload": [{"hash": "sha3:' + HASH.encode() + b'"}]}'
DESCRIPTOR = {"nodeDescriptor": {"nodeId": "0xabc", "permissions": {"outbound": "unrestricted"}}}

pytestmark = pytest.mark.anyio


# Each case: (vm function, keyword arguments as JSON; bytes are {"bytes": base64}).
CASES: list[tuple[str, dict[str, Any]]] = [
    ("repo", {"image_hash": HASH, "image_url": "http://h.invalid/i.gvmi"}),
    (
        "repo",
        {
            "image_hash": HASH,
            "image_url": "http://h.invalid/i.gvmi",
            "capabilities": ["vpn", "manifest-support"],
            "min_mem_gib": 2.0,
            "min_storage_gib": 10.0,
            "min_cpu_threads": 4,
            "image_use_https": True,
            "dev_mode": True,
        },
    ),
    ("repo", {"image_hash": HASH}),
    ("repo", {"image_hash": HASH, "image_use_https": True, "dev_mode": True}),
    ("repo", {"image_tag": "golem/alpine:latest", "repository_url": "https://r.invalid"}),
    (
        "manifest",
        {
            "manifest": {"bytes": base64.b64encode(MANIFEST).decode()},
            "node_descriptor": DESCRIPTOR,
            "capabilities": ["inet"],
        },
    ),
    (
        "manifest",
        {
            "manifest": base64.b64encode(MANIFEST).decode(),  # base64 text: sent as given
            "manifest_sig": {"bytes": base64.b64encode(b"\x01sig").decode()},
            "manifest_sig_algorithm": "sha256",
            "manifest_cert": {"bytes": base64.b64encode(b"-----cert-----").decode()},
            "capabilities": ["inet", "manifest-support"],
            "min_mem_gib": 1.0,
            "min_cpu_threads": 2,
        },
    ),
]

# Runs under yapapi's Python: builds each case's demand part with yapapi 0.13.1.
REFERENCE = r"""
import asyncio, base64, json, sys
from yapapi.payload import vm
from yapapi.props.builder import DemandBuilder

async def head_ok(image_url, image_hash):  # what a successful HEAD returns
    return f"hash:sha3:{image_hash}:{image_url}"

async def registry(repo_url, image_tag=None, image_hash=None, image_use_https=False, **_):
    scheme = "https" if image_use_https else "http"
    sha3 = image_hash or "f" * 56
    return f"hash:sha3:{sha3}:{scheme}://registry.example/download/{sha3}"

vm.check_package_url = head_ok
vm.resolve_package_url = registry

def decode(value):
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return base64.b64decode(value["bytes"])
    return value

async def main():
    out = []
    for kind, kwargs in json.loads(sys.argv[1]):
        kwargs = {k: decode(v) for k, v in kwargs.items()}
        payload = await getattr(vm, kind)(**kwargs)
        demand = DemandBuilder()
        await payload.decorate_demand(demand)
        out.append({"properties": demand.properties, "constraints": demand.constraints})
    print(json.dumps(out))

asyncio.run(main())
"""


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return base64.b64decode(value["bytes"])
    return value


async def _ours(kind: str, kwargs: dict[str, Any]) -> VmPayload:
    fn = vm.repo if kind == "repo" else vm.manifest
    return await fn(**{k: _decode(v) for k, v in kwargs.items()})  # type: ignore[operator]


def _yapapi_reference() -> list[dict[str, Any]]:
    python = os.environ.get("GOLEM_DEPLOY_TEST_YAPAPI_PYTHON")
    if not python:
        pytest.skip("set GOLEM_DEPLOY_TEST_YAPAPI_PYTHON to a python with yapapi 0.13.1")
    result = subprocess.run(
        [python, "-c", REFERENCE, json.dumps(CASES)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    answer: list[dict[str, Any]] = json.loads(result.stdout)
    return answer


def _without_host(package: str) -> tuple[str, str]:
    """("hash:sha3:<hash>", scheme) of a task package; the host is the registry's business."""
    head = package.partition("://")[0]
    prefix, _, scheme = head.rpartition(":")
    return prefix, scheme


async def test_payload_demands_match_yapapi_0_13_1() -> None:
    reference = _yapapi_reference()
    for (kind, kwargs), theirs in zip(CASES, reference, strict=True):
        ours = await _ours(kind, kwargs)
        what = f"{kind}({kwargs})"
        assert ours.constraints() == theirs["constraints"], what
        props, their_props = ours.properties(), dict(theirs["properties"])
        if kind == "repo" and "image_url" not in kwargs:
            package = props.pop("golem.srv.comp.task_package")
            their_package = their_props.pop("golem.srv.comp.task_package")
            if "image_hash" in kwargs:  # a tag's hash is only known to the registry
                assert _without_host(package) == _without_host(their_package), what
            else:
                assert _without_host(package)[1] == _without_host(their_package)[1], what
        assert props == their_props, what


async def test_vm_caps_names_and_the_registry_options() -> None:
    assert (vm.VM_CAPS_VPN, vm.VM_CAPS_MANIFEST_SUPPORT) == ("vpn", "manifest-support")
    plain = await vm.repo(image_hash=HASH)
    assert plain.task_package == f"hash:sha3:{HASH}:http://registry.golem.network/download/{HASH}"
    https = await vm.repo(
        image_hash=HASH, image_use_https=True, repository_url="http://my-registry.invalid:8000/"
    )
    assert https.task_package == (
        f"hash:sha3:{HASH}:https://my-registry.invalid:8000/download/{HASH}"
    )
    tagged = await vm.repo(image_tag="golem/alpine:latest", dev_mode=True)
    assert tagged.task_package == (
        "hash:sha3::http://registry.golem.network/v1/image/download?tag=golem/alpine%3Alatest"
    )
    with pytest.raises(PayloadError, match="repository_url 'registry' is not an http"):
        await vm.repo(image_hash=HASH, repository_url="registry")


async def test_a_manifest_payload_has_no_task_package_and_yapapis_properties() -> None:
    signed = await vm.manifest(
        manifest=MANIFEST,
        manifest_sig=b"sig",
        manifest_sig_algorithm="sha256",
        manifest_cert=b"cert",
        capabilities=[vm.VM_CAPS_MANIFEST_SUPPORT, "inet"],
    )
    assert signed.task_package is None
    assert signed.properties() == {
        "golem.srv.comp.vm.package_format": "gvmkit-squash",
        "golem.srv.comp.payload": base64.b64encode(MANIFEST).decode(),
        "golem.srv.comp.payload.sig": "c2ln",
        "golem.srv.comp.payload.sig.algorithm": "sha256",
        "golem.srv.comp.payload.cert": "Y2VydA==",
    }
    partner = await vm.manifest(manifest=MANIFEST, node_descriptor=DESCRIPTOR)
    assert partner.properties()["golem.!exp.gap-31.v0.node.descriptor"] == DESCRIPTOR
    assert "golem.srv.comp.payload.sig" not in partner.properties()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"manifest": MANIFEST}, "needs manifest_sig, manifest_sig_algorithm and manifest_cert"),
        (
            {"manifest": MANIFEST, "manifest_sig": b"s", "manifest_sig_algorithm": "sha256"},
            "needs manifest_sig",
        ),
        (
            {"manifest": MANIFEST, "node_descriptor": DESCRIPTOR, "manifest_sig": b"s"},
            "with node_descriptor, give the manifest alone",
        ),
        ({"manifest": '{"version": "0.1.0"}', "node_descriptor": DESCRIPTOR}, "not base64"),
        (
            {"manifest": MANIFEST, "node_descriptor": DESCRIPTOR, "capabilities": ["gpu"]},
            "unknown VM capability",
        ),
    ],
)
async def test_bad_manifests_are_refused_clearly(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        await vm.manifest(**kwargs)
