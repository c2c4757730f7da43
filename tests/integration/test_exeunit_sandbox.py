"""The per-activity sandbox with real processes (no yagna needed).

What service scripts rely on: /golem/work at exactly that path, read-only local mounts,
background processes that outlive the command that started them but not the activity,
arguments that arrive byte for byte, and timeouts that kill.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from _procs import processes_with

from golem_deploy.localnet.sandbox import (
    CommandTimeout,
    Sandbox,
    SandboxError,
    namespaces_available,
)

HOST_PYTHON = "/usr/bin/python3"
"""The host's system Python: visible in the sealed host root (the test venv's is not: no host
path outside /usr, /bin, /lib* exists in a sandbox)."""

isolated_only = pytest.mark.skipif(
    not (namespaces_available() and sys.platform == "linux" and os.geteuid() == 0),
    reason="needs Linux namespaces (run as root)",
)


@asynccontextmanager
async def open_sandbox(
    work_dir: Path, mounts: dict[str, Path] | None = None, *, isolate: bool | None = None
) -> AsyncIterator[Sandbox]:
    async with anyio.create_task_group() as tg:
        sandbox = Sandbox(work_dir, mounts, isolate=isolate)
        await tg.start(sandbox.serve)
        try:
            yield sandbox
        finally:
            await sandbox.close()


async def output_of(sandbox: Sandbox, argv: list[str], **kwargs: object) -> tuple[int, str, str]:
    out: list[bytes] = []
    err: list[bytes] = []

    def sink(into: list[bytes]) -> Callable[[bytes], Awaitable[None]]:
        async def collect(chunk: bytes) -> None:
            into.append(chunk)

        return collect

    code = await sandbox.run(argv, on_stdout=sink(out), on_stderr=sink(err), **kwargs)  # type: ignore[arg-type]
    return code, b"".join(out).decode(), b"".join(err).decode()


@isolated_only
def test_private_golem_dirs_at_their_exact_paths_and_read_only_mounts(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tool.sh").write_text("echo from-mount\n")

    async def main() -> None:
        async with open_sandbox(tmp_path / "a", {"/golem/run": shared}) as sandbox:
            assert sandbox.isolated and sandbox.limitations is None
            code, out, _ = await output_of(
                sandbox, ["/bin/sh", "-c", "pwd; ls /golem; echo data > /golem/output/r.txt"]
            )
            assert code == 0
            lines = out.split()
            assert lines[0] == "/golem/work"
            assert set(lines[1:]) == {"input", "output", "resource", "run", "work"}
            # What the activity wrote is in its private dir on the host.
            assert (tmp_path / "a" / "golem" / "output" / "r.txt").read_text() == "data\n"

            code, out, _ = await output_of(sandbox, ["/bin/sh", "/golem/run/tool.sh"])
            assert (code, out) == (0, "from-mount\n")
            code, _, err = await output_of(sandbox, ["/bin/sh", "-c", "echo x > /golem/run/new"])
            assert code != 0 and "Read-only" in err
            assert not (shared / "new").exists()

    anyio.run(main)


@isolated_only
def test_two_activities_do_not_see_each_other(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            open_sandbox(tmp_path / "a") as one,
            open_sandbox(tmp_path / "b") as two,
        ):
            assert (await output_of(one, ["/bin/sh", "-c", "echo 1 > /golem/work/f"]))[0] == 0
            code, out, _ = await output_of(two, ["/bin/sh", "-c", "ls /golem/work"])
            assert (code, out) == (0, "")

    anyio.run(main)


@isolated_only
def test_background_process_survives_between_commands_and_dies_with_the_activity(
    tmp_path: Path,
) -> None:
    marker = "4242.4242"  # a unique sleep duration to find our process in /proc

    async def main() -> None:
        async with open_sandbox(tmp_path / "a") as sandbox:
            start = f"/bin/sleep {marker} & echo $! > /golem/work/pid; echo started"
            code, out, _ = await output_of(sandbox, ["/bin/sh", "-c", start])
            assert (code, out) == (0, "started\n")
            # A later command sees it (same pid namespace) through the file it left.
            code, out, _ = await output_of(
                sandbox, ["/bin/sh", "-c", "kill -0 $(cat /golem/work/pid) && echo alive"]
            )
            assert (code, out) == (0, "alive\n")
            assert len(processes_with(marker)) == 1
        # Closing the sandbox ends every process of the activity.
        with anyio.fail_after(5):
            while processes_with(marker):
                await anyio.sleep(0.05)

    anyio.run(main)


def test_arguments_arrive_unchanged(tmp_path: Path) -> None:
    args = ["a;b", f"$(touch {tmp_path}/pwned)", "'quoted\"", "line1\nline2", "  spaces  ", "*", ""]

    async def main() -> None:
        async with open_sandbox(tmp_path / "a") as sandbox:
            code, out, _ = await output_of(
                sandbox,
                [HOST_PYTHON, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", *args],
            )
            assert code == 0
            assert json.loads(out) == args
            assert not (tmp_path / "pwned").exists()

    anyio.run(main)


def test_exit_codes_and_timeouts(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_sandbox(tmp_path / "a") as sandbox:
            assert (await output_of(sandbox, ["/bin/sh", "-c", "exit 7"]))[0] == 7
            with anyio.fail_after(5), pytest.raises(CommandTimeout):
                await sandbox.run(["/bin/sleep", "30"], timeout=0.3)
            # A program that does not exist fails like in a shell: code 127 and a message.
            code, _, err = await output_of(sandbox, ["/nonexistent/binary"])
            assert code == 127 and "No such file" in err

    anyio.run(main)


@isolated_only
def test_a_command_starts_clean_like_a_process_in_a_vm(tmp_path: Path) -> None:
    """The init starts every command (sandbox_control): nothing of its own may leak into
    them -- no open descriptor (its command channel), no ignored signal, no stdin."""
    marker = "4243.4243"

    async def main() -> None:
        async with open_sandbox(tmp_path / "a") as sandbox:
            code, out, _ = await output_of(sandbox, ["/bin/sh", "-c", "ls /proc/$$/fd"])
            assert (code, out.split()) == (0, ["0", "1", "2"])
            code, out, _ = await output_of(sandbox, ["/bin/sh", "-c", "cat; echo eof"])
            assert (code, out) == (0, "eof\n")  # stdin is /dev/null
            # SIGPIPE is at its default: `yes` ends quietly when `head` stops reading.
            with anyio.fail_after(10):
                code, out, err = await output_of(sandbox, ["/bin/sh", "-c", "yes | head -n 1"])
            assert (code, out, err) == (0, "y\n", "")
            assert await output_of(sandbox, ["/bin/sh", "-c", "umask"]) == (0, "0022\n", "")
            # A timeout kills the command's whole process group, its background child too.
            with anyio.fail_after(5), pytest.raises(CommandTimeout):
                await sandbox.run(["/bin/sh", "-c", f"sleep {marker} & sleep 30"], timeout=0.3)
            with anyio.fail_after(5):
                while processes_with(marker):
                    await anyio.sleep(0.05)

    anyio.run(main)


@isolated_only
def test_a_command_line_larger_than_the_socket_buffer_arrives_whole(tmp_path: Path) -> None:
    """Four arguments of 120 kB each (the kernel takes up to 128 kB per argument): the
    request to the init does not fit in one send, and must still arrive intact."""
    args = [letter * 120_000 for letter in "abcd"]
    script = 'for a in "$@"; do printf "%s %s\\n" "${#a}" "$(printf %s "$a" | cut -c1)"; done'

    async def main() -> None:
        async with open_sandbox(tmp_path / "a") as sandbox:
            code, out, err = await output_of(sandbox, ["/bin/sh", "-c", script, "sh", *args])
            assert (code, err) == (0, "")
            assert out.split("\n")[:4] == ["120000 a", "120000 b", "120000 c", "120000 d"]

    anyio.run(main)


def test_paths_outside_the_sandbox_are_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("no")
    sandbox = Sandbox(tmp_path / "a", {"/golem/run": tmp_path})
    (tmp_path / "a" / "golem" / "work").mkdir(parents=True)
    assert sandbox.host_path("/golem/work/x", write=True) == (tmp_path / "a/golem/work/x").resolve()
    assert sandbox.host_path("/golem/run/secret", write=False) == (tmp_path / "secret").resolve()
    with pytest.raises(SandboxError, match="outside"):
        sandbox.host_path("/golem/run/secret", write=True)  # mounts are read-only
    with pytest.raises(SandboxError, match="outside"):
        sandbox.host_path("/golem/work/../../etc/passwd", write=False)
    with pytest.raises(SandboxError, match="outside"):
        sandbox.host_path("/etc/passwd", write=False)
    os.symlink("/etc", tmp_path / "a/golem/work/link")
    with pytest.raises(SandboxError, match="leaves"):
        sandbox.host_path("/golem/work/link/passwd", write=False)


def test_fallback_mode_says_what_it_cannot_emulate(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_sandbox(tmp_path / "a", isolate=False) as sandbox:
            assert not sandbox.isolated
            assert sandbox.limitations and "/golem" in sandbox.limitations
            code, out, _ = await output_of(sandbox, ["/bin/sh", "-c", 'pwd; echo "$GOLEM_WORK"'])
            work = str(tmp_path / "a" / "golem" / "work")
            assert (code, out) == (0, f"{work}\n{work}\n")

    anyio.run(main)


@pytest.mark.parametrize("isolate", [True, False])
def test_cpu_time_of_the_activity_is_counted(tmp_path: Path, isolate: bool) -> None:
    if isolate and not namespaces_available():
        pytest.skip("needs Linux namespaces")
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass"

    async def main() -> None:
        async with open_sandbox(tmp_path / "a", isolate=isolate) as sandbox:
            before = sandbox.cpu_seconds()
            # Short commands that end between two samples are counted exactly.
            python = HOST_PYTHON if isolate else sys.executable
            for _ in range(2):
                assert (await output_of(sandbox, [python, "-c", busy]))[0] == 0
            after = sandbox.cpu_seconds()
            assert before < 0.5 and 1.2 <= after - before < 3.0

    anyio.run(main)


@isolated_only
def test_cpu_of_background_processes_is_counted_while_they_run_and_after(
    tmp_path: Path,
) -> None:
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass"

    async def main() -> None:
        async with open_sandbox(tmp_path / "a") as sandbox:
            script = f"{HOST_PYTHON} -c '{busy}' & echo $! > /golem/work/busy.pid"
            assert (await output_of(sandbox, ["/bin/sh", "-c", script]))[0] == 0
            pid_file = tmp_path / "a" / "golem" / "work" / "busy.pid"
            alive = ["/bin/sh", "-c", "kill -0 $(cat /golem/work/busy.pid)"]
            seen_running = 0.0
            with anyio.fail_after(10):
                while (await output_of(sandbox, alive))[0] == 0:  # still running
                    seen_running = max(seen_running, sandbox.cpu_seconds())
                    await anyio.sleep(0.1)
            assert pid_file.exists() and seen_running >= 0.3  # sampled while it ran
            assert sandbox.cpu_seconds() >= 0.9  # reaped by the init: counted in full

    anyio.run(main)


def test_transfers_never_follow_a_symlink_the_activity_planted(tmp_path: Path) -> None:
    """A check-then-copy could be raced by the activity swapping in a symlink to a host file;
    copy_out/deliver open each component with O_NOFOLLOW, so any symlink is refused."""
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "secret").write_text("host secret")
    sandbox = Sandbox(tmp_path / "a", isolate=False)
    work = tmp_path / "a" / "golem" / "work"
    work.mkdir(parents=True)
    (tmp_path / "a" / "golem" / "input").mkdir()
    os.symlink(host_dir / "secret", work / "file-link")
    os.symlink(host_dir, work / "dir-link")
    (work / "real").mkdir()
    (work / "real" / "ok.txt").write_text("fine")
    with pytest.raises(SandboxError, match="leaves"):
        sandbox.copy_out("/golem/work/file-link", tmp_path / "out1")
    with pytest.raises(SandboxError, match="leaves"):
        sandbox.copy_out("/golem/work/dir-link/secret", tmp_path / "out2")
    data = tmp_path / "data"
    data.write_text("payload")
    with pytest.raises(SandboxError, match="leaves"):
        sandbox.deliver(data, "/golem/work/dir-link/planted")
    assert sorted(p.name for p in host_dir.iterdir()) == ["secret"]
    # Plain files and new directories work.
    sandbox.copy_out("/golem/work/real/ok.txt", tmp_path / "out3")
    assert (tmp_path / "out3").read_text() == "fine"
    sandbox.deliver(data, "/golem/input/new/dir/file.txt")
    assert (tmp_path / "a/golem/input/new/dir/file.txt").read_text() == "payload"


@isolated_only
def test_local_mounts_keep_their_owners_as_if_copied_into_the_vm(tmp_path: Path) -> None:
    """As root, a mount is id-mapped into the sandbox's uid range: the host root's 0700
    folder and 0600 file are root's inside too (readable), and still read-only."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "key.txt").write_text("root only\n")
    (private / "key.txt").chmod(0o600)

    async def main() -> None:
        async with open_sandbox(tmp_path / "a", {"/golem/keys": private}) as sandbox:
            code, out, _ = await output_of(
                sandbox,
                ["/bin/sh", "-c", "stat -c %U /golem/keys/key.txt; cat /golem/keys/key.txt"],
            )
            assert (code, out) == (0, "root\nroot only\n")
            code, _, err = await output_of(
                sandbox, ["/bin/sh", "-c", "echo x > /golem/keys/key.txt"]
            )
            assert code != 0 and "Read-only" in err

    anyio.run(main)
    assert (private / "key.txt").read_text() == "root only\n"
