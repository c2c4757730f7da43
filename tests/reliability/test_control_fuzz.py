"""The control socket under malformed, oversized and slow requests, against a real supervisor.

A deployment is brought up with the real CLI (`up -d`, its supervisor a detached process on
the private local network), then hypothesis throws raw bytes at its control socket: random
methods, paths, queries, headers and bodies, broken request lines, bodies that do not match
their Content-Length, and plain garbage. Every answer must be below 500, a 2xx only for a
well-formed GET of a real route, and after every case the supervisor must still answer
`GET /snapshot` with its deployment running. A valid `POST /down` is the one request never
sent: it would (rightly) take the deployment down.

Separate cases pin the limits of supervisor/api.py: a body over MAX_BODY is 413, a body
that never arrives is 408 after BODY_TIMEOUT, a request head that never completes is
closed after HEAD_TIMEOUT while other clients are served meanwhile. The deployment then
goes down and the shared audit runs: nothing leaked.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import pytest
from _cli_helpers import Cli
from _harness import REPORT_ENV, Scenario, service
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_deploy.supervisor import api
from golem_deploy.supervisor.deployments import DeploymentDir

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(600)]

FUZZ_EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "60"))
ROUTES = ["/snapshot", "/events", "/down", "/logs"]
READ_TIMEOUT = api.HEAD_TIMEOUT + 20  # an answer (or the close) must come before this


def _exchange(sock_path: Path, data: bytes) -> bytes:
    """Send raw bytes, then read until the status line and headers are in (or EOF)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(READ_TIMEOUT)
        conn.connect(str(sock_path))
        # The server may answer and close before taking all of it.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(data)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def _status(answer: bytes) -> int | None:
    """The status code of an HTTP answer, None when the server closed without one."""
    if not answer:
        return None
    line = answer.split(b"\r\n", 1)[0].split()
    assert len(line) >= 2 and line[0].startswith(b"HTTP/"), answer[:200]
    return int(line[1])


_token = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
    min_size=1,
    max_size=20,
)
# Garbage that starts a request line (a parser skips leading empty lines and would wait).
_junk = st.binary(min_size=1, max_size=300).filter(lambda b: b[:1] not in (b"\r", b"\n"))
_path = st.one_of(
    st.sampled_from(ROUTES),
    st.builds(lambda r, q: f"{r}?{q}", st.sampled_from(ROUTES), st.text(max_size=40)),
    st.text(max_size=12).map(lambda t: f"/logs?tail={t}"),
    st.text(max_size=20).map(lambda s: f"/logs?selector={s}"),
    st.text(max_size=60),
)
# Bodies for POST /down that must be refused: never a valid request to go down.
_bad_down_body = st.one_of(
    st.binary(min_size=1, max_size=200).filter(lambda b: not _valid_down(b)),
    st.builds(
        lambda v: json.dumps({"timeout": v}).encode(),
        st.one_of(
            st.booleans(),
            st.text(max_size=10),
            st.integers(max_value=0),
            st.floats(max_value=0) | st.just(float("inf")) | st.just(float("nan")),
            st.lists(st.integers(), max_size=3),
        ),
    ),
    st.builds(lambda v: json.dumps(v).encode(), st.lists(st.integers(), max_size=3)),
    st.just(b"[" * 5000 + b"]" * 5000),
)


def _valid_down(body: bytes) -> bool:
    """Whether the supervisor would accept `body` as a request to go down."""
    if not body.strip():
        return True
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(doc, dict):
        return False
    timeout = doc.get("timeout")
    return timeout is None or (
        isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0
    )


@st.composite
def _requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(raw request bytes, whether a 2xx answer is acceptable)."""
    kind = draw(st.sampled_from(["garbage", "request", "down"]))
    if kind == "garbage":  # ended like a request head, so the server must answer it
        return draw(_junk) + b"\r\n\r\n", False
    if kind == "down":
        body = draw(_bad_down_body)
        length = draw(st.sampled_from([len(body), len(body), len(body) + 7]))
        head = f"POST /down HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
        return head.encode() + body, False
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "G3T", "get"]))
    path = draw(_path)
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/9.9", "", "HTTP/1.1 x"]))
    headers = draw(st.lists(st.tuples(_token, st.text(max_size=40)), max_size=4))
    body = draw(st.binary(max_size=200))
    if method == "POST" and _valid_down(body):  # whatever the path normalizes to
        body = b"not json" + body
    lines = [f"{method} {path} {version}".rstrip(), "Host: x"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass") + body
    # aiohttp also serves an HTTP/0.9-style request line (no version): still a plain GET.
    plain_get = method in ("GET", "HEAD") and version in ("HTTP/1.1", "HTTP/1.0", "")
    return raw, plain_get


def _running(deployment: DeploymentDir) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(deployment.socket))
        conn.sendall(b"GET /snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return bool(json.loads(body)["state"] == "running")


def test_control_socket_survives_malformed_oversized_and_slow_requests(
    cli: Cli, tmp_path: Path
) -> None:
    scenario = Scenario.create(cli, tmp_path, "fuzzed", {"app": service()})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    deployment = DeploymentDir(scenario.name, scenario.folder)
    sock = deployment.socket
    pid = cli.supervisor_pid(scenario.name)
    cases = 0

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=_requests())
    def one(case: tuple[bytes, bool]) -> None:
        nonlocal cases
        raw, may_succeed = case
        cases += 1
        status = _status(_exchange(sock, raw))
        assert status is not None and status < 500, (raw[:300], status)
        if status < 300:
            assert may_succeed, (raw[:300], status)
        assert _running(deployment), raw[:300]

    one()

    # Oversized: one byte past the limit is refused before the handler sees it.
    big = b"{" + b" " * api.MAX_BODY + b"}"
    head = f"POST /down HTTP/1.1\r\nHost: x\r\nContent-Length: {len(big)}\r\n\r\n".encode()
    assert _status(_exchange(sock, head + big)) == 413
    # A body that never arrives: 408 once BODY_TIMEOUT has passed, never a hang.
    head = b"POST /down HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{"
    assert _status(_exchange(sock, head)) == 408
    # A request head that never completes: the connection is closed (no answer is possible),
    # and while it hangs the supervisor answers everyone else.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.settimeout(READ_TIMEOUT)
        slow.connect(str(sock))
        slow.sendall(b"GET /snapshot HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert _running(deployment)
        assert slow.recv(100) == b"", "an incomplete request head must end in a close"

    report = os.environ.get(REPORT_ENV)
    if report:
        with open(report, "a", encoding="utf-8") as out:
            out.write(json.dumps({"fuzz_cases": cases, "fuzz_tracebacks": 0}) + "\n")
    status = scenario.status()
    assert status["state"] == "running" and cli.supervisor_pid(scenario.name) == pid
    assert "Traceback" not in (scenario.folder / "supervisor.log").read_text()
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit()
