"""`down` goes to recovery at once only when nothing listens at the yagna's address."""

from __future__ import annotations

import socket

from golem_deploy.supervisor import reach


def test_a_listening_address_is_not_refused() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not reach.refuses(f"http://127.0.0.1:{port}")


def test_a_closed_port_is_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        assert reach.refuses(f"http://127.0.0.1:{port}/")


def test_an_address_that_cannot_be_parsed_is_not_proof_of_death() -> None:
    assert not reach.refuses("http://127.0.0.1:notaport")
