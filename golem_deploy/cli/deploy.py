"""`up`, `status`, `down`, `logs`, `ls`: thin clients of a deployment's supervisor.

Why this shape (decision 4): the supervisor process owns the engine; these commands only
start it, ask it things over its control socket and render what it answers. When it is gone
(crash, SIGKILL) they read its journal instead and say so; `down` then releases what the
journal says is still held.

Imports of heavy modules (rich, the manifest loader, aiohttp, and the supervisor client with
its http.client) happen inside the commands that need them, so that `status --json` answers
fast and `--help` or `validate` never pay for what they don't use.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from golem_deploy.errors import GolemDeployError

if TYPE_CHECKING:
    from rich.console import Console

    from golem_deploy.supervisor.deployments import DeploymentDir

DEFAULT_UP_TIMEOUT = 600.0
DEFAULT_DOWN_TIMEOUT = 120.0
SOCKET_WAIT = 30.0  # how long a fresh supervisor may take to answer on its socket
POLL = 0.1  # up -d and down poll the snapshot this often: the user waits on it


class DeployError(GolemDeployError):
    pass


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, option: str) -> float:
    """'90', '500ms', '10s', '15m', '1h30m', '2d' -> seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match[1]) * _UNITS[match[2]]
            pos = match.end()
        if pos != len(value) or not value:
            raise DeployError(
                f"{option}: {text!r} is not a duration",
                hint="write it like 90, 500ms, 10s, 15m or 1h30m",
            ) from None
    if seconds <= 0:
        raise DeployError(f"{option}: the duration must be more than zero")
    return seconds


# ---- finding the deployment -------------------------------------------------------------------


def _load_manifest(path: Path, env_file: Path | None = None) -> Any:
    from golem_deploy.manifest import load_manifest
    from golem_deploy.manifest.diagnostics import ManifestError

    if not path.exists():
        raise DeployError(f"{path}: no such file", hint="give the path of a manifest YAML file")
    try:
        return load_manifest(path, env_file=env_file)
    except ManifestError as error:
        # Exactly what `golem-deploy validate` prints: every problem, file:line:column.
        sys.stderr.write("".join(d.format() + "\n" for d in error.diagnostics))
        raise typer.Exit(1) from None


def _target(name: str | None, file: Path | None) -> DeploymentDir:
    from golem_deploy.supervisor import deployments

    if name and file:
        raise DeployError("give either -n NAME or -f FILE, not both")
    if file is not None:
        name = _load_manifest(file).name
    return deployments.resolve(name)


def _snapshot(deployment: DeploymentDir) -> dict[str, Any]:
    """The live snapshot when the supervisor answers, else the journal's account.

    A supervisor that is starting or exiting holds its lock a moment before its socket
    answers or after it closed it; that moment is waited out, not reported as an error.
    """
    from golem_deploy.supervisor import client, deployments

    deadline = time.monotonic() + 3.0
    while deployment.supervisor_alive():
        try:
            snap = client.request(deployment.socket, "GET", "/snapshot", timeout=5.0)
        except client.SupervisorUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        if isinstance(snap, dict):
            return snap
    return deployments.journal_snapshot(deployment)


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _print_snapshot(snap: dict[str, Any]) -> None:
    from golem_deploy.ui.table import deployment_table, plain_lines

    console = _console()
    if console.is_terminal:
        console.print(deployment_table(snap))
    else:
        for line in plain_lines(snap):
            print(line)


# ---- up ---------------------------------------------------------------------------------------


