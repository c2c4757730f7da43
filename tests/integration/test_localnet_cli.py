"""`golem-deploy localnet start|status|stop` as a user runs them (the CLI as a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest
from _localnet_requestor import Requestor, with_requestor

from golem_deploy.localnet import LocalNetInfo

pytestmark = pytest.mark.localnet

KEYS = {
    "YAGNA_API_URL",
    "YAGNA_APPKEY",
    "YAGNA_SUBNET",
    "YAGNA_PAYMENT_DRIVER",
    "YAGNA_PAYMENT_NETWORK",
}


def running(pid: int) -> bool:
    """Alive and not a zombie (orphans are reaped by init, whenever it gets to it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "golem_deploy", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=os.environ.copy(),
    )


def run_requestor(info: LocalNetInfo, body: Callable[[Requestor], Awaitable[None]]) -> None:
    async def main() -> None:
        session, requestor = await with_requestor(info)
        async with session:
            await body(requestor)

    anyio.run(main)


@pytest.fixture
def state_dir(_localnet_template: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gd-localnet-cli-"))
    shutil.copytree(_localnet_template / "yagna", path / "yagna")
    shutil.copy2(_localnet_template / "keys.json", path / "keys.json")
    try:
        yield path
    finally:
        cli("localnet", "stop", "--state-dir", str(path))
        shutil.rmtree(path, ignore_errors=True)


def test_start_prints_eval_able_exports_then_status_and_stop(state_dir: Path) -> None:
    started = cli("localnet", "start", "--providers", "2", "--state-dir", str(state_dir))
    assert started.returncode == 0, started.stderr
    # The exports are exactly what a shell `eval` turns into the requestor's environment.
    shell = subprocess.run(
        ["sh", "-c", started.stdout + '\nenv | grep "^YAGNA_"; echo "gftp=$(command -v gftp)"'],
        capture_output=True,
        text=True,
        check=True,
    )
    exported = dict(line.split("=", 1) for line in shell.stdout.splitlines())
    # yapapi starts `gftp server` for every Golem: the network's own gftp comes first on PATH.
    assert exported.pop("gftp") == str(state_dir / "bin" / "gftp")
    assert set(exported) == KEYS
    assert exported["YAGNA_SUBNET"] == "local-dev"
    assert "golem-deploy localnet stop" in started.stderr

    again = cli("localnet", "start", "--json", "--state-dir", str(state_dir))
    as_json = json.loads(again.stdout)  # the running network, not a new one
    assert as_json.pop("PATH").startswith(f"{state_dir / 'bin'}:")
    assert as_json == exported
    assert "already running and is reused" in again.stderr  # asked for 3, it has 2

    status = cli("localnet", "status", "--json", "--state-dir", str(state_dir))
    report = json.loads(status.stdout)
    assert status.returncode == 0 and report["running"] is True
    assert [p["name"] for p in report["providers"]] == ["local-provider-1", "local-provider-2"]

    stopped = cli("localnet", "stop", "--state-dir", str(state_dir))
    assert stopped.returncode == 0
    after = cli("localnet", "status", "--state-dir", str(state_dir))
    assert after.returncode == 1 and "no local network running" in after.stdout


def test_a_bad_faults_file_is_one_clear_error(state_dir: Path) -> None:
    faults = state_dir / "faults.yaml"
    faults.write_text("local-provider-1:\n  die_after: later\n")
    result = cli("localnet", "start", "--faults", str(faults), "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert f"{faults}:2:3: local-provider-1.die_after" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (state_dir / "pids" / "host.json").exists()  # nothing was started

    faults.write_text("local-provider-5: {never_invoice: true}\n")
    result = cli("localnet", "start", "--faults", str(faults), "--state-dir", str(state_dir))
    assert result.returncode == 1 and "only 3 providers" in result.stderr


def test_status_and_stop_after_the_network_crashed(state_dir: Path) -> None:
    assert (
        cli("localnet", "start", "--providers", "1", "--state-dir", str(state_dir)).returncode == 0
    )
    pids = {f.stem: json.loads(f.read_text())["pid"] for f in (state_dir / "pids").glob("*.json")}
    os.kill(pids["host"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while running(pids["host"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    status = cli("localnet", "status", "--state-dir", str(state_dir))
    assert status.returncode == 1
    assert "did not stop cleanly" in status.stderr
    assert cli("localnet", "stop", "--state-dir", str(state_dir)).returncode == 0
    assert not any(running(pid) for pid in pids.values())


def test_unsafe_host_exec_runs_activities_on_the_host_and_says_so(
    state_dir: Path, tmp_path: Path
) -> None:
    started = cli(
        "localnet", "start", "--providers", "1", "--json", "--unsafe-host-exec",
        "--state-dir", str(state_dir),
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "UNSEALED" in started.stderr
    # The running network keeps its mode: asking again for it is refused, not ignored.
    again = cli("localnet", "start", "--unsafe-host-exec", "--state-dir", str(state_dir))
    assert again.returncode == 2 and "localnet stop" in again.stderr, again.stderr

    from golem_deploy import localnet

    info = localnet.status(state_dir)
    assert info is not None
    marker = tmp_path / "ON-THE-HOST"

    async def body(req: Requestor) -> None:
        agreement_id = await req.one_agreement()
        activity_id = await req.create_activity(agreement_id)
        command = {"entry_point": "/bin/sh", "args": ["-c", f"id -u > {marker}"]}
        batch = await req.exec(activity_id, [{"deploy": {}}, {"start": {}}, {"run": command}])
        results = await req.results(activity_id, batch)
        assert [r["result"] for r in results] == ["Ok", "Ok", "Ok"], results
        await req.destroy_activity(activity_id)
        await req.terminate(agreement_id)

    run_requestor(info, body)
    assert marker.read_text().strip() == str(os.geteuid())
