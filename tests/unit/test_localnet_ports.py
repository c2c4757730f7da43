"""A local network started again on its state folder keeps its address when it can.

The supervisor restarts its private network after a daemon died, and the engine keeps
talking to the address it knew: so the four ports of the last run are reused when they are
free (ports of a killed daemon's connections in TIME_WAIT count as free, as yagna binds
with SO_REUSEADDR), and new ones are picked when one of them is taken.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from golem_deploy.localnet.daemons import PORTS_FILE, _ports
from golem_deploy.localnet.node import PORT_RANGE


def test_the_ports_of_the_last_run_are_reused_when_free(tmp_path: Path) -> None:
    first = _ports(tmp_path, fresh=False)
    assert len(set(first)) == 4
    assert all(PORT_RANGE[0] <= port <= PORT_RANGE[1] for port in first)
    assert json.loads((tmp_path / PORTS_FILE).read_text()) == first
    assert _ports(tmp_path, fresh=False) == first


def test_new_ports_when_one_is_taken_or_asked_for(tmp_path: Path) -> None:
    first = _ports(tmp_path, fresh=False)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", first[1]))
        holder.listen()
        second = _ports(tmp_path, fresh=False)
    assert second != first and first[1] not in second
    fresh = _ports(tmp_path, fresh=True)  # a retry after a daemon could not bind
    assert len(set(fresh)) == 4
    assert json.loads((tmp_path / PORTS_FILE).read_text()) == fresh


def test_a_damaged_record_means_new_ports(tmp_path: Path) -> None:
    (tmp_path / PORTS_FILE).write_text("[1, 2")
    assert len(set(_ports(tmp_path, fresh=False))) == 4
    (tmp_path / PORTS_FILE).write_text("[80, 81, 82, 83]")  # outside the range yagna allows
    assert all(port >= PORT_RANGE[0] for port in _ports(tmp_path, fresh=False))