def _spawn_supervisor(
    manifest: Any,
    deployment: DeploymentDir,
    *,
    providers: int,
    faults: Path | None,
    env_file: Path | None,
) -> subprocess.Popen[bytes]:
    """Start the supervisor detached (own session), its output going to supervisor.log."""
    argv = [
        sys.executable,
        "-m",
        "golem_deploy.supervisor.daemon",
        "--manifest",
        str(Path(manifest.path).resolve()),
        "--providers",
        str(providers),
    ]
    if faults is not None:
        argv += ["--faults", str(faults.resolve())]
    if env_file is not None:
        argv += ["--env-file", str(env_file.resolve())]
    log_fd = os.open(deployment.supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,  # Ctrl-C in this terminal must not reach it directly
            cwd=str(Path(manifest.path).resolve().parent),
            close_fds=True,
        )
    finally:
        os.close(log_fd)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_for_socket(process: subprocess.Popen[bytes], deployment: DeploymentDir) -> None:
    from golem_deploy.supervisor import client, deployments

    deadline = time.monotonic() + SOCKET_WAIT
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            tail = _log_tail(deployment.supervisor_log)
            if code == deployments.EXIT_ALREADY_RUNNING:
                raise DeployError(f"deployment {deployment.name!r} is already up")
            raise DeployError(
                f"the supervisor of {deployment.name!r} exited at start (code {code})",
                hint=f"its log ({deployment.supervisor_log}) ends with:\n{tail}" if tail else None,
            )
        if deployment.socket.exists():
            try:
                client.request(deployment.socket, "GET", "/snapshot", timeout=2.0)
                return
            except (client.SupervisorUnreachable, GolemDeployError):
                pass
        time.sleep(0.1)
    raise DeployError(
        f"the supervisor of {deployment.name!r} did not answer within {SOCKET_WAIT:g}s",
        hint=f"see {deployment.supervisor_log}",
    )


def _describe_failure(snap: dict[str, Any]) -> str:
    from golem_deploy.supervisor.snapshot import instances

    lines = [str(snap.get("reason") or f"deployment is {snap.get('state')}")]
    for service, inst in instances(snap):
        if inst.get("state") != "running":
            why = inst.get("reason") or ""
            lines.append(f"  {service}.{inst.get('index')}: {inst.get('state')} {why}".rstrip())
    return "\n".join(lines)


