"""The supervisor's process: `python -m golem_deploy.supervisor --manifest FILE`.

Started by `golem-deploy up` (supervisor/start.py: forked from the CLI, or this entry
point in a fresh interpreter) in its own session. It takes the
deployment's lock, refuses to start while the previous run's journal still holds something,
keeps the previous run's journal and logs as *.prev, and runs a daemon.Supervisor until the
deployment is down. The app key is read from the environment and never written anywhere.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from golem_deploy import event_loop
from golem_deploy.supervisor.tls_deferred import import_aiohttp_without_ca_store

# First, before anything imports aiohttp: it would load the CA store twice (tls_deferred.py).
import_aiohttp_without_ca_store()

from golem_deploy.manifest.model import Manifest  # noqa: E402
from golem_deploy.supervisor import deployments, lock  # noqa: E402
from golem_deploy.supervisor import machine as dm  # noqa: E402
from golem_deploy.supervisor.daemon import Supervisor  # noqa: E402
from golem_deploy.supervisor.journal import Journal, Redactor, load, secret_name  # noqa: E402
from golem_deploy.supervisor.journal_compact import compact_every  # noqa: E402


def _redactor(manifest: Manifest) -> Redactor:
    """Every env value of every service is never to appear in journal, logs or status
    (short ones when their name says they are secret, see journal.secret_name)."""
    env = [
        (name, str(value))
        for spec in manifest.services.values()
        for name, value in spec.env.items()
    ]
    redactor = Redactor()
    for name, value in env:
        redactor.add(value, named_secret=secret_name(name))
    return redactor


# ---- process entry --------------------------------------------------------------------------


class _RedactingFormatter(logging.Formatter):
    """Log lines may quote commands or errors that carry env values: redact them too."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.text(super().format(record))


def _log_to_stderr(redactor: Redactor) -> None:
    """The engine's warnings (late invoices, slow clusters) go to supervisor.log."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(redactor))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _fresh_start(folder: deployments.DeploymentDir) -> None:
    """Keep the previous run's journal and logs as *.prev; start new ones."""
    if folder.journal.exists():
        folder.journal.replace(folder.root / "journal.prev.jsonl")
    if folder.logs.exists():
        previous = folder.root / "logs.prev"
        if previous.exists():
            for child in previous.iterdir():
                child.unlink()
            previous.rmdir()
        folder.logs.replace(previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m golem_deploy.supervisor")
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--env-file", type=Path, default=None)
    parser.add_argument("--providers", type=int, default=3)
    parser.add_argument("--faults", type=Path, default=None)
    args = parser.parse_args(argv)

    from golem_deploy.manifest import load_manifest

    manifest = load_manifest(args.manifest, env_file=args.env_file)
    return serve(manifest, providers=args.providers, faults=args.faults)


def serve(manifest: Manifest, *, providers: int, faults: Path | None) -> int:
    """Supervise `manifest`'s deployment until it is down; the process's exit code.

    Called by `main` in a fresh interpreter, or directly in the child `golem-deploy up`
    forked (supervisor/start.py), which hands over the manifest it already validated."""
    os.umask(0o077)  # the socket, journal and logs are private to the user
    folder = deployments.of(manifest.name)
    lock_fd = lock.try_take(folder.lock)  # held (open) until the process exits
    if lock_fd is None:
        print(f"deployment {manifest.name!r} already has a supervisor", file=sys.stderr)
        return deployments.EXIT_ALREADY_RUNNING
    previous = load(folder.journal)
    if not previous.empty:
        print(
            f"the previous run of {manifest.name!r} still holds: "
            + "; ".join(previous.summary())
            + " -- run `golem-deploy down` first",
            file=sys.stderr,
        )
        return deployments.EXIT_PREVIOUS_RUN_HOLDS
    _fresh_start(folder)
    folder.pid_file.write_text(f"{os.getpid()}\n")
    redactor = _redactor(manifest)
    if os.environ.get("YAGNA_APPKEY"):
        redactor.add(os.environ["YAGNA_APPKEY"])
    _log_to_stderr(redactor)
    journal = Journal(folder.journal, redactor=redactor, compact_every=compact_every())
    journal.append(
        "DeploymentStarted",
        name=manifest.name,
        manifest=str(manifest.path),
        network_kind="yagna" if os.environ.get("YAGNA_APPKEY") else "local",
        budget=str(manifest.budget),
        pid=os.getpid(),
        services=[{"name": n, "instances": s.instances} for n, s in manifest.services.items()],
    )
    supervisor = Supervisor(
        manifest,
        folder,
        providers=providers,
        faults=faults,
        journal=journal,
        redactor=redactor,
    )
    try:
        event_loop.run(supervisor.run)
    finally:
        journal.close()
    return 0 if supervisor.machine.state is not dm.DeploymentState.failed else 1


if __name__ == "__main__":
    sys.exit(main())
