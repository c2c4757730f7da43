"""Health probes over the VPN (pure parts): the request sent, the status line read, the
verdict, and the compiler's translation of the manifest's probes."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_deploy.compiler import health_check
from golem_deploy.engine.config import HealthCheck, HttpProbe
from golem_deploy.engine.probe import http_request, http_verdict, status_code
from golem_deploy.manifest import load_manifest

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


def test_the_request_asks_for_the_path_and_for_the_connection_to_close() -> None:
    request = http_request("/health", "192.168.0.2", 8000)
    assert request.startswith(b"GET /health HTTP/1.1\r\nHost: 192.168.0.2:8000\r\n")
    assert b"\r\nConnection: close\r\n" in request
    assert request.endswith(b"\r\n\r\n")
    assert http_request("health", "h", 1).startswith(b"GET /health ")


@pytest.mark.parametrize(
    ("head", "code"),
    [
        (b"HTTP/1.1 200 OK\r\n", 200),
        (b"HTTP/1.0 302 Found\r\nLocation: /x\r\n", 302),
        (b"HTTP/1.1 204\r\n", 204),  # the reason phrase is optional
        (b"HTTP/1.1 503 Service Unavailable\n", 503),  # a bare LF is tolerated
        (b"HTTP/1.1 200 OK", None),  # the line is not complete yet
        (b"", None),
        (b"SSH-2.0-OpenSSH_9.6\r\n", None),  # something else answers on that port
        (b"HTTP/1.1 2000 OK\r\n", None),
        (b"HTTP/1.1 OK\r\n", None),
    ],
)
def test_the_status_line_gives_the_code(head: bytes, code: int | None) -> None:
    assert status_code(head) == code


@pytest.mark.parametrize(
    ("head", "ok"),
    [
        (b"HTTP/1.1 200 OK\r\n", True),
        (b"HTTP/1.1 301 Moved Permanently\r\n", True),
        (b"HTTP/1.1 399 x\r\n", True),
        (b"HTTP/1.1 404 Not Found\r\n", False),
        (b"HTTP/1.1 500 Internal Server Error\r\n", False),
        (b"HTTP/1.1 199 x\r\n", False),
        (b"", False),
    ],
)
def test_2xx_and_3xx_are_healthy(head: bytes, ok: bool) -> None:
    healthy, message = http_verdict(head, HttpProbe(port=8000, path="/health"))
    assert healthy is ok
    assert message.startswith("GET /health on port 8000: ")


def test_nothing_back_says_so() -> None:
    _, message = http_verdict(b"", HttpProbe(port=80))
    assert message == "GET / on port 80: not an HTTP answer ('nothing')"


def test_a_health_check_has_one_probe() -> None:
    with pytest.raises(ValueError, match="one probe"):
        HealthCheck(argv=("true",), tcp=80)
    assert not HealthCheck().probes
    assert HealthCheck(tcp=80).probes and HealthCheck(http=HttpProbe(80)).probes


def _spec(tmp_path: Path, healthcheck: str) -> HealthCheck | None:
    path = tmp_path / "app.yaml"
    path.write_text(
        f"budget: 1\nnetwork: true\nservices:\n  web:\n    payload: {{image_hash: {HASH}}}\n"
        f"    healthcheck: {healthcheck}\n"
    )
    return health_check(load_manifest(path).services["web"])


def test_the_compiler_translates_the_manifests_probes(tmp_path: Path) -> None:
    http = _spec(tmp_path, "{http: {port: 8000, path: /health}, interval: 5s, retries: 2}")
    assert http == HealthCheck(
        http=HttpProbe(port=8000, path="/health"),
        interval=5.0,
        timeout=10.0,
        retries=2,
        start_period=0.0,
    )
    tcp = _spec(tmp_path, "{tcp: 6379, timeout: 2s, start_period: 1s}")
    assert tcp is not None
    assert (tcp.tcp, tcp.argv, tcp.http, tcp.timeout, tcp.start_period) == (
        6379,
        None,
        None,
        2.0,
        1.0,
    )
