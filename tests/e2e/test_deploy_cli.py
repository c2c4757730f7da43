"""The deploy commands as a user runs them: up / status / logs / down / ls on a local network.

Each test drives the real CLI in a subprocess with its own GOLEM_DEPLOY_HOME. The supervisor
it starts runs the real engine against real yagna daemons on loopback.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import (
    MANIFESTS,
    REPO,
    Cli,
    ExternalNet,
    processes_mentioning,
    wait_until,
)

from golem_deploy.manifest import load_manifest
from golem_deploy.supervisor import journal

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(420)]

STATUS_KEYS = {"name", "state", "reason", "supervisor", "network", "budget", "services"}
INSTANCE_KEYS = {
    "index",
    "state",
    "ip",
    "provider_id",
    "provider_name",
    "agreement_id",
    "activity_id",
    "started_at",
    "restarts",
    "renewals",  # agreements renewed before they ended
    "cost",
    "last_output",
    "download",  # while the image downloads (else null)
}


def _manifest(file: str) -> tuple[Path, Any]:
    path = MANIFESTS / file
    return path, load_manifest(path)


def _instances(status: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(s["name"], i) for s in status["services"] for i in s["instances"]]


def _held(cli: Cli, name: str) -> journal.Held:
    return journal.load(cli.deployment_dir(name) / "journal.jsonl")


def _assert_released(cli: Cli, name: str) -> None:
    """The journal holds nothing and no process of this test's home is left."""
    held = _held(cli, name)
    assert held.empty, held.summary()
    leftovers = [p for p in processes_mentioning(str(cli.home)) if "external-net" not in p[1]]
    assert leftovers == [], leftovers


def _up_detached(cli: Cli, path: Path, name: str) -> dict[str, Any]:
    up = cli("up", "-d", str(path), "--timeout", "3m")
    assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
    assert f"deployment {name} is up" in up.stderr
    status = cli.status(name)
    assert status["state"] == "running"
    return status


@pytest.mark.parametrize("file", ["hello-world.yaml", "simple-service.yaml"])
def test_up_status_logs_down(cli: Cli, file: str) -> None:
    path, manifest = _manifest(file)
    name = manifest.name
    status = _up_detached(cli, path, name)

    assert set(status) == STATUS_KEYS
    assert status["name"] == name
    assert status["supervisor"]["alive"] is True
    assert status["network"]["kind"] == "local"
    assert status["network"]["api_url"].startswith("http://127.0.0.1:")
    assert (status["network"]["vpn"] is None) == (manifest.network is None)
    assert status["budget"]["total"] == str(manifest.budget)
    expected = [(svc, i) for svc, spec in manifest.services.items() for i in range(spec.instances)]
    assert [(svc, inst["index"]) for svc, inst in _instances(status)] == expected
    for _, inst in _instances(status):
        assert set(inst) == INSTANCE_KEYS
        assert inst["state"] == "running"
        assert inst["provider_name"].startswith("local-provider-")
        assert inst["agreement_id"] and inst["activity_id"] and inst["started_at"]

    again = cli("up", "-d", str(path))  # up again, unchanged: a change with nothing to do
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"deployment {name}: nothing to change" in again.stdout

    first = f"{expected[0][0]}.{expected[0][1]}"
    logs = wait_until(
        lambda: [
            line
            for line in cli.ok("logs", "-n", name).stdout.splitlines()
            if line.startswith(first) and "|" in line
        ],
        60,
        f"log lines of {first}",
    )
    assert any("running" in line for line in logs)  # its state change is in its log
    tail = cli.ok("logs", "-n", name, first, "--tail", "2").stdout.splitlines()
    assert len(tail) == 2 and all(line.startswith(first) for line in tail)

    follower = cli.popen("logs", "-n", name, "-f", stdout=subprocess.PIPE)
    try:
        down = cli("down", "-n", name)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "everything released" in down.stdout
        for step in ("stopping", "terminated", "invoice for agreement", "released"):
            assert step in down.stdout  # progress, as it happens
        assert "local network stopped" in down.stdout
        followed, _ = follower.communicate(timeout=30)  # -f ends once the supervisor is gone
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert f"{first} | [running -> stopping" in followed  # lines written while following
    after = cli.status(name)
    assert after["state"] == "stopped" and after["supervisor"]["alive"] is False
    assert {inst["state"] for _, inst in _instances(after)} == {"terminated"}
    _assert_released(cli, name)
    kinds = [r["kind"] for r in cli.journal(name)]
    for kind in ("AllocationReleased", "AgreementTerminated", "LocalnetStopped"):
        assert kind in kinds


