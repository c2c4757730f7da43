"""Names inside the VPN follow an instance to its new address (renewals, rolling replaces).

Every instance resolves `<service>-<index>` (and `<service>` for index 0) through its
/etc/hosts, written from the `hosts` map of its deploy (engine/network.py). A renewal or a
rolling replace runs the successor *beside* the instance it replaces, so the successor has
another address. Once it runs (and is healthy) and takes over the index, the names move:

1. `moved` (pure) says which names now point at the successor's address; the caller
   writes them into `Network.hosts`, so every later deploy (a restart, a scale-up) gets
   them;
2. `announce` rewrites /etc/hosts in every running instance of the network with one
   ExeScript `run` of `/bin/sh` (`rewrite_command`): lines naming a name of the map are
   dropped, the map's entries appended, everything else (localhost, the image's own
   entries) kept. The file is written in place and never shortened (a comment pads it), so
   a program resolving a name meanwhile reads either the old or the new entry, never an
   empty file. In a Golem VM /etc/hosts is the guest's own file; the local network's
   sandbox lets root inside rewrite it the same way.

The old instance keeps serving what it has for its drain time, so a client that resolved
the old address just before still gets its answer. An instance without /bin/sh (or whose
rewrite fails) keeps the old entries; that is logged, not fatal: its own restarts and new
instances get the new map anyway.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import anyio

from golem_deploy.engine.lifecycle import ServiceState

if TYPE_CHECKING:
    from golem_deploy.engine.cluster import Cluster
    from golem_deploy.engine.network import Network
    from golem_deploy.engine.runner import InstanceRunner

__all__ = [
    "HOSTS_FILE",
    "REWRITE",
    "announce",
    "follow",
    "index_names",
    "moved",
    "rewrite_command",
]

log = logging.getLogger(__name__)

HOSTS_FILE = "/etc/hosts"
REWRITE_TIMEOUT = 15.0
"""Seconds one instance gets to rewrite its /etc/hosts (one short batch)."""

# $1: the file; $2: the names of the map, space-separated; $3: its lines ("ip\tname\n"...).
# POSIX sh builtins only (busybox and dash have them): read every line, keep those naming
# none of the names (and not our padding), append the map, pad to the old length with a
# comment, then write in place without truncating (`1<>`): one write, never an empty file.
REWRITE = r"""set -f
LC_ALL=C
f=$1
names=" $2 "
old=''
new=''
while IFS= read -r line || [ -n "$line" ]; do
    old="$old$line
"
    case $line in '#golem-deploy'*) continue ;; esac
    keep=1
    for word in $line; do
        case $names in *" $word "*) keep='' ;; esac
    done
    if [ -n "$keep" ]; then
        new="$new$line
"
    fi
done < "$f"
new="$new$3"
if [ "${#new}" -lt "${#old}" ]; then
    pad='#golem-deploy'
    while [ $(( ${#new} + ${#pad} + 1 )) -lt "${#old}" ]; do pad="$pad "; done
    new="$new$pad
"
fi
printf '%s' "$new" 1<> "$f"
"""

_locks: weakref.WeakKeyDictionary[Network, anyio.Lock] = weakref.WeakKeyDictionary()


def index_names(service: str, index: int) -> tuple[str, ...]:
    """The names instance `index` of `service` answers to (manifest/network.py's rule)."""
    return (service, f"{service}-{index}") if index == 0 else (f"{service}-{index}",)


def moved(hosts: Mapping[str, str], service: str, index: int, address: str) -> dict[str, str]:
    """The entries of `hosts` that change when instance `index` of `service` now answers
    at `address`: its names the map holds that point elsewhere (a network without names,
    as a yapapi program makes, gets none)."""
    return {
        name: address
        for name in index_names(service, index)
        if name in hosts and hosts[name] != address
    }


async def follow(cluster: Cluster, runner: InstanceRunner) -> None:
    """`runner` took over its index (a renewal): its names point at its address in the
    network's map and, rewritten, in every running instance of the network."""
    network, record = cluster.network, runner.record
    if network is None or network.removed or record.network_address is None:
        return
    changes = moved(network.hosts, cluster.service_name, record.index, record.network_address)
    if not changes:
        return
    network.hosts.update(changes)
    await announce(network, [r for peer in cluster.peers() for r in peer.runners])


def rewrite_command(hosts: Mapping[str, str], path: str = HOSTS_FILE) -> list[str]:
    """The argv (for an ExeScript `run`) that makes `path` name every host of `hosts`."""
    names = " ".join(sorted(hosts))
    lines = "".join(f"{address}\t{name}\n" for name, address in sorted(hosts.items()))
    return ["/bin/sh", "-c", REWRITE, "golem-deploy-names", path, names, lines]


async def announce(network: Network, runners: Iterable[InstanceRunner]) -> int:
    """Rewrite /etc/hosts from `network.hosts` in every running instance among `runners`
    that is on `network`, side by side; returns how many could not be told (logged).

    Announcements on one network take turns, each sending the whole map as it is when its
    turn comes, so the last one leaves every instance with the newest names."""
    lock = _locks.setdefault(network, anyio.Lock())
    async with lock:
        hosts = dict(network.hosts)
        if not hosts:
            return 0
        argv = rewrite_command(hosts)
        targets = [r for r in runners if _reachable(r, network)]
        failed = 0

        async def tell(runner: InstanceRunner) -> None:
            nonlocal failed
            ctx = runner.instance._ctx
            try:
                assert ctx is not None
                script = ctx.new_script(timeout=REWRITE_TIMEOUT)
                script.run(*argv)
                # the instance's log shows this line, not the script's 25
                script.steps[-1].describe = f"golem-deploy: rewrite /etc/hosts ({len(hosts)} names)"
                # bounded as a whole: a batch of the instance's own may hold its turn
                with anyio.fail_after(REWRITE_TIMEOUT):
                    await runner.executor.execute(runner.provider.activity_id, script)
            except Exception as error:  # its names stay old; restarts get the new map
                failed += 1
                record = runner.record
                log.info(
                    "%s[%d]: /etc/hosts not rewritten: %s", record.service, record.index, error
                )

        async with anyio.create_task_group() as tg:
            for runner in targets:
                tg.start_soon(tell, runner)
        return failed


def _reachable(runner: InstanceRunner, network: Network) -> bool:
    record = runner.record
    return (
        record.network is network
        and record.state is ServiceState.running
        and runner.provider.activity_id is not None
        and runner.instance._ctx is not None
        and not runner.done.is_set()
    )
