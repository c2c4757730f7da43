"""`up`, `status`, `down`, `logs`, `ls`: thin clients of a deployment's supervisor.

Why this shape (decision 4): the supervisor process owns the engine; these commands only
start it, ask it things over its control socket and render what it answers. When it is gone
(crash, SIGKILL) they read its journal instead and say so; `down` then releases what the
journal says is still held. How a supervisor is driven and how leftovers are released are
supervisor/control.py's and supervisor/recover.py's business; the commands live in up.py,
down.py and status.py and only parse arguments and render.
"""

from __future__ import annotations

import typer

from golem_deploy.cli.down import down
from golem_deploy.cli.status import logs, ls, status
from golem_deploy.cli.up import up


def register(app: typer.Typer) -> None:
    """Add up / status / down / logs / ls to the root app."""
    app.command(no_args_is_help=True)(up)
    app.command()(status)
    app.command()(down)
    app.command()(logs)
    app.command("ls")(ls)
