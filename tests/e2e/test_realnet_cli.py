"""The real-network path against real yagna daemons on loopback: a local network used as
"your own yagna" (YAGNA_* exported), a registry speaking the Golem registry's protocol
(a loopback HTTP server), and a yagna started without the local network's allocation
shortcut, which refuses allocations exactly as an unfunded node does."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from _cli_helpers import Cli, ExternalNet, processes_mentioning

from golem_deploy.supervisor import journal

SHA3 = "d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376"
IMAGE_URL = "http://files.example/alpine.gvmi"  # not loopback: the local provider won't fetch
KNOWN_TAG = "golem/alpine:latest"
NEW_TAG = "golem/alpine:edge"  # another tag, another image: what a change moves to
NEW_SHA3 = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"[:56]
NEW_URL = "http://files.example/alpine-edge.gvmi"


class _Registry(BaseHTTPRequestHandler):
    """GET /v1/image/info?tag=...|hash=...&count=true, as registry.golem.network answers."""

    asked: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.asked.append(query)
        images = {KNOWN_TAG: (SHA3, IMAGE_URL), NEW_TAG: (NEW_SHA3, NEW_URL)}
        by_hash = {sha3: (sha3, link) for sha3, link in images.values()}
        known = images.get(query.get("tag", [""])[0]) or by_hash.get(query.get("hash", [""])[0])
        if url.path != "/v1/image/info" or query.get("count") != ["true"] or not known:
            self._answer(404, b"image not found")
            return
        sha3, link = known
        body = {"sha3": sha3, "http": link, "https": link, "size": 4_300_000}
        self._answer(200, json.dumps(body).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry(cli: Cli) -> Iterator[list[dict[str, list[str]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Registry.asked = []
    cli.env["GOLEM_REGISTRY_URL"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield _Registry.asked
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def unfunded(cli: Cli) -> Iterator[Any]:
    """A yagna without YAGNA_DEV_SKIP_ALLOCATION_VALIDATION, used as "your yagna"."""
    from golem_deploy import localnet

    state_dir = cli.home / "unfunded-net"
    info = localnet.start(state_dir, providers=1, timeout=90.0, allocation_shortcut=False)
    try:
        cli.env.update(info.env())
        del cli.env["YAGNA_SUBNET"]  # the manifest's subnet, as for a user on `public`
        yield info
    finally:
        localnet.stop(state_dir)


def _get(info: Any, path: str) -> Any:
    request = urllib.request.Request(
        info.api_url + path, headers={"Authorization": f"Bearer {info.app_key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # loopback only
        return json.loads(answer.read())


def _nothing_held(info: Any) -> None:
    assert _get(info, "/payment-api/v1/allocations") == []
    assert _get(info, "/market-api/v1/demands") == []


def _manifest(tmp_path: Path, name: str, payload: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"""\
name: {name}
budget: 1.0
services:
  hello:
    payload: {payload}
    start:
      - run: ["/bin/echo", "hello"]
