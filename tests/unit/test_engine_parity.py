"""yapapi parity of the engine's API, pure parts (no network): how arguments are read, which
hooks are honoured or refused, what an instance exposes and keeps to itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from golem_deploy.engine.golem import DEFAULT_EXPIRATION, expiration_time

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC-5 (a POSIX TZ: no tz database needed)."""
    monkeypatch.setenv("TZ", "EST+05:00")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_naive_expiration_is_local_time_as_in_yapapi(local_tz: None) -> None:
    naive = datetime(2030, 1, 1, 12, 30)  # 12:30 in UTC-5 is 17:30 UTC
    assert expiration_time(naive, NOW) == datetime(2030, 1, 1, 17, 30, tzinfo=UTC)


def test_an_aware_expiration_keeps_its_zone(local_tz: None) -> None:
    warsaw = timezone(timedelta(hours=1))
    aware = datetime(2030, 1, 1, 13, 30, tzinfo=warsaw)
    assert expiration_time(aware, NOW) == datetime(2030, 1, 1, 12, 30, tzinfo=UTC)


def test_a_timedelta_or_nothing_counts_from_now() -> None:
    assert expiration_time(timedelta(minutes=15), NOW) == NOW + timedelta(minutes=15)
    assert expiration_time(None, NOW) == NOW + DEFAULT_EXPIRATION


def test_local_now_plus_a_quarter_is_a_quarter_from_now_in_any_zone(local_tz: None) -> None:
    now = datetime.now(UTC)
    expires = expiration_time(datetime.now() + timedelta(minutes=15), now)
    assert timedelta(minutes=14) < expires - now <= timedelta(minutes=15, seconds=5)
