"""The compiler: generated Service classes, driven like the engine drives them, with a real
(I/O-free) WorkContext whose scripts record the ExeScript commands they would send."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from golem_deploy.compiler import (
    CompileError,
    class_name,
    compile_manifest,
    export_source,
    with_env,
)
from golem_deploy.engine import RestartPolicy, Service
from golem_deploy.engine.payload import LOCAL_MOUNTS_PROPERTY
from golem_deploy.engine.service import Script, WorkContext
from golem_deploy.manifest import Manifest, UploadStep, load_manifest

REPO = Path(__file__).resolve().parents[2]
HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


def manifest(tmp_path: Path, services: str) -> Manifest:
    (tmp_path / "scripts").mkdir(exist_ok=True)
    (tmp_path / "input.txt").write_text("payload data")
    path = tmp_path / "app.yaml"
    path.write_text("budget: 1\nservices:\n" + textwrap.indent(textwrap.dedent(services), "  "))
    return load_manifest(path)


def instance(cls: type[Service]) -> Service:
    service = cls()
    service._ctx = WorkContext(
        activity_id="act", agreement_id="agr", provider_id="0xp", provider_name="prov"
    )
    return service


def commands(script: Script) -> list[dict[str, Any]]:
    return [step.command for step in script.steps]


def argv(command: dict[str, Any]) -> list[str]:
    run = command["run"]
    return [run["entry_point"], *run["args"]]


async def collect(gen: Any, limit: int = 10) -> list[Script]:
    """Every script a handler yields (sending None back, as for an unread result)."""
    scripts: list[Script] = []
    try:
        script = await gen.asend(None)
        while len(scripts) < limit:
            scripts.append(script)
            script = await gen.asend(None)
    except StopAsyncIteration:
        pass
    return scripts


SERVICE = f"""\
web-app:
  payload: {{image_hash: {HASH}, min_mem_gib: 1, min_cpu_threads: 2, capabilities: [vpn]}}
  env: {{MODE: prod, N: 2}}
  start:
    - ["/bin/echo", "starting"]
    - upload: {{src: input.txt, dst: /golem/work/input.txt}}
  run:
    every: 50ms
    steps:
      - run: "date; uptime"
  shutdown:
    - download: {{src: /golem/output/result.txt, dst: out/result.txt}}
  healthcheck: {{run: [/bin/true], interval: 1s}}
  restart: {{policy: on-failure}}
  local: {{mounts: {{/golem/run: scripts}}}}
