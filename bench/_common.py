"""Shared helpers of the benchmarks: isolation, a private state home, the CLI, statistics.

Every benchmark measures what a user feels: whole `golem-deploy` processes timed from the
outside (wall clock), against the real embedded local network (real yagna daemons). Rules
they all follow:
- as root on Linux, the benchmark first moves into a loopback-only network namespace, so
  no daemon can reach anything but this machine (like the test suite);
- everything lives under a temporary GOLEM_DEPLOY_HOME that is removed at the end;
- every process a benchmark starts is ended by its pid (local networks by their recorded
  pid files, supervisors by `down --force` and then their pid), also when it fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "manifests"
#: Threads each local provider offers (golem_deploy.localnet.provider.CPU_THREADS);
#: hello-world instances need one each.
PROVIDER_THREADS = 32


def isolate() -> bool:
    """Move this process into a fresh loopback-only network namespace (root on Linux).

    First, while a package mirror is still reachable, installs Debian's squashfs-tools if
    missing (as the test suite does): the benchmark image is built with mksquashfs and the
    local network unpacks it with unsquashfs (_image.py)."""
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from _gvmi import install_squashfs_tools

    install_squashfs_tools()
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:  # CLONE_NEWNET
        return False
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return True


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def stats(samples: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """median / min / max (and the raw samples) of repeated measurements."""
    return {
        "median": round(statistics.median(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "runs": len(samples),
        "samples": [round(s, digits) for s in samples],
    }


def providers_for(instances: int) -> int:
    """Enough local providers for `instances` one-thread instances (at least the default 3)."""
    return max(3, math.ceil(instances / PROVIDER_THREADS))


def emit(result: dict[str, Any]) -> None:
    """Print a benchmark's result as one JSON line (the last line of its output)."""
    result.setdefault("cores", cores())
    print(json.dumps(result), flush=True)


def cli_argv(*args: str) -> list[str]:
    """The installed `golem-deploy` console script (what users run), else `python -m`."""
    script = Path(sys.executable).with_name("golem-deploy")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "golem_deploy", *args]


def run_cli(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 900.0
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run one `golem-deploy` command; (wall seconds, the completed process)."""
    began = time.perf_counter()
    done = subprocess.run(
        cli_argv(*args), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    elapsed = time.perf_counter() - began
    if check and done.returncode != 0:
        raise RuntimeError(
            f"golem-deploy {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return elapsed, done


def hello_manifest(folder: Path, name: str, instances: int) -> Path:
    """manifests/hello-world.yaml renamed and scaled to `instances`, with a budget that
    lasts the whole benchmark (100 instances spend the example's 1 GLM in under a minute)."""
    text = (MANIFESTS / "hello-world.yaml").read_text()
    lines = []
    for line in text.splitlines():
        if line.startswith("name:"):
            line = f"name: {name}"
        elif line.startswith("budget:"):
            line = "budget: 1000.0"
        elif line.strip().startswith("instances:"):
            line = line.split("instances:")[0] + f"instances: {instances}"
        lines.append(line)
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def compile_bytecode() -> None:
    """Write golem_deploy's bytecode (``__pycache__``), as an installation has it.

    Why: pip writes it when it installs a wheel (yapapi's venv here has it), and an editable
    install writes it on its first import -- unless PYTHONDONTWRITEBYTECODE is set, as on
    this machine. Without it every cold command compiled ~150 modules, ~0.1 s per process
    (the CLI's and the supervisor's): a cost no installed golem-deploy pays. Quiet, and a
    no-op when the bytecode is up to date."""
    import compileall

    compileall.compile_dir(REPO / "golem_deploy", quiet=2)


@contextlib.contextmanager
def bench_home(prefix: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A temporary GOLEM_DEPLOY_HOME and the environment for CLI processes using it.

    At exit every deployment still alive in it is forced down and every local network in
    it is stopped (by their recorded pids), then the folder is removed, unless
    GOLEM_DEPLOY_BENCH_KEEP=1 asks to keep it (journals and logs, to see why a run failed).
    """
    compile_bytecode()
    home = Path(tempfile.mkdtemp(prefix=prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("YAGNA_")}
    env["GOLEM_DEPLOY_HOME"] = str(home)
    env["XDG_CACHE_HOME"] = str(home / "cache")  # the rendered --help starts cold (cli/entry.py)
    env.setdefault("COLUMNS", "120")
    # Cold commands unless a benchmark asks for the warm process (warm_up below).
    env["GOLEM_DEPLOY_WARM"] = "0"
    try:
        yield home, env
    finally:
        cleanup(home, env)
        if os.environ.get("GOLEM_DEPLOY_BENCH_KEEP") == "1":
            print(f"kept {home} (GOLEM_DEPLOY_BENCH_KEEP=1)", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(home, ignore_errors=True)


def cleanup(home: Path, env: dict[str, str]) -> None:
    """End everything a benchmark left running under `home`, by recorded pids only."""
    from golem_deploy import localnet
    from golem_deploy.cli import warm

    deployments = home / "deployments"
    for folder in sorted(deployments.iterdir()) if deployments.is_dir() else []:
        with contextlib.suppress(Exception):
            run_cli("down", "--force", "-n", folder.name, env=env, check=False, timeout=120)
        pid_file = folder / "supervisor.pid"
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().strip())
            if _holds_lock(folder / "supervisor.lock"):
                os.kill(pid, signal.SIGKILL)
        if (folder / "localnet").is_dir():
            with contextlib.suppress(Exception):
                localnet.stop(folder / "localnet")
    networks = home / "localnet"
    for folder in sorted(networks.iterdir()) if networks.is_dir() else []:
        with contextlib.suppress(Exception):
            localnet.stop(folder)
    warm.stop_all(home)


def warm_up(env: dict[str, str], manifest: Path) -> dict[str, str]:
    """The environment for warm commands (cli/warm.py), with the warm process started:
    one cold command starts it on its way out; wait until it listens."""
    warm_env = {**env, "GOLEM_DEPLOY_WARM": "1"}
    folder = Path(env["GOLEM_DEPLOY_HOME"]) / "warm"
    run_cli("validate", str(manifest), env=warm_env)
    deadline = time.monotonic() + 30
    while not list(folder.glob("*.sock")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no warm process listened in {folder} within 30 s")
        time.sleep(0.05)
    return warm_env


def _holds_lock(lock: Path) -> bool:
    """Whether some process still holds this supervisor lock (it is alive)."""
    import fcntl

    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def local_network(home: Path, env: dict[str, str], providers: int) -> Iterator[dict[str, str]]:
    """A standalone local network (like `golem-deploy localnet start`); yields the env that
    points deployments and yapapi at it (YAGNA_* set, its `gftp` first on PATH), stops it
    at exit."""
    from golem_deploy import localnet

    state_dir = home / "localnet" / f"p{providers}"
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        info = localnet.start(state_dir, providers=providers, timeout=120)
        path = info.path_with_gftp(env.get("PATH", os.defpath))
        yield {**env, **info.env(), "PATH": path}
    finally:
        localnet.stop(state_dir)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> float:
    return os.getloadavg()[0]
