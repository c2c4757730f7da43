"""The ExeUnit's bus API called directly (no requestor in between), on a real yagna router.

Some replies never surface through the requestor's REST (GetRunningCommand is unreachable
in yagna 0.17.6, VpnControl needs a VPN), and the provider agent relies on the in-process
API (usage, shutdown, vanish). The ExeUnit runs here in the test process with an activity
id yagna does not know: yagna refuses its state reports (NotFound, logged as a warning) and
silently drops its usage reports, which does not matter for these tests.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from _procs import processes_with

from golem_deploy.localnet import LocalNetInfo
from golem_deploy.localnet.exeunit import ExeUnit, ExeUnitConfig
from golem_deploy.localnet.gsb import GsbClient, GsbError

pytestmark = pytest.mark.localnet


def provider_gsb_url(info: LocalNetInfo) -> str:
    return str(json.loads((info.state_dir / "ready.json").read_text())["provider_gsb_url"])


Body = Callable[[ExeUnit, Callable[..., Awaitable[Any]]], Awaitable[None]]


def with_exeunit(info: LocalNetInfo, work_dir: Path, body: Body, **config: Any) -> None:
    url = provider_gsb_url(info)
    activity_id = secrets.token_hex(16)
    unit = ExeUnit(
        ExeUnitConfig(
            activity_id=activity_id,
            agreement_id=secrets.token_hex(32),
            gsb_url=url,
            work_dir=work_dir / activity_id,
            mounts={},
            usage_vector=["golem.usage.duration_sec", "golem.usage.cpu_sec"],
            requestor_id="0x" + "1" * 40,
            **config,
        )
    )

    async def main() -> None:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg, GsbClient.connect(url) as client:
                await tg.start(unit.serve)

                async def call(method: str, payload: Any) -> Any:
                    return await client.call(f"/public/exeunit/{activity_id}/{method}", payload)

                await body(unit, call)
                await unit.shutdown("test over")

    anyio.run(main)


def exec_payload(unit: ExeUnit, batch_id: str, script: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "activityId": unit.config.activity_id,
        "batchId": batch_id,
        "exeScript": script,
        "timeout": None,
    }


READY: list[dict[str, Any]] = [{"deploy": {}}, {"start": {"args": []}}]


def test_requests_no_rest_path_reaches(shared_localnet: LocalNetInfo, tmp_path: Path) -> None:
    async def body(unit: ExeUnit, call: Callable[..., Awaitable[Any]]) -> None:
        me = unit.config.activity_id
        assert await call("GetActivityState", {"activityId": me}) == {
            "Ok": {"state": ["Initialized", None], "reason": None, "errorMessage": None}
        }
        nothing = await call("GetRunningCommand", {"activityId": me, "timeout": None})
        assert nothing == {"Err": {"notFound": f"No running command within activity: {me}"}}

        script = [*READY, {"run": {"entry_point": "/bin/sleep", "args": ["30"]}}]
        assert await call("Exec", exec_payload(unit, "b1", script)) == {"Ok": "b1"}
        duplicate = await call("Exec", exec_payload(unit, "b1", script))
        assert duplicate == {"Err": {"badRequest": "Batch b1 already exists"}}
        foreign = await call("Exec", {**exec_payload(unit, "b2", script), "activityId": "x"})
        assert "forbidden" in foreign["Err"]

        with anyio.fail_after(10):
            while True:
                running = await call("GetRunningCommand", {"activityId": me, "timeout": None})
                if "Ok" in running and running["Ok"][0]["command"] == "Run":
                    break
                await anyio.sleep(0.05)
        assert running == {
            "Ok": [{"command": "Run", "progress": None, "params": ["/bin/sleep", "30"]}]
        }
        assert (await call("GetActivityState", {"activityId": me}))["Ok"]["state"] == [
            "Ready",
            "Ready",
        ]

        vpn = await call("VpnControl", {"activityId": me})
        assert "service" in vpn["Err"]
        with pytest.raises(GsbError) as unknown:
            await call("StreamExecBatchResults", {"activity_id": me, "batch_id": "nope"})
        assert unknown.value.code == 400 and "Unknown batch: nope" in str(unknown.value)

        usage = await call("GetActivityUsage", {"activityId": me})
        duration, cpu = usage["Ok"]["currentUsage"]  # ordered like the usage vector
        assert duration > 0 and cpu >= 0 and isinstance(usage["Ok"]["timestamp"], int)

    with_exeunit(shared_localnet, tmp_path, body)


def test_shutdown_ends_processes_and_reports_terminated(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    marker = "5151.2727"

    async def body(unit: ExeUnit, call: Callable[..., Awaitable[Any]]) -> None:
        me = unit.config.activity_id
        script = [
            *READY,
            {"run": {"entry_point": "/bin/sh", "args": ["-c", f"sleep {marker} &"]}},
            {"run": {"entry_point": "/bin/sleep", "args": [marker]}},
        ]
        await call("Exec", exec_payload(unit, "b1", script))
        with anyio.fail_after(10):
            while len(processes_with(marker)) < 2:
                await anyio.sleep(0.05)
        await unit.shutdown("destroyed by the test")
        assert unit.state == ("Terminated", None)
        assert not processes_with(marker)
        assert not unit.config.work_dir.exists()
        cpu, duration = unit.usage
        await anyio.sleep(0.2)
        assert unit.usage == (cpu, duration)  # frozen once the activity ended
        # The address was released: nobody answers any more.
        with pytest.raises(GsbError) as gone:
            await call("GetActivityState", {"activityId": me})
        assert gone.value.code == 400

    with_exeunit(shared_localnet, tmp_path, body)


def test_vanish_kills_everything_and_answers_nothing(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    marker = "6161.3737"

    async def body(unit: ExeUnit, call: Callable[..., Awaitable[Any]]) -> None:
        me = unit.config.activity_id
        script = [*READY, {"run": {"entry_point": "/bin/sleep", "args": [marker]}}]
        await call("Exec", exec_payload(unit, "b1", script))
        with anyio.fail_after(10):
            while not processes_with(marker):
                await anyio.sleep(0.05)
        unit.vanish()
        with anyio.fail_after(5):
            while processes_with(marker):
                await anyio.sleep(0.05)
        assert unit.state != ("Terminated", None)  # it never said goodbye
        # Nobody answers any more: the call fails or goes unanswered (the router may hold
        # a call it routed before it noticed the connection was gone).
        answer: Any = None
        with anyio.move_on_after(2), contextlib.suppress(GsbError):
            answer = await call("GetActivityState", {"activityId": me})
        assert answer is None

    with_exeunit(shared_localnet, tmp_path, body)


def test_fail_commands_matching_fails_without_running(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    async def body(unit: ExeUnit, call: Callable[..., Awaitable[Any]]) -> None:
        me = unit.config.activity_id
        touch = {"run": {"entry_point": "/bin/touch", "args": ["/golem/work/boom-file"]}}
        await call("Exec", exec_payload(unit, "b1", [*READY, touch]))
        results = await call(
            "GetExecBatchResults",
            {"activityId": me, "batchId": "b1", "commandIndex": None, "timeout": 10.0},
        )
        last = results["Ok"][-1]
        assert (last["result"], last["message"]) == (
            "Error",
            "ExeScript command exited with code 1",
        )
        assert not (unit.config.work_dir / "golem" / "work" / "boom-file").exists()

    with_exeunit(shared_localnet, tmp_path, body, fail_commands_matching=re.compile("boom"))


def test_terminate_stops_other_batches_and_returns_to_initialized(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    marker = "7171.4747"

    async def body(unit: ExeUnit, call: Callable[..., Awaitable[Any]]) -> None:
        me = unit.config.activity_id
        sleeper = {"run": {"entry_point": "/bin/sleep", "args": [marker]}}
        await call("Exec", exec_payload(unit, "long", [*READY, sleeper]))
        with anyio.fail_after(10):
            while not processes_with(marker):
                await anyio.sleep(0.05)
        await call("Exec", exec_payload(unit, "stop", [{"terminate": {}}]))
        stopped = await call(
            "GetExecBatchResults",
            {"activityId": me, "batchId": "stop", "commandIndex": 0, "timeout": 10.0},
        )
        assert stopped["Ok"][0]["result"] == "Ok"
        assert not processes_with(marker)
        await anyio.sleep(0.2)  # the cancelled batch must not move the state afterwards
        assert (await call("GetActivityState", {"activityId": me}))["Ok"]["state"] == [
            "Initialized",
            None,
        ]
        long = await call(
            "GetExecBatchResults",
            {"activityId": me, "batchId": "long", "commandIndex": None, "timeout": 1.0},
        )
        killed = long["Ok"][-1]  # the interrupted run fails, so waiters see the batch end
        assert (killed["index"], killed["result"], killed["isBatchFinished"]) == (2, "Error", True)
        assert "terminated" in killed["message"]

    with_exeunit(shared_localnet, tmp_path, body)
