"""What a user sees when they get something wrong: one clear message, no traceback, exit 1.

These run the CLI as a subprocess but start no network: they fail before anything starts.
"""

from __future__ import annotations

import json
from pathlib import Path

from _cli_helpers import Cli, processes_mentioning, wait_until

from golem_deploy.supervisor.journal import Journal


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text


def test_up_with_an_invalid_manifest_reports_like_validate_and_starts_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1"\nname: bad\nservices:\n  web:\n    instances: 2\n')
    up = cli("up", "-d", str(bad))
    validate = cli("validate", str(bad))
    assert up.returncode == 1
    _no_traceback(up.stderr)
    errors = [line for line in validate.stdout.splitlines() if ": error: " in line]
    assert errors, validate.stdout
    for line in errors:
        assert line in up.stderr  # the same file:line:column lines `validate` prints
    assert f"{bad}:" in up.stderr
    assert not (cli.home / "deployments" / "bad").exists()  # nothing was started
    # ... and nothing is left running: the supervisor `up` forks before it has read the
    # manifest (supervisor/prefork.py) ends when `up` does not need it.
    home = str(cli.home)
    wait_until(lambda: not processes_mentioning(home), 10, "no process of the failed up")


def test_bad_timeout_and_missing_file_are_clear(cli: Cli, tmp_path: Path) -> None:
    missing = cli("up", "-d", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    _no_traceback(missing.stderr)
    manifest = Path(__file__).resolve().parents[2] / "manifests" / "hello-world.yaml"
    bad_timeout = cli("up", "-d", str(manifest), "--timeout", "soon")
    assert bad_timeout.returncode == 1
    assert "--timeout" in bad_timeout.stderr and "not a duration" in bad_timeout.stderr


def test_an_error_keeps_a_long_path_whole_and_prints_brackets_as_they_are(
    cli: Cli, tmp_path: Path
) -> None:
    narrow = Cli(cli.home, {**cli.env, "COLUMNS": "40"})
    path = tmp_path / ("a-rather-long-folder-name-" * 3) / "[draft] manifest.yaml"
    missing = narrow("up", "-d", str(path))
    assert missing.returncode == 1
    first = missing.stderr.splitlines()[0]
    assert first == f"error: {path}: no such file", missing.stderr  # one line, copyable


def test_no_deployment_yet(cli: Cli) -> None:
    for args in (["status"], ["down"], ["logs"]):
        result = cli(*args)
        assert result.returncode == 1, args
        assert "there is no deployment" in result.stderr
        _no_traceback(result.stderr)
    assert cli.ok("ls", "--json").stdout.strip() == "[]"


def _fake_stopped_deployment(cli: Cli, name: str) -> None:
    folder = cli.home / "deployments" / name
    folder.mkdir(parents=True)
    with Journal(folder / "journal.jsonl") as journal:
        journal.append("DeploymentStarted", name=name, network_kind="local", budget="1", pid=1)
        journal.append("DeploymentStopped", clean=True)


def test_name_is_needed_when_several_deployments_exist(cli: Cli) -> None:
    _fake_stopped_deployment(cli, "alpha")
    _fake_stopped_deployment(cli, "beta")
    ambiguous = cli("status")
    assert ambiguous.returncode == 1
    assert "alpha" in ambiguous.stderr and "beta" in ambiguous.stderr
    assert "-n NAME" in ambiguous.stderr
    unknown = cli("status", "-n", "gamma")
    assert unknown.returncode == 1 and "no deployment named 'gamma'" in unknown.stderr
    one = json.loads(cli.ok("status", "-n", "alpha", "--json").stdout)
    assert one["state"] == "stopped" and one["supervisor"] == {"pid": 1, "alive": False}
    assert cli("down", "-n", "beta").returncode == 0  # nothing held: already down


def test_the_one_deployment_still_up_is_meant_when_no_name_is_given(cli: Cli) -> None:
    _fake_stopped_deployment(cli, "old")
    folder = cli.home / "deployments" / "crashed"
    folder.mkdir(parents=True)
    with Journal(folder / "journal.jsonl") as journal:
        journal.append("DeploymentStarted", name="crashed", network_kind="local", pid=1)
        journal.append("AllocationCreated", allocation_id="a-1", amount="1")
    status = json.loads(cli.ok("status", "--json").stdout)
    assert status["name"] == "crashed" and status["state"] == "gone"


def test_up_refuses_while_a_crashed_run_still_holds_something(cli: Cli) -> None:
    manifest = Path(__file__).resolve().parents[2] / "manifests" / "hello-world.yaml"
    folder = cli.home / "deployments" / "hello-world"
    folder.mkdir(parents=True)
    with Journal(folder / "journal.jsonl") as journal:
        journal.append("DeploymentStarted", name="hello-world", network_kind="local", pid=1)
        journal.append("AgreementCreated", agreement_id="f" * 64, service="hello", index=0)
    up = cli("up", "-d", str(manifest))
    assert up.returncode == 1
    assert "ended without releasing everything" in up.stderr
    assert "golem-deploy down -n hello-world" in up.stderr
    _no_traceback(up.stderr)
    assert not (folder / "supervisor.pid").exists()  # no second supervisor was started


def test_a_forwarded_port_in_use_is_one_error_before_anything_starts(
    cli: Cli, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        manifest = tmp_path / "web.yaml"
        manifest.write_text(
            'version: "1"\nname: busy-port\nbudget: 1\nservices:\n  web:\n'
            "    payload: {image_hash: d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376}\n"
            f'    ports: ["{busy}:8000"]\n'
        )
        up = cli("up", "-d", str(manifest))
    assert up.returncode == 1
    _no_traceback(up.stderr)
    assert f"service web: cannot forward 127.0.0.1:{busy} -> 8000" in up.stderr
    assert "pick another local port" in up.stderr
    assert not (cli.home / "deployments" / "busy-port").exists()  # nothing was started
