"""The pair of yagna daemons of one local network, with their provider identities.

`LocalNodes` starts the requestor node (the hub) and the provider node (node.py), makes
sure every provider identity and its app key exist, and stops both again; the functions at
the end find and end daemons an earlier, crashed run left behind (records.py).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from golem_deploy.localnet.node import (
    PROVIDER,
    REQUESTOR,
    DaemonExited,
    LocalnetError,
    NodeConfig,
    ProviderIdentity,
    YagnaNode,
    pick_free_ports,
    port_is_free,
    yagna_binary,
)
from golem_deploy.localnet.records import (
    end_process,
    journal,
    process_matches,
    read_pid_file,
    remove_pid_file,
)


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


PORTS_FILE = "ports.json"
#: Seconds without a usage report before the provider node destroys an activity itself
#: (yagna's INACTIVITY_LIMIT_SECONDS, 10 by default). Here one provider yagna serves every
#: local provider's activities: at 500 of them on a slow machine its router cancelled
#: usage reports for over 10 s and yagna destroyed running activities (bench/RESULTS.md,
#: 2026-12-03). The Unresponsive mark stays at yagna's 5 s, so the requestor learns of a
#: silent ExeUnit as early as on the real network; an ExeUnit that is really gone is
#: found by the requestor's watcher, which asks it.
INACTIVITY_LIMIT_S = 30.0


def _ports(state_dir: Path, fresh: bool) -> list[int]:
    """(hub GSB, requestor API, provider GSB, provider API) ports: those of the state dir's
    last run when all four are free again, so a network started again on its own state
    (after one of its daemons died) keeps its address and requestors that knew it carry on;
    else (or when `fresh`) four new ones. Recorded for the next start."""
    path = state_dir / PORTS_FILE
    ports: list[int] = []
    if not fresh:
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
            if (
                isinstance(recorded, list)
                and len(recorded) == 4
                and all(isinstance(port, int) for port in recorded)
                and all(port_is_free(port, reuse_address=True) for port in recorded)
            ):
                ports = recorded
        except (OSError, ValueError):
            pass
    if not ports:
        ports = pick_free_ports(4)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(ports, out)
    return ports


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

    def __init__(
        self, state_dir: Path, providers: int = 3, *, allocation_shortcut: bool = True
    ) -> None:
        if providers < 1:
            raise LocalnetError("a local network needs at least one provider")
        self.state_dir = state_dir
        self.providers = providers
        self.allocation_shortcut = allocation_shortcut
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
                return self._start_once(keys, deadline, fresh_ports=attempt > 0)
            except DaemonExited:
                self.stop()
                if attempt == attempts - 1 or time.monotonic() > deadline:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start_once(self, keys: dict[str, str], deadline: float, fresh_ports: bool) -> NodesInfo:
        hub_gsb, req_api, prov_gsb, prov_api = _ports(self.state_dir, fresh_ports)
        requestor = self.requestor = YagnaNode(
            NodeConfig(
                name=REQUESTOR,
                data_dir=self.state_dir / "yagna" / REQUESTOR,
                gsb_port=hub_gsb,
                api_port=req_api,
                hub_port=hub_gsb,  # the requestor node's own router is the hub
                app_key=keys[REQUESTOR],
                extra_env={},
                allocation_shortcut=self.allocation_shortcut,
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
                # Offers reach the requestor node in ~0.3 s instead of ~5 s. An activity
                # is destroyed after INACTIVITY_LIMIT_S without a usage report, not 10 s:
                # see the constant.
                extra_env={
                    "OFFER_BROADCAST_DELAY": "300ms",
                    "INACTIVITY_LIMIT_SECONDS": f"{INACTIVITY_LIMIT_S:g}",
                },
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
