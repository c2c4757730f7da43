"""The .gvmi metadata layout, task_package strings and deploy progress pacing (pure logic)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from golem_deploy.localnet import exeunit_image
from golem_deploy.localnet.image import (
    ImageConfig,
    ImageError,
    metadata_trailer,
    parse_task_package,
    read_config,
)


def test_metadata_round_trips_in_gvmkit_builds_layout(tmp_path: Path) -> None:
    config = ImageConfig(
        env={"PATH": "/bin", "A": "b=c"}, workdir="/app", entrypoint=("/bin/sh",), volumes=("/v",)
    )
    trailer = metadata_trailer(config)
    # [crc32 LE][json][8 decimal digits of len(json)]
    length = int(trailer[-8:])
    blob = trailer[4 : 4 + length]
    assert len(trailer) == 4 + length + 8
    assert int.from_bytes(trailer[:4], "little") == zlib.crc32(blob)
    image = tmp_path / "x.gvmi"
    image.write_bytes(b"hsqs" + b"\0" * 100 + trailer)
    assert read_config(image) == config


def test_damaged_or_foreign_files_are_refused(tmp_path: Path) -> None:
    image = tmp_path / "x.gvmi"
    trailer = bytearray(metadata_trailer(ImageConfig(workdir="/app")))
    trailer[6] ^= 1  # flip a bit of the JSON
    image.write_bytes(b"\0" * 10 + bytes(trailer))
    with pytest.raises(ImageError, match="crc32"):
        read_config(image)
    image.write_bytes(b"not an image at all, no digits")
    with pytest.raises(ImageError, match="no gvmi metadata"):
        read_config(image)


def test_task_package_strings() -> None:
    digest = "d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376"
    package = parse_task_package(f"hash:sha3:{digest}:http://registry/download/{digest}")
    assert package.digest == digest and package.url == f"http://registry/download/{digest}"
    assert package.short == "d646d7b9…"
    assert parse_task_package("hash:sha3::http://r/v1/image/download?tag=a").digest == ""
    with pytest.raises(ImageError, match="hash:sha3"):
        parse_task_package("docker:alpine")


def test_progress_events_follow_the_requested_pace() -> None:
    events: list[dict[str, object]] = []
    throttle = exeunit_image.ProgressThrottle({"updateStep": 100}, events.append)
    for done in range(0, 1001, 50):
        throttle(done, 1000)
    sent = [e["progress"]["progress"] for e in events]  # type: ignore[index]
    assert sent == [[n, 1000] for n in range(100, 1001, 100)]
    assert events[0] == {
        "progress": {"step": [0, 1], "message": None, "progress": [100, 1000], "unit": "Bytes"}
    }
    assert exeunit_image.parse_duration("300ms") == pytest.approx(0.3)
    assert exeunit_image.parse_duration("2m") == 120.0
    assert exeunit_image.parse_duration(None) is None


def test_the_local_network_downloads_only_from_this_machine_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from golem_deploy.localnet.image.cache import FETCH_ENV, may_download

    monkeypatch.delenv(FETCH_ENV, raising=False)
    assert may_download("http://127.0.0.1:8000/x.gvmi")
    assert may_download("http://localhost/x.gvmi")
    assert not may_download("http://registry.golem.network/download/abc")
    assert not may_download("https://10.0.0.1/x.gvmi")
    monkeypatch.setenv(FETCH_ENV, "1")
    assert may_download("http://registry.golem.network/download/abc")
