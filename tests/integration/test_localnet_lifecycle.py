"""Starting and stopping the local network leaves nothing behind, also after a crash."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from _localnet_requestor import with_requestor

from golem_deploy import localnet as ln

pytestmark = pytest.mark.localnet


@pytest.fixture
def state_dir(_localnet_template: Path) -> Iterator[Path]:
    """A warm state dir (copy of the session template) that the test starts itself."""
    path = Path(tempfile.mkdtemp(prefix="gd-localnet-life-"))
    shutil.copytree(_localnet_template / "yagna", path / "yagna")
    shutil.copy2(_localnet_template / "keys.json", path / "keys.json")
    try:
        yield path
    finally:
        ln.stop(path)
        shutil.rmtree(path, ignore_errors=True)


def recorded_pids(state_dir: Path) -> dict[str, int]:
    """name -> pid of every process the pid files record (host, requestor, provider)."""
    return {f.stem: json.loads(f.read_text())["pid"] for f in (state_dir / "pids").glob("*.json")}


def alive(pid: int) -> bool:
    """Running (not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def start_long_command(info: ln.LocalNetInfo, marker: str) -> None:
    """Run `sleep` (tagged with `marker`) in an activity and leave it running."""

    async def main() -> None:
        session, req = await with_requestor(info)
        try:
            agreement_id = await req.one_agreement()
            activity_id = await req.create_activity(agreement_id)
            await req.results(
                activity_id,
                await req.exec(activity_id, [{"deploy": {}}, {"start": {"args": []}}]),
            )
            await req.exec(
                activity_id,
                [{"run": {"entry_point": "/bin/sh", "args": ["-c", f"sleep 600; : {marker}"]}}],
            )
            with anyio.fail_after(10):
                while not processes_with(marker):
                    await anyio.sleep(0.1)
        finally:
            await session.close()

    anyio.run(main)


def test_start_is_idempotent_and_stop_ends_every_process(state_dir: Path) -> None:
    info = ln.start(state_dir, providers=2)
    assert [name for name, _ in info.providers] == ["local-provider-1", "local-provider-2"]
    assert set(info.env()) == {
        "YAGNA_API_URL",
        "YAGNA_APPKEY",
        "YAGNA_SUBNET",
        "YAGNA_PAYMENT_DRIVER",
        "YAGNA_PAYMENT_NETWORK",
    }
    assert ln.status(state_dir) == info
    assert ln.start(state_dir, providers=2) == info  # already running: same network
    pids = recorded_pids(state_dir)
    assert set(pids) == {"host", "requestor", "provider"}
    assert all(alive(pid) for pid in pids.values())
    marker = f"gd-life-{uuid.uuid4().hex}"
    start_long_command(info, marker)

    ln.stop(state_dir)
    assert ln.status(state_dir) is None
    assert not any(alive(pid) for pid in pids.values())
    assert processes_with(marker) == []  # the activity's process ended too
    assert recorded_pids(state_dir) == {}
    ln.stop(state_dir)  # idempotent


def test_stop_after_the_host_was_killed_ends_the_orphaned_daemons(state_dir: Path) -> None:
    info = ln.start(state_dir, providers=1)
    pids = recorded_pids(state_dir)
    marker = f"gd-orphan-{uuid.uuid4().hex}"
    start_long_command(info, marker)

    os.kill(pids["host"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while ln.status(state_dir) is not None:  # also reaps our child
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert alive(pids["requestor"]) and alive(pids["provider"])  # orphans, for now

    ln.stop(state_dir)
    assert not alive(pids["requestor"]) and not alive(pids["provider"])
    assert processes_with(marker) == []
    journal = (state_dir / "journal.jsonl").read_text()
    assert "orphan-stopping" in journal


def test_a_new_start_after_a_crash_cleans_up_and_works(state_dir: Path) -> None:
    first = ln.start(state_dir, providers=1)
    pids = recorded_pids(state_dir)
    os.kill(pids["host"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while ln.status(state_dir) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    info = ln.start(state_dir, providers=1)
    assert not alive(pids["requestor"]) and not alive(pids["provider"])
    new = recorded_pids(state_dir)
    assert new["host"] != pids["host"] and all(alive(pid) for pid in new.values())
    # Started again on its state, it keeps its address: a supervisor healing its network
    # relies on that, its engine carries on at the URL it knew.
    assert info.api_url == first.api_url and info.app_key == first.app_key

    async def me() -> str:
        session, req = await with_requestor(info)
        await session.close()
        return req.node_id

    assert anyio.run(me).startswith("0x")


def test_a_new_state_dir_reuses_the_provider_identities_template(
    _localnet_template: Path,
) -> None:
    """The session template's cold start saved a template provider data dir; a brand-new
    network starts from it instead of creating identities and restarting its daemon."""
    fresh = Path(tempfile.mkdtemp(prefix="gd-localnet-fresh-"))
    try:
        info = ln.start(fresh, providers=2)
        events = [
            json.loads(line)["event"] for line in (fresh / "journal.jsonl").read_text().splitlines()
        ]
        assert "seeded-from-template" in events
        assert "identities-created" not in events
        assert [name for name, _ in info.providers] == ["local-provider-1", "local-provider-2"]
    finally:
        ln.stop(fresh)
        shutil.rmtree(fresh, ignore_errors=True)


def test_the_host_stops_cleanly_when_the_process_it_serves_is_gone(state_dir: Path) -> None:
    """`--exit-with-pid P`: an embedding process can tie the network's life to its own."""
    owner = subprocess.Popen(["sleep", "600"])
    host = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "golem_deploy.localnet.host",
            f"--state-dir={state_dir}",
            "--providers",
            "1",
            "--exit-with-pid",
            str(owner.pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while ln.status(state_dir) is None:
            assert host.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        pids = recorded_pids(state_dir)
        owner.kill()
        owner.wait()
        assert host.wait(timeout=20) == 0
        assert not any(alive(pid) for pid in pids.values())
        assert recorded_pids(state_dir) == {}
    finally:
        owner.kill()
        owner.wait()
        if host.poll() is None:
            host.terminate()
            host.wait(10)


def test_a_start_that_fails_leaves_no_process_behind(state_dir: Path) -> None:
    # A broken state dir: the provider daemon's data dir is a file, so the host fails
    # after it already launched the requestor daemon.
    shutil.rmtree(state_dir / "yagna" / "provider")
    (state_dir / "yagna" / "provider").write_text("not a directory")
    with pytest.raises(ln.LocalnetError) as failure:
        ln.start(state_dir, providers=1)
    assert "failed to start" in failure.value.message
    assert "cannot use" in str(failure.value) and "Traceback" not in str(failure.value)
    started = [
        json.loads(line)["pid"]
        for line in (state_dir / "journal.jsonl").read_text().splitlines()
        if json.loads(line)["event"] in ("host-started", "node-started")
    ]
    assert len(started) == 2  # the host and the requestor daemon were running ...
    assert not any(alive(pid) for pid in started)  # ... and both are gone
    assert recorded_pids(state_dir) == {}
    assert ln.status(state_dir) is None
