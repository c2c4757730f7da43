"""The first process of an activity's sealed sandbox (pid 1 of its pid namespace).

Run by :mod:`golem_deploy.localnet.sandbox` as ``unshare --mount --pid --net --ipc --uts
--fork --kill-child [--user --map-root-user] -- python -I -S -c ... SPEC`` (imported as a
top-level module from its folder: ``sandbox_commands.INIT_COMMAND``), deliberately importing
nothing from golem_deploy: it starts in a few milliseconds and must not depend on the
package's imports. Only the standard library and raw system calls (ctypes): the tools of
the host (``mount``) are not needed.

It builds the activity's whole world, then seals it:

1. a fresh root file system: the image's extracted tree under an overlay whose upper layer
   is a size-limited tmpfs (the private writable layer), or -- offline -- a tmpfs with the
   host's system directories bind-mounted read-only (the "sealed host root"); private
   ``/golem/*`` volumes; ``local.mounts`` read-only (id-mapped into the sandbox's uid range
   as root); ``/proc`` of the new pid namespace; a
   minimal ``/dev``; loopback up in the new network namespace; hostname ``golem``;
2. ``pivot_root`` into it and detach the host's tree, so no host path is reachable;
3. as root on the host: move itself into a new user namespace in which uid/gid 0..65535
   are the host's ``SANDBOX_ID_BASE``.. (written by a short-lived helper that stays
   outside), and become uid 0 there. The mount, pid, network, ipc and uts namespaces stay
   owned by the host's user namespace, so root inside the sandbox cannot mount, unmount,
   reconfigure the network or change the hostname. (As an ordinary user, ``unshare
   --user --map-root-user`` made the namespace first, mapping the user's own uid to 0.)

Then it prints ``ready`` and serves the ExeUnit's commands (:func:`serve_commands`): its
stdin is a Unix socket on which the ExeUnit sends each command with the write ends of its
output pipes, and the init spawns it as its own child -- already inside every namespace and
the new root, as in a VM, whose agent starts the processes it is asked for. It stays alive
so that background processes outlive the command that started them; it reaps orphans (pid
1's job) and ends when that socket reaches EOF (the ExeUnit closed it, or the ExeUnit's
process died). When pid 1 of a pid namespace ends, the kernel kills every other process in
it: all of an activity's processes end with it.

SPEC is JSON, see :func:`setup` (built by :mod:`golem_deploy.localnet.rootfs`).

The same module, run with ``--exec CPU_FILE -- ARGV...``, wraps each command of
an *unsealed* activity (``--unsafe-host-exec``, no init) to lower its hard resource limits
and to measure its CPU time (see :func:`run_command`).

Size: longer than most modules (the sandbox's setup and its command server) because it has
to be self-contained: it runs under ``python -I`` as a top-level module, outside the
golem_deploy package, and imports only the standard library.
"""

import ctypes
import errno
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
ST_RELATIME = 4096
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
CLONE_NEWUSER = 0x10000000
SYS_OPEN_TREE = 428  # the same number on every architecture (new system calls)
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 4
MOUNT_ATTR_RDONLY = 1
MOUNT_ATTR_NOSUID = 2
MOUNT_ATTR_IDMAP = 0x100000
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "armv7l": 218, "ppc64le": 203, "s390x": 217}

SANDBOX_ID_BASE = 0x70000000
"""As root, uid/gid 0..65535 of every sandbox are the host's 0x70000000..0x7000FFFF.

A dedicated range that owns nothing on the host: inside the sandbox root keeps every
capability over its own files, outside it is a nobody. Every sandbox uses the same range
(so one extracted image serves them all); sandboxes still cannot reach each other, each
sees only its own processes, files and network."""
ID_COUNT = 65536

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

# Hard limits every command gets (the sandbox's root cannot raise them: that needs
# CAP_SYS_RESOURCE in the host's user namespace). Processes counts per host uid, and
# every sandbox shares the dedicated uid, so it is generous.
HARD_LIMITS = {
    resource.RLIMIT_NOFILE: 65536,
    resource.RLIMIT_NPROC: 16384,
}

_libc = ctypes.CDLL(None, use_errno=True)


class suppress:
    """``contextlib.suppress`` without importing contextlib (and collections with it):
    ~4 ms of every init's start-up, and `up` of 100 instances starts 100 at once."""

    def __init__(self, *errors: type[BaseException]) -> None:
        self.errors = errors

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, value: object, tb: object) -> bool:
        return kind is not None and issubclass(kind, self.errors)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    _check(
        _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {source or fstype} on {target}",
    )


