"""One real yagna daemon of the embedded local network: environment, launch, readiness, stop.

Two daemons run from the `golem-node` wheel's `yagna` binary, both offline in central-net
mode: a *requestor* node whose own GSB router is the hub, and a *provider* node that joins
it and holds one identity (with its own app key) per local provider. Everything that could
make a daemon touch the network is set explicitly in an environment we build from scratch,
so nothing in the user's environment (proxies, YAGNA_* variables, ...) can change it.
The pair of them and the provider identities: daemons.py. Pid files and the journal:
records.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golem_deploy.errors import GolemDeployError
from golem_deploy.localnet.records import journal, log_tail, remove_pid_file, write_pid_file
from golem_deploy.protocol import EXPIRATION, NODE_NAME

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


RUST_LOG = "info,actix_web::middleware::logger=warn,ya_vpn=warn"
"""yagna's log level. At `info`, with 20 instances on the deployment's VPN (bench/soak.py),
the requestor daemon logged ~15 MB an hour, 80 % of it two kinds of lines: actix's line
for every REST request (a debit note is several; the engine asks activity states all the
time) and ya_vpn's three lines for every TCP connection into the VPN (every forwarded
connection, every tcp health check). Only their warnings and errors are kept; yagna's own
info lines (market, activity, payment) stay.

`GOLEM_DEPLOY_LOCALNET_RUST_LOG` replaces it (bench/supervisor_cost.py turns actix's request
lines back on to count the requests the requestor's yagna answers)."""


@dataclass(frozen=True)
class ProviderIdentity:
    """One local provider: a yagna identity on the provider node and its own app key."""

    name: str
    node_id: str
    app_key: str


# --------------------------------------------------------------------------------------------
# Small helpers: binary, ports.


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


def port_is_free(port: int, *, reuse_address: bool = False) -> bool:
    """Nothing holds loopback `port` (in PORT_RANGE) right now. With `reuse_address`, as
    yagna binds its listeners (SO_REUSEADDR): connections of a killed daemon lingering in
    TIME_WAIT do not count, only a socket bound there."""
    if not PORT_RANGE[0] <= port <= PORT_RANGE[1]:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if reuse_address:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_free_ports(count: int, *, exclude: Sequence[int] = ()) -> list[int]:
    """`count` distinct loopback ports in PORT_RANGE that nothing listens on right now."""
    chosen: list[int] = []
    candidates = list(range(PORT_RANGE[0], PORT_RANGE[1] + 1))
    random.shuffle(candidates)
    for port in candidates:
        if port in chosen or port in exclude or not port_is_free(port):
            continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise LocalnetError(f"no {count} free loopback ports in {PORT_RANGE[0]}..{PORT_RANGE[1]}")


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
    # yagna's dev switch that lets allocations pass without asking a chain for funds. Off
    # only for tests of what an unfunded node does (localnet.start(allocation_shortcut=False)).
    allocation_shortcut: bool = True

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
            "RUST_LOG": os.environ.get("GOLEM_DEPLOY_LOCALNET_RUST_LOG", RUST_LOG),
            # yagna also writes its log to files in its data dir (a copy of its stdout,
            # which logs/<node>.log keeps and disk_bound.py rotates): "" turns that off.
            "YAGNA_LOG_DIR": "",
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
        }
        if self.allocation_shortcut:
            env["YAGNA_DEV_SKIP_ALLOCATION_VALIDATION"] = "1"
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
            "properties": {EXPIRATION: int((time.time() + 60) * 1000)},
            "constraints": f"({NODE_NAME}=golem-deploy-bind-offer-broadcasts)",
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
