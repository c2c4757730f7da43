"""The engine's NetworkGate: lost instances' releases wait for the network to be back.

When the supervisor's local network died, Golem.network_lost closes the gate and every
lost instance's release waits at it, so its agreement is terminated on the restarted
network; network_back opens it (also after a failed restart), and the wait is bounded.
"""

from __future__ import annotations

import anyio

from golem_deploy.engine.context import NetworkGate


def test_an_open_gate_does_not_wait() -> None:
    async def main() -> None:
        with anyio.fail_after(1):
            await NetworkGate().wait(timeout=3600)

    anyio.run(main)


def test_a_closed_gate_holds_until_opened_then_stays_open() -> None:
    async def main() -> list[str]:
        gate = NetworkGate()
        order: list[str] = []
        gate.close()
        gate.close()  # closing twice is one closing

        async def release(name: str) -> None:
            await gate.wait(timeout=3600)
            order.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(release, "a")
            tg.start_soon(release, "b")
            await anyio.wait_all_tasks_blocked()
            assert order == []  # both wait for the network
            order.append("network back")
            gate.open()
        with anyio.fail_after(1):
            await gate.wait(timeout=3600)  # open: no wait
        return order

    assert anyio.run(main)[0] == "network back"


def test_the_wait_is_bounded() -> None:
    async def main() -> None:
        gate = NetworkGate()
        gate.close()
        with anyio.fail_after(5):
            await gate.wait(timeout=0.05)  # returns although nobody opened it

    anyio.run(main)
