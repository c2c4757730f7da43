"""The embedded local Golem network: real offline yagna daemons plus our provider agents.

    info = start(state_dir, providers=3)   # returns once requestors can use it
    os.environ.update(info.env())          # YAGNA_API_URL, YAGNA_APPKEY, ... for any SDK
    stop(state_dir)

`start` launches `python -m golem_deploy.localnet.host` detached (its own session, so it
outlives the caller, e.g. `golem-deploy localnet start`). The host owns both daemons and
the provider agents and records every pid under the state dir; `stop` ends exactly those
processes, also when the host itself was killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from golem_deploy.localnet.daemons import stop_recorded_nodes
from golem_deploy.localnet.node import LocalnetError
from golem_deploy.localnet.records import (
    HOST,
    READY_FILE,
    end_process,
    host_marker,
    log_tail,
    process_matches,
    read_pid_file,
    remove_pid_file,
)

__all__ = ["LocalNetInfo", "LocalnetError", "start", "status", "stop"]

#: Host processes this Python process started, kept so they can be reaped after they exit.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class LocalNetInfo:
    """What a requestor needs to use a running local network."""

    api_url: str
    app_key: str
    subnet: str
    payment_driver: str
    payment_network: str
    providers: list[tuple[str, str]]  # (name, node id), e.g. ("local-provider-1", "0x…")
    state_dir: Path
    gftp_dir: Path  # holds a `gftp` for yapapi & co. (the golem-node wheel ships none)

    def env(self) -> dict[str, str]:
        """Exactly the variables yapapi (and golem-deploy's engine) read."""
        return {
            "YAGNA_API_URL": self.api_url,
            "YAGNA_APPKEY": self.app_key,
            "YAGNA_SUBNET": self.subnet,
            "YAGNA_PAYMENT_DRIVER": self.payment_driver,
            "YAGNA_PAYMENT_NETWORK": self.payment_network,
        }

    def path_with_gftp(self, path: str) -> str:
        """`path` (a PATH value) with this network's `gftp` first, as yapapi needs it."""
        return f"{self.gftp_dir}{os.pathsep}{path}" if path else str(self.gftp_dir)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialize start/stop on one state dir (two CLIs, or a test and a CLI)."""
    with open(state_dir / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_info(state_dir: Path) -> tuple[LocalNetInfo, int] | None:
    try:
        data = json.loads((state_dir / READY_FILE).read_text(encoding="utf-8"))
        info = LocalNetInfo(
            api_url=str(data["api_url"]),
            app_key=str(data["app_key"]),
            subnet=str(data["subnet"]),
            payment_driver=str(data["payment_driver"]),
            payment_network=str(data["payment_network"]),
            providers=[(str(name), str(node_id)) for name, node_id in data["providers"]],
            state_dir=Path(data["state_dir"]),
            gftp_dir=Path(data["gftp_dir"]),
        )
        return info, int(data["host_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def status(state_dir: Path) -> LocalNetInfo | None:
    """The running network of `state_dir`, or None when none is running there."""
    state_dir = Path(state_dir).resolve()
    found = _read_info(state_dir)
    if found is None:
        return None
    info, host_pid = found
    return info if process_matches(host_pid, host_marker(state_dir)) else None


def start(
    state_dir: Path,
    *,
    providers: int = 3,
    faults: Path | None = None,
    timeout: float = 30.0,
    allocation_shortcut: bool = True,
) -> LocalNetInfo:
    """Start a local network in `state_dir` (or return the one already running there).

    `allocation_shortcut=False` starts the requestor node without
    YAGNA_DEV_SKIP_ALLOCATION_VALIDATION: creating an allocation then fails as on a node
    with no funds (no chain is reachable), which is what tests of `golem-deploy doctor`
    need. Ignored when a network already runs in `state_dir`.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if providers < 1:
        raise LocalnetError("--providers must be at least 1")
    if faults is not None:
        from golem_deploy.localnet.faults import load_faults

        faults = Path(faults).resolve()
        # Report a bad file here, not in the detached host's log.
        unknown = sorted(
            set(load_faults(faults)) - {f"local-provider-{k}" for k in range(1, providers + 1)}
        )
        if unknown:
            raise LocalnetError(
                f"{faults}: faults for {', '.join(unknown)}, but the network has only "
                f"{providers} providers (local-provider-1..{providers})",
                hint="remove those entries or start more providers with --providers",
            )
    with _locked(state_dir):
        running = status(state_dir)
        if running is not None:
            return running
        _stop_unlocked(state_dir, timeout=10.0)  # leftovers of a crashed earlier run
        log_path = state_dir / "logs" / "host.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "golem_deploy.localnet.host",
            host_marker(state_dir),
            "--providers",
            str(providers),
            "--timeout",
            str(max(timeout - 1.0, 1.0)),
        ]
        if faults is not None:
            cmd += ["--faults", str(faults)]
        if not allocation_shortcut:
            cmd.append("--no-allocation-shortcut")
        with open(log_path, "ab") as log:
            log.write(f"--- starting local network ({providers} providers)\n".encode())
            log.flush()
            process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not killed by the caller's Ctrl-C or exit
                close_fds=True,
            )
        _children[process.pid] = process
        deadline = time.monotonic() + timeout
        while True:
            found = _read_info(state_dir)
            if found is not None and found[1] == process.pid:
                return found[0]
            code = process.poll()
            if code is not None:
                _children.pop(process.pid, None)
                _stop_unlocked(state_dir, timeout=5.0)
                raise LocalnetError(
                    f"the local network failed to start (host exited with code {code})",
                    hint=f"{log_path} ends with:\n{log_tail(log_path)}",
                )
            if time.monotonic() > deadline:
                _stop_unlocked(state_dir, timeout=5.0)
                raise LocalnetError(
                    f"the local network did not become ready within {timeout:g} s",
                    hint=f"{log_path} ends with:\n{log_tail(log_path)}",
                )
            time.sleep(0.05)


def stop(state_dir: Path, *, timeout: float = 10.0) -> None:
    """End exactly the processes recorded in `state_dir`; idempotent, also after a crash."""
    state_dir = Path(state_dir).resolve()
    if not state_dir.is_dir():
        return
    with _locked(state_dir):
        _stop_unlocked(state_dir, timeout=timeout)


def _stop_unlocked(state_dir: Path, *, timeout: float) -> None:
    host = read_pid_file(state_dir, HOST)
    if host is not None:
        pid, marker = host
        # SIGTERM: the host ends activities, withdraws offers and stops its daemons itself.
        end_process(pid, marker, timeout=timeout, first=signal.SIGTERM)
        child = _children.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(1.0)
        remove_pid_file(state_dir, HOST)
    stop_recorded_nodes(state_dir)  # daemons a killed host could not stop
    with contextlib.suppress(FileNotFoundError):
        (state_dir / READY_FILE).unlink()
