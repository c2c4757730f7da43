"""`golem-deploy validate` and `config` as a user runs them: a subprocess, exit codes, formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(str(p) for p in (REPO / "manifests").glob("*.yaml"))
HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
BAD = """\
budget: 1
services:
  web:
    payload: {image_hash: nothex}
    instancs: 2
"""
EXPENSIVE = f"""\
budget: 0.01
market: {{max_price: {{env_per_hour: 1}}}}
services:
  web: {{payload: {{image_hash: {HASH}}}, expiration: 1h}}
"""


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GOLEM_DEPLOY_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "golem_deploy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


def test_examples_are_valid() -> None:
    result = cli("validate", *EXAMPLES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(EXAMPLES)} of {len(EXAMPLES)} manifests valid" in result.stdout


def test_invalid_file_lists_every_problem_with_position_and_hint(bad: Path, tmp_path: Path) -> None:
    result = cli("validate", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bad.yaml:4:27: error: services.web.payload.image_hash: 'nothex'")
    assert "bad.yaml:5:5: error: services.web: unknown key 'instancs'" in lines
    assert "  hint: did you mean 'instances'?" in lines
    assert "Traceback" not in result.stderr


def test_all_files_are_checked_and_one_bad_file_fails_the_run(bad: Path) -> None:
    result = cli("validate", EXAMPLES[0], str(bad))
    assert result.returncode == 1
    assert f"{EXAMPLES[0]}: valid" in result.stdout
    assert f"{bad}:4:27: error:" in result.stdout
    assert "1 of 2 manifests valid" in result.stdout


def test_json_format(bad: Path) -> None:
    result = cli("validate", "--format", "json", str(bad), EXAMPLES[0])
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    first, second = report["files"]
    assert first["valid"] is False and first["errors"] == 2 and second["valid"] is True
    assert first["diagnostics"][1] == {
        "path": str(bad),
        "line": 5,
        "column": 5,
        "severity": "error",
        "message": "services.web: unknown key 'instancs'",
        "hint": "did you mean 'instances'?",
    }


def test_github_annotations(bad: Path) -> None:
    result = cli("validate", "--format", "github", str(bad))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[1] == (
        f"::error file={bad},line=5,col=5::services.web: unknown key 'instancs'"
        " (hint: did you mean 'instances'?)"
    )


def test_warnings_fail_only_with_strict(tmp_path: Path) -> None:
    path = tmp_path / "expensive.yaml"
    path.write_text(EXPENSIVE)
    relaxed = cli("validate", str(path))
    assert relaxed.returncode == 0
    assert f"{path}:1:9: warning: budget 0.01 GLM may not cover" in relaxed.stdout
    strict = cli("validate", "--strict", str(path))
    assert strict.returncode == 1
    github = cli("validate", "--format", "github", str(path))
    assert github.stdout.startswith(f"::warning file={path},line=1,col=9::")


@pytest.mark.parametrize(
    "args",
    [
        ["validate"],
        ["validate", "--format", "xml", "m.yaml"],
        ["validate", "--env-file", "/no/such/file", "m.yaml"],
        ["config"],
        ["config", "--format", "toml", "m.yaml"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_unreadable_inputs_are_clean_errors(tmp_path: Path) -> None:
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- 1\n")
    files = ["missing.yaml", ".", "binary.yaml", "empty.yaml", "list.yaml"]
    result = cli("validate", *files, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "missing.yaml: error: no such file" in result.stdout
    assert ".: error: is a directory" in result.stdout
    assert "binary.yaml: error:" in result.stdout
    assert "empty.yaml: error: file is empty" in result.stdout
    assert "list.yaml:1:1: error: a manifest is a mapping" in result.stdout


def test_env_file_option(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "budget: ${BUDGET}\nservices:\n  a:\n    payload:\n      image_hash: ${IMAGE}\n"
    )
    env = tmp_path / "ci.env"
    env.write_text(f"BUDGET=3\nIMAGE={HASH}\n")
    assert cli("validate", str(path)).returncode == 1
    assert cli("validate", "--env-file", str(env), str(path)).returncode == 0
    resolved = cli("config", "--format", "json", "--env-file", str(env), str(path))
    assert resolved.returncode == 0
    data = json.loads(resolved.stdout)
    assert data["budget"] == 3 and data["services"]["a"]["payload"]["image_hash"] == HASH


def test_config_prints_the_resolved_manifest() -> None:
    hello = next(e for e in EXAMPLES if e.endswith("hello-world.yaml"))
    as_json = cli("config", "--format", "json", hello)
    assert as_json.returncode == 0
    data = json.loads(as_json.stdout)
    service = data["services"]["hello"]
    assert service["instances"] == 1 and service["expiration"] == "30m"
    assert service["restart"] == {"policy": "never", "max_restarts": 3, "backoff": "5s"}
    assert service["run"] == {"every": "5s", "steps": [{"run": ["/bin/date"]}]}
    assert data["payment"] == {"driver": "erc20", "network": "holesky"}
    as_yaml = cli("config", hello)
    assert as_yaml.returncode == 0
    assert "expiration: 30m\n" in as_yaml.stdout and "name: hello-world\n" in as_yaml.stdout


def test_config_of_an_invalid_manifest_fails_with_the_problems(bad: Path) -> None:
    result = cli("config", str(bad))
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{bad}:4:27: error:" in result.stderr


NETWORKED = f"""\
budget: 1
services:
  web:
    payload: {{image_hash: {HASH}}}
    ports: ["8080:8000", 9000]
    healthcheck: {{http: {{port: 8000, path: /health}}}}
"""


def test_config_prints_the_resolved_network(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(NETWORKED)
    result = cli("config", "--format", "json", str(path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["network"] == {"cidr": "192.168.0.0/24"}  # implied by the forwarded ports
    web = data["services"]["web"]
    assert web["ports"] == ["127.0.0.1:8080:8000", "127.0.0.1::9000"]
    assert web["payload"]["capabilities"] == ["vpn"]
    assert web["healthcheck"]["http"] == {"port": 8000, "path": "/health"}
    assert "run" not in web["healthcheck"]
    hello = next(e for e in EXAMPLES if e.endswith("hello-world.yaml"))
    assert json.loads(cli("config", "--format", "json", hello).stdout)["network"] is False


def test_a_bad_port_is_a_positioned_error(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(NETWORKED.replace('"8080:8000"', '"8080:8000/udp"'))
    result = cli("validate", "web.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[:2] == [
        "web.yaml:5:13: error: services.web.ports[0]: '8080:8000/udp': only TCP ports can be "
        "forwarded, not 'udp'",
        "  hint: remove '/udp'; forwarding carries TCP connections over the VPN",
    ]
    assert "Traceback" not in result.stderr
