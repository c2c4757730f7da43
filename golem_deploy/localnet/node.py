"""Real yagna daemons for the embedded local network: launch, readiness, identities, stop.

Two daemons run from the `golem-node` wheel's `yagna` binary, both offline in central-net
mode: a *requestor* node whose own GSB router is the hub, and a *provider* node that joins
it and holds one identity (with its own app key) per local provider. Everything that could
make a daemon touch the network is set explicitly in an environment we build from scratch,
so nothing in the user's environment (proxies, YAGNA_* variables, ...) can change it.

Every process we start is recorded in a pid file under the state dir together with a marker
(the daemon's data dir). A later start or stop ends exactly what those files record, after
checking that the pid still runs a command line carrying that marker, so a recycled pid is
never signalled and nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from golem_deploy.errors import GolemDeployError

#: Chains whose RPC endpoint the erc20 driver would otherwise resolve over DNS.
CHAINS = (
    "MAINNET",
    "SEPOLIA",
    "RINKEBY",
    "GOERLI",
    "HOLESKY",
    "HOODI",
    "POLYGON",
    "MUMBAI",
    "AMOY",
)
#: Nothing listens here: the release check and any stray HTTPS request fail locally.
DEAD_PROXY = "http://127.0.0.1:9"
#: Nothing listens here either: the payment driver's chain RPC.
DEAD_RPC = "http://127.0.0.1:8545"
#: The hub port must have at most 4 digits (yagna's central-net address parser), so every
#: port we pick comes from this range.
PORT_RANGE = (1024, 9999)

REQUESTOR = "requestor"
PROVIDER = "provider"


class LocalnetError(GolemDeployError):
    """The local network could not be started, reached or stopped."""


class DaemonExited(LocalnetError):
    """A daemon exited while starting (e.g. another program took a port we picked)."""


@dataclass(frozen=True)
class ProviderIdentity:
    """One local provider: a yagna identity on the provider node and its own app key."""

    name: str
    node_id: str
    app_key: str


# --------------------------------------------------------------------------------------------
# Small helpers: binary, ports, journal, pid files.


def yagna_binary() -> Path:
    """The `yagna` of golem-node installed next to this Python, else the first on PATH.

    The virtualenv's bin dir comes first so a globally installed, different yagna version
    never shadows the pinned one.
    """
    beside = Path(sys.executable).parent / "yagna"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("yagna")
    if found:
        return Path(found)
    raise LocalnetError(
        "the yagna binary was not found",
        hint="install golem-node into this environment: pip install golem-node==0.17.6",
    )


def pick_free_ports(count: int, *, exclude: Sequence[int] = ()) -> list[int]:
    """`count` distinct loopback ports in PORT_RANGE that nothing listens on right now."""
    chosen: list[int] = []
    candidates = list(range(PORT_RANGE[0], PORT_RANGE[1] + 1))
    random.shuffle(candidates)
    for port in candidates:
        if port in chosen or port in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise LocalnetError(f"no {count} free loopback ports in {PORT_RANGE[0]}..{PORT_RANGE[1]}")


def journal(state_dir: Path, event: str, **fields: Any) -> None:
    """Append one line to the state dir's journal: what was started or stopped, and when."""
    record = {"ts": datetime.now(UTC).isoformat(), "event": event, **fields}
    with open(state_dir / "journal.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps(record, default=str) + "\n")


def pid_dir(state_dir: Path) -> Path:
    path = state_dir / "pids"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_pid_file(state_dir: Path, name: str, pid: int, marker: str) -> None:
    """Record a process we started; `marker` must appear in its command line."""
    path = pid_dir(state_dir) / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "marker": marker}), encoding="utf-8")
    os.replace(tmp, path)