def test_multi_service_starts_in_depends_on_order(cli: Cli) -> None:
    path, manifest = _manifest("multi-service.yaml")
    name = manifest.name
    assert any(spec.depends_on for spec in manifest.services.values()), "needs depends_on"
    _up_detached(cli, path, name)
    records = cli.journal(name)
    running_at: dict[tuple[str, int], float] = {}
    first_agreement: dict[str, float] = {}
    for rec in records:
        if rec["kind"] == "InstanceStateChanged" and rec["new"] == "running":
            running_at.setdefault((rec["service"], rec["index"]), rec["ts"])
        if rec["kind"] == "AgreementCreated":
            first_agreement.setdefault(rec["service"], rec["ts"])
    for service, spec in manifest.services.items():
        for dependency in spec.depends_on:
            dep_count = manifest.services[dependency].instances
            ready = max(running_at[(dependency, i)] for i in range(dep_count))
            assert first_agreement[service] > ready, f"{service} started before {dependency}"
    assert cli("down", "-n", name).returncode == 0
    _assert_released(cli, name)


def _read_pty(fd: int, seconds: float) -> bytes:
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                return out
            if not chunk:
                return out
            out += chunk
    return out


def test_attached_up_in_a_terminal_goes_down_on_ctrl_c(cli: Cli) -> None:
    path, manifest = _manifest("hello-world.yaml")
    name = manifest.name
    pid, fd = pty.fork()
    if pid == 0:  # the child: a user's terminal session running `golem-deploy up FILE`
        try:
            os.chdir(REPO)
            os.execve(
                sys.executable, [sys.executable, "-m", "golem_deploy", "up", str(path)], cli.env
            )
        finally:
            os._exit(127)
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        screen = b""

        def all_running() -> bool:
            nonlocal screen
            screen += _read_pty(fd, 0.5)
            if not (cli.deployment_dir(name) / "supervisor.pid").exists():
                return False
            result = cli("status", "-n", name, "--json")
            return result.returncode == 0 and json.loads(result.stdout)["state"] == "running"

        wait_until(all_running, 180, "the attached deployment to run")
        screen += _read_pty(fd, 1.5)  # a refresh of the live table after it runs
        text = screen.decode(errors="replace")
        assert name in text and "running" in text and "INSTANCE" in text
        os.write(fd, b"\x03")  # Ctrl-C, through the terminal, like a user
        rest = b""
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            chunk = _read_pty(fd, 1.0)
            rest += chunk
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                rest += _read_pty(fd, 0.5)
                break
        else:
            raise AssertionError("attached up did not finish after Ctrl-C")
        assert os.waitstatus_to_exitcode(code) == 0, rest.decode(errors="replace")
        assert b"everything released" in rest
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    assert cli.status(name)["state"] == "stopped"
    _assert_released(cli, name)


def test_supervisor_killed_during_start_then_down_releases_everything(cli: Cli) -> None:
    path, manifest = _manifest("simple-service.yaml")
    name = manifest.name
    up = cli.popen("up", "-d", str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        journal_path = cli.deployment_dir(name) / "journal.jsonl"
        wait_until(
            lambda: journal_path.exists() and '"AgreementCreated"' in journal_path.read_text(),
            120,
            "the first agreement",
        )
        os.kill(cli.supervisor_pid(name), signal.SIGKILL)
        _, err = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert up.returncode != 0
    assert name in err

    status = cli.status(name)
    assert status["supervisor"]["alive"] is False
    assert status["state"] == "gone"
    human = cli.ok("status", "-n", name).stdout
    assert "gone" in human and "still held" in human
    assert not _held(cli, name).empty

    down = cli("down", "-n", name)
    assert down.returncode == 0, down.stdout + down.stderr
    _assert_released(cli, name)
    assert cli("down", "-n", name).returncode == 0  # a second down is harmless


def test_supervisor_killed_while_running_then_down_terminates_agreements(
    cli: Cli, external_net: ExternalNet
) -> None:
    path, manifest = _manifest("simple-service.yaml")
    name = manifest.name
    status = _up_detached(cli, path, name)
    assert status["network"]["kind"] == "yagna"
    agreements = {inst["agreement_id"] for _, inst in _instances(status)}
    assert {external_net.agreement_state(a) for a in agreements} == {"Approved"}

    supervisor = cli.supervisor_pid(name)
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not cli.status(name)["supervisor"]["alive"], 10, "the supervisor gone")
    assert set(_held(cli, name).agreements) >= agreements

    down = cli("down", "-n", name)
    assert down.returncode == 0, down.stdout + down.stderr
    states = {a: external_net.agreement_state(a) for a in _held_ever(cli, name)}
    assert "Approved" not in states.values(), states
    assert all(states[a] == "Terminated" for a in agreements), states
    invoiced = {r["agreement_id"] for r in cli.journal(name) if r["kind"] == "InvoiceAccepted"}
    assert agreements <= invoiced  # the work done before the crash is paid for
    assert "invoice" in down.stdout and "accepted" in down.stdout
    _assert_released(cli, name)