"""


def test_one_class_per_service_named_after_it() -> None:
    classes = compile_manifest(load_manifest(REPO / "manifests/multi-service.yaml"))
    assert list(classes) == ["db", "web"]
    assert [c.__name__ for c in classes.values()] == ["Db", "Web"]
    assert all(issubclass(c, Service) for c in classes.values())
    assert classes["web"].spec.depends_on == ("db",)


@pytest.mark.parametrize(
    ("service", "expected"),
    [("simple-service", "SimpleService"), ("web_app", "WebApp"), ("db", "Db"), ("a1", "A1")],
)
def test_class_names(service: str, expected: str) -> None:
    assert class_name(service) == expected


def test_colliding_class_names_get_a_suffix(tmp_path: Path) -> None:
    m = manifest(
        tmp_path,
        f"web-app: {{payload: {{image_hash: {HASH}}}}}\n"
        f"web_app: {{payload: {{image_hash: {HASH}}}}}\n",
    )
    assert [c.__name__ for c in compile_manifest(m).values()] == ["WebApp", "WebApp2"]


def test_class_attributes_carry_the_spec(tmp_path: Path) -> None:
    m = manifest(tmp_path, SERVICE)
    cls = compile_manifest(m)["web-app"]
    spec = m.services["web-app"]
    assert cls.spec is spec
    # the engine gets its own typed configuration, translated from the manifest's
    assert cls.restart == RestartPolicy(
        policy="on-failure", max_restarts=spec.restart.max_restarts, backoff=spec.restart.backoff
    )
    assert cls.healthcheck is not None and cls.healthcheck.interval == 1.0
    # the health check runs with the service's env, like every other command
    assert cls.healthcheck.argv == ("/usr/bin/env", "MODE=prod", "N=2", "/bin/true")
    assert cls.respawn_unstarted_instances is spec.respawn_unstarted_instances
    assert cls.service_name() == "web-app"


def test_payload_matches_vm_repo_and_local_mounts_only_when_local(tmp_path: Path) -> None:
    m = manifest(tmp_path, SERVICE)

    async def payloads() -> tuple[Any, Any]:
        remote = await compile_manifest(m)["web-app"].get_payload()
        local = await compile_manifest(m, local=True)["web-app"].get_payload()
        return remote, local

    remote, local = anyio.run(payloads)
    assert remote.task_package.startswith(f"hash:sha3:{HASH}:")
    assert (remote.min_mem_gib, remote.min_cpu_threads, remote.capabilities) == (1.0, 2, ("vpn",))
    assert LOCAL_MOUNTS_PROPERTY not in remote.properties()
    mounts = json.loads(local.properties()[LOCAL_MOUNTS_PROPERTY])
    assert mounts == {"/golem/run": str(tmp_path.resolve() / "scripts")}


def test_start_deploys_then_runs_the_start_steps_with_env_in_one_batch(tmp_path: Path) -> None:
    cls = compile_manifest(manifest(tmp_path, SERVICE))["web-app"]
    scripts = anyio.run(collect, instance(cls).start())
    assert len(scripts) == 1  # one exec round trip to the provider, not two
    deploy, start, echo, upload = commands(scripts[0])
    assert [deploy, start] == [{"deploy": {}}, {"start": {"args": []}}]
    assert argv(echo) == ["/usr/bin/env", "MODE=prod", "N=2", "/bin/echo", "starting"]
    assert upload["transfer"]["to"] == "container:/golem/work/input.txt"


def test_without_start_steps_start_only_deploys_and_starts(tmp_path: Path) -> None:
    m = manifest(tmp_path, f"bare: {{payload: {{image_hash: {HASH}}}}}\n")
    scripts = anyio.run(collect, instance(compile_manifest(m)["bare"]).start())
    assert [commands(s) for s in scripts] == [[{"deploy": {}}, {"start": {"args": []}}]]


def test_the_start_entrypoint_capability_starts_the_images_entrypoint(tmp_path: Path) -> None:
    m = manifest(
        tmp_path,
        f"ep: {{payload: {{image_hash: {HASH}, capabilities: [start-entrypoint]}},"
        " start: [[/bin/true]]}\n",
    )
    scripts = anyio.run(collect, instance(compile_manifest(m)["ep"]).start())
    [script] = scripts
    deploy, start, true = commands(script)
    assert [deploy, start] == [{"deploy": {}}, {"start": {"args": ["start-entrypoint"]}}]
    assert argv(true) == ["/bin/true"]
    exported = export_source(m)  # the yapapi program asks the VM for the same
    assert "script.start('start-entrypoint')" in exported
    compile(exported, "program.py", "exec")


def test_run_repeats_every_interval(tmp_path: Path) -> None:
    cls = compile_manifest(manifest(tmp_path, SERVICE))["web-app"]

    async def three_rounds() -> tuple[list[Script], float]:
        gen = instance(cls).run()
        started = anyio.current_time()
        scripts = [await gen.asend(None)]
        for _ in range(2):
            scripts.append(await gen.asend(None))
        elapsed = anyio.current_time() - started
        await gen.aclose()
        return scripts, elapsed

    scripts, elapsed = anyio.run(three_rounds)
    assert elapsed >= 0.1  # two pauses of 50ms between three rounds
    for script in scripts:
        [command] = commands(script)
        assert argv(command) == [
            "/usr/bin/env", "MODE=prod", "N=2", "/bin/sh", "-c", "date; uptime",
        ]  # fmt: skip


def test_run_without_every_runs_once_and_keeps_running(tmp_path: Path) -> None:
    m = manifest(tmp_path, f"once: {{payload: {{image_hash: {HASH}}}, run: [[/bin/date]]}}\n")
    cls = compile_manifest(m)["once"]

    async def drive() -> tuple[list[dict[str, Any]], bool]:
        gen = instance(cls).run()
        first = commands(await gen.asend(None))
        with anyio.move_on_after(0.2) as scope:
            await gen.asend(None)
        await gen.aclose()
        return first, scope.cancelled_caught

    first, still_running = anyio.run(drive)
    assert [argv(c) for c in first] == [["/bin/date"]]  # no env: argv unchanged
    assert still_running


def test_shutdown_runs_its_steps_or_terminates(tmp_path: Path) -> None:
    m = manifest(
        tmp_path,
        SERVICE + f"bare: {{payload: {{image_hash: {HASH}}}}}\n",
    )
    classes = compile_manifest(m)
    [script] = anyio.run(collect, instance(classes["web-app"]).shutdown())
    [download] = commands(script)
    assert download["transfer"]["from"] == "container:/golem/output/result.txt"
    [script] = anyio.run(collect, instance(classes["bare"]).shutdown())
    assert commands(script) == [{"terminate": {}}]


def test_download_writes_inside_the_manifest_folder(tmp_path: Path) -> None:
    m = manifest(tmp_path, SERVICE)
    [script] = anyio.run(collect, instance(compile_manifest(m)["web-app"]).shutdown())
    [step] = script.steps

    async def deliver() -> None:
        assert step.after is not None and step.before is not None

        class Storage:  # the provider's side of a download: the file arrives at `path`
            async def receive_file(self, path: Path) -> Any:
                async def wait() -> int:
                    path.write_bytes(b"result")
                    return 6

                async def release() -> None:
                    return None

                return "gftp://x", wait, release

        await step.before(Storage())  # type: ignore[arg-type]
        await step.after(None)  # type: ignore[arg-type]

    anyio.run(deliver)
    assert (tmp_path / "out" / "result.txt").read_bytes() == b"result"


def test_transfers_outside_the_manifest_folder_are_refused(tmp_path: Path) -> None:
    m = manifest(tmp_path, f"a: {{payload: {{image_hash: {HASH}}}}}\n")
    spec = m.services["a"]
    escaping = dataclasses.replace(spec, start=(UploadStep(Path("/etc/passwd"), "/golem/p"),))
    bad = dataclasses.replace(m, services={"a": escaping})
    with pytest.raises(CompileError) as info:
        compile_manifest(bad)
    assert "outside the manifest's folder" in str(info.value)


def test_with_env() -> None:
    assert with_env(("/bin/a",), {}) == ("/bin/a",)
    assert with_env(("/bin/a", "x"), {"K": "v w"}) == ("/usr/bin/env", "K=v w", "/bin/a", "x")


def test_examples_compile_and_yield_scripts() -> None:
    for example in sorted((REPO / "manifests").glob("*.yaml")):
        for cls in compile_manifest(load_manifest(example), local=True).values():
            scripts = anyio.run(collect, instance(cls).start())
            assert commands(scripts[0])[:2] == [{"deploy": {}}, {"start": {"args": []}}]
