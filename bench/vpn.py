"""A deployment's forwarded port: HTTP latency and download speed through the Golem VPN.

    .venv/bin/python bench/vpn.py [--http-rounds 30] [--download-rounds 3] [--mb 10]

A standalone local network is started, then `golem-deploy up -d` of one service whose
instance serves files over HTTP on port 8000 (`python3 -m http.server`; the instance makes
a 100-byte file and an `--mb` MB one of random bytes first), forwarded to a free port on
127.0.0.1. Every request crosses what a user's request crosses: the supervisor's listener,
yagna's Net API TCP WebSocket, the bus to the provider node, the local network's ExeUnit
and the instance's TAP device.

- vpn_http_ms: one small GET (new connection, whole answer read) through the forwarded port;
- vpn_download_mb_s: the `--mb` MB file through the forwarded port, MB = 10^6 bytes.

Their floor, alternating with them (loopback, VPN, loopback, VPN, ...): the same GETs to the
same server program run on this machine on 127.0.0.1 (`loopback_*`), which no forwarding
can beat. "ratio" = median VPN seconds / median loopback seconds (how many times slower).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_home, emit, isolate, load_average, local_network, run_cli, stats
from _yardstick import alternate, ratio

SMALL = 100  # bytes of the small GET's answer body
SERVER_PORT = 8000  # in the instance: the sandbox cannot bind ports below 1024
# The hello-world image: unreachable offline, so the instance runs in the local network's
# sealed host root, which has the python3 the server needs (as manifests/webapp.yaml does).
IMAGE_HASH = "d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_files(folder: Path, mb: int) -> str:
    """The command that writes the two files the server serves into `folder`."""
    return (
        f"python3 -c \"import os; open('{folder}/small', 'wb').write(b'x' * {SMALL}); "
        f"open('{folder}/big', 'wb').write(os.urandom({mb * 1_000_000}))\""
    )


def manifest(folder: Path, host_port: int, mb: int) -> Path:
    serve = f"python3 -m http.server {SERVER_PORT} -d /golem/work > /golem/output/http.log 2>&1"
    start = ["/bin/sh", "-c", f"{make_files(Path('/golem/work'), mb)} && ({serve} &)"]
    text = f"""version: "1"
name: vpn-bench
budget: 1000.0
services:
  www:
    payload: {{image_hash: {IMAGE_HASH}}}
    expiration: 30m
    ports: ["127.0.0.1:{host_port}:{SERVER_PORT}"]
    start:
      - run: {json.dumps(start)}
"""
    path = folder / "vpn-bench.yaml"
    path.write_text(text)
    return path


def get(port: int, path: str) -> tuple[float, int]:
    """(seconds, body bytes) of one GET on a new connection, the whole answer read."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        size = 0
        while chunk := response.read(1 << 16):
            size += len(chunk)
        if response.status != 200:
            raise RuntimeError(f"GET {path} on {port}: HTTP {response.status}")
    finally:
        conn.close()
    return time.perf_counter() - began, size


def wait_until_served(port: int, seconds: float = 60.0) -> None:
    """The instance's server answers through the forwarded port (`up -d` returns when the
    listener accepts; the server in the instance starts in the background)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if get(port, "/small")[1] == SMALL:
                return
        except (OSError, RuntimeError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the instance's server did not answer on {port} in {seconds:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def loopback_server(mb: int) -> Iterator[int]:
    """The same server program on 127.0.0.1 with the same files: the floor."""
    www = Path(tempfile.mkdtemp(prefix="gd-bench-vpn-www-"))
    port = free_port()
    python = shutil.which("python3") or sys.executable
    subprocess.run(["sh", "-c", make_files(www, mb)], check=True)
    server = subprocess.Popen(
        [python, "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", str(www)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_served(port, 30.0)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(www, ignore_errors=True)


def timed(port: int, path: str, size: int) -> float:
    seconds, got = get(port, path)
    if got != size:
        raise RuntimeError(f"GET {path} on {port}: {got} bytes, expected {size}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--http-rounds", type=int, default=30)
    parser.add_argument("--download-rounds", type=int, default=3)
    parser.add_argument("--mb", type=int, default=10)
    args = parser.parse_args()
    isolated = isolate()
    result: dict[str, object] = {"isolated_netns": isolated, "mb": args.mb}
    big = args.mb * 1_000_000
    with (
        bench_home("gd-bench-vpn-") as (home, env),
        loopback_server(args.mb) as direct,
        local_network(home, env, 3) as net_env,
    ):
        forwarded = free_port()
        up, _ = run_cli(
            "up", "-d", "--timeout", "5m", str(manifest(home, forwarded, args.mb)), env=net_env
        )
        try:
            wait_until_served(forwarded)
            result["load_before"] = load_average()
            timed(direct, "/small", SMALL)  # warm-up, untimed
            timed(forwarded, "/small", SMALL)
            lo_http, vpn_http = alternate(
                lambda: timed(direct, "/small", SMALL),
                lambda: timed(forwarded, "/small", SMALL),
                args.http_rounds,
            )
            lo_big, vpn_big = alternate(
                lambda: timed(direct, "/big", big),
                lambda: timed(forwarded, "/big", big),
                args.download_rounds,
            )
            result["load_after"] = load_average()
        finally:
            run_cli("down", "-n", "vpn-bench", env=net_env, check=False)
    ms = [s * 1000 for s in vpn_http]
    result["vpn_http_ms"] = {
        **stats(ms, digits=1),
        "p90": round(statistics.quantiles(ms, n=10)[-1], 1) if len(ms) > 1 else ms[0],
        "ratio": ratio(vpn_http, lo_http),
    }
    result["loopback_http_ms"] = stats([s * 1000 for s in lo_http], digits=2)
    result["vpn_download_mb_s"] = {
        **stats([args.mb / s for s in vpn_big], digits=3),
        "ratio": ratio(vpn_big, lo_big),
    }
    result["loopback_download_mb_s"] = stats([args.mb / s for s in lo_big], digits=1)
    result["up_s"] = round(up, 3)
    emit(result)


if __name__ == "__main__":
    main()