def _held_ever(cli: Cli, name: str) -> set[str]:
    return {r["agreement_id"] for r in cli.journal(name) if r["kind"] == "AgreementCreated"}


def test_two_deployments_side_by_side(cli: Cli) -> None:
    first_path, first = _manifest("hello-world.yaml")
    second_path, second = _manifest("simple-service.yaml")
    assert first.name != second.name
    _up_detached(cli, first_path, first.name)
    _up_detached(cli, second_path, second.name)

    listed = json.loads(cli.ok("ls", "--json").stdout)
    assert {(d["name"], d["state"], d["alive"]) for d in listed} == {
        (first.name, "running", True),
        (second.name, "running", True),
    }
    ambiguous = cli("status", "--json")
    assert ambiguous.returncode == 1
    assert first.name in ambiguous.stderr and second.name in ambiguous.stderr
    a, b = cli.status(first.name), cli.status(second.name)
    assert a["network"]["api_url"] != b["network"]["api_url"]  # each has its own network

    assert cli("down", "-n", first.name).returncode == 0
    assert cli.status(second.name)["state"] == "running"  # untouched by the other's down
    assert cli("down", "-n", second.name).returncode == 0
    _assert_released(cli, first.name)
    _assert_released(cli, second.name)


def _imports(cli: Cli, *args: str) -> tuple[str, set[str]]:
    """stdout of `golem-deploy *args`, and the modules the process imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "golem_deploy", *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    return result.stdout, modules


def test_status_json_and_help_answer_without_the_full_cli(cli: Cli) -> None:
    """`status --json -n NAME` comes straight from the supervisor (GET /status), and a
    repeated `--help` from the kept rendering (cli/entry.py): same text as the full CLI's,
    without importing typer or rich."""
    path, manifest = _manifest("hello-world.yaml")
    _up_detached(cli, path, manifest.name)
    quick, modules = _imports(cli, "status", "-n", manifest.name, "--json")
    assert "typer" not in modules and "rich" not in modules
    full, modules = _imports(cli, "status", "-f", str(path), "--json")  # -f: the full CLI
    assert "typer" in modules
    a, b = json.loads(quick), json.loads(full)
    assert a.keys() == b.keys() and a["name"] == b["name"] == manifest.name
    assert a["state"] == b["state"] == "running"
    ids = ("index", "state", "provider_id", "agreement_id", "activity_id", "started_at")
    assert [[{k: i[k] for k in ids} for i in s["instances"]] for s in a["services"]] == [
        [{k: i[k] for k in ids} for i in s["instances"]] for s in b["services"]
    ]
    assert cli("down", "-n", manifest.name).returncode == 0

    first, modules = _imports(cli, "up", "--help")
    assert "typer" in modules and "Usage:" in first and "--detach" in first
    again, modules = _imports(cli, "up", "--help")
    assert again == first and "typer" not in modules
    cli.env["COLUMNS"] = "60"  # another terminal width is rendered afresh
    narrow, modules = _imports(cli, "up", "--help")
    assert "typer" in modules and narrow != first


def test_env_secrets_never_reach_files_status_or_logs(cli: Cli, tmp_path: Path) -> None:
    secret = "s3cr3t-Token-9f2c"
    manifest = tmp_path / "secretive.yaml"
    manifest.write_text(
        'version: "1"\n'
        "name: secretive\n"
        "budget: 1.0\n"
        "services:\n"
        "  app:\n"
        "    payload: {image_hash: d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376}\n"
        f"    env: {{API_TOKEN: {secret}}}\n"
        "    start:\n"
        '      - run: "echo token=$API_TOKEN"\n'
        "    run:\n"
        "      every: 2s\n"
        "      steps:\n"
        '        - run: ["/usr/bin/printenv", "API_TOKEN"]\n'
    )
    _up_detached(cli, manifest, "secretive")
    logs = wait_until(
        lambda: (out := cli.ok("logs", "-n", "secretive").stdout).count("app.0 | ***") >= 2 and out,
        60,
        "the printed token (redacted) in the logs",
    )
    assert "token=***" in logs
    shown = [
        cli.ok("status", "-n", "secretive", "--json").stdout,
        cli.ok("status", "-n", "secretive").stdout,
        logs,
    ]
    assert cli("down", "-n", "secretive").returncode == 0
    for text in shown:
        assert secret not in text
    written = [p for p in cli.deployment_dir("secretive").rglob("*") if p.is_file()]
    assert any(p.name == "journal.jsonl" for p in written)
    for path in written:  # journal, logs, supervisor.log, and the local network's files
        assert secret.encode() not in path.read_bytes(), path


def test_down_while_up_detached_is_still_starting(cli: Cli) -> None:
    path, manifest = _manifest("multi-service.yaml")
    name = manifest.name
    up = cli.popen("up", "-d", str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        journal_path = cli.deployment_dir(name) / "journal.jsonl"
        wait_until(
            lambda: journal_path.exists() and '"AgreementCreated"' in journal_path.read_text(),
            120,
            "the first agreement",
        )
        down = cli("down", "-n", name)
        _, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert down.returncode == 0, down.stdout + down.stderr
    assert up.returncode == 1
    assert "went down before every instance was running" in err
    assert "Traceback" not in err
    kinds = [r["kind"] for r in cli.journal(name)]
    assert "WaveRunning" not in kinds[kinds.index("DownRequested") :]  # no wave after down
    _assert_released(cli, name)


def test_attached_up_without_a_terminal_prints_plain_lines_and_stops_on_sigint(
    cli: Cli,
) -> None:
    path, manifest = _manifest("hello-world.yaml")
    name = manifest.name
    up = cli.popen("up", str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(
            lambda: (
                (cli.deployment_dir(name) / "supervisor.pid").exists()
                and cli.status(name)["state"] == "running"
            ),
            120,
            "the deployment to run",
        )
        time.sleep(1.0)  # one more refresh of the plain view after it runs
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert up.returncode == 0, out + err
    assert "\x1b[" not in out  # no terminal: no colours, no cursor movement
    assert f"deployment {name} state=running" in out
    assert "hello.0 running provider=local-provider-" in out
    assert "everything released" in out
    _assert_released(cli, name)


def test_supervisor_killed_during_down_the_same_down_finishes_the_job(cli: Cli) -> None:
    path, manifest = _manifest("simple-service.yaml")
    name = manifest.name
    _up_detached(cli, path, name)
    supervisor = cli.supervisor_pid(name)
    down = cli.popen("down", "-n", name, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        journal_path = cli.deployment_dir(name) / "journal.jsonl"
        wait_until(lambda: '"DownRequested"' in journal_path.read_text(), 30, "down to begin")
        os.kill(supervisor, signal.SIGKILL)
        out, err = down.communicate(timeout=120)
    finally:
        if down.poll() is None:
            down.kill()
            down.wait()
    assert down.returncode == 0, out + err
    assert "releasing what the journal says is still held" in out  # killed mid-way indeed
    assert "everything released" in out
    _assert_released(cli, name)


def test_a_lost_terminated_report_still_lets_down_release_everything(
    cli: Cli, tmp_path: Path
) -> None:
    # yagna's bus sometimes cancels an ExeUnit's Terminated report when many activities end
    # at once. The provider then reports it over REST, so the requestor's DELETE is answered
    # and `down` releases everything, instead of a 408 and an activity left unreleased.
    path, manifest = _manifest("hello-world.yaml")
    faults = tmp_path / "faults.yaml"
    faults.write_text("local-provider-1: {lose_terminated_report: true}\n")
    up = cli("up", "-d", str(path), "--providers", "1", "--faults", str(faults))
    assert up.returncode == 0, up.stdout + up.stderr
    down = cli("down", "-n", manifest.name)
    assert down.returncode == 0, down.stdout + down.stderr
    destroyed = [r for r in cli.journal(manifest.name) if r["kind"] == "ActivityDestroyed"]
    assert destroyed and not any(r["abandoned"] for r in destroyed)
    _assert_released(cli, manifest.name)


def test_providers_and_faults_reach_the_private_network(cli: Cli, tmp_path: Path) -> None:
    path, manifest = _manifest("multi-service.yaml")  # 4 instances, no price caps
    faults = tmp_path / "faults.yaml"
    faults.write_text("local-provider-1: {reject_agreements: true}\n")
    up = cli("up", "-d", str(path), "--providers", "2", "--faults", str(faults))
    assert up.returncode == 0, up.stdout + up.stderr
    status = cli.status(manifest.name)
    providers = {inst["provider_name"] for _, inst in _instances(status)}
    assert providers == {"local-provider-2"}  # 1 refuses every agreement; there is no 3
    assert cli("down", "-n", manifest.name).returncode == 0
    _assert_released(cli, manifest.name)