def _up_detached(deployment: DeploymentDir, timeout: float) -> None:
    from golem_deploy.supervisor.snapshot import instances, state_counts

    console = _console(stderr=True)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        snap = _snapshot(deployment)
        state = snap.get("state")
        counts = state_counts(snap)
        line = f"{deployment.name}: {counts.pop('running', 0)}/{len(instances(snap))} running"
        if counts:  # the others, e.g. "(1 pending, 2 starting)"
            line += " (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"
        if line != last:
            console.print(line)
            last = line
        if state == "running":
            console.print(f"[green]deployment {deployment.name} is up[/]")
            return
        if state in ("stopping", "stopped"):
            raise DeployError(
                f"deployment {deployment.name} went down before every instance was running"
                + (f": {snap['reason']}" if snap.get("reason") else ""),
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
        time.sleep(POLL)


def _request_down(deployment: DeploymentDir, timeout: float) -> None:
    from golem_deploy.supervisor import client

    # It may have just exited; the caller checks the lock.
    with contextlib.suppress(client.SupervisorUnreachable):
        client.request(deployment.socket, "POST", "/down", {"timeout": timeout}, timeout=5.0)


def _kill_supervisor(deployment: DeploymentDir) -> None:
    """SIGKILL the live supervisor (the pid that holds the deployment's lock) and wait."""
    pid = deployment.pid()
    if pid is None or not deployment.supervisor_alive():
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while deployment.supervisor_alive() and time.monotonic() < deadline:
        time.sleep(0.05)


def _live(deployment: DeploymentDir) -> None:
    """Attached `up`: the live table until Ctrl-C, then a graceful down (again: force)."""
    from rich.live import Live

    from golem_deploy.ui.table import deployment_table, plain_lines

    console = _console()
    interrupts = 0
    down_sent = False
    last_live: dict[str, Any] | None = None

    def view() -> Any:
        nonlocal last_live
        snap = _snapshot(deployment)
        if (snap.get("supervisor") or {}).get("alive"):
            last_live = snap
        elif last_live is not None:
            snap = _final(last_live, snap)
        if down_sent and snap.get("state") != "stopped":
            snap = dict(snap)
            snap["reason"] = (
                (snap.get("reason") or "") + "  going down… (Ctrl-C again to force)"
            ).strip()
        return deployment_table(snap, max_rows=max(5, console.size.height - 6))

    if not console.is_terminal:
        _attached_plain(deployment, plain_lines)
        return
    with Live(view(), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            try:
                while deployment.supervisor_alive():
                    live.update(view())
                    time.sleep(0.5)
                live.update(view())
                break
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    down_sent = True
                    _request_down(deployment, DEFAULT_DOWN_TIMEOUT)
                else:
                    live.console.print("[red]forcing down[/]")
                    _kill_supervisor(deployment)
                    break
    _finish_down(deployment, console)


def _final(live: dict[str, Any], ended: dict[str, Any]) -> dict[str, Any]:
    """The last live picture with the journal's final word (states, spent): the journal
    does not keep output lines, and the last picture should still show them."""
    merged = dict(live)
    for key in ("state", "reason", "supervisor", "budget", "held"):
        merged[key] = ended.get(key)
    final_states = {
        (service["name"], inst["index"]): inst["state"]
        for service in ended.get("services", [])
        for inst in service.get("instances", [])
    }
    merged["services"] = [
        {
            "name": service["name"],
            "instances": [
                dict(inst, state=final_states.get((service["name"], inst["index"]), inst["state"]))
                for inst in service.get("instances", [])
            ],
        }
        for service in live.get("services", [])
    ]
    return merged


def _attached_plain(deployment: DeploymentDir, plain_lines: Any) -> None:
    """Attached `up` without a terminal: print the snapshot whenever it changes."""
    interrupts = 0
    last: list[str] = []
    while True:
        try:
            while deployment.supervisor_alive():
                snap = _snapshot(deployment)
                lines = plain_lines(snap)
                comparable = [re.sub(r" up=\S+| expires=\S+", "", line) for line in lines]
                if comparable != last:
                    print("\n".join(lines), flush=True)
                    last = comparable
                time.sleep(0.5)
            break
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                print("going down… (Ctrl-C again to force)", flush=True)
                _request_down(deployment, DEFAULT_DOWN_TIMEOUT)
            else:
                _kill_supervisor(deployment)
                break
    _finish_down(deployment, _console())


def _finish_down(deployment: DeploymentDir, console: Console) -> None:
    """After the supervisor ended: release leftovers from the journal; exit non-zero if any."""
    from golem_deploy.supervisor import journal, recover

    held = journal.load(deployment.journal)
    if not held.empty:
        console.print("releasing what the journal says is still held:")
        for line in held.summary():
            console.print(f"  {line}")
        lock_fd = _lock_for_recovery(deployment)
        try:
            with journal.Journal(deployment.journal) as jr:
                problems = recover.release(held, jr, progress=lambda m: console.print(f"  {m}"))
                held_after = journal.load(deployment.journal)
                if held_after.empty and not problems:
                    jr.append("DeploymentStopped", clean=True, recovered=True)
        finally:
            os.close(lock_fd)
        held = journal.load(deployment.journal)
        if problems or not held.empty:
            raise DeployError(
                f"deployment {deployment.name} is down but some things were not released: "
                + "; ".join(problems + held.summary()),
                hint="run `golem-deploy down` again; if it persists, check the yagna daemon",
            )
    for missing in _missing_invoices(deployment):
        console.print(missing)
    console.print(f"[green]deployment {deployment.name} is down; everything released[/]")


def _missing_invoices(deployment: DeploymentDir) -> list[str]:
    """The last run's agreements whose provider never sent an invoice (the supervisor gave
    up waiting for it): worth telling, since their last debit notes are all that was paid."""
    from golem_deploy.supervisor import journal

    lines: list[str] = []
    for record in journal.read(deployment.journal):
        if record["kind"] == "DeploymentStarted":
            lines = []
        elif record["kind"] == "InvoiceMissing":
            agreement = str(record.get("agreement_id"))[:12]
            lines.append(
                f"  no invoice arrived for agreement {agreement}… within "
                f"{record.get('waited')}s; its accepted debit notes cover the work"
            )
    return lines


def _lock_for_recovery(deployment: DeploymentDir) -> int:
    """Hold the supervisor lock while recovering, so no `up` starts meanwhile."""
    import fcntl

    fd = os.open(deployment.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DeployError(
            f"deployment {deployment.name} got a new supervisor meanwhile; not touching it"
        ) from None
    return fd


def _allow_unsafe_host_exec() -> None:
    """--unsafe-host-exec: the local network's processes inherit the opt-out (see
    golem_deploy.localnet.sandbox); said in red on every start."""
    from golem_deploy.localnet.sandbox import UNSAFE_HOST_EXEC_ENV

    if os.environ.get("YAGNA_APPKEY"):
        raise DeployError(
            "--unsafe-host-exec only applies to the private local network",
            hint="unset YAGNA_APPKEY to deploy on a local network",
        )
    os.environ[UNSAFE_HOST_EXEC_ENV] = "1"
    _console(stderr=True).print(
        "[bold red]--unsafe-host-exec: activities run UNSEALED on this host, as "
        f"uid {os.geteuid()}, with its files and network: only for manifests you trust[/]"
    )


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
        typer.Option(
            "--unsafe-host-exec",
            help="Local network only: run commands unsealed on this host, as you "
            "(for machines that cannot seal activities; only for manifests you trust).",
        ),
    ] = False,
) -> None:
    """Validate a manifest and deploy it (attached: a live table; Ctrl-C goes down)."""
    from golem_deploy.supervisor import deployments

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
        _allow_unsafe_host_exec()
    manifest = _load_manifest(file, env_file)
    deployment = deployments.of(manifest.name)
    if deployment.supervisor_alive():
        raise DeployError(
            f"deployment {manifest.name!r} is already up (supervisor pid {deployment.pid()})",
            hint=f"`golem-deploy status -n {manifest.name}` shows it; "
            f"`golem-deploy down -n {manifest.name}` stops it",
        )
    from golem_deploy.supervisor import journal

    held = journal.load(deployment.journal)
    if not held.empty:
        raise DeployError(
            f"a previous run of {manifest.name!r} ended without releasing everything: "
            + "; ".join(held.summary()),
            hint=f"run `golem-deploy down -n {manifest.name}` first",
        )
    process = _spawn_supervisor(
        manifest, deployment, providers=providers, faults=faults, env_file=env_file
    )
    try:
        _wait_for_socket(process, deployment)
    except KeyboardInterrupt:
        # Not even answering yet: SIGTERM is its graceful down (or, this early, its end).
        process.terminate()
        process.wait()
        _finish_down(deployment, _console())
        raise typer.Exit(130) from None
    if detach:
        try:
            _up_detached(deployment, wait)
        except KeyboardInterrupt:
            _console(stderr=True).print(
                f"stopped waiting; deployment {deployment.name} keeps starting "
                f"(`golem-deploy down -n {deployment.name}` stops it)"
            )
            raise typer.Exit(130) from None
    else:
        _live(deployment)


# ---- status / down / logs / ls ----------------------------------------------------------------


def status(
    name: Annotated[str | None, typer.Option("-n", "--name", help="The deployment's name.")] = None,
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="The deployment's manifest.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep the table updated until Ctrl-C.")
    ] = False,
) -> None:
    """Show a deployment: every instance, its provider, uptime, cost, last output."""
    deployment = _target(name, file)
    if as_json:
        from golem_deploy.supervisor.snapshot import public_status

        sys.stdout.write(json.dumps(public_status(_snapshot(deployment)), indent=2) + "\n")
        return
    if not watch:
        _print_snapshot(_snapshot(deployment))
        return
    from rich.live import Live

    from golem_deploy.ui.table import deployment_table

    console = _console()
    with Live(console=console, refresh_per_second=2) as live:
        try:
            while True:
                live.update(
                    deployment_table(
                        _snapshot(deployment), max_rows=max(5, console.size.height - 6)
                    )
                )
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass


def down(
    name: Annotated[str | None, typer.Option("-n", "--name", help="The deployment's name.")] = None,
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="The deployment's manifest.")
    ] = None,
    timeout: Annotated[
        str,
        typer.Option("--timeout", help="How long the graceful stop may take before it is forced."),
    ] = "2m",
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Skip shutdown steps: kill the supervisor, release everything."
        ),
    ] = False,
) -> None:
    """Stop a deployment and release everything it holds (exit 0 when all is released)."""
    limit = parse_duration(timeout, "--timeout")
    deployment = _target(name, file)
    console = _console()
    if deployment.supervisor_alive():
        if force:
            console.print(f"{deployment.name}: killing the supervisor (--force)")
            _kill_supervisor(deployment)
        else:
            console.print(f"{deployment.name}: going down (timeout {timeout})")
            _down_with_progress(deployment, console, limit)
    _finish_down(deployment, console)


def _progress_line(record: dict[str, Any]) -> str | None:
    """What `down` prints for one supervisor event (None: not worth a line)."""
    kind = record.get("kind")
    short = str(record.get("agreement_id") or "")[:12] + "…"
    if kind == "InstanceStateChanged":
        return f"  {record.get('service')}.{record.get('index')}: {record.get('new')}"
    if kind == "AgreementTerminated":
        return f"  agreement {short} terminated"
    if kind == "InvoiceAccepted":
        return f"  invoice for agreement {short} accepted: {record.get('amount')} GLM"
    if kind == "AllocationReleased":
        return f"  allocation {record.get('allocation_id')} released"
    if kind == "LocalnetStopped":
        return "  local network stopped"
    if kind == "DownTimedOut":
        return f"  [red]the graceful stop timed out after {record.get('timeout')}s[/]"
    return None