"""
    )
    return path


def _checks(result: Any) -> dict[str, dict[str, str]]:
    return {check["name"]: check for check in json.loads(result.stdout)}


def test_doctor_on_a_ready_yagna(
    cli: Cli, external_net: ExternalNet, registry: list[Any], tmp_path: Path
) -> None:
    path = _manifest(tmp_path, "doc-ok", f"{{image_hash: {SHA3}}}")
    result = cli("doctor", str(path), "--json", "--wait", "3s")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = _checks(result)
    assert [c["status"] for c in checks.values()] == ["ok"] * 8, checks
    assert checks["yagna"]["detail"].startswith("yagna 0.17.6 at http://127.0.0.1:")
    assert checks["offers"]["detail"].startswith("hello: 3 ")  # the three local providers
    assert registry and registry[0]["hash"] == [SHA3]
    _nothing_held(external_net.info)

    bare = _checks(cli("doctor", "--json", check=True))  # no manifest: no budget, no demand
    assert bare["funds"]["status"] == "skip" and "offers" not in bare
    assert bare["images"]["status"] == "ok"

    # A registry that cannot be reached: only a warning on local-dev, an error elsewhere.
    cli.env["GOLEM_REGISTRY_URL"] = "http://127.0.0.1:9"
    (cli.home / "registry-cache.json").unlink()
    offline = _checks(cli("doctor", str(path), "--json", "--wait", "1s", check=True))
    assert offline["images"]["status"] == "ok"
    assert "left unresolved on local-dev" in offline["images"]["detail"]
    cli.env["YAGNA_SUBNET"] = "public"
    elsewhere = _checks(cli("doctor", str(path), "--json", "--wait", "1s"))
    assert elsewhere["images"]["status"] == "FAIL"
    assert "cannot ask the image registry http://127.0.0.1:9" in elsewhere["images"]["detail"]
    assert "GOLEM_REGISTRY_URL" in elsewhere["images"]["fix"]
    _nothing_held(external_net.info)


def test_doctor_and_up_on_an_unfunded_yagna(cli: Cli, unfunded: Any, tmp_path: Path) -> None:
    path = _manifest(tmp_path, "doc-poor", f'{{image_hash: {SHA3}, image_url: "{IMAGE_URL}"}}')
    result = cli("doctor", str(path), "--json", "--wait", "2s")
    assert result.returncode == 1
    checks = _checks(result)
    assert checks["app key"]["status"] == checks["identity"]["status"] == "ok"
    init = "yagna payment init --sender --driver erc20 --network holesky"
    assert checks["payment account"]["status"] == "FAIL"
    assert init in checks["payment account"]["fix"]
    funds = checks["funds"]
    assert (
        funds["status"] == "FAIL"
        and "refused an allocation of the budget (1.0 GLM" in funds["detail"]
    )
    assert (
        init in funds["fix"]
        and "yagna payment fund --driver erc20 --network holesky" in funds["fix"]
    )
    assert checks["offers"]["status"] == "FAIL"  # no provider on `public` here
    _nothing_held(unfunded)

    plain = cli("doctor", str(path), "--wait", "1s")
    assert (
        plain.returncode == 1
        and "FAIL funds:" in plain.stdout
        and "fix: `yagna payment" in plain.stdout
    )

    up = cli("up", "-d", str(path))
    assert up.returncode == 1
    assert (
        "funds" in up.stderr and "yagna payment fund" in up.stderr and "Traceback" not in up.stderr
    )
    assert not cli.deployment_dir("doc-poor").exists()  # nothing was started
    _nothing_held(unfunded)


def test_up_resolves_an_image_tag_before_any_demand(
    cli: Cli, external_net: ExternalNet, registry: list[Any], tmp_path: Path
) -> None:
    path = _manifest(tmp_path, "tagged", f'{{image_tag: "{KNOWN_TAG}"}}')
    up = cli("up", "-d", str(path), "--timeout", "3m")
    assert up.returncode == 0, up.stdout + up.stderr
    status = cli.status("tagged")
    (agreement_id,) = {i["agreement_id"] for s in status["services"] for i in s["instances"]}
    agreement = _get(external_net.info, f"/market-api/v1/agreements/{agreement_id}")
    package = _flat(agreement["demand"]["properties"])["golem.srv.comp.task_package"]
    assert package == f"hash:sha3:{SHA3}:{IMAGE_URL}"
    resolved = [r for r in cli.journal("tagged") if r["kind"] == "ImageResolved"]
    assert [(r["service"], r["sha3"]) for r in resolved] == [("hello", SHA3)]
    assert cli("down", "-n", "tagged").returncode == 0
    assert json.loads((cli.home / "registry-cache.json").read_text())  # kept for next time


def test_a_change_to_another_tag_resolves_it_through_the_registry(
    cli: Cli, external_net: ExternalNet, registry: list[Any], tmp_path: Path
) -> None:
    """`up` of the same deployment with a changed `image_tag`: the supervisor's reconciler
    asks the registry for the new tag (supervisor/reconcile.py `_resolve_images`) and the
    replacement's agreement runs the image the registry named."""
    path = _manifest(tmp_path, "retag", f'{{image_tag: "{KNOWN_TAG}"}}')
    up = cli("up", "-d", str(path), "--timeout", "3m")
    assert up.returncode == 0, up.stdout + up.stderr
    path = _manifest(tmp_path, "retag", f'{{image_tag: "{NEW_TAG}"}}')
    change = cli("up", str(path), "--timeout", "3m")
    assert change.returncode == 0, change.stdout + change.stderr
    assert {"tag": [NEW_TAG], "count": ["true"]} in registry
    records = cli.journal("retag")
    resolved = [(r["service"], r["sha3"]) for r in records if r["kind"] == "ImageResolved"]
    assert resolved == [("hello", SHA3), ("hello", NEW_SHA3)]
    status = cli.status("retag")
    (agreement_id,) = {i["agreement_id"] for s in status["services"] for i in s["instances"]}
    agreement = _get(external_net.info, f"/market-api/v1/agreements/{agreement_id}")
    package = _flat(agreement["demand"]["properties"])["golem.srv.comp.task_package"]
    assert package == f"hash:sha3:{NEW_SHA3}:{NEW_URL}"
    assert cli("down", "-n", "retag").returncode == 0
    _nothing_held(external_net.info)


