"""Bad input and security: fuzzed manifests through the CLI, private state, no leaked
secrets, argv passed verbatim, transfers that cannot escape.

The fuzz cases run the real `golem-deploy validate` / `config` entry point in-process (a
subprocess per case would make 100s of cases take minutes); RELIABILITY_FUZZ_EXAMPLES sets
how many (bench/reliability.py raises it). A case passes when the CLI ends with exit code
0 or 1 and prints no traceback; anything else is counted in the report as a traceback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import REPO, Cli, wait_until
from _harness import REPORT_ENV, Scenario, service
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "60"))


def _property_module() -> Any:
    """The manifest engineer's strategies (mutated real manifests), imported, not copied."""
    path = REPO / "tests" / "unit" / "test_manifest_property.py"
    spec = importlib.util.spec_from_file_location("_manifest_property", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_prop = _property_module()


def _run_cli(args: list[str]) -> tuple[int, str]:
    """`golem-deploy ARGS` in-process: (exit code, stdout+stderr). An exception that is not
    a clean exit is re-raised: it would have been a traceback for the user."""
    from golem_deploy.cli.app import main

    out = io.StringIO()
    argv = sys.argv
    sys.argv = ["golem-deploy", *args]
    code: Any = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            main()
    except SystemExit as done:
        code = done.code
    finally:
        sys.argv = argv
    return (code if isinstance(code, int) else (0 if code is None else 1)), out.getvalue()


def _record_fuzz(tracebacks: int) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as report:
            report.write(json.dumps({"fuzz_cases": 1, "fuzz_tracebacks": tracebacks}) + "\n")


def _fuzz_case(tmp_path: Path, text: str) -> None:
    manifest = tmp_path / "fuzzed.yaml"
    manifest.write_text(text, encoding="utf-8")
    for args in (["validate", str(manifest)], ["config", str(manifest), "--format", "json"]):
        try:
            code, output = _run_cli(args)
        except Exception:
            _record_fuzz(1)
            raise
        clean = code in (0, 1) and "Traceback" not in output
        _record_fuzz(0 if clean else 1)
        assert clean, (args, code, output[-2000:])
        if code == 1 and args[0] == "validate":
            assert ": error: " in output, output  # file:line:column: error: what


_FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FUZZ
@given(text=_prop.mutated_manifests())
def test_fuzzed_manifests_through_validate_and_config(tmp_path: Path, text: str) -> None:
    _fuzz_case(tmp_path, text)


@_FUZZ
@given(text=st.text(max_size=400))
def test_random_text_through_validate_and_config(tmp_path: Path, text: str) -> None:
    _fuzz_case(tmp_path, text)


def test_hostile_files_are_refused_quickly(tmp_path: Path) -> None:
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        prev = chr(ord("a") + level - 1)
        name = chr(ord("a") + level)
        laughs.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    cases = {
        "billion-laughs.yaml": "\n".join(laughs) + "\n",
        "huge.yaml": "x: " + "y" * (2 * 1024 * 1024) + "\n",
        "deep.yaml": "a: " + "[" * 500 + "]" * 500 + "\n",
        "binary.yaml": "\x00\x01\x02 not yaml",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        code, output = _run_cli(["validate", str(path)])
        assert code == 1, (name, output)
        assert "Traceback" not in output and str(path) in output, (name, output)


def test_transfer_paths_cannot_leave_the_manifest_folder(tmp_path: Path) -> None:
    (tmp_path / "inside.txt").write_text("ok")
    for step in (
        {"upload": {"src": "../outside.txt", "dst": "/golem/work/x"}},
        {"upload": {"src": "/etc/passwd", "dst": "/golem/work/x"}},
        {"download": {"src": "/golem/output/x", "dst": "../../stolen.txt"}},
        {"download": {"src": "/golem/output/x", "dst": "/tmp/overwritten.txt"}},
    ):
        manifest = tmp_path / "escape.yaml"
        manifest.write_text(
            json.dumps(
                {
                    "version": "1",
                    "name": "escape",
                    "budget": 1,
                    "services": {"app": {"payload": {"image_hash": "a" * 56}, "start": [step]}},
                }
            )
        )
        code, output = _run_cli(["validate", str(manifest)])
        assert code == 1, (step, output)
        assert "outside the manifest's folder" in output or "absolute" in output, output
        assert f"{manifest}:" in output  # file:line:column


# ---- on the local network -----------------------------------------------------------------


SECRET = "Zq9-secret-Value-71"
HOSTILE_ARGS = ["a;b", "$(id)", "`id`", 'it\'s "quoted"', "line1\nline2", "*", "&& echo pwned"]


@pytest.mark.localnet
@pytest.mark.timeout(300)
def test_private_state_verbatim_argv_and_no_leaked_secrets(cli: Cli, tmp_path: Path) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "guarded",
        {
            "app": service(
                env={"API_TOKEN": SECRET},
                start=[["/usr/bin/printf", "<%s>\\n", *HOSTILE_ARGS]],
                run={"every": "2s", "steps": [["/usr/bin/printenv", "API_TOKEN"]]},
            )
        },
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    folder = scenario.folder
    app_key = json.loads((folder / "localnet" / "ready.json").read_text())["app_key"]
    assert len(app_key) >= 16

    # Private state: the folder 0700, its files and the control socket 0600.
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    sock = next(folder.glob("control.sock"), None) or _socket_of(folder)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    for path in (folder / "journal.jsonl", folder / "supervisor.log"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    if os.geteuid() == 0:
        _assert_other_user_refused(sock)

    # argv reaches the process unchanged: no shell, no splitting, no expansion.
    logs = wait_until(
        lambda: (out := cli.ok("logs", "-n", "guarded").stdout).count("app.0 | ***") >= 1 and out,
        60,
        "the start output and a printed (redacted) secret in the logs",
    )
    expected = "".join(f"<{arg}>\n" for arg in HOSTILE_ARGS)
    printed = "\n".join(
        line.split(" | ", 1)[1]
        for line in logs.splitlines()
        if line.startswith("app.0 | <") or line.startswith("app.0 | line2")
    )
    assert printed + "\n" == expected, printed

    shown = [
        up.stdout + up.stderr,
        cli.ok("status", "-n", "guarded", "--json").stdout,
        cli.ok("status", "-n", "guarded").stdout,
        logs,
    ]
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    shown += [down.stdout + down.stderr, cli.ok("logs", "-n", "guarded").stdout]
    for text in shown:
        assert SECRET not in text and app_key not in text
    # Every file the run wrote, except the key's own stores (the network's keys.json and
    # ready.json, 0600) and the yagna daemons' databases.
    for path in folder.rglob("*"):
        if not path.is_file() or path.name in ("keys.json", "ready.json"):
            continue
        if "yagna" in path.relative_to(folder).parts[:2]:
            continue
        data = path.read_bytes()
        assert SECRET.encode() not in data, path
        assert app_key.encode() not in data, path
    scenario.audit()


def _socket_of(folder: Path) -> Path:
    from golem_deploy.supervisor.deployments import DeploymentDir

    return DeploymentDir(folder.name, folder).socket


def _assert_other_user_refused(sock: Path) -> None:
    """Another user (nobody) cannot connect to the control socket. The venv's python may
    not be readable by nobody, so the probe runs with the system's python."""
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        pytest.skip("no system python3 to run a probe as another user")
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(sock)!r})\n"
        "except PermissionError:\n"
        "    sys.exit(7)\n"
        "sys.exit(0)\n"
    )
    result = subprocess.run(
        [system_python, "-c", probe], user=65534, capture_output=True, timeout=30, cwd="/"
    )
    assert result.returncode == 7, (result.returncode, result.stderr)
