"""What an activity's root file system is made of: an image, or the sealed host root.

A Golem VM runs its commands in the payload's image. Locally the sandbox's init
(:mod:`exeunit_init`) builds the root from one of two sources, described here:

* :class:`RootFs` with ``image`` set: the extracted tree of the payload's ``.gvmi``
  (read-only, shared by every activity of that image) under an overlay whose upper layer is
  the activity's private writable layer; the image's metadata (env, working directory,
  entrypoint, volumes) comes with it.
* :class:`RootFs` without ``image`` -- the *sealed host root*, the offline stand-in: a
  private tmpfs with the host's system directories (``/usr``, ``/bin``, ``/lib*``,
  ``/sbin``) and a short list of harmless ``/etc`` entries bind-mounted read-only. Nothing
  else of the host exists in it: no ``/root``, ``/home``, ``/tmp``, ``/var``, ``/work``,
  no golem-deploy state directory, no other ``/etc`` files (shadow, ssh keys, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

HOST_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Host directories the sealed host root shows read-only (binaries and libraries)."""

HOST_ETC = (
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "debian_version",
    "environment",
    "group",
    "host.conf",
    "hosts",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "profile",
    "profile.d",
    "protocols",
    "services",
    "shells",
    "ssl",
    "timezone",
)
"""/etc entries of the host the sealed host root shows: what programs need to start, no
secrets (passwd and group hold no passwords; shadow, ssh and the like are left out)."""

EMPTY_DIRS = ("/etc", "/tmp", "/root", "/home", "/var/tmp", "/run", "/mnt", "/opt", "/srv")


@dataclass(frozen=True)
class RootFs:
    """The root file system of one activity, and the image metadata that goes with it."""

    image: Path | None = None  # the extracted image tree; None: the sealed host root
    env: dict[str, str] = field(default_factory=dict)  # the image's Env
    workdir: str | None = None  # the image's WorkingDir (default /golem/work)
    entrypoint: tuple[str, ...] = ()  # the image's Entrypoint and Cmd: run by a `start`
    cmd: tuple[str, ...] = ()  # with the "start-entrypoint" argument, as in the VM
    volumes: tuple[str, ...] = ()  # the image's Volumes (made writable directories)
    label: str = "the sealed host root"  # how the ExeUnit names it in messages


HOST_ROOT = RootFs()


def host_root_entries() -> list[tuple[str, str, str]]:
    """The sealed host root as the init builds it: [path, "bind"|"dir"|"link", link target].

    Symlinks are recreated as symlinks (a merged-/usr system's ``/bin -> usr/bin``), so they
    resolve inside the sandbox; directories that do not exist on this host are skipped.
    """
    entries: list[tuple[str, str, str]] = []
    for path in HOST_SYSTEM_DIRS:
        entries.extend(_host_entry(path))
    for path in EMPTY_DIRS:
        entries.append((path, "dir", ""))
    for name in HOST_ETC:
        entries.extend(_host_entry(f"/etc/{name}"))
    return entries


def _host_entry(path: str) -> list[tuple[str, str, str]]:
    if os.path.islink(path):
        return [(path, "link", os.readlink(path))]
    if os.path.exists(path):
        return [(path, "bind", "")]
    return []