def bind(source: str, target: str, *, read_only: bool, extra: int = 0) -> None:
    """Bind ``source`` at ``target`` (not recursive: submounts of the source stay hidden)."""
    _prepare_target(source, target)
    mount(source, target, None, MS_BIND)
    if read_only or extra:
        flags = MS_REMOUNT | MS_BIND | extra | (MS_RDONLY if read_only else 0)
        mount(None, target, None, flags | _locked_flags(source))


def _prepare_target(source: str, target: str) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            with open(target, "a"):
                pass


def id_map_namespace(base: int) -> int:
    """An fd of a user namespace mapping 0..65535 to ``base``.. (the sandbox's own map).

    Used to idmap ``local.mounts``: through such a mount a file the host's root owns is
    owned by the sandbox's root, as if the folder had been copied into the VM. A child
    makes the namespace; we (still in the host's user namespace) write its map and keep
    a handle on it.
    """
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        os.close(done_w)
        ok = _libc.unshare(CLONE_NEWUSER) == 0
        # Our pid as the host's /proc (still mounted here) numbers it: not os.getpid().
        os.write(ready_w, os.readlink("/proc/self").encode() if ok else b"-")
        os.read(done_r, 1)
        os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        host_pid = os.read(ready_r, 32).decode()
        if not host_pid.isdigit():
            raise OSError(errno.EPERM, "cannot make the id-mapping user namespace")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{host_pid}/{name}", "w") as out:
                out.write(f"0 {base} {ID_COUNT}\n")
        return os.open(f"/proc/{host_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(child, 0)


def idmapped_bind(source: str, target: str, userns_fd: int) -> None:
    """A read-only, nosuid bind of ``source`` at ``target``, id-mapped through ``userns_fd``
    (open_tree + mount_setattr + move_mount, Linux 5.12+)."""
    tree = _libc.syscall(SYS_OPEN_TREE, -100, source.encode(), OPEN_TREE_CLONE | os.O_CLOEXEC)
    if tree < 0:
        _check(-1, f"open_tree {source}")
    try:
        attr = struct.pack(
            "QQQQ", MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, userns_fd
        )
        _check(
            _libc.syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, attr, len(attr)),
            f"id-map the mount of {source}",
        )
        _check(
            _libc.syscall(
                SYS_MOVE_MOUNT, tree, b"", -100, target.encode(), MOVE_MOUNT_F_EMPTY_PATH
            ),
            f"mount {source} on {target}",
        )
    finally:
        os.close(tree)


def _locked_flags(path: str) -> int:
    """The flags of the mount ``path`` is on, which a remount inside a user namespace must
    keep (the kernel locks them); harmless to repeat as root."""
    found = os.statvfs(path).f_flag
    flags = found & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    if found & ST_RELATIME:
        flags |= MS_RELATIME
    return flags