def _down_with_progress(deployment: DeploymentDir, console: Console, timeout: float) -> None:
    """Ask for a graceful down and print what happens until the supervisor exits.

    Past `timeout` (plus a margin for the engine's own cleanup) the supervisor is killed;
    `_finish_down` then releases whatever the journal still lists."""
    from golem_deploy.supervisor import client

    try:
        events = client.EventStream(deployment.socket)  # subscribe first: miss nothing
    except client.SupervisorUnreachable:
        events = None
    _request_down(deployment, timeout)
    deadline = time.monotonic() + timeout + 15.0
    for record in events or ():
        line = _progress_line(record)
        if line is not None:
            console.print(line, highlight=False)
        if time.monotonic() > deadline:
            break
    # The stream ended: the supervisor exited, or it is stuck; give it a moment, then force.
    while deployment.supervisor_alive() and time.monotonic() < deadline:
        time.sleep(POLL)
    if deployment.supervisor_alive():
        console.print("[red]the supervisor did not finish in time; forcing[/]")
        _kill_supervisor(deployment)


def logs(
    selector: Annotated[
        str | None,
        typer.Argument(
            help="SERVICE or SERVICE.INDEX; all instances when omitted.", show_default=False
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("-n", "--name", help="The deployment's name.")] = None,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", min=0, help="Only the last N lines.")
    ] = None,
) -> None:
    """Print the instances' output, merged in time order and prefixed `service.index |`."""
    from golem_deploy.supervisor import deployments
    from golem_deploy.supervisor import logs as logfiles

    deployment = deployments.resolve(name)
    files = logfiles.log_files(deployment.logs, selector)
    if selector and not files and not follow:
        raise DeployError(
            f"no logs for {selector!r} in deployment {deployment.name}",
            hint="use SERVICE or SERVICE.INDEX as `golem-deploy status` lists them",
        )
    width = max((len(f"{s}.{i}") for s, i, _ in files), default=0)
    try:
        for line in logfiles.read_merged(files, tail):
            print(line.format(width=width), flush=False)
        sys.stdout.flush()
        if not follow:
            return
        for line in logfiles.follow(deployment.logs, selector, alive=deployment.supervisor_alive):
            print(line.format(width=width), flush=True)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        pass


def ls(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List known deployments and their states."""
    from golem_deploy.supervisor import deployments
    from golem_deploy.supervisor.snapshot import instances

    rows = []
    for deployment in deployments.known():
        try:
            snap = _snapshot(deployment)
        except GolemDeployError:
            snap = deployments.journal_snapshot(deployment)
        supervisor = snap.get("supervisor") or {}
        rows.append(
            {
                "name": deployment.name,
                "state": snap.get("state"),
                "pid": supervisor.get("pid"),
                "alive": bool(supervisor.get("alive")),
                "network": (snap.get("network") or {}).get("kind"),
                "instances": len(instances(snap)),
                "spent": (snap.get("budget") or {}).get("spent"),
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        print("no deployments")
        return
    from golem_deploy.ui.table import deployments_table

    _console().print(deployments_table(rows))


def register(app: typer.Typer) -> None:
    """Add up / status / down / logs / ls to the root app."""
    app.command(no_args_is_help=True)(up)
    app.command()(status)
    app.command()(down)
    app.command()(logs)
    app.command("ls")(ls)
