"""Per-instance log rotation (`logs: {max_size, max_files}`): bounded files, and `logs`
still shows the recent lines across a rotation."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from golem_deploy.cli.app import app
from golem_deploy.manifest import check_manifest
from golem_deploy.manifest.model import LogRotation
from golem_deploy.manifest.sizes import format_size, parse_size
from golem_deploy.supervisor import logs

ALPINE = "d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376"
LINE = 60  # bytes per line below: "<27-char stamp> stdout line-NNNN <padding>\n"


def _write_lines(
    folder: Path, count: int, rotation: LogRotation, *, service: str = "web"
) -> logs.InstanceLogs:
    writer = logs.InstanceLogs(folder, rotation={service: rotation})
    for n in range(count):
        writer.write(service, 0, "stdout", f"line-{n:04d} {'x' * 16}\n", at=1_700_000_000 + n)
    writer.close()
    return writer


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MB", 10 * 1024**2),
        ("10m", 10 * 1024**2),
        ("10MiB", 10 * 1024**2),
        ("512KB", 512 * 1024),
        ("1g", 1024**3),
        ("1.5k", 1536),
        ("2048", 2048),
        ("100 b", 100),
        (4096, 4096),
    ],
)
def test_sizes_read_like_compose(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["10XB", "ten", "-1", "1.2.3m", "", True])
def test_a_bad_size_is_a_value_error(text: str | bool) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_sizes_are_printed_in_their_shortest_exact_form() -> None:
    assert [format_size(s) for s in (10 * 1024**2, 1536 * 1024, 1024**3, 100)] == [
        "10MB",
        "1536KB",
        "1GB",
        "100",
    ]


def test_a_full_file_is_rotated_and_at_most_max_files_are_kept(tmp_path: Path) -> None:
    _write_lines(tmp_path, 200, LogRotation(max_size=1024, max_files=3))
    assert _files(tmp_path) == ["web.0.log", "web.0.log.1", "web.0.log.2"]
    for path in tmp_path.iterdir():
        assert 0 < path.stat().st_size <= 1024
        assert path.read_text().endswith("\n")  # rotated at line boundaries only
    assert oct(tmp_path.joinpath("web.0.log.1").stat().st_mode & 0o777) == "0o600"
    # The newest lines are in the current file, the ones before it in .1, then .2.
    current = tmp_path.joinpath("web.0.log").read_text().splitlines()
    newest_rotated = tmp_path.joinpath("web.0.log.1").read_text().splitlines()
    assert "line-0199" in current[-1]
    assert newest_rotated[-1] < current[0]


def test_the_current_file_is_never_missing_for_a_reader(tmp_path: Path) -> None:
    """`logs` may read at any moment: rotation leaves an empty current file at once (its
    content already under its rotated name), and no staging file behind."""
    current = tmp_path / "web.0.log"
    current.write_text("old line\n")
    older = current.stat().st_ino
    logs.rotate(current, 3)
    assert current.read_text() == ""
    assert (tmp_path / "web.0.log.1").read_text() == "old line\n"
    assert (tmp_path / "web.0.log.1").stat().st_ino == older  # moved, not copied
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.0.log", "web.0.log.1"]


def test_one_file_means_the_file_starts_afresh(tmp_path: Path) -> None:
    _write_lines(tmp_path, 100, LogRotation(max_size=1024, max_files=1))
    assert _files(tmp_path) == ["web.0.log"]
    assert "line-0099" in tmp_path.joinpath("web.0.log").read_text().splitlines()[-1]


def test_services_without_settings_get_the_defaults(tmp_path: Path) -> None:
    writer = logs.InstanceLogs(tmp_path, rotation={"other": LogRotation(max_size=1024)})
    for n in range(100):
        writer.write("web", 0, "stdout", f"line-{n}\n")
    writer.close()
    assert _files(tmp_path) == ["web.0.log"]  # 10MB is far away
    assert LogRotation() == LogRotation(max_size=10 * 1024**2, max_files=3)


def test_a_supervisor_restart_continues_counting_the_existing_file(tmp_path: Path) -> None:
    rotation = LogRotation(max_size=1024, max_files=2)
    _write_lines(tmp_path, 10, rotation)  # ~600 bytes
    _write_lines(tmp_path, 10, rotation)  # would pass 1024: rotated on the way
    assert _files(tmp_path) == ["web.0.log", "web.0.log.1"]
    assert tmp_path.joinpath("web.0.log").stat().st_size <= 1024


def test_reading_shows_the_recent_lines_across_the_rotation(tmp_path: Path) -> None:
    _write_lines(tmp_path, 200, LogRotation(max_size=1024, max_files=3))
    files = logs.log_files(tmp_path)
    assert [(s, i) for s, i, _ in files] == [("web", 0)]  # rotated files are no instances
    tail = logs.read_merged(files, tail=30)
    assert len(tail) == 30  # more than the current file holds
    assert [line.text.split()[0] for line in tail] == [f"line-{n:04d}" for n in range(170, 200)]
    everything = logs.read_merged(files)
    numbers = [int(line.text.split()[0][5:]) for line in everything]
    assert numbers == sorted(numbers) and numbers[-1] == 199
    assert len(everything) == len(set(numbers))  # each line once


def test_the_logs_command_reads_across_the_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOLEM_DEPLOY_HOME", str(tmp_path))
    folder = tmp_path / "deployments" / "rot"
    folder.mkdir(parents=True)
    (folder / "journal.jsonl").write_text('{"ts":1,"kind":"DeploymentStarted","name":"rot"}\n')
    _write_lines(folder / "logs", 200, LogRotation(max_size=1024, max_files=3))
    result = CliRunner().invoke(app, ["logs", "-n", "rot", "--tail", "25"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 25
    assert lines[0].startswith("web.0 | line-0175") and lines[-1].startswith("web.0 | line-0199")


def test_following_goes_on_across_rotations(tmp_path: Path) -> None:
    """Every line once, in order, whether 0, 1 or 2 rotations happened between two looks
    (and after the oldest files started being dropped, when inodes get reused)."""
    writer = logs.InstanceLogs(tmp_path, rotation={"web": LogRotation(1024, 3)})
    writer.write("web", 0, "stdout", "before\n")
    running = [True]
    stream = logs.follow(tmp_path, None, poll=0.001, alive=lambda: running[0])
    expected: list[str] = []
    got: list[str] = []
    for batch in (5, 3, 20, 30, 1, 25, 31, 16, 17, 30):  # a file holds 16 lines
        for _ in range(batch):
            text = f"line-{len(expected):04d} {'x' * 16}"
            writer.write("web", 0, "stdout", text + "\n")
            expected.append(text)
        got += [next(stream).text for _ in range(batch)]
        assert got == expected
    writer.close()
    running[0] = False
    assert [line.text for line in stream] == []  # nothing more, and it ends
    assert len(list(tmp_path.iterdir())) == 3


# ---- the manifest key ----------------------------------------------------------------------


def _manifest(tmp_path: Path, logs_yaml: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(
        'version: "1"\nname: rot\nbudget: 1\nservices:\n  web:\n'
        f"    payload: {{image_hash: {ALPINE}}}\n"
        f"    logs: {logs_yaml}\n"
    )
    return path


def test_the_manifest_sets_each_services_rotation(tmp_path: Path) -> None:
    result = check_manifest(_manifest(tmp_path, "{max_size: 2MiB, max_files: 5}"))
    assert result.manifest is not None, result.diagnostics
    assert result.manifest.services["web"].logs == LogRotation(2 * 1024**2, 5)


@pytest.mark.parametrize(
    ("logs_yaml", "expected"),
    [
        (
            "{max_size: 10XB}",
            "m.yaml:7:22: error: services.web.logs.max_size: '10XB' must be a size",
        ),
        ("{max_size: 12}", "m.yaml:7:22: error: services.web.logs.max_size: must be at least 1024"),
        (
            '{max_size: "100"}',
            "m.yaml:7:22: error: services.web.logs.max_size: '100' is less than 1KB",
        ),
        ("{max_files: 0}", "m.yaml:7:23: error: services.web.logs.max_files: must be at least 1"),
        ("{max_files: 2.5}", "m.yaml:7:23: error: services.web.logs.max_files: must be an integer"),
        ("{keep: 3}", "m.yaml:7:12: error: services.web.logs: unknown key 'keep'"),
        ("10MB", "m.yaml:7:11: error: services.web.logs:"),
    ],
)
def test_bad_values_are_positioned_errors(tmp_path: Path, logs_yaml: str, expected: str) -> None:
    path = _manifest(tmp_path, logs_yaml)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert any(
        line.startswith(expected)
        for line in result.output.replace(str(tmp_path) + "/", "").splitlines()
    ), result.output
    assert "Traceback" not in result.output


def test_the_schema_documents_the_model_defaults() -> None:
    from golem_deploy.manifest.validate import schema

    rotation = schema()["$defs"]["service"]["properties"]["logs"]["properties"]
    assert parse_size(rotation["max_size"]["default"]) == LogRotation().max_size
    assert rotation["max_files"]["default"] == LogRotation().max_files