def _inside(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def build_root(spec: dict, new_root: str) -> None:  # type: ignore[type-arg]
    """Mount the activity's root file system at ``new_root`` (see the module docstring)."""
    size = int(spec["layer_bytes"])
    owner = spec.get("owner")  # [uid, gid] on the host of root inside, or None
    layer = spec["layer"]  # an empty host directory; its tmpfs exists only in our namespace
    mount("tmpfs", layer, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0755")
    image = spec.get("image")
    if image is not None:
        for sub in ("upper", "work", "root"):
            os.mkdir(os.path.join(layer, sub))
        # The merged root takes the upper directory's owner and mode: make them the
        # image's, so root inside owns / as in the VM.
        info = os.stat(image)
        os.chown(os.path.join(layer, "upper"), info.st_uid, info.st_gid)
        os.chmod(os.path.join(layer, "upper"), info.st_mode & 0o7777)
        lower = image.replace(",", "\\,").replace(":", "\\:")
        options = f"lowerdir={lower},upperdir={layer}/upper,workdir={layer}/work"
        try:
            # nodev: a device node an image brings (owned by root inside) opens nothing.
            mount("overlay", new_root, "overlay", MS_NOSUID | MS_NODEV, options)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EINVAL, errno.ENODEV, errno.EACCES):
                raise
            # No overlayfs here: a private copy in the writable layer instead (slower).
            mount(layer + "/root", new_root, None, MS_BIND)
            mount(None, new_root, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
            _copy_tree(image, new_root)
    else:
        mount(layer, new_root, None, MS_BIND)
        if owner is not None:
            os.chown(new_root, owner[0], owner[1])
        for name, kind, target in spec["host"]:
            path = _inside(new_root, name)
            if kind == "link":
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.symlink(target, path)
            elif kind == "dir":
                os.makedirs(path, exist_ok=True)
                if owner is not None:
                    os.chown(path, owner[0], owner[1])
            else:  # "bind": a host directory or file, read-only
                bind(name, path, read_only=True, extra=MS_NOSUID | MS_NODEV)


def _copy_tree(source: str, target: str) -> None:
    """Copy an image tree with its links, modes and owners (the no-overlay fallback)."""
    for directory, dirs, files in os.walk(source):
        rel = os.path.relpath(directory, source)
        dest_dir = os.path.normpath(os.path.join(target, rel))
        for name in dirs + files:
            src = os.path.join(directory, name)
            dest = os.path.join(dest_dir, name)
            info = os.lstat(src)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dest)
            elif os.path.isdir(src):
                os.mkdir(dest, info.st_mode & 0o7777)
            elif os.path.isfile(src):
                with open(src, "rb") as fin, open(dest, "wb") as fout:
                    while chunk := fin.read(1 << 20):
                        fout.write(chunk)
                os.chmod(dest, info.st_mode & 0o7777)
            else:
                continue  # devices, fifos, sockets: not needed in a sandbox
            os.lchown(dest, info.st_uid, info.st_gid)


def setup_dev(root: str) -> None:
    dev = _inside(root, "/dev")
    os.makedirs(dev, exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=65536k,mode=0755")
    for name in DEVICES:
        bind(f"/dev/{name}", f"{dev}/{name}", read_only=False, extra=MS_NOSUID | MS_NOEXEC)
    os.mkdir(f"{dev}/pts")
    try:
        mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666")
        os.symlink("pts/ptmx", f"{dev}/ptmx")
    except OSError:
        pass  # no pseudo terminals: commands have pipes anyway
    os.mkdir(f"{dev}/shm")
    mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=65536k,mode=1777")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")


def loopback_up() -> None:
    """``ip link set lo up`` without the ip tool (SIOCGIFFLAGS/SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, 0x8913, request))[1]
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))  # IFF_UP


def any_port_for_anyone() -> None:
    """Let root inside bind ports below 1024, as a VM's root can (a web server on port 80).

    Root inside is not root of the network namespace (that stays the host's), so it lacks
    CAP_NET_BIND_SERVICE there; the namespace is the activity's alone, so lowering its
    ip_unprivileged_port_start to 0 opens nothing on the host. /proc/sys/net is the
    namespace of the process writing it: this one, before it leaves for the new root.
    """
    with (
        suppress(OSError),
        open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f,
    ):
        f.write("0")


def setup(spec: dict) -> None:  # type: ignore[type-arg]
    """Build the root, enter it, forget the host's tree.

    SPEC keys: ``new_root`` and ``layer`` (empty host directories used as mount points),
    ``layer_bytes`` (size of the writable layer), ``image`` (the extracted image's tree, or
    null for the sealed host root, described by ``host``: [path, "bind"|"dir"|"link",
    link target]), ``golem`` (the host directory that becomes /golem), ``mounts``
    ([container path, host path] read-only), ``files`` ([container path, host file]
    writable in place: the deploy's /etc/hosts), ``workdir``, ``owner`` ([uid, gid] on the host
    of root inside, to own the writable layer's root; null as an ordinary user).
    """
    # Nothing we mount may leak back into the host's mount namespace.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    new_root = spec["new_root"]
    build_root(spec, new_root)
    golem = _inside(new_root, "/golem")
    os.makedirs(golem, exist_ok=True)
    mount(spec["golem"], golem, None, MS_BIND)
    mount(None, golem, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    # Parents before children, so /a/b is mounted on top of /a, not hidden by it.
    userns_fd = None
    if spec["mounts"] and spec.get("map_base") is not None:
        userns_fd = id_map_namespace(int(spec["map_base"]))
    for container_path, host_path in sorted(spec["mounts"], key=lambda m: m[0].count("/")):
        target = _inside(new_root, container_path)
        if userns_fd is not None:
            _prepare_target(host_path, target)
            try:
                idmapped_bind(host_path, target, userns_fd)
                continue
            except OSError:
                pass  # a file system without id-mapped mounts: as the host's files are
        with suppress(OSError):  # a read-only root: the target must exist there
            _prepare_target(host_path, target)
        bind(host_path, target, read_only=True, extra=MS_NOSUID)
    if userns_fd is not None:
        os.close(userns_fd)
    for container_path, host_path in spec.get("files") or []:  # root inside may rewrite them
        target = _inside(new_root, container_path)
        with suppress(OSError):  # a read-only root: the target must exist there
            _prepare_target(host_path, target)
        bind(host_path, target, read_only=False, extra=MS_NOSUID)
    proc = _inside(new_root, "/proc")
    os.makedirs(proc, exist_ok=True)
    mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    setup_dev(new_root)
    for name, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700)):
        path = _inside(new_root, name)
        if not os.path.lexists(path):
            os.makedirs(path)
            os.chmod(path, mode)
        if spec.get("image") is None:  # the sealed host root: ours to set up
            os.chmod(path, mode)
            if spec.get("owner") is not None:
                os.chown(path, *spec["owner"])
    for volume in spec.get("volumes") or []:  # the image's volumes: writable directories
        path = _inside(new_root, volume)
        if not os.path.lexists(path):
            os.makedirs(path)
            if spec.get("owner") is not None:
                os.chown(path, *spec["owner"])
    loopback_up()
    any_port_for_anyone()
    _check(_libc.sethostname(b"golem", 5), "sethostname")
    # pivot_root(".", "."): the old root ends up stacked on the new one; detach it.
    os.chdir(new_root)
    machine = os.uname().machine
    number = SYS_PIVOT_ROOT.get(machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown architecture {machine}")
    _check(_libc.syscall(number, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detach the host's root")
    os.chdir("/")
    workdir = spec.get("workdir") or "/golem/work"
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)


def enter_user_namespace(base: int) -> None:
    """Root only: become uid/gid 0 of a new user namespace that maps 0.. to ``base``..

    A process in the new namespace cannot write its own maps with host ids, so a helper
    forked first (still in the host's user namespace) writes them.
    """
    ready_r, ready_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(ready_w)
        os.read(ready_r, 1)
        parent = os.getppid()
        try:
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{parent}/{name}", "w") as out:
                    out.write(f"0 {base} {ID_COUNT}\n")
        except OSError:
            os._exit(1)
        os._exit(0)
    os.close(ready_r)
    _check(_libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    os.write(ready_w, b"x")
    os.close(ready_w)
    _, status = os.waitpid(helper, 0)
    if status != 0:
        raise OSError(errno.EPERM, "could not write the sandbox's uid/gid map")
    os.setgroups([])
    os.setgid(0)
    os.setuid(0)


def lower_hard_limits() -> None:
    """Lower our hard limits to HARD_LIMITS; every process we start inherits them."""
    for limit, ceiling in HARD_LIMITS.items():
        soft, hard = resource.getrlimit(limit)
        if hard == resource.RLIM_INFINITY or hard > ceiling:
            hard = ceiling
        with suppress(ValueError, OSError):
            resource.setrlimit(limit, (min(soft, hard) if soft >= 0 else hard, hard))


# ---- the command channel (the ExeUnit's side: sandbox_control.py) ----
#
# ExeUnit -> init: frames of a 4-byte big-endian length and a JSON object, either
#   {"id": N, "argv": [...], "env": {...}} with the write ends of the command's stdout and
#   stderr pipes attached to the frame (SCM_RIGHTS), or {"kill": N}.
# init -> ExeUnit: one JSON line per ended command, {"id": N, "exit": CODE} (CODE < 0: the
#   signal that killed it, as Python's returncode), in the order they end.

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20  # far above any argv + env the kernel would exec
RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)  # Python ignores them; commands must not


def frame(message: dict) -> bytes:  # type: ignore[type-arg]
    """One request on the command channel."""
    body = json.dumps(message).encode()
    return HEADER.pack(len(body)) + body


def _receive_frame(control: socket.socket) -> tuple[dict, list[int]] | None:  # type: ignore[type-arg]
    """The next request and the descriptors sent with it; None at EOF."""
    header, fds, _, _ = socket.recv_fds(control, HEADER.size, 2)
    for fd in fds:
        os.set_inheritable(fd, False)
    while header and len(header) < HEADER.size:
        more = control.recv(HEADER.size - len(header))
        if not more:
            break
        header += more
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise OSError(errno.EMSGSIZE, "command frame too large")
    body = b""
    while len(body) < size:
        more = control.recv(size - len(body))
        if not more:
            return None
        body += more
    return json.loads(body), fds


def _which(name: str, path: str) -> str:
    """``name`` looked up in ``path`` as execvp does (the command's PATH, not ours)."""
    if "/" in name:
        return name
    for folder in path.split(":"):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return name


def spawn(request: dict, fds: list[int], devnull: int) -> int | None:  # type: ignore[type-arg]
    """Start one command as our child; its pid, or None when it could not be executed
    (then its stderr says why, as a shell would, and it counts as exit code 127).

    The child gets /dev/null as stdin, the two pipes as stdout/stderr, a session of its own
    (so a kill reaches its whole group), our working directory, root and limits, and the
    environment the ExeUnit chose (nothing of ours)."""
    argv = [str(arg) for arg in request["argv"]]
    env = {str(k): str(v) for k, v in request["env"].items()}
    out, err = fds
    try:
        return os.posix_spawn(
            _which(argv[0], env.get("PATH", "")),
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, out, 1),
                (os.POSIX_SPAWN_DUP2, err, 2),
            ],
            setsid=True,
            setsigdef=RESET_SIGNALS,
        )
    except OSError as exc:
        with suppress(OSError):
            os.write(err, f"{argv[0]}: {exc.strerror}\n".encode())
        return None
    finally:
        for fd in fds:
            os.close(fd)


def serve_commands(control: socket.socket) -> None:
    """Run the ExeUnit's commands until it closes ``control``; reap every child meanwhile.

    Orphans the pid namespace hands us are reaped silently; their CPU time, like our
    commands', adds up in our own children's times, which the ExeUnit reads from /proc."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wake-up byte is enough
    devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    commands: dict[int, int] = {}  # pid -> request id
    poller = select.poll()
    poller.register(control, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                os.read(wake_r, 4096)
            else:
                received = _receive_frame(control)
                if received is None:
                    return
                request, fds = received
                if "kill" in request:
                    pid = next((p for p, n in commands.items() if n == request["kill"]), None)
                    if pid is not None:
                        with suppress(ProcessLookupError):
                            os.killpg(pid, signal.SIGKILL)
                    continue
                pid = spawn(request, fds, devnull)
                if pid is None:
                    control.sendall(b'{"id": %d, "exit": 127}\n' % int(request["id"]))
                else:
                    commands[pid] = int(request["id"])
        while True:  # reap whatever ended, ours or adopted
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in commands:
                code = os.waitstatus_to_exitcode(status)
                control.sendall(b'{"id": %d, "exit": %d}\n' % (commands.pop(pid), code))


def run_command(cpu_file: str, argv: list[str], cgroups: list[str] | None = None) -> None:
    """``--exec`` mode: run ``argv`` as our child and record the CPU time it used.

    An unsealed activity (``--unsafe-host-exec``, no init) starts every command through
    this wrapper because only a parent's wait4() learns the exact CPU time of a process
    (and of the descendants it waited for) after it ended; sampling /proc would miss
    whatever ran between two samples. The wrapper exits like its child did (same code, or
    the same signal), so it is invisible to the caller. It also lowers the hard resource
    limits the command inherits and joins the activity's cgroups (CPU and memory limits),
    which the command and its children inherit. (A sealed activity's init does all of this
    once for every command: :func:`serve_commands`.)
    """
    for cgroup in cgroups or []:
        try:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
        except OSError as exc:
            sys.stderr.write(f"golem-deploy: cannot join the activity's cgroup: {exc}\n")
            os._exit(126)
    pid = os.fork()
    if pid == 0:
        lower_hard_limits()
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
    if sys.argv[1] == "--exec":  # --exec CPU_FILE [--cgroup DIR]... -- ARGV...
        args = sys.argv[3:]
        cgroups = []
        while args[0] == "--cgroup":
            cgroups.append(args[1])
            args = args[2:]
        run_command(sys.argv[2], args[1:], cgroups)
        return
    os.umask(0o022)  # the provider's umask (often 077) must not make the sandbox unusable
    try:
        spec = json.loads(sys.argv[1])
        setup(spec)
        if spec.get("map_base") is not None:
            enter_user_namespace(int(spec["map_base"]))
    except Exception as exc:
        print(f"error: {exc}", flush=True)
        sys.exit(1)
    lower_hard_limits()
    print("ready", flush=True)
    with suppress(BrokenPipeError, ConnectionResetError):
        serve_commands(socket.socket(fileno=0))  # until EOF: the ExeUnit is done with us


if __name__ == "__main__":
    main()
