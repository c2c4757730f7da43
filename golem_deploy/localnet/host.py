"""The local network's host process: both yagna daemons plus every provider agent.

    python -m golem_deploy.localnet.host --state-dir=D --providers N [--faults F]
        [--exit-with-pid P] [--no-allocation-shortcut]

It starts the daemons, runs one provider agent per identity (their ExeUnits run inside this
process), then writes `ready.json` (atomically) with what a requestor needs. It runs until
SIGTERM/SIGINT, until the process `--exit-with-pid` names is gone, or until a daemon dies;
then it ends every activity, withdraws the offers, stops the daemons (provider node first)
and removes its pid and ready files. `golem_deploy.localnet.start()` launches it detached.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from golem_deploy import event_loop
from golem_deploy.localnet import disk_bound
from golem_deploy.localnet.daemons import LocalNodes, NodesInfo
from golem_deploy.localnet.faults import NO_FAULTS, ProviderFaults, load_faults
from golem_deploy.localnet.node import LocalnetError
from golem_deploy.localnet.nodelay import NodelayKeeper
from golem_deploy.localnet.records import (
    HOST,
    READY_FILE,
    host_marker,
    journal,
    remove_pid_file,
    write_pid_file,
)
from golem_deploy.protocol import LOCAL_PLATFORM, LOCAL_SUBNET

log = logging.getLogger("golem_deploy.localnet.host")

NODELAY_SWEEP_S = 2.0
"""Seconds between looks for daemon sockets without TCP_NODELAY (nodelay.py). Connections
to the daemons inherit it from their listeners at once; a sweep finds only the few a daemon
opens itself (a reconnect), and costs ~0.45 ms CPU when nothing is new."""


def write_ready(state_dir: Path, data: dict[str, Any]) -> None:
    """Write the ready file atomically, so a reader never sees half of it."""
    path = state_dir / READY_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
    os.replace(tmp, path)


def _preload() -> None:
    """Import what the agents need while the daemons boot, not before launching them.

    aiohttp, anyio and the ExeUnit take a few hundred ms to import on a busy machine;
    yagna takes over a second to serve REST. Overlapping them shortens every start.
    """
    for module in (
        "aiohttp",
        "anyio",
        "golem_deploy.localnet.provider",
        "golem_deploy.localnet.exeunit",
    ):
        importlib.import_module(module)
    if event_loop.uses_uvloop():
        importlib.import_module("uvloop")


def _ready_data(state_dir: Path, nodes: NodesInfo) -> dict[str, Any]:
    from golem_deploy.localnet.gftp_server import write_launcher

    driver, network, _token = LOCAL_PLATFORM.split("-")
    gftp_dir = write_launcher(state_dir, nodes.requestor_gsb_url, nodes.requestor_id)
    return {
        "api_url": nodes.requestor_api_url,
        "app_key": nodes.requestor_app_key,
        "subnet": LOCAL_SUBNET,
        "payment_driver": driver,
        "payment_network": network,
        "providers": [[p.name, p.node_id] for p in nodes.providers],
        "state_dir": str(state_dir),
        "host_pid": os.getpid(),
        "requestor_id": nodes.requestor_id,
        "provider_api_url": nodes.provider_api_url,
        "provider_gsb_url": nodes.provider_gsb_url,
        "gftp_dir": str(gftp_dir),  # yapapi's `gftp server`, put first on PATH
        # For diagnostics and tests that act as a provider; the file is private (0600).
        "provider_app_keys": {p.name: p.app_key for p in nodes.providers},
    }


async def serve(
    state_dir: Path,
    local_nodes: LocalNodes,
    nodes: NodesInfo,
    faults: dict[str, ProviderFaults],
    exit_with_pid: int | None,
) -> None:
    """Run the provider agents until asked to stop, then shut them down gracefully."""
    import aiohttp
    import anyio

    from golem_deploy.localnet.provider import ProviderAgent, ProviderConfig
    from golem_deploy.localnet.provider.lives import ProviderLives
    from golem_deploy.localnet.vpn_host import VpnHost

    stop = anyio.Event()
    daemons = [
        node.process
        for node in (local_nodes.requestor, local_nodes.provider)
        if node is not None and node.process is not None
    ]
    nodelay = NodelayKeeper()
    if os.environ.get("GOLEM_DEPLOY_LOCALNET_NODELAY") == "0":  # A/B measurements only
        nodelay.disabled = "turned off (GOLEM_DEPLOY_LOCALNET_NODELAY=0)"
    nodelay.sweep(daemons)  # before anyone is told the network is ready
    work_root = state_dir / "work"
    shutil.rmtree(work_root, ignore_errors=True)  # activities of an earlier run are over
    work_root.mkdir(parents=True)

    async def on_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("signal %s: stopping", signal.Signals(signum).name)
                stop.set()
                return

    async def watch() -> None:
        """Stop when our parent asked us to live only as long as it does, or a daemon died."""
        while True:
            await anyio.sleep(0.5)
            if exit_with_pid is not None and not _pid_alive(exit_with_pid):
                log.info("process %s is gone: stopping", exit_with_pid)
                stop.set()
                return
            for node in (local_nodes.requestor, local_nodes.provider):
                if (
                    node is not None
                    and node.process is not None
                    and node.process.poll() is not None
                ):
                    log.error(
                        "yagna %s node exited (code %s)", node.config.name, node.process.returncode
                    )
                    stop.set()
                    return

    async def keep_nodelay() -> None:
        """Small VPN frames must not wait for delayed ACKs on any of the daemons' sockets."""
        while nodelay.disabled is None:
            await anyio.sleep(NODELAY_SWEEP_S)
            # In a thread: reading the kernel's TCP tables can take milliseconds, which
            # the event loop pumping VPN frames must not wait for.
            await anyio.to_thread.run_sync(nodelay.sweep, daemons)

    async def keep_disk_bounded() -> None:
        """yagna's WAL files and logs grow with no setting to stop them (disk_bound.py)."""
        data_dirs = [n.config.data_dir for n in (local_nodes.requestor, local_nodes.provider) if n]
        logs = state_dir / "logs"
        while True:
            await anyio.sleep(disk_bound.CHECKPOINT_EVERY)
            await anyio.to_thread.run_sync(disk_bound.keep_bounded, data_dirs, logs)

    # No connection cap: every agent holds three long polls open at all times.
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        VpnHost.connect(nodes.provider_gsb_url) as vpn,  # every activity's VPN side
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(on_signals)
        tg.start_soon(watch)
        tg.start_soon(keep_nodelay)
        tg.start_soon(keep_disk_bounded)
        agents = []
        for index, identity in enumerate(nodes.providers, start=1):
            config = ProviderConfig(
                index=index,
                identity=identity,
                api_url=nodes.provider_api_url,
                gsb_url=nodes.provider_gsb_url,
                work_root=work_root / identity.name,
                faults=faults.get(identity.name, NO_FAULTS),
                vpn=vpn,
            )
            # one agent per life: with come_back_after, a vanished provider comes back
            agent = ProviderLives(
                identity.name,
                functools.partial(ProviderAgent, config, session),
                come_back_after=config.faults.come_back_after,
                work_root=config.work_root,
                on_event=functools.partial(_journal_life, state_dir, identity.name),
            )
            await tg.start(agent.run)
            agents.append(agent)
        write_ready(state_dir, _ready_data(state_dir, nodes))
        journal(
            state_dir,
            "ready",
            providers=len(agents),
            api=nodes.requestor_api_url,
            nodelay=nodelay.disabled or f"set on {nodelay.counts.set} sockets",
        )
        log.info("local network ready: %s", nodes.requestor_api_url)
        await stop.wait()
        with contextlib.suppress(FileNotFoundError):
            (state_dir / READY_FILE).unlink()
        async with anyio.create_task_group() as closing:
            for agent in agents:
                closing.start_soon(agent.shutdown)
        tg.cancel_scope.cancel()


