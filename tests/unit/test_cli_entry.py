"""The entry point's quick answers (cli/entry.py): which argv they take, and the help key."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_deploy.cli import entry


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["status", "--json"], ""),
        (["status", "--json", "-n", "web"], "web"),
        (["status", "-n", "web", "--json"], "web"),
        (["status", "--name", "web", "--json"], "web"),
        (["status", "--name=web", "--json"], "web"),
        (["status"], None),  # the table needs rich: full CLI
        (["status", "-n", "web"], None),
        (["status", "--json", "-f", "x.yaml"], None),  # the manifest names it: full CLI
        (["status", "--json", "--watch"], None),
        (["status", "--json", "-n"], None),
        (["status", "--json", "-n", "--watch"], None),
        (["status", "--json", "--name="], None),
        (["logs", "--json"], None),
    ],
)
def test_only_plain_status_json_is_answered_quickly(argv: list[str], name: str | None) -> None:
    assert entry._status_name(argv) == name


def test_no_deployment_folder_means_the_full_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOLEM_DEPLOY_HOME", str(tmp_path))
    assert entry.status_json(["status", "--json"]) is None
    assert entry.status_json(["status", "--json", "-n", "nothing"]) is None
    (tmp_path / "deployments" / "a").mkdir(parents=True)
    (tmp_path / "deployments" / "a" / "journal.jsonl").write_text("")
    assert entry.status_json(["status", "--json"]) is None  # no socket answers


@pytest.mark.parametrize(
    "argv", [[], ["up"], ["up", "x.yaml"], ["--help", "up"], ["up", "--timeout", "--help"]]
)
def test_help_is_cached_only_when_help_is_all_that_is_asked(argv: list[str]) -> None:
    assert entry.help_cache_path(argv) is None


def test_the_help_key_follows_what_the_rendering_depends_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = entry.help_cache_path(["--help"])
    assert root is not None and root.parent == tmp_path / "golem-deploy"
    assert entry.help_cache_path(["--help"]) == root
    assert entry.help_cache_path(["up", "--help"]) != root
    for name, value in [("COLUMNS", "33"), ("NO_COLOR", "1"), ("FORCE_COLOR", "1")]:
        with monkeypatch.context() as env:
            env.setenv(name, value)
            assert entry.help_cache_path(["--help"]) != root, name
    monkeypatch.setenv("UNRELATED_SETTING", "1")
    assert entry.help_cache_path(["--help"]) == root


def test_help_is_kept_only_after_a_clean_exit(tmp_path: Path) -> None:
    def prints(code: int) -> None:
        print("Usage: golem-deploy")
        raise SystemExit(code)

    kept = tmp_path / "help.txt"
    with pytest.raises(SystemExit):
        entry.keep_help(kept, lambda: prints(2))
    assert not kept.exists()
    with pytest.raises(SystemExit):
        entry.keep_help(kept, lambda: prints(0))
    assert kept.read_text() == "Usage: golem-deploy\n"
