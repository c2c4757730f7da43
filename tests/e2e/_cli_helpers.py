"""Helpers for the end-to-end tests: run the CLI as a subprocess, find our processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = Path(os.environ.get("GOLEM_DEPLOY_E2E_MANIFESTS") or REPO / "manifests")
CLI_TIMEOUT = 240.0


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a real condition until it holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose command line or environment names
    `text` -- the test's home folder ties every process of a deployment to its test."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if "\nState:\tZ" in status:
            continue  # a zombie is already dead; only its parent's wait() is missing
        if needle in cmdline or needle in environ:
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


@dataclass
class Cli:
    """Runs `python -m golem_deploy ...` with this test's home and extra environment."""

    home: Path
    env: dict[str, str]

    def __call__(
        self, *args: str, timeout: float = CLI_TIMEOUT, check: bool | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "golem_deploy", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )
        if check is True:
            assert result.returncode == 0, _explain(args, result)
        return result

    def ok(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return self(*args, timeout=timeout, check=True)

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "golem_deploy", *args],
            env=self.env,
            text=True,
            cwd=REPO,
            **kwargs,
        )

    def status(self, name: str) -> dict[str, Any]:
        result = self.ok("status", "-n", name, "--json")
        data = json.loads(result.stdout)
        assert isinstance(data, dict)
        return data

    def deployment_dir(self, name: str) -> Path:
        return self.home / "deployments" / name

    def journal(self, name: str) -> list[dict[str, Any]]:
        path = self.deployment_dir(name) / "journal.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def supervisor_pid(self, name: str) -> int:
        return int((self.deployment_dir(name) / "supervisor.pid").read_text())


def _explain(args: tuple[str, ...], result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"`golem-deploy {' '.join(args)}` exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def _environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("YAGNA_") and k not in ("GOLEM_DEPLOY_DEBUG",)
    }
    env["GOLEM_DEPLOY_HOME"] = str(home)
    env["XDG_CACHE_HOME"] = str(home / "cache")  # the rendered --help (cli/entry.py)
    env["COLUMNS"] = "100"
    env.update(extra or {})
    return env


def _cleanup(home: Path, env: dict[str, str], *, kill_leftovers: bool = True) -> None:
    """End everything the test started under `home`, whatever state it was left in."""
    from golem_deploy import localnet

    root = home / "deployments"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        subprocess.run(
            [sys.executable, "-m", "golem_deploy", "down", "-n", folder.name, "--force"],
            env=env,
            capture_output=True,
            timeout=120,
            cwd=REPO,
        )
        if (folder / "localnet").is_dir():
            localnet.stop(folder / "localnet")
    if not kill_leftovers:
        return
    for pid, _ in processes_mentioning(str(home)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cli() -> Iterator[Cli]:
    """A CLI runner with a private GOLEM_DEPLOY_HOME; everything is ended at teardown."""
    home = Path(tempfile.mkdtemp(prefix="gd-e2e-"))
    env = _environment(home)
    try:
        yield Cli(home, env)
    finally:
        _cleanup(home, env)
        if os.environ.get("GOLEM_DEPLOY_TEST_KEEP"):  # to read a failed run's logs
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


@dataclass
class ExternalNet:
    """A local network started by the test itself, used as "your own yagna"."""

    info: Any  # golem_deploy.localnet.LocalNetInfo

    def agreement_state(self, agreement_id: str) -> str:
        request = urllib.request.Request(
            f"{self.info.api_url}/market-api/v1/agreements/{agreement_id}",
            headers={"Authorization": f"Bearer {self.info.app_key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # loopback only
            state = json.loads(answer.read())["state"]
        assert isinstance(state, str)
        return state


@pytest.fixture
def external_net(cli: Cli) -> Iterator[ExternalNet]:
    """A network outside any deployment; the CLI uses it through YAGNA_* like a user's yagna.

    Because `down` does not stop it, the test can ask its yagna afterwards what became of
    every agreement.
    """
    from golem_deploy import localnet

    state_dir = cli.home / "external-net"
    info = localnet.start(state_dir, providers=3, timeout=90.0)
    try:
        cli.env.update(info.env())
        yield ExternalNet(info)
    finally:
        _cleanup(cli.home, cli.env, kill_leftovers=False)  # deployments first, then their net
        localnet.stop(state_dir)
