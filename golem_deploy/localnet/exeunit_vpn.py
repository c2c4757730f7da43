"""One activity's side of the Golem VPN: its interface in each network, and /etc/hosts.

A VM on the Golem network gets, from the `deploy` command, the networks it is in (`net`:
id, range, its own address, the other members) and the names it resolves (`hosts`). Locally
the activity's sealed sandbox has its own network namespace with only `lo`; joining puts a
TAP at the activity's address there (the host process's :class:`VpnHost` pumps its frames),
and the names become the sandbox's /etc/hosts (as the VM's guest agent writes it: a file
root inside may rewrite, which golem-deploy does when a renewal moves a name). Leaving
removes the interface; the namespace itself ends with the sandbox.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path
from typing import Any

from golem_deploy.errors import GolemDeployError
from golem_deploy.localnet.vpn_host import NetSpec, VpnError, VpnHost, VpnMembership

__all__ = ["ActivityVpn"]

BASE_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tgolem\n"


class ActivityVpn:
    """The networks one activity joined (none until its `deploy` asks for some)."""

    def __init__(self, host: VpnHost | None, node_id: str, work_dir: Path) -> None:
        self._host = host
        self._node_id = node_id
        self._work_dir = work_dir
        self._members: list[VpnMembership] = []

    def hosts_file(self, deploy: dict[str, Any]) -> Path | None:
        """Write the sandbox's /etc/hosts from the deploy's `hosts` (None: nothing to add).

        Raises VpnError for a malformed map (a requestor's mistake: deploy fails)."""
        hosts = deploy.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise VpnError("deploy: hosts must map names to addresses")
        if not hosts and not deploy.get("net"):
            return None
        lines = [BASE_HOSTS]
        for name, ip in sorted(hosts.items()):
            try:
                address = ipaddress.ip_address(str(ip))
            except ValueError as e:
                raise VpnError(f"deploy: hosts: {name!r} -> {ip!r} is not an address") from e
            if not str(name) or any(c.isspace() for c in str(name)):
                raise VpnError(f"deploy: hosts: {name!r} is not a host name")
            lines.append(f"{address}\t{name}\n")
        self._work_dir.mkdir(parents=True, exist_ok=True)
        path = self._work_dir / "hosts"
        path.write_text("".join(lines))
        path.chmod(0o644)
        return path

    async def join(self, deploy: dict[str, Any], netns: Path | None) -> None:
        """Join every network of the deploy's `net` (VpnError says why not)."""
        entries = deploy.get("net") or []
        if not entries:
            return
        if not isinstance(entries, list):
            raise VpnError("deploy: net must be a list of networks")
        if self._host is None:
            raise VpnError("this local provider has no VPN (its host process runs without one)")
        if netns is None:
            raise VpnError(
                "the activity runs unsealed (--unsafe-host-exec), so it has no network "
                "namespace to put the VPN in"
            )
        try:
            for entry in entries:
                spec = NetSpec.from_deploy(entry)
                self._members.append(await self._host.join(spec, self._node_id, netns))
        except ValueError as e:
            raise VpnError(f"deploy: {e}") from e
        except GolemDeployError as e:  # the TAP or the bus binding (TapError, GsbError)
            raise VpnError(f"cannot join the VPN: {e.message}", hint=e.hint) from e
        except OSError as e:
            raise VpnError(f"cannot join the VPN: {e}") from e

    def cut(self) -> None:
        """Remove every interface now, synchronously: the activity vanishes like a crashed
        machine, so its kernel must not answer another frame (not even the resets of its
        dying connections). :meth:`leave` later unbinds them."""
        if self._host is not None:
            for member in self._members:
                self._host.cut(member)

    async def leave(self) -> None:
        """Leave every network (the activity ends or deploys anew)."""
        members, self._members = self._members, []
        for member in members:
            if self._host is not None:
                with contextlib.suppress(GolemDeployError, OSError):
                    await self._host.leave(member)
