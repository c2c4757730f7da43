"""The cgroup v2 path of the activity limits, on a stand-in hierarchy.

This machine (and CI) runs cgroup v1 for cpu and memory, where the integration tests
enforce the limits for real; a v2 host is exercised here on a directory laid out as the
kernel lays out /sys/fs/cgroup, so what is written, and the reasons given, are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_deploy.localnet import limits as lm


@pytest.fixture
def v2_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cgroup"
    ours = root / "user.slice" / "deploy.scope"
    ours.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    monkeypatch.setattr(lm, "CGROUP_ROOT", root)
    monkeypatch.setattr(lm, "_own_cgroups", lambda: {"": "/user.slice/deploy.scope"})
    return ours


def test_a_delegating_v2_cgroup_gets_the_agreements_cpu_and_memory(v2_root: Path) -> None:
    (v2_root / "cgroup.subtree_control").write_text("cpu memory pids\n")
    cgroup = lm.CgroupLimits("act1", lm.Limits(cpu_threads=1.5, mem_bytes=512 * 1024**2))
    assert cgroup.create() is None
    (made,) = cgroup.dirs
    assert made.parent == v2_root and made.name.endswith("-act1")
    assert (made / "cpu.max").read_text() == "150000 100000"  # 1.5 cores' worth per period
    assert (made / "memory.max").read_text() == str(512 * 1024**2)


def test_a_v2_cgroup_that_does_not_delegate_is_reported_not_changed(v2_root: Path) -> None:
    (v2_root / "cgroup.subtree_control").write_text("pids\n")
    cgroup = lm.CgroupLimits("act2", lm.Limits(cpu_threads=1, mem_bytes=1024**3))
    reason = cgroup.create()
    assert reason is not None and "does not delegate cpu and memory" in reason
    assert cgroup.dirs == [] and [p.name for p in v2_root.iterdir()] == ["cgroup.subtree_control"]