def test_an_unknown_tag_fails_before_anything_is_negotiated(
    cli: Cli, external_net: ExternalNet, registry: list[Any], tmp_path: Path
) -> None:
    path = _manifest(tmp_path, "unknown", '{image_tag: "golem/nope:1"}')
    up = cli("up", "-d", str(path))
    assert up.returncode == 1 and "does not know image tag 'golem/nope:1'" in up.stderr
    assert not cli.deployment_dir("unknown").exists()  # `up`'s checks stopped it first

    skipped = cli("up", "-d", str(path), "--skip-checks")  # the supervisor's own resolution
    assert skipped.returncode == 1
    assert "does not know image tag 'golem/nope:1'" in skipped.stderr
    kinds = {r["kind"] for r in cli.journal("unknown")}
    assert "DeploymentFailed" in kinds
    assert not kinds & {"AllocationCreated", "AgreementCreated"}, kinds
    with contextlib.suppress(Exception):
        cli("down", "-n", "unknown")
    assert journal.load(cli.deployment_dir("unknown") / "journal.jsonl").empty
    _nothing_held(external_net.info)


def _flat(props: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """yagna may answer properties nested ({"golem": {"srv": ...}}) or flat: make them flat."""
    flat: dict[str, Any] = {}
    for key, value in props.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _plan_manifest(tmp_path: Path) -> Path:
    path = tmp_path / "priced.yaml"
    path.write_text(
        f"""\
name: priced
budget: 0.05
market:
  max_price: {{cpu_per_hour: 0.5}}
services:
  web:
    payload: {{image_hash: {SHA3}, image_url: "{IMAGE_URL}", min_cpu_threads: 2}}
    instances: 2
    expiration: 1h
"""
    )
    return path


def test_plan_on_your_yagna(cli: Cli, external_net: ExternalNet, tmp_path: Path) -> None:
    result = cli("plan", str(_plan_manifest(tmp_path)), "--json", "--wait", "2s")
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    assert (plan["network"], plan["subnet"]) == ("yagna", "local-dev")
    (web,) = plan["services"]
    # local-provider-K: 0.36+0.18(K-1) GLM per CPU-hour, 0.072+0.036(K-1) per hour,
    # 0.001(K-1) to start; the cap (0.5 per CPU-hour) leaves local-provider-1 only.
    assert (web["offers"], web["acceptable"]) == (3, 1)
    assert web["cpu_per_hour"] == {"low": "0.36", "high": "0.72"}
    assert web["env_per_hour"] == {"low": "0.072", "high": "0.144"}
    assert web["start"] == {"low": "0", "high": "0.002"}
    # two instances, two busy threads each: 2 * (2 * 0.36 + 0.072) per hour, for one hour
    assert web["per_hour"] == {"low": "1.584", "high": "1.584"}
    assert web["to_expiration"] == {"low": "1.584", "high": "1.584"}
    assert plan["fits_budget"] is False
    _nothing_held(external_net.info)

    text = cli("plan", str(_plan_manifest(tmp_path)), "--wait", "1s")
    assert text.returncode == 0
    assert "web: 3 matching offers, 1 within the price caps" in text.stdout
    assert "OVER the budget of 0.05" in text.stdout


def test_plan_without_a_yagna_looks_on_a_private_local_network(cli: Cli, tmp_path: Path) -> None:
    result = cli("plan", str(_plan_manifest(tmp_path)), "--json", "--wait", "2s")
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    assert plan["network"] == "local" and plan["services"][0]["offers"] == 3
    assert not list(cli.home.glob("plan-*"))  # its network was stopped and removed
    assert processes_mentioning(str(cli.home)) == []
