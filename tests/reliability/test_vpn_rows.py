"""VPN rows V1 and V2 of the fault matrix (docs/reliability.md): forwarded ports when a
provider or the supervisor dies.

- A provider vanishes mid-download through a forwarded port: the client sees its connection
  closed (reset or EOF), never a hang, and new connections reach the other instance within
  10 s. The vanished activity's VPN interface is gone from the local network's host.
- The supervisor is SIGKILLed while connections through its forwarded ports are open: the
  clients see them closed, and `down` deletes the VPN network in yagna (asked directly over
  its Net API) and leaves no namespace, TAP or process behind.

Both end with `Scenario.audit()` (see _harness.py).
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import Cli, wait_until
from _harness import Scenario, ask_yagna, service
from _vpn_helpers import localnet_host_pid, namespaces_alive, tap_descriptors, vpn_namespaces

from golem_deploy import localnet

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(420)]

PYTHON = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"  # as manifests/webapp.yaml
BIG = 1 << 30  # a download that lasts far longer than any test
HANG = 60.0  # a read waiting this long is a hang: every close here comes within seconds

# Each instance serves `GET /` (which instance answered) and `GET /big` (BIG bytes, paced at
# about 3 MB/s, so a download is surely in flight when its provider dies).
SERVER = """
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIZE = __SIZE__

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        me = self.connection.getsockname()[0]
        big = self.path == "/big"
        body = b"" if big else json.dumps({"served_by": me}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(SIZE if big else len(body)))
        self.send_header("X-Served-By", me)
        self.end_headers()
        if not big:
            self.wfile.write(body)
            return
        chunk = b"x" * 65536
        while True:
            self.wfile.write(chunk)
            time.sleep(0.02)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
""".replace("__SIZE__", str(BIG))


def _served(
    tmp_path: Path, cli: Cli, name: str, *, faults: dict[str, Any] | None = None
) -> Scenario:
    """Two instances of a file server behind one forwarded port (a free local one)."""
    (tmp_path / "serve.py").write_text(SERVER)
    files = service(
        instances=2,
        payload={"image_hash": PYTHON},
        start=[
            {"upload": {"src": "serve.py", "dst": "/golem/work/serve.py"}},
            {"run": "python3 /golem/work/serve.py 8000 > /golem/work/serve.log 2>&1 &"},
        ],
        ports=["8000"],
        restart={"policy": "never"},
    )
    return Scenario.create(cli, tmp_path, name, {"files": files}, faults=faults)


def _up(scenario: Scenario) -> tuple[int, list[dict[str, Any]]]:
    """`up -d`; the forwarded local port and the instances, once a request is answered
    (the servers start in the background of `start`)."""
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    [files] = scenario.status()["services"]
    [forward] = files["ports"]
    port = int(forward["host_port"])
    wait_until(lambda: _ask(port, timeout=10) is not None, 60, "a server answering")
    return port, files["instances"]


def _ask(port: int, *, timeout: float) -> str | None:
    """Which instance answered a new connection's `GET /`; None when it failed."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as answer:
            return str(json.loads(answer.read())["served_by"])
    except (OSError, ValueError, http.client.HTTPException):
        return None


