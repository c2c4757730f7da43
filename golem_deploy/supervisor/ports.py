"""`up`'s pre-flight check of a deployment's forwarded ports: is each local port free?

Why a module of its own: `up` runs it before it starts a supervisor, so a port another
program holds is one clear error that leaves nothing behind -- and `up` should not pay for
importing aiohttp and the engine to bind a socket. The forwarding itself is
supervisor/vpn.py's.
"""

from __future__ import annotations

import socket

from golem_deploy.errors import GolemDeployError
from golem_deploy.manifest.model import Manifest

__all__ = ["PortsBusy", "check_ports_free"]


class PortsBusy(GolemDeployError):
    """A forwarded port's local address is taken."""


def _busy(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be listened on, or None when it can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the listener will
        try:
            probe.bind((host, port))
        except OSError as error:
            return error
    return None


def check_ports_free(manifest: Manifest) -> None:
    """Raise PortsBusy, naming the service and the port, when a local port is taken."""
    for name, spec in manifest.services.items():
        for forward in spec.ports:
            if forward.host_port is None:
                continue  # a free port is chosen when the listener starts
            error = _busy(forward.host, forward.host_port)
            if error is not None:
                raise PortsBusy(
                    f"service {name}: cannot forward {forward.host}:{forward.host_port} -> "
                    f"{forward.port}: {error.strerror or error}",
                    hint="another program listens there: stop it, or pick another local port "
                    f'in `ports` (or write just "{forward.port}" to have a free one chosen)',
                )
