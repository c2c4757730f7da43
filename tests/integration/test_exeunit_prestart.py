"""The pre-start (localnet/exeunit_prestart.py): the activity's sandbox, started right after
Initialized, is the one deploy's commands run in -- or, when deploy needs another, it is
closed; nothing of it outlives the activity, however the activity ends.

Through the ExeUnit's bus API on a real yagna router (see test_exeunit_direct.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from _gvmi import build_gvmi, mksquashfs_available
from _procs import processes_with
from test_exeunit_direct import READY, exec_payload, with_exeunit

from golem_deploy.localnet import LocalNetInfo, exeunit_image
from golem_deploy.localnet.exeunit import ExeUnit
from golem_deploy.localnet.image import ImageConfig
from golem_deploy.localnet.sandbox import Sandbox, namespaces_available

pytestmark = [
    pytest.mark.localnet,
    pytest.mark.skipif(not namespaces_available(), reason="needs Linux namespaces"),
]

Call = Callable[..., Awaitable[Any]]


def sandbox_processes(unit: ExeUnit) -> set[int]:
    """The activity's sandbox init (and its unshare): their argv holds the init's spec,
    which names the activity's private root directory."""
    return set(processes_with(str(unit.config.work_dir / "rootfs")))


async def prestarted(unit: ExeUnit) -> tuple[Sandbox, str]:
    """The pre-started sandbox and its network namespace, as the host names it."""
    sandbox = await unit._prestart.wait()
    assert sandbox is not None and sandbox.netns is not None
    return sandbox, os.readlink(sandbox.netns)


async def script_results(unit: ExeUnit, call: Call, script: list[Any]) -> list[Any]:
    me = unit.config.activity_id
    await call("Exec", exec_payload(unit, "b1", script))
    answer = await call(
        "GetExecBatchResults",
        {"activityId": me, "batchId": "b1", "commandIndex": None, "timeout": 20.0},
    )
    results = list(answer["Ok"])
    assert [r["result"] for r in results] == ["Ok"] * len(script), results
    return results


def sh(command: str) -> dict[str, Any]:
    capture = {"stdout": {"atEnd": {}}}
    return {"run": {"entry_point": "/bin/sh", "args": ["-c", command], "capture": capture}}


def test_deploy_adopts_the_prestarted_sandbox(
    shared_localnet: LocalNetInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="golem_deploy.localnet.exeunit")

    async def body(unit: ExeUnit, call: Call) -> None:
        _, netns = await prestarted(unit)
        before = sandbox_processes(unit)
        assert before  # started before any deploy
        results = await script_results(unit, call, [*READY, sh("ls -l /proc/self/ns/net")])
        # the commands run in the pre-started sandbox's namespaces
        assert results[2]["stdout"].endswith(f" -> {netns}\n")
        assert sandbox_processes(unit) == before  # and no other sandbox was made
        assert "deploy adopted the pre-started sandbox" in caplog.text

    with_exeunit(shared_localnet, tmp_path, body)


def test_deploy_that_needs_another_sandbox_closes_the_prestarted_one(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    """A deploy with VPN `hosts` binds its own /etc/hosts: not what was pre-started. The
    pre-started one is gone before deploy's starts, whose limits hold as always (its
    cgroup has the same name)."""

    async def body(unit: ExeUnit, call: Call) -> None:
        sandbox, _ = await prestarted(unit)
        cgroups = sandbox.limits_note is None  # else this host cannot enforce limits at all
        before = sandbox_processes(unit)
        deploy = {"deploy": {"hosts": {"db.example": "10.9.8.7"}}}
        results = await script_results(unit, call, [deploy, READY[1], sh("cat /etc/hosts")])
        assert "10.9.8.7\tdb.example" in results[2]["stdout"].splitlines()
        after = sandbox_processes(unit)
        assert after and not after & before  # the pre-started init is gone, another runs
        if cgroups:
            assert not [n for n in unit.notices if "not enforced" in n], unit.notices

    with_exeunit(shared_localnet, tmp_path, body, cpu_threads=1.0, mem_gib=0.25)


@pytest.mark.parametrize("end", ["shutdown", "vanish", "terminate"])
def test_an_activity_that_never_deploys_leaves_no_sandbox(
    shared_localnet: LocalNetInfo, tmp_path: Path, end: str
) -> None:
    async def body(unit: ExeUnit, call: Call) -> None:
        await prestarted(unit)
        assert sandbox_processes(unit)
        if end == "shutdown":
            await unit.shutdown("destroyed by the test")
            assert not sandbox_processes(unit)
        elif end == "terminate":  # the activity lives on, back in Initialized, unsandboxed
            await script_results(unit, call, [{"terminate": {}}])
            assert not sandbox_processes(unit)
            me = unit.config.activity_id
            state = await call("GetActivityState", {"activityId": me})
            assert state["Ok"]["state"] == ["Initialized", None]
        else:  # the SIGKILL is synchronous, the kernel's reaping is not
            unit.vanish()
            with anyio.fail_after(5):
                while sandbox_processes(unit):
                    await anyio.sleep(0.02)

    with_exeunit(shared_localnet, tmp_path, body)


@pytest.mark.skipif(not mksquashfs_available(), reason="needs squashfs-tools")
def test_a_cached_image_is_prestarted_and_its_reference_released(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    image = build_gvmi(tmp_path / "build", ImageConfig(volumes=("/golem/work",)))
    cache = exeunit_image.image_cache()

    async def extracts(unit: ExeUnit, call: Call) -> None:
        assert await unit._prestart.wait() is None  # not cached yet: deploy extracts it
        await script_results(unit, call, READY)

    async def adopts(unit: ExeUnit, call: Call) -> None:
        sandbox, netns = await prestarted(unit)
        assert sandbox.rootfs.image is not None and image.digest in str(sandbox.rootfs.image)
        results = await script_results(unit, call, [*READY, sh("ls -l /proc/self/ns/net")])
        assert results[2]["stdout"].endswith(f" -> {netns}\n")

    async def never_deploys(unit: ExeUnit, call: Call) -> None:
        await prestarted(unit)

    for body in (extracts, adopts, never_deploys):
        with_exeunit(shared_localnet, tmp_path, body, local_image=image.path)
        assert not cache._in_use.get(image.digest)  # evictable again
