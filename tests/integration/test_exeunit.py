"""The local ExeUnit behind real yagna daemons, driven over the requestor's REST API.

Every request here travels requestor REST -> requestor yagna -> hub -> provider yagna ->
GSB -> our ExeUnit (inside the local network's host process) and back, so these tests check
the reply shapes yagna accepts and what a requestor sees: results with commandIndex and
timeouts, capture modes, state rules, transfers (container, loopback http, gftp over the
bus), and the sandbox (exact /golem paths, read-only mounts, background processes, argv
unchanged, nothing left running after destroy).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from _localnet_requestor import HttpError, Requestor, with_requestor
from _procs import processes_with
from aiohttp import web

from golem_deploy.localnet import LocalNetInfo, gftp
from golem_deploy.localnet.gsb import GsbClient

pytestmark = pytest.mark.localnet

MOUNTS_PROPERTY = "golem_deploy.local.mounts"


def run(info: LocalNetInfo, body: Callable[[Requestor], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        session, requestor = await with_requestor(info)
        try:
            return await body(requestor)
        finally:
            await session.close()

    return anyio.run(main)


@asynccontextmanager
async def activity(req: Requestor, **demand: Any) -> AsyncIterator[str]:
    """An activity on a fresh agreement; destroyed (and the agreement ended) afterwards."""
    agreement_id = await req.one_agreement(**demand)
    activity_id = await req.create_activity(agreement_id)
    try:
        yield activity_id
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await req.destroy_activity(activity_id)
            finally:
                await req.terminate(agreement_id)


def run_cmd(argv: list[str], capture: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"entry_point": argv[0], "args": argv[1:]}
    if capture is not None:
        body["capture"] = capture
    return {"run": body}


STREAM_BOTH = {"stdout": {"stream": {}}, "stderr": {"stream": {}}}
READY = [{"deploy": {}}, {"start": {"args": []}}]


async def get_results(
    req: Requestor, activity_id: str, batch: str, **params: Any
) -> list[dict[str, Any]]:
    return list(
        await req.call(
            "GET",
            f"/activity-api/v1/activity/{activity_id}/exec/{batch}",
            params=params,
            timeout=30,
        )
    )


async def exec_and_wait(
    req: Requestor, activity_id: str, script: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    batch = await req.exec(activity_id, script)
    return await req.results(activity_id, batch)


def test_results_wait_for_a_command_index_and_time_out(shared_localnet: LocalNetInfo) -> None:
    async def body(req: Requestor) -> None:
        async with activity(req) as activity_id:
            script = [
                *READY,
                run_cmd(["/bin/sh", "-c", "sleep 1.5; echo one"], {"stdout": {"atEnd": {}}}),
                run_cmd(["/bin/echo", "two"], {"stdout": {"atEnd": {}}}),
            ]
            batch = await req.exec(activity_id, script)
            # Waiting for command 1 (start) returns the prefix 0..1, marked finished at 1.
            first = await get_results(req, activity_id, batch, commandIndex=1, timeout=10)
            assert [(r["index"], r["result"], r["isBatchFinished"]) for r in first] == [
                (0, "Ok", False),
                (1, "Ok", True),
            ]
            # The sleeping command cannot finish in 0.2 s: with commandIndex that is a 408.
            with pytest.raises(HttpError) as timeout:
                await get_results(req, activity_id, batch, commandIndex=2, timeout=0.2)
            assert timeout.value.status == 408
            # Without commandIndex a timeout returns what is finished so far, never a
            # running command.
            partial = await get_results(req, activity_id, batch, timeout=0.1)
            assert [r["index"] for r in partial] == [0, 1]

            results = await get_results(req, activity_id, batch, timeout=10)
            deployed, *rest = [r["stdout"] for r in results]
            # (a deploy says once per image and local network that it runs in the sealed
            # host root: whether this one is the first depends on the tests before it)
            assert deployed is None or "not reachable offline" in deployed
            assert rest == [None, "one\n", "two\n"]
            assert [r["isBatchFinished"] for r in results] == [False, False, False, True]
            # With commandIndex only that command carries its output.
            only = await get_results(req, activity_id, batch, commandIndex=3)
            assert [r["stdout"] for r in only] == [None, None, None, "two\n"]

            with pytest.raises(HttpError) as unknown:
                await get_results(req, activity_id, "0" * 32)
            assert unknown.value.status == 404

    run(shared_localnet, body)


def test_capture_modes_formats_and_a_failing_command(shared_localnet: LocalNetInfo) -> None:
    async def body(req: Requestor) -> None:
        async with activity(req) as activity_id:
            await exec_and_wait(req, activity_id, READY)
            emit = ["/bin/sh", "-c", "printf 0123456789; printf oops >&2"]
            script = [
                run_cmd(emit),  # no capture: output discarded
                run_cmd(emit, {"stdout": {"atEnd": {"tail": 4}}, "stderr": {"atEnd": {}}}),
                run_cmd(emit, {"stdout": {"atEnd": {"headTail": 5, "format": "bin"}}}),
                run_cmd(["/bin/sh", "-c", "echo bad >&2; exit 3"], STREAM_BOTH),
                run_cmd(["/bin/echo", "never"], STREAM_BOTH),
            ]
            batch = await req.exec(activity_id, script)
            events = await req.stream(activity_id, batch, last_index=4)
            results = await req.results(activity_id, batch)

            assert [(r["stdout"], r["stderr"]) for r in results[:3]] == [
                (None, None),
                ("6789", "oops"),
                (list(b"01289"), None),
            ]
            failed = results[3]
            assert failed["result"] == "Error" and failed["isBatchFinished"] is True
            assert failed["message"] == "ExeScript command exited with code 3"
            assert failed["stderr"] == "bad\n"
            assert len(results) == 4  # the batch stopped at the failure

            kinds = [(e["index"], next(iter(e["kind"]))) for e in events]
            assert (3, "stderr") in kinds and not any(i == 4 for i, _ in kinds)
            finished = [e["kind"]["finished"] for e in events if "finished" in e["kind"]]
            assert finished[-1] == {
                "return_code": 3,
                "message": "ExeScript command exited with code 3",
            }
            started = [e["kind"]["started"]["command"] for e in events if "started" in e["kind"]]
            assert started[0] == script[0]

    run(shared_localnet, body)


def test_state_rules_sign_and_terminate(shared_localnet: LocalNetInfo) -> None:
    async def body(req: Requestor) -> None:
        async with activity(req) as activity_id:
            early = await exec_and_wait(req, activity_id, [run_cmd(["/bin/true"])])
            assert early[0]["result"] == "Error"
            assert "deploy() command is expected now" in early[0]["message"]
            assert (await req.state(activity_id))["state"] == ["Initialized", None]

            results = await exec_and_wait(req, activity_id, [*READY, {"sign": {}}])
            assert [r["result"] for r in results] == ["Ok", "Ok", "Error"]
            assert "sgx" in results[2]["message"]
            assert (await req.state(activity_id))["state"] == ["Ready", None]

            again = await exec_and_wait(req, activity_id, [{"deploy": {}}])
            assert "Cannot send command after a successful start()" in again[0]["message"]

            await exec_and_wait(req, activity_id, [{"terminate": {}}])
            assert (await req.state(activity_id))["state"] == ["Initialized", None]
            # After terminate the activity can be deployed and started again.
            results = await exec_and_wait(
                req, activity_id, [*READY, run_cmd(["/bin/echo", "back"], STREAM_BOTH)]
            )
            assert results[-1]["stdout"] == "back\n"

    run(shared_localnet, body)


def test_sandbox_paths_mounts_background_processes_and_cleanup(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    shared = tmp_path / "run"
    shared.mkdir()
    (shared / "hello.sh").write_text("echo hello from the mount\n")
    marker = "4711.0815"  # a unique sleep duration to find the background process in /proc
    weird = ["a;b", f"$(touch {tmp_path}/pwned)", "'q\"", "l1\nl2", " ", "*"]

    async def body(req: Requestor) -> None:
        mounts = json.dumps({"/golem/run": str(shared)})
        async with activity(req, extra={MOUNTS_PROPERTY: mounts}) as activity_id:
            await exec_and_wait(req, activity_id, READY)
            results = await exec_and_wait(
                req,
                activity_id,
                [
                    run_cmd(["/bin/pwd"], STREAM_BOTH),
                    run_cmd(["/bin/sh", "/golem/run/hello.sh"], STREAM_BOTH),
                    run_cmd(["/bin/sh", "-c", "touch /golem/run/x || echo read-only"], STREAM_BOTH),
                    run_cmd(
                        ["/bin/sh", "-c", f"sleep {marker} & echo $! > /golem/work/bg.pid"],
                        STREAM_BOTH,
                    ),
                    run_cmd(["/usr/bin/printf", "%s\\0", *weird], {"stdout": {"atEnd": {}}}),
                ],
            )
            assert [r["result"] for r in results] == ["Ok"] * 5
            assert results[0]["stdout"] == "/golem/work\n"
            assert results[1]["stdout"] == "hello from the mount\n"
            assert results[2]["stdout"] == "read-only\n" and not (shared / "x").exists()
            assert results[4]["stdout"].split("\0")[:-1] == weird
            assert not (tmp_path / "pwned").exists()

            # The background process outlives its batch and is visible to the next one.
            later = await exec_and_wait(
                req,
                activity_id,
                [run_cmd(["/bin/sh", "-c", "kill -0 $(cat /golem/work/bg.pid) && echo alive"])],
            )
            assert later[0]["result"] == "Ok"
            assert len(processes_with(marker)) == 1
            assert processes_with(activity_id)  # the activity's sandbox init
        # After destroy nothing of the activity runs any more.
        with anyio.fail_after(10):
            while processes_with(marker) or processes_with(activity_id):
                await anyio.sleep(0.1)

    run(shared_localnet, body)


def test_transfers_container_http_and_refusals(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    uploaded: dict[str, bytes] = {}

    async def serve_file(request: web.Request) -> web.Response:
        return web.Response(body=b"payload over http\n")

    async def receive_file(request: web.Request) -> web.Response:
        uploaded[request.match_info["name"]] = await request.read()
        return web.Response(status=201)

    async def body(req: Requestor) -> None:
        app = web.Application()
        app.router.add_get("/files/in.txt", serve_file)
        app.router.add_put("/upload/{name}", receive_file)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        try:
            async with activity(req) as activity_id:
                await exec_and_wait(req, activity_id, READY)
                results = await exec_and_wait(
                    req,
                    activity_id,
                    [
                        {
                            "transfer": {
                                "from": f"{base}/files/in.txt",
                                "to": "container:/golem/input/in.txt",
                            }
                        },
                        run_cmd(["/bin/cat", "/golem/input/in.txt"], STREAM_BOTH),
                        run_cmd(["/bin/sh", "-c", "echo result > /golem/output/out.txt"]),
                        {
                            "transfer": {
                                "from": "container:/golem/output/out.txt",
                                "to": "/golem/work/copy.txt",
                            }
                        },
                        {
                            "transfer": {
                                "from": "/golem/work/copy.txt",
                                "to": f"{base}/upload/out.txt",
                            }
                        },
                    ],
                )
                assert [r["result"] for r in results] == ["Ok"] * 5
                assert results[1]["stdout"] == "payload over http\n"
                assert uploaded["out.txt"] == b"result\n"

                refused = {}
                for source, dest in [
                    ("data:text/plain,hi", "container:/golem/input/x"),
                    ("container:/etc/passwd", "container:/golem/input/x"),
                    ("container:/golem/work/copy.txt", "container:/golem/work/../../../etc/x"),
                    ("http://192.0.2.1/file", "container:/golem/input/x"),
                ]:
                    result = await exec_and_wait(
                        req, activity_id, [{"transfer": {"from": source, "to": dest}}]
                    )
                    assert result[0]["result"] == "Error", (source, dest)
                    refused[source] = result[0]["message"]
                assert "Unsupported scheme: data" in refused["data:text/plain,hi"]
                assert "outside the sandbox" in refused["container:/etc/passwd"]
                assert "loopback" in refused["http://192.0.2.1/file"]
        finally:
            await runner.cleanup()

    run(shared_localnet, body)


def _requestor_gsb_url(info: LocalNetInfo) -> str:
    """The requestor node's GSB router (recorded in the local network's journal)."""
    for line in (info.state_dir / "journal.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "node-started" and record.get("node") == "requestor":
            url = str(record["gsb"])
    return url


def test_gftp_transfers_over_the_bus_both_ways(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(os.urandom(100 * 1024 + 7))  # several 40 KiB chunks

    async def body(req: Requestor) -> None:
        async with GsbClient.connect(_requestor_gsb_url(shared_localnet)) as bus:
            publisher = gftp.GftpPublisher(bus, req.node_id)
            url = await publisher.publish(source)
            assert url.startswith(f"gftp://{req.node_id.lower()}/")
            upload_url, uploaded = await publisher.receive(tmp_path / "output.bin")
            async with activity(req) as activity_id:
                await exec_and_wait(req, activity_id, READY)
                results = await exec_and_wait(
                    req,
                    activity_id,
                    [
                        {"transfer": {"from": url, "to": "container:/golem/input/data.bin"}},
                        run_cmd(["/usr/bin/sha256sum", "/golem/input/data.bin"], STREAM_BOTH),
                        {"transfer": {"from": "container:/golem/input/data.bin", "to": upload_url}},
                    ],
                )
                assert [r["result"] for r in results] == ["Ok"] * 3, results
                with anyio.fail_after(5):
                    await uploaded.wait()
            await publisher.close()
        assert (tmp_path / "output.bin").read_bytes() == source.read_bytes()
        assert results[1]["stdout"].split()[0] == hashlib.sha256(source.read_bytes()).hexdigest()

    run(shared_localnet, body)


def test_usage_is_reported_and_grows(shared_localnet: LocalNetInfo) -> None:
    async def body(req: Requestor) -> None:
        async with activity(req) as activity_id:
            await exec_and_wait(req, activity_id, READY)
            busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass"
            # The host's system Python: the test venv's path does not exist in the sandbox.
            await exec_and_wait(req, activity_id, [run_cmd(["/usr/bin/python3", "-c", busy])])
            path = f"/activity-api/v1/activity/{activity_id}/usage"
            with anyio.fail_after(10):
                while True:
                    usage = await req.call("GET", path)
                    cpu, duration = usage["currentUsage"]
                    if cpu >= 0.5 and duration >= 1.0:
                        break
                    await anyio.sleep(0.5)
            assert isinstance(usage["timestamp"], int)

    run(shared_localnet, body)
