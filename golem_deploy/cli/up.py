"""`golem-deploy up`: start a deployment's supervisor, then show it (attached) or wait for
it to run (`-d`).

Attached, the live table runs until Ctrl-C, which asks the supervisor for a graceful down
(a second Ctrl-C forces it); what the supervisor leaves held is released from its journal.
SIGTERM and SIGHUP arrive here as Ctrl-C does (cli/signals.py), so `kill PID` or a closed
terminal takes the same path (a repeated SIGHUP is not a second Ctrl-C).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from golem_deploy.cli.common import (
    DEFAULT_DOWN_TIMEOUT,
    UNSAFE_HOST_EXEC_HELP,
    DeployError,
    allow_unsafe_host_exec,
    console,
    finish_down,
    load_manifest,
    parse_duration,
    snapshot,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

    from golem_deploy.supervisor.deployments import DeploymentDir
    from golem_deploy.supervisor.snapshot import DeploymentSnapshot

POLL = 0.1  # `up -d` looks again at most this often, unless the deployment itself changed
REFRESH = 0.5  # the attached views redraw this often
#: The records `up -d` waits on: the deployment's own and the instances' state changes. Not
#: the rest (agreements, proposals, every command of every batch): at 100 instances the
#: supervisor spent a sixth of its CPU while they start building and sending those.
WATCHED = ("Deployment", "Down", "InstanceStateChanged")


def up(
    file: Annotated[Path, typer.Argument(help="The manifest to deploy.", show_default=False)],
    detach: Annotated[
        bool, typer.Option("-d", "--detach", help="Return once every instance runs (or it failed).")
    ] = False,
    timeout: Annotated[
        str, typer.Option("--timeout", help="With -d: how long to wait for every instance to run.")
    ] = "10m",
    providers: Annotated[
        int,
        typer.Option("--providers", min=1, help="Local network only: how many providers to start."),
    ] = 3,
    faults: Annotated[
        Path | None,
        typer.Option("--faults", help="Local network only: a faults YAML file (fault injection)."),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="A .env file for ${VAR} interpolation in the manifest."),
    ] = None,
    unsafe_host_exec: Annotated[
        bool,
        typer.Option("--unsafe-host-exec", help=UNSAFE_HOST_EXEC_HELP),
    ] = False,
    skip_checks: Annotated[
        bool,
        typer.Option(
            "--skip-checks",
            help="On your yagna: skip the `golem-deploy doctor` checks `up` runs first.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print what `up` would change (per service: added, removed, replaced, "
            "scaled, unchanged) and change nothing.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --dry-run, or on a running deployment: JSON.")
    ] = False,
) -> None:
    """Validate a manifest and deploy it (attached: a live table; Ctrl-C goes down).

    On a deployment that is already up, apply the manifest as a change instead: more or
    fewer instances, changed services replaced instance by instance (the new one running
    before the old one stops), services added or removed; unchanged services untouched."""
    from golem_deploy.supervisor import control, deployments, journal, ports, prefork, start

    wait = parse_duration(timeout, "--timeout")
    if faults is not None and not faults.is_file():
        raise DeployError(f"--faults: {faults}: no such file")
    if faults is not None and os.environ.get("YAGNA_APPKEY"):
        raise DeployError(
            "--faults only applies to the private local network",
            hint="unset YAGNA_APPKEY to deploy on a local network with injected faults",
        )
    if env_file is not None and not env_file.is_file():
        raise DeployError(f"--env-file: {env_file}: no such file")
    if unsafe_host_exec:
        if os.environ.get("YAGNA_APPKEY"):
            raise DeployError(
                "--unsafe-host-exec only applies to the private local network",
                hint="unset YAGNA_APPKEY to deploy on a local network",
            )
        allow_unsafe_host_exec()
    manifest = load_manifest(file, env_file)
    running = deployments.existing(manifest.name)  # no folder is made before the checks
    if running is not None and running.supervisor_alive():
        from golem_deploy.cli.change import up_change

        prefork.cancel()  # a change: the running supervisor takes it

        up_change(running, manifest, env_file, dry_run=dry_run, as_json=as_json, timeout=wait)
        return
    if dry_run:
        from golem_deploy.cli.change import dry_run_fresh

        dry_run_fresh(manifest, as_json=as_json)
        return
    ports.check_ports_free(manifest)  # before anything starts: nothing to clean up
    if os.environ.get("YAGNA_APPKEY") and not skip_checks:
        from golem_deploy.cli.doctor import preflight

        # `doctor`'s checks, before anything is allocated, started or even given a folder.
        preflight(manifest, file)
    deployment = deployments.of(manifest.name)
    held = journal.load(deployment.journal)
    if not held.empty:
        raise DeployError(
            f"a previous run of {manifest.name!r} ended without releasing everything: "
            + "; ".join(held.summary()),
            hint=f"run `golem-deploy down -n {manifest.name}` first",
        )
    process = start.spawn(
        manifest, deployment, providers=providers, faults=faults, env_file=env_file
    )
    try:
        control.wait_for_socket(process, deployment)
    except KeyboardInterrupt:
        # Not even answering yet: SIGTERM is its graceful down (or, this early, its end).
        process.terminate()
        process.wait()
        finish_down(deployment, console())
        raise typer.Exit(130) from None
    if detach:
        try:
            _up_detached(deployment, wait)
        except KeyboardInterrupt:
            console(stderr=True).print(
                f"stopped waiting; deployment {deployment.name} keeps starting "
                f"(`golem-deploy down -n {deployment.name}` stops it)"
            )
            raise typer.Exit(130) from None
    else:
        _live(deployment)


def _describe_failure(snap: DeploymentSnapshot) -> str:
    from golem_deploy.supervisor.snapshot import instances

    lines = [snap.reason or f"deployment is {snap.state}"]
    for service, inst in instances(snap):
        if inst.state != "running":
            why = inst.reason or ""
            lines.append(f"  {service}.{inst.index}: {inst.state} {why}".rstrip())
    return "\n".join(lines)


def _up_detached(deployment: DeploymentDir, timeout: float) -> None:
    from golem_deploy.supervisor.snapshot import instances, state_counts

    out = console(stderr=True)
    deadline = time.monotonic() + timeout
    last = ""
    total: int | None = None
    for kind in _changes(deployment):
        if kind == "DeploymentRunning" and total is not None:
            # every instance runs: said without asking for a snapshot once more
            if last != (line := f"{deployment.name}: {total}/{total} running"):
                out.print(line)
            out.print(f"[green]deployment {deployment.name} is up[/]")
            return
        snap = snapshot(deployment)
        total = len(instances(snap))
        state = snap.state
        counts = state_counts(snap)
        line = f"{deployment.name}: {counts.pop('running', 0)}/{total} running"
        if counts:  # the others, e.g. "(1 pending, 2 starting)"
            line += " (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"
        if line != last:
            out.print(line)
            last = line
        if state == "running":
            out.print(f"[green]deployment {deployment.name} is up[/]")
            return
        if state in ("stopping", "stopped"):
            raise DeployError(
                f"deployment {deployment.name} went down before every instance was running"
                + (f": {snap.reason}" if snap.reason else ""),
                hint=f"`golem-deploy logs -n {deployment.name}` shows what happened",
            )
        if state in ("failed", "gone"):
            raise DeployError(
                f"deployment {deployment.name} failed to start: {_describe_failure(snap)}",
                hint=f"see `golem-deploy logs -n {deployment.name}`; "
                f"`golem-deploy down -n {deployment.name}` releases what it holds",
            )
        if time.monotonic() > deadline:
            raise DeployError(
                f"deployment {deployment.name} was not running after {timeout:g}s: "
                f"{_describe_failure(snap)}",
                hint=f"it keeps trying; `golem-deploy status -n {deployment.name}` shows it, "
                f"`golem-deploy down -n {deployment.name}` stops it",
            )
    raise AssertionError("unreachable: _changes never ends")


def _changes(deployment: DeploymentDir) -> Iterator[str | None]:
    """Yields whenever the deployment may have changed, for `up -d` to look again: the
    kind of the supervisor record that says so, or None.

    Why the supervisor's record stream and not a timer: the moment the last instance runs
    is the moment `up -d` should return. So: at once for a deployment-level record
    (running, failed, going down), at most every POLL seconds for the others, and at least
    once a second (the stream's heartbeat, which also lets the deadline be checked). Once
    the stream ends (the supervisor exited), every POLL seconds: the journal answers then."""
    from golem_deploy.supervisor import client

    try:
        records = client.EventStream(deployment.socket, kinds=WATCHED)
    except client.SupervisorUnreachable:
        records = None
    yield None  # subscribed first, then the first look: nothing is missed in between
    looked = time.monotonic()
    for record in records or ():
        now = time.monotonic()
        kind = str(record.get("kind", ""))
        if kind.startswith("Deployment") or now - looked >= POLL:
            looked = now
            yield kind
    while True:
        time.sleep(POLL)
        yield None


def _live(deployment: DeploymentDir) -> None:
    """Attached `up`: the live table until Ctrl-C, then a graceful down (again: force)."""
    from rich.live import Live

    from golem_deploy.supervisor.snapshot import merge_final
    from golem_deploy.ui.table import deployment_table, plain_lines

    out = console()
    down_sent = False
    last_live: DeploymentSnapshot | None = None

    def view() -> RenderableType:
        nonlocal last_live
        snap = snapshot(deployment)
        if snap.supervisor_alive:
            last_live = snap
        elif last_live is not None:
            snap = merge_final(last_live, snap)
        if down_sent and snap.state != "stopped":
            going = ((snap.reason or "") + "  going down… (Ctrl-C again to force)").strip()
            snap = dataclasses.replace(snap, reason=going)
        return deployment_table(snap, max_rows=max(5, out.size.height - 6))

    if not out.is_terminal:
        _attached_plain(deployment, plain_lines)
        return
    with Live(view(), console=out, refresh_per_second=4, transient=False) as live:

        def watch() -> None:
            while deployment.supervisor_alive():
                live.update(view())
                time.sleep(REFRESH)
            live.update(view())

        def going_down() -> None:
            nonlocal down_sent
            down_sent = True

        _until_down(
            deployment,
            watch,
            going_down=going_down,
            forcing=lambda: live.console.print("[red]forcing down[/]"),
        )
    finish_down(deployment, out)


def _attached_plain(
    deployment: DeploymentDir, plain_lines: Callable[[DeploymentSnapshot], list[str]]
) -> None:
    """Attached `up` without a terminal: print the snapshot whenever it changes (and go on
    when nobody reads it any more: signals.say)."""
    from golem_deploy.cli.signals import say

    last: list[str] = []

    def watch() -> None:
        nonlocal last
        while deployment.supervisor_alive():
            lines = plain_lines(snapshot(deployment))
            comparable = [re.sub(r" up=\S+| expires=\S+", "", line) for line in lines]
            if comparable != last:
                say("\n".join(lines))
                last = comparable
            time.sleep(REFRESH)

    _until_down(
        deployment,
        watch,
        going_down=lambda: say("going down… (Ctrl-C again to force)"),
        forcing=lambda: None,
    )
    finish_down(deployment, console())


def _until_down(
    deployment: DeploymentDir,
    watch: Callable[[], None],
    *,
    going_down: Callable[[], None],
    forcing: Callable[[], None],
) -> None:
    """Run `watch` (it returns once the supervisor is gone); the first Ctrl-C asks for a
    graceful down, the next one kills the supervisor.

    Every interrupt counts wherever it lands -- also one that comes while the down is being
    asked for, or while the supervisor is being killed (two quick Ctrl-C, or a second
    SIGTERM from a CI runner): handling it in an `except` block would let that one escape
    and end `up` before `finish_down` released anything."""
    from golem_deploy.supervisor import control

    interrupts = 0
    asked = False
    while True:
        try:
            if interrupts >= 2:
                forcing()
                control.kill(deployment)  # again after an interrupt: it ends when it is dead
                return
            if interrupts == 1 and not asked:
                asked = True
                going_down()
                control.request_down(deployment, DEFAULT_DOWN_TIMEOUT)
            watch()
            return
        except KeyboardInterrupt:
            interrupts += 1