def _download(port: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, str]:
    """Start `GET /big` on a new connection and read its first megabyte."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG)
    conn.request("GET", "/big")
    response = conn.getresponse()
    assert response.status == 200 and response.length == BIG
    assert len(response.read(1 << 20)) == 1 << 20
    return conn, response, str(response.getheader("X-Served-By"))


def _read_until_closed(response: http.client.HTTPResponse) -> tuple[str, int]:
    """Read on until the connection ends: ("reset" | "eof", bytes read). A read waiting
    HANG seconds fails the test: the client would have hung."""
    got = 0
    try:
        while data := response.read(65536):
            got += len(data)
    except ConnectionResetError:
        return "reset", got
    except http.client.IncompleteRead as partial:
        return "eof", got + len(partial.partial)
    except TimeoutError:
        raise AssertionError(f"the client hung: no byte and no close for {HANG:g}s") from None
    return "eof", got


def _dying_everywhere(tmp_path: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """A die_when trigger file per provider: the test kills the one it picks."""
    triggers = {f"local-provider-{k}": tmp_path / f"vanish-{k}" for k in (1, 2, 3)}
    return triggers, {name: {"die_when": str(path)} for name, path in triggers.items()}


@pytest.mark.slow  # `down` waits out yagna's timeouts for the dead provider (as row 4b)
def test_vpn_provider_dying_mid_download_closes_the_connection(cli: Cli, tmp_path: Path) -> None:
    triggers, faults = _dying_everywhere(tmp_path)
    scenario = _served(tmp_path, cli, "vpnrow-download", faults=faults)
    port, instances = _up(scenario)
    provider_of = {i["ip"]: i["provider_name"] for i in instances}
    assert len(set(provider_of.values())) == 2, f"both instances on one provider: {instances}"
    host = localnet_host_pid(scenario.folder / "localnet")
    assert tap_descriptors(host) == 2

    # Round robin: two new connections go to the two instances.
    doomed, doomed_response, victim = _download(port)
    kept, kept_response, survivor = _download(port)
    assert {victim, survivor} == set(provider_of), (victim, survivor)

    triggers[provider_of[victim]].touch()
    vanished_at = time.monotonic()
    while (answer := _ask(port, timeout=10)) != survivor:
        assert time.monotonic() - vanished_at < 10, (
            f"no new connection reached {survivor} within 10 s of the provider's death "
            f"(last answer: {answer})"
        )
        time.sleep(0.2)

    how, _ = _read_until_closed(doomed_response)
    assert how in ("reset", "eof")
    doomed.close()
    # The other download is untouched.
    assert len(kept_response.read(1 << 20)) == 1 << 20
    kept.close()

    # Once the instance is seen as not running, every new connection is answered.
    scenario.wait_for_status(
        "the instance on the dead provider not running",
        lambda s: any(
            i["ip"] == victim and i["state"] != "running" for i in s["services"][0]["instances"]
        ),
        timeout=60,
    )
    assert [_ask(port, timeout=30) for _ in range(10)] == [survivor] * 10
    # The dead activity's VPN interface went with it (its namespace held by nothing).
    wait_until(lambda: tap_descriptors(host) == 1, 30, "the vanished activity's TAP closed")

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit(vanished=(provider_of[victim],))


@pytest.fixture
def own_net(cli: Cli) -> Iterator[localnet.LocalNetInfo]:
    """A network the test owns (so its yagna can be asked after `down`), used through
    YAGNA_* like a user's yagna; its folder is outside the test's home, so its processes
    are not counted as leftovers of the deployment."""
    state_dir = Path(tempfile.mkdtemp(prefix="gd-vpn-net-"))
    info = localnet.start(state_dir, providers=3, timeout=90.0)
    try:
        cli.env.update(info.env())
        yield info
    finally:
        localnet.stop(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def _networks(info: localnet.LocalNetInfo) -> list[str]:
    """The ids of the VPN networks the requestor yagna has (Net API)."""
    request = urllib.request.Request(
        f"{info.api_url}/net-api/v1/net", headers={"Authorization": f"Bearer {info.app_key}"}
    )
    with urllib.request.urlopen(request, timeout=20) as answer:  # loopback only
        return [str(net["id"]) for net in json.loads(answer.read())]


def test_vpn_supervisor_killed_with_open_connections_then_down(
    cli: Cli, tmp_path: Path, own_net: localnet.LocalNetInfo
) -> None:
    scenario = _served(tmp_path, cli, "vpnrow-killed")
    port, _ = _up(scenario)
    [created] = [r["network_id"] for r in scenario.journal() if r["kind"] == "NetworkCreated"]
    assert created in _networks(own_net)
    host = localnet_host_pid(own_net.state_dir)
    namespaces = vpn_namespaces(host)
    assert len(namespaces) == 2 and tap_descriptors(host) == 2

    # Open connections: one mid-download, one idle after an answer (HTTP keep-alive).
    downloading, download, _ = _download(port)
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG)
    idle.request("GET", "/")
    idle.getresponse().read()

    scenario.kill_supervisor()
    how, _ = _read_until_closed(download)
    assert how in ("reset", "eof")
    assert idle.sock is not None
    try:
        assert idle.sock.recv(1) == b""  # closed
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"an idle connection hung open for {HANG:g}s") from None
    downloading.close()
    idle.close()
    with pytest.raises(OSError):  # nobody listens any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "everything released" in down.stdout, down.stdout
    assert created not in _networks(own_net)  # yagna itself no longer has the network
    assert [r["network_id"] for r in scenario.journal() if r["kind"] == "NetworkRemoved"] == [
        created
    ]
    assert namespaces_alive(namespaces, scenario.cli.home) == set()
    assert tap_descriptors(host) == 0
    activities = {
        str(r["activity_id"]) for r in scenario.journal() if r["kind"] == "ActivityCreated"
    }
    scenario.audit(yagna=ask_yagna(own_net.api_url, own_net.app_key, activities))
