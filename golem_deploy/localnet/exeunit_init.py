"""The first process of an activity's sandbox (pid 1 of its pid namespace).

Run by :mod:`golem_deploy.localnet.sandbox` as
``unshare --mount --pid --fork --kill-child --mount-proc -- python -I -S exeunit_init.py SPEC``
and deliberately importing nothing from golem_deploy (it is run by file path, so it starts
in a few milliseconds and does not depend on the package's imports).

It gives the activity its view of the file system (private ``/golem``, read-only mounts),
prints ``ready``, then stays alive so that processes the activity starts in the background
outlive the command that started them. It reaps orphans (pid 1's job). It ends when its
stdin reaches EOF -- the ExeUnit closed it, or the ExeUnit's process died -- and when pid 1
of a pid namespace ends, the kernel kills every other process in it: that is how "all of an
activity's processes end" is guaranteed, also after a crash of the provider agent.

SPEC is JSON: {"root": "<host dir that becomes /golem>", "mounts": [["/container/path",
"/host/path"], ...]}.

The same file, run as ``exeunit_init.py --exec CPU_FILE -- ARGV...``, wraps each command to
measure its CPU time (see :func:`run_command`).
"""

import json
import os
import signal
import subprocess
import sys


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"mount {' '.join(args)}: {result.stderr.strip()}")


def _prepare_target(target: str, source: str) -> None:
    """A bind mount needs an existing target of the same kind (file or directory)."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            with open(target, "a"):
                pass


def setup(spec: dict) -> None:  # type: ignore[type-arg]
    # Nothing we mount may leak back into the host's mount namespace.
    _mount("--make-rprivate", "/")
    os.makedirs("/golem", exist_ok=True)
    _mount("--bind", spec["root"], "/golem")
    # Parents before children, so /a/b is mounted on top of /a, not hidden by it.
    for container_path, host_path in sorted(spec["mounts"], key=lambda m: m[0].count("/")):
        _prepare_target(container_path, host_path)
        _mount("--bind", host_path, container_path)
        _mount("-o", "remount,bind,ro", container_path)
    os.chdir("/golem/work")


def _reap(signum: int, frame: object) -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def run_command(cpu_file: str, argv: list[str]) -> None:
    """``--exec`` mode: run ``argv`` as our child and record the CPU time it used.

    The ExeUnit starts every command through this wrapper because only a parent's wait4()
    learns the exact CPU time of a process (and of the descendants it waited for) after it
    ended; sampling /proc would miss whatever ran between two samples. The wrapper exits
    like its child did (same code, or the same signal), so it is invisible to the caller.
    """
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            sys.stderr.write(f"{argv[0]}: {exc.strerror}\n")
            sys.stderr.flush()
        os._exit(127)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda s, _f: os.kill(pid, s))
    _, status, usage = os.wait4(pid, 0)
    with open(cpu_file, "w") as out:
        out.write(repr(usage.ru_utime + usage.ru_stime))
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


def main() -> None:
    if sys.argv[1] == "--exec":  # --exec CPU_FILE -- ARGV...
        run_command(sys.argv[2], sys.argv[4:])
        return
    try:
        setup(json.loads(sys.argv[1]))
    except Exception as exc:
        print(f"error: {exc}", flush=True)
        sys.exit(1)
    signal.signal(signal.SIGCHLD, _reap)
    print("ready", flush=True)
    while sys.stdin.buffer.read(4096):  # until EOF: the ExeUnit is done with us
        pass


if __name__ == "__main__":
    main()