def _journal_life(state_dir: Path, provider: str, event: str, life: int) -> None:
    """`provider-died` / `provider-back` in the network's journal (come_back_after)."""
    journal(state_dir, event, provider=provider, life=life)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    """Before the event loop runs, SIGTERM unwinds like Ctrl-C, so `finally` cleans up."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m golem_deploy.localnet.host")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--providers", type=int, default=3)
    parser.add_argument("--faults", type=Path, default=None)
    parser.add_argument("--exit-with-pid", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=30.0)
    # Allocations then fail as on an unfunded node (tests of `golem-deploy doctor`).
    parser.add_argument("--no-allocation-shortcut", action="store_true")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _raise_exit)

    with contextlib.suppress(FileNotFoundError):
        (state_dir / READY_FILE).unlink()
    write_pid_file(state_dir, HOST, os.getpid(), host_marker(state_dir))
    journal(state_dir, "host-started", pid=os.getpid(), providers=args.providers)
    local_nodes: LocalNodes | None = None
    code = 0
    try:
        faults = load_faults(args.faults) if args.faults else {}
        local_nodes = LocalNodes(
            state_dir, args.providers, allocation_shortcut=not args.no_allocation_shortcut
        )
        nodes = local_nodes.start(timeout=args.timeout, while_starting=_preload)
        event_loop.run(serve, state_dir, local_nodes, nodes, faults, args.exit_with_pid)
    except LocalnetError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 1
    except (KeyboardInterrupt, SystemExit):
        code = 0
    finally:
        with contextlib.suppress(FileNotFoundError):
            (state_dir / READY_FILE).unlink()
        if local_nodes is not None:
            local_nodes.stop()
        remove_pid_file(state_dir, HOST)
        journal(state_dir, "host-stopped", pid=os.getpid(), code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())
