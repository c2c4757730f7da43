"""The supervisor imports aiohttp without loading the CA store (supervisor/tls_deferred.py).

Each case runs in a fresh interpreter: what is checked is the state of a process right
after its imports. What must hold: the supervisor's entry point leaves aiohttp's shared
contexts without CA certificates but still verifying (a https request through them fails,
it is never unverified); `ssl` itself is restored, so any context made later is whole;
the CLI, which reaches the registry over https, is untouched, except for the checks `up`
runs on your yagna, which skip it like the supervisor; and a client of a https yagna (or
of the registry) brings its own, CA-loaded context.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from golem_deploy.yagna.config import YagnaConfig

#: Prints, as JSON, how many CA certificates aiohttp's verified context and a context made
#: afterwards hold, and whether aiohttp's still requires verification. (aiohttp keeps its
#: default contexts in private module globals; reading them is the only way to look.)
PROBE = """
import json, ssl
import aiohttp.connector as c
ctx = c._SSL_CONTEXT_VERIFIED
print(json.dumps({
    "aiohttp_cas": ctx.cert_store_stats()["x509_ca"],
    "aiohttp_verifies": ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname,
    "later_cas": ssl.create_default_context().cert_store_stats()["x509_ca"],
}))
"""


def probe(first: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", first + "\n" + PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def system_cas() -> int:
    count = ssl.create_default_context().cert_store_stats()["x509_ca"]
    if count == 0:
        pytest.skip("this system has no CA certificates to leave out")
    return count


def test_the_supervisor_entry_point_skips_the_ca_store_but_still_verifies(
    system_cas: int,
) -> None:
    seen = probe("import golem_deploy.supervisor.__main__")
    assert seen == {"aiohttp_cas": 0, "aiohttp_verifies": True, "later_cas": system_cas}


def test_the_cli_imports_aiohttp_as_usual(system_cas: int) -> None:
    seen = probe("import golem_deploy.cli.app, aiohttp")
    assert seen == {"aiohttp_cas": system_cas, "aiohttp_verifies": True, "later_cas": system_cas}


def test_the_checks_up_runs_on_your_yagna_skip_the_ca_store_too(system_cas: int) -> None:
    # `up` waits on them; they reach yagna over http here (a dead port: every check fails)
    manifest = Path(__file__).resolve().parents[2] / "manifests" / "hello-world.yaml"
    first = f"""
import contextlib, os
from pathlib import Path
os.environ.update(YAGNA_APPKEY="key", YAGNA_API_URL="http://127.0.0.1:9")
from golem_deploy.cli.doctor import preflight
from golem_deploy.errors import GolemDeployError
from golem_deploy.manifest import load_manifest
with contextlib.suppress(GolemDeployError):
    preflight(load_manifest(Path({str(manifest)!r})), Path("m.yaml"))
"""
    seen = probe(first)
    assert seen == {"aiohttp_cas": 0, "aiohttp_verifies": True, "later_cas": system_cas}


def test_importing_again_changes_nothing(system_cas: int) -> None:
    twice = "from golem_deploy.supervisor.tls_deferred import import_aiohttp_without_ca_store as f"
    seen = probe(f"import aiohttp\n{twice}\nf()")
    assert seen["aiohttp_cas"] == system_cas


def test_only_https_yagna_urls_use_tls() -> None:
    assert not YagnaConfig("http://127.0.0.1:7465").uses_tls
    assert YagnaConfig("HTTPS://yagna.example:7465").uses_tls
    plain_api_tls_market = YagnaConfig("http://127.0.0.1:7465", market_url="https://m/market")
    assert plain_api_tls_market.uses_tls


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_client_of_a_https_yagna_brings_a_context_with_the_ca_store(
    system_cas: int, anyio_backend: str
) -> None:
    from golem_deploy.yagna.client import YagnaClient

    async with YagnaClient(YagnaConfig("https://yagna.example:7465", "key")) as client:
        own = client.session.connector._ssl  # type: ignore[union-attr]  # aiohttp's private
        assert isinstance(own, ssl.SSLContext)
        assert own.cert_store_stats()["x509_ca"] == system_cas
        assert own.verify_mode == ssl.CERT_REQUIRED


def test_the_registry_brings_its_own_ca_store_inside_the_supervisor(system_cas: int) -> None:
    # a change the supervisor applies may ask https://registry.golem.network about an image
    first = "import golem_deploy.supervisor.__main__\nfrom golem_deploy.preflight import registry"
    probe_tls = "\nprint(registry._tls('https://registry.golem.network').cert_store_stats())"
    done = subprocess.run(
        [sys.executable, "-c", first + probe_tls],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert f"'x509_ca': {system_cas}" in done.stdout