def read_pid_file(state_dir: Path, name: str) -> tuple[int, str] | None:
    path = state_dir / "pids" / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return int(data["pid"]), str(data["marker"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_pid_file(state_dir: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "pids" / f"{name}.json").unlink()


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def process_matches(pid: int, marker: str) -> bool:
    """True while `pid` is alive (not a zombie) and its command line contains `marker`."""
    _reap(pid)
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return any(marker.encode() in arg for arg in args)
    if sys.platform == "linux":
        return False
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(
            ["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return False
    return bool(out) and not out.startswith("Z") and marker in out


def end_process(pid: int, marker: str, *, timeout: float, first: int = signal.SIGINT) -> bool:
    """Signal `pid` (only if it still carries `marker`), escalate to SIGKILL after `timeout`.

    Returns True when the process is gone (or was never ours to begin with).
    """
    if not process_matches(pid, marker):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
    if _wait_gone(pid, marker, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return _wait_gone(pid, marker, 5.0)


def _wait_gone(pid: int, marker: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_matches(pid, marker):
            return True
        time.sleep(0.02)
    return not process_matches(pid, marker)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _load_or_create_keys(state_dir: Path) -> dict[str, str]:
    """Autoconfigured app keys of both nodes: random once, then reused with the data dirs."""
    path = state_dir / "keys.json"
    try:
        keys: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(keys.get(REQUESTOR), str) and isinstance(keys.get(PROVIDER), str):
            return keys
    except (OSError, ValueError):
        pass
    keys = {REQUESTOR: secrets.token_hex(16), PROVIDER: secrets.token_hex(16)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(keys, out)
    return keys


# --------------------------------------------------------------------------------------------
# One daemon.


@dataclass(frozen=True)
class NodeConfig:
    """Where one daemon lives and listens, and who its hub is."""

    name: str
    data_dir: Path
    gsb_port: int
    api_port: int
    hub_port: int
    app_key: str
    extra_env: Mapping[str, str]

    @property
    def gsb_url(self) -> str:
        return f"tcp://127.0.0.1:{self.gsb_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        """The complete environment of the daemon and its CLI calls, built from nothing."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.data_dir),
            "LANG": "C.UTF-8",
            "RUST_LOG": "info",
            "YAGNA_DATADIR": str(self.data_dir),
            "GSB_URL": self.gsb_url,
            "YAGNA_API_URL": self.api_url,
            "YA_NET_TYPE": "central",
            "CENTRAL_NET_HOST": f"127.0.0.1:{self.hub_port}",
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "http_proxy": DEAD_PROXY,
            "https_proxy": DEAD_PROXY,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "YA_CONSENT_STATS": "deny",
            "YAGNA_METRICS_URL": DEAD_PROXY + "/",
            "YAGNA_AUTOCONF_APPKEY": self.app_key,
            "YAGNA_DEV_SKIP_ALLOCATION_VALIDATION": "1",
        }
        for chain in CHAINS:
            env[f"{chain}_GETH_ADDR"] = DEAD_RPC
        env.update(self.extra_env)
        return env


class YagnaNode:
    """One yagna daemon: `start`, `wait_ready`, `cli`, `stop`."""

    def __init__(self, config: NodeConfig, state_dir: Path, binary: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir / "logs" / f"{config.name}.log"

    @property
    def marker(self) -> str:
        """What identifies this daemon's command line: its data dir (passed as -d)."""
        return str(self.config.data_dir)

    def start(self) -> None:
        try:
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LocalnetError(
                f"cannot use {error.filename or self.config.data_dir} for the "
                f"{self.config.name} daemon: {error.strerror}",
                hint="stop the network and remove its state dir, or use another --state-dir",
            ) from error
        cmd = [
            str(self.binary),
            "service",
            "run",
            "--disable-metrics-push",
            "--metrics-push-url",
            DEAD_PROXY + "/",
            "-d",
            str(self.config.data_dir),
            "-g",
            self.config.gsb_url,
            "-a",
            self.config.api_url,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd,
                env=self.config.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.config.data_dir,
            )
        write_pid_file(self.state_dir, self.config.name, self.process.pid, self.marker)
        journal(
            self.state_dir,
            "node-started",
            node=self.config.name,
            pid=self.process.pid,
            gsb=self.config.gsb_url,
            api=self.config.api_url,
        )

    def wait_ready(self, deadline: float, app_key: str | None = None) -> str:
        """Poll GET /me until 200; return the identity. Fails fast if the daemon exits."""
        key = app_key or self.config.app_key
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(
            self.config.api_url + "/me", headers={"Authorization": f"Bearer {key}"}
        )
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise DaemonExited(
                    f"yagna ({self.config.name} node) exited with code "
                    f"{self.process.returncode} while starting",
                    hint=f"its log ({self.log_path}) ends with:\n{log_tail(self.log_path)}",
                )
            try:
                with opener.open(request, timeout=1.0) as response:
                    if response.status == 200:
                        return str(json.load(response)["identity"])
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise LocalnetError(
                    f"yagna ({self.config.name} node) did not become ready on "
                    f"{self.config.api_url}",
                    hint=f"its log ({self.log_path}) ends with:\n{log_tail(self.log_path)}",
                )
            time.sleep(0.05)

    def _rest(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call with this node's autoconfigured key (never through a proxy)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(
            self.config.api_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.config.app_key}",
                "Content-Type": "application/json",
            },
        )
        try:
            with opener.open(request, timeout=10.0) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError) as error:
            raise LocalnetError(
                f"{method} {path} on the {self.config.name} node failed: {error}"
            ) from error
        return json.loads(text) if text else None

    def listen_for_offers(self) -> None:
        """Make this node receive offer broadcasts from now on.

        In central-net mode a yagna binds the offer-broadcast topic lazily, on its first
        demand subscription (yagna core/market matcher.rs `subscribe_demand`). Offers
        broadcast before that are only learnt at the next cyclic broadcast, minutes later,
        so a requestor arriving a few seconds after our providers published would see no
        offers. One short-lived demand that matches nothing makes the binding happen now.
        """
        demand = {
            "properties": {"golem.srv.comp.expiration": int((time.time() + 60) * 1000)},
            "constraints": "(golem.node.id.name=golem-deploy-bind-offer-broadcasts)",
        }
        subscription = self._rest("POST", "/market-api/v1/demands", demand)
        self._rest("DELETE", f"/market-api/v1/demands/{subscription}")

    def cli(self, *args: str) -> Any:
        """Run a `yagna --json ...` subcommand against this daemon and parse its answer."""
        result = subprocess.run(
            [str(self.binary), "--json", *args],
            env=self.config.env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise LocalnetError(
                f"`yagna {' '.join(args)}` failed on the {self.config.name} node",
                hint=(result.stderr or result.stdout).strip()[-2000:],
            )
        return json.loads(result.stdout)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGINT (yagna shuts down cleanly in ~0.3 s), SIGKILL after `timeout`."""
        if self.process is None:
            return
        pid = self.process.pid
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        remove_pid_file(self.state_dir, self.config.name)
        journal(
            self.state_dir,
            "node-stopped",
            node=self.config.name,
            pid=pid,
            code=self.process.returncode,
        )
        self.process = None


# --------------------------------------------------------------------------------------------
# The pair of daemons with their provider identities.


@dataclass(frozen=True)
class NodesInfo:
    """What the provider agents and requestors need to reach the running daemons."""

    requestor_api_url: str
    requestor_app_key: str
    requestor_id: str
    requestor_gsb_url: str
    provider_api_url: str
    provider_gsb_url: str
    providers: tuple[ProviderIdentity, ...]


def provider_name(index: int) -> str:
    """The node name of the provider with 1-based `index` (also its identity alias)."""
    return f"local-provider-{index}"


class LocalNodes:
    """Start and stop the requestor (hub) and provider daemons of one state dir."""

    def __init__(self, state_dir: Path, providers: int = 3) -> None:
        if providers < 1:
            raise LocalnetError("a local network needs at least one provider")
        self.state_dir = state_dir
        self.providers = providers
        self.binary = yagna_binary()
        self.requestor: YagnaNode | None = None
        self.provider: YagnaNode | None = None
        self._while_starting: Callable[[], object] | None = None

    def start(
        self, timeout: float = 30.0, *, while_starting: Callable[[], object] | None = None
    ) -> NodesInfo:
        """Start both daemons (hub first), make sure every provider identity exists.

        `while_starting` runs once right after the daemons were launched, while they boot.
        """
        self._while_starting = while_starting
        deadline = time.monotonic() + timeout
        stop_recorded_nodes(self.state_dir)  # orphans of a crashed earlier run
        self._seed_from_template()
        keys = _load_or_create_keys(self.state_dir)
        attempts = 3  # another program may grab a port we picked before yagna binds it
        for attempt in range(attempts):
            try:
                return self._start_once(keys, deadline)
            except DaemonExited:
                self.stop()
                if attempt == attempts - 1 or time.monotonic() > deadline:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start_once(self, keys: dict[str, str], deadline: float) -> NodesInfo:
        hub_gsb, req_api, prov_gsb, prov_api = pick_free_ports(4)
        requestor = self.requestor = YagnaNode(
            NodeConfig(
                name=REQUESTOR,
                data_dir=self.state_dir / "yagna" / REQUESTOR,
                gsb_port=hub_gsb,
                api_port=req_api,
                hub_port=hub_gsb,  # the requestor node's own router is the hub
                app_key=keys[REQUESTOR],
                extra_env={},
            ),
            self.state_dir,
            self.binary,
        )
        provider = self.provider = YagnaNode(
            NodeConfig(
                name=PROVIDER,
                data_dir=self.state_dir / "yagna" / PROVIDER,
                gsb_port=prov_gsb,
                api_port=prov_api,
                hub_port=hub_gsb,
                app_key=keys[PROVIDER],
                # Offers reach the requestor node in ~0.3 s instead of ~5 s.
                extra_env={"OFFER_BROADCAST_DELAY": "300ms"},
            ),
            self.state_dir,
            self.binary,
        )
        requestor.start()
        provider.start()
        if self._while_starting is not None:
            hook, self._while_starting = self._while_starting, None
            hook()
        requestor_id = requestor.wait_ready(deadline)
        requestor.listen_for_offers()
        provider.wait_ready(deadline)
        identities = self._ensure_identities(deadline)
        return NodesInfo(
            requestor_api_url=requestor.config.api_url,
            requestor_app_key=keys[REQUESTOR],
            requestor_id=requestor_id,
            requestor_gsb_url=requestor.config.gsb_url,
            provider_api_url=provider.config.api_url,
            provider_gsb_url=provider.config.gsb_url,
            providers=identities,
        )

    def _ensure_identities(self, deadline: float) -> tuple[ProviderIdentity, ...]:
        """Create missing provider identities and app keys; restart if any identity is new.

        A daemon binds `/net/<id>` on the hub only for identities that exist when it starts,
        so a freshly created identity is unreachable until the provider daemon restarts.
        """
        assert self.provider is not None
        node = self.provider
        names = [provider_name(k) for k in range(1, self.providers + 1)]
        by_alias = {row["alias"]: row["address"] for row in node.cli("id", "list")}
        created = False
        for name in names:
            if name not in by_alias:
                reply = node.cli("id", "create", "--no-password", name)
                by_alias[name] = reply["Ok"]["nodeId"]
                created = True
        keys = {(row["name"], row["id"]): row["key"] for row in node.cli("app-key", "list")}
        identities = []
        for name in names:
            node_id = by_alias[name]
            key = keys.get((name, node_id))
            if key is None:
                key = str(node.cli("app-key", "create", "--id", node_id, name))
            identities.append(ProviderIdentity(name=name, node_id=node_id, app_key=key))
        if created:
            journal(self.state_dir, "identities-created", names=names)
            node.stop()
            self._save_template()
            node.start()
            node.wait_ready(deadline)
        for identity in identities:
            node.wait_ready(deadline, app_key=identity.app_key)
        return tuple(identities)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the provider node first, then the hub."""
        for node in (self.provider, self.requestor):
            if node is not None:
                node.stop(timeout)

    # A new state dir (e.g. each deployment's private network) would pay for creating the
    # provider identities and restarting the provider daemon (~1.5 s). Instead its provider
    # node starts from a copy of a provider data dir taken right after the identities were
    # created (stopped, never used: no agreements, no payments), kept once per golem-deploy
    # home. Every network has its own hub and ports, so networks sharing provider node ids
    # never meet; the requestor node and its app key are always new.

    @staticmethod
    def _template_dir() -> Path:
        from golem_deploy.paths import home

        return home() / "localnet-template"

    def _seed_from_template(self) -> None:
        data = self.state_dir / "yagna" / PROVIDER
        template = self._template_dir() / PROVIDER
        if data.exists() or not template.is_dir():
            return
        try:
            shutil.copytree(template, data)
            journal(self.state_dir, "seeded-from-template", template=str(template))
        except OSError:
            shutil.rmtree(data, ignore_errors=True)  # start cold instead

    def _save_template(self) -> None:
        """Keep the stopped, fresh provider data dir as the template, unless one exists."""
        target = self._template_dir()
        if target.exists():
            return
        staging = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            shutil.copytree(
                self.state_dir / "yagna" / PROVIDER,
                staging / PROVIDER,
                ignore=shutil.ignore_patterns("*.log", "*.log.*"),
            )
            os.rename(staging, target)  # atomic; loses harmlessly to a concurrent saver
        except OSError:
            pass
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def recorded_nodes(state_dir: Path) -> Iterator[tuple[str, int, str]]:
    """(name, pid, marker) of every daemon the pid files record, non-hub first."""
    for name in (PROVIDER, REQUESTOR):
        entry = read_pid_file(state_dir, name)
        if entry is not None:
            yield name, entry[0], entry[1]


def stop_recorded_nodes(state_dir: Path, timeout: float = 5.0) -> list[int]:
    """End the daemons the pid files record (still running after a crash); return their pids."""
    ended = []
    for name, pid, marker in recorded_nodes(state_dir):
        if process_matches(pid, marker):
            journal(state_dir, "orphan-stopping", node=name, pid=pid)
            end_process(pid, marker, timeout=timeout)
            ended.append(pid)
        remove_pid_file(state_dir, name)
    return ended
