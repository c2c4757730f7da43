"""The CLI's durations are the manifest's (manifest/durations.py) plus bare seconds."""

from __future__ import annotations

import pytest

from golem_deploy.cli.common import DeployError, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        ("500ms", 0.5),
        ("10s", 10.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
    ],
)
def test_durations_people_write(text: str, seconds: float) -> None:
    assert parse_duration(text, "--timeout") == seconds


@pytest.mark.parametrize("text", ["abc", "", "10x", "1h 30m", "-5", "nan", "inf"])
def test_anything_else_is_one_clear_error(text: str) -> None:
    with pytest.raises(DeployError, match=r"--timeout: .* is not a duration|more than zero"):
        parse_duration(text, "--timeout")


def test_zero_is_not_a_timeout() -> None:
    with pytest.raises(DeployError, match="more than zero"):
        parse_duration("0s", "--timeout")
