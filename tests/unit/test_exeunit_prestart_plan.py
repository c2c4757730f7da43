"""The pre-start's decisions (localnet/exeunit_prestart.py, exeunit_image.resolve_cached):
which root it may use without a download, which sandbox deploy can adopt, and when it
does not pre-start at all."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import anyio
import pytest

from golem_deploy.localnet import exeunit_image
from golem_deploy.localnet.exeunit import ExeUnitConfig
from golem_deploy.localnet.exeunit_prestart import PRESTART_ENV, SandboxPlan, wanted
from golem_deploy.localnet.image import ImageConfig
from golem_deploy.localnet.image.cache import FETCH_ENV
from golem_deploy.localnet.image.gvmi import file_digest
from golem_deploy.localnet.rootfs import HOST_ROOT
from golem_deploy.localnet.sandbox import UNSAFE_HOST_EXEC_ENV, namespaces_available

CACHED = "ab" * 28
ELSEWHERE = "cd" * 28


def config(tmp_path: Path, **changes: object) -> ExeUnitConfig:
    base = ExeUnitConfig(
        activity_id="a" * 32,
        agreement_id="b" * 64,
        gsb_url="tcp://127.0.0.1:1",
        work_dir=tmp_path / "activity",
        mounts={"/data": tmp_path},
        usage_vector=[],
        requestor_id="0x" + "1" * 40,
        storage_gib=1.0,
        cpu_threads=1.0,
        mem_gib=0.5,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state folder whose image cache holds the image CACHED (as an extraction leaves it)."""
    monkeypatch.setenv("GOLEM_DEPLOY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(FETCH_ENV, raising=False)
    entry = tmp_path / "home" / "images" / CACHED
    (entry / "rootfs").mkdir(parents=True)
    (entry / "config.json").write_text(json.dumps(ImageConfig(workdir="/app").to_json()))
    return tmp_path / "home"


def test_resolve_cached_never_downloads_and_agrees_with_deploy(home: Path, tmp_path: Path) -> None:
    resolve_cached = exeunit_image.resolve_cached
    loopback = "http://127.0.0.1:1/x.gvmi"

    async def main() -> None:
        assert await resolve_cached(None, None) == exeunit_image.ResolvedRoot(HOST_ROOT)
        assert await resolve_cached("not a task package", None) is None  # deploy says why
        assert await resolve_cached(f"hash:sha3:{ELSEWHERE}:{loopback}", None) is None
        assert await resolve_cached(None, tmp_path / "missing.gvmi") is None
        tree = await resolve_cached(None, tmp_path)
        assert tree is not None and tree.rootfs.image == tmp_path.resolve()

        # Offline: the sealed host root, with the notice deploy must still give.
        offline = f"hash:sha3:{ELSEWHERE}:https://registry.invalid/x.gvmi"
        stand_in = await resolve_cached(offline, None)
        deploys = await exeunit_image.resolve_root(offline, None, None)
        assert stand_in is not None and stand_in.notice is not None
        assert (stand_in.rootfs, stand_in.notice) == (deploys.rootfs, deploys.notice)

        # Cached: the very root deploy resolves, holding a reference to the image.
        package = f"hash:sha3:{CACHED}:{loopback}"
        hit = await resolve_cached(package, None)
        deploys = await exeunit_image.resolve_root(package, None, None)
        assert hit is not None and (hit.rootfs, hit.digest) == (deploys.rootfs, deploys.digest)
        assert hit.rootfs.workdir == "/app" and hit.notice is None
        cache = exeunit_image.image_cache()
        assert cache._in_use[CACHED] == 2
        exeunit_image.release(hit.digest)
        exeunit_image.release(deploys.digest)
        assert cache._in_use[CACHED] == 0

    anyio.run(main)


def test_a_local_image_file_is_hashed_once_per_version(home: Path, tmp_path: Path) -> None:
    image = tmp_path / "app.gvmi"
    image.write_bytes(b"version 1")
    entry = home / "images" / file_digest(image)  # as if extracted before
    (entry / "rootfs").mkdir(parents=True)
    (entry / "config.json").write_text(json.dumps(ImageConfig().to_json()))

    async def main() -> None:
        hit = await exeunit_image.resolve_cached(None, image)
        deploys = await exeunit_image.resolve_root(None, image, None)
        assert hit is not None and hit.digest == deploys.digest == entry.name
        assert hit.rootfs == deploys.rootfs
        exeunit_image.release(hit.digest)
        exeunit_image.release(deploys.digest)
        image.write_bytes(b"version 2, not extracted yet")
        assert await exeunit_image.local_digest(image) == file_digest(image) != entry.name
        assert await exeunit_image.resolve_cached(None, image) is None

    anyio.run(main)


def test_deploy_adopts_only_the_sandbox_it_would_build(home: Path, tmp_path: Path) -> None:
    unit = config(tmp_path)
    host = exeunit_image.ResolvedRoot(HOST_ROOT)
    prepared = SandboxPlan.of(unit, host, {}, sealed=True)
    offline = dataclasses.replace(host, notice="image d646d7b9… not reachable offline")
    assert prepared.fits(SandboxPlan.of(unit, offline, {}, sealed=True))  # notice aside
    other_root = exeunit_image.ResolvedRoot(dataclasses.replace(HOST_ROOT, image=tmp_path))
    hosts = {"/etc/hosts": tmp_path / "hosts"}
    for deploys in (
        SandboxPlan.of(unit, host, hosts, sealed=True),
        SandboxPlan.of(unit, other_root, {}, sealed=True),
        SandboxPlan.of(unit, host, {}, sealed=False),
        SandboxPlan.of(config(tmp_path, storage_gib=2.0), host, {}, sealed=True),
        SandboxPlan.of(config(tmp_path, mem_gib=1.0), host, {}, sealed=True),
        SandboxPlan.of(config(tmp_path, mounts={}), host, {}, sealed=True),
    ):
        assert not prepared.fits(deploys), deploys
    sandbox = prepared.build(unit.work_dir)
    assert sandbox.layer_bytes == 1024**3 and sandbox.files == {}
    assert sandbox.mounts == {"/data": tmp_path.resolve()}


def test_no_prestart_unsealed_with_faults_or_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSAFE_HOST_EXEC_ENV, raising=False)
    monkeypatch.delenv(PRESTART_ENV, raising=False)
    assert wanted(config(tmp_path)) == namespaces_available()
    assert not wanted(config(tmp_path, unsafe_host_exec=True))
    assert not wanted(config(tmp_path, slow_start=0.5))
    monkeypatch.setenv(UNSAFE_HOST_EXEC_ENV, "1")
    assert not wanted(config(tmp_path))
    monkeypatch.delenv(UNSAFE_HOST_EXEC_ENV)
    monkeypatch.setenv(PRESTART_ENV, "0")
    assert not wanted(config(tmp_path))
