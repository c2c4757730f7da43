"""Where a deployment runs: the user's own yagna, or a private local network it starts.

The choice is the environment's: with YAGNA_APPKEY set the deployment uses that yagna (at
YAGNA_API_URL); without it the supervisor starts a private local network in the
deployment folder and stops it when the deployment ends. Every step is journaled first
(`note`), so a crash mid-start is still cleaned up by `down`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio

from golem_deploy.manifest.model import Manifest
from golem_deploy.supervisor.deployments import DeploymentDir
from golem_deploy.supervisor.redact import Redactor

Note = Callable[..., None]
"""The supervisor's journal-and-publish call: note(kind, **fields)."""


class Backend:
    """The yagna a deployment talks to. `kind` is "yagna" (the user's) or "local"."""

    def __init__(
        self,
        manifest: Manifest,
        folder: DeploymentDir,
        providers: int,
        faults: Path | None,
        note: Note,
        redactor: Redactor,
    ) -> None:
        self.manifest = manifest
        self.folder = folder
        self.providers = providers
        self.faults = faults
        self.note = note
        self.redactor = redactor
        self.kind: str | None = None
        self.api_url: str | None = None
        self._localnet_started = False

    async def open(self) -> tuple[str | None, str | None, str, str, str]:
        """(api_url, app_key, subnet, driver, network): the user's yagna or a private one."""
        manifest = self.manifest
        app_key = os.environ.get("YAGNA_APPKEY")
        if app_key:
            self.kind = "yagna"
            self.api_url = os.environ.get("YAGNA_API_URL", "http://127.0.0.1:7465")
            self.note("NetworkReady", network_kind="yagna", api_url=self.api_url)
            subnet = os.environ.get("YAGNA_SUBNET") or manifest.subnet
            return self.api_url, app_key, subnet, manifest.payment.driver, manifest.payment.network
        from golem_deploy import localnet

        state_dir = self.folder.localnet
        self.kind = "local"
        # Journal the folder before starting: a crash mid-start must still be cleaned up.
        self.note("LocalnetStarting", state_dir=state_dir, providers=self.providers)
        self._localnet_started = True
        info = await anyio.to_thread.run_sync(
            lambda: localnet.start(
                state_dir, providers=self.providers, faults=self.faults, timeout=60.0
            )
        )
        self.redactor.add(info.app_key)
        self.api_url = info.api_url
        self.note("LocalnetStarted", state_dir=state_dir, api_url=info.api_url)
        return info.api_url, info.app_key, info.subnet, info.payment_driver, info.payment_network

    async def restart(self) -> None:
        """Start the private local network again on its state folder, after one of its
        processes died: first end whatever part still runs, then start it at the same
        address (recorded ports), where its daemons find their databases and the requestor
        its app key, so the engine carries on. Raises LocalnetError when it cannot start,
        or comes back at another address (the engine could not follow it there)."""
        from golem_deploy import localnet

        state_dir = self.folder.localnet

        def again() -> localnet.LocalNetInfo:
            localnet.stop(state_dir)
            return localnet.start(
                state_dir, providers=self.providers, faults=self.faults, timeout=60.0
            )

        self.note("LocalnetRestarting", state_dir=state_dir)
        info = await anyio.to_thread.run_sync(again)
        self.redactor.add(info.app_key)
        if info.api_url != self.api_url:
            raise localnet.LocalnetError(
                f"it came back at {info.api_url}, not {self.api_url} (its port was taken)"
            )
        self.note("LocalnetRestarted", state_dir=state_dir, api_url=info.api_url)

    async def close(self) -> None:
        """Stop the private local network, if this deployment started one."""
        if not self._localnet_started:
            return
        from golem_deploy import localnet

        state_dir = self.folder.localnet
        try:
            await anyio.to_thread.run_sync(lambda: localnet.stop(state_dir))
        except Exception as error:
            self.note("LocalnetStopFailed", state_dir=state_dir, error=str(error))
            return
        self.note("LocalnetStopped", state_dir=state_dir)
