"""Where golem-deploy keeps its state.

One folder per deployment under $GOLEM_DEPLOY_HOME (default: the XDG state dir,
~/.local/state/golem-deploy), created 0700 because it holds app keys and a control socket.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The root state folder, created on first use with mode 0700."""
    explicit = os.environ.get("GOLEM_DEPLOY_HOME")
    if explicit:
        root = Path(explicit)
    else:
        xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        root = Path(xdg) / "golem-deploy"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def deployment_dir(name: str) -> Path:
    """The folder of one deployment (journal, logs, control socket, local network)."""
    path = home() / "deployments" / name
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def localnet_dir(name: str = "default") -> Path:
    """The folder of a standalone local network started with `golem-deploy localnet start`."""
    path = home() / "localnet" / name
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
