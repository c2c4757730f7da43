"""bench/supervisor_cost.py counts what the supervisor asks of yagna, by kind, from the
requestor yagna's access log: the load-independent figure of issue 15's supervisor cost."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

# bench/ goes on sys.path only for this import: left there, its yapapi/ folder (the
# benchmark's yapapi program) would pass for a yapapi package in later tests of this worker.
_saved = list(sys.path)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
try:
    from supervisor_cost import request_kind, requests_between
finally:
    sys.path[:] = _saved

ACT = "/activity-api/v1/activity/3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b"


def line(at: str, request: str, source: str = "actix_web::middleware::logger") -> str:
    """One line of yagna's log as actix writes it for a request answered."""
    return f'[2026-12-02T{at}+0000 INFO  {source}] 127.0.0.1 "{request} HTTP/1.1" 200 38 "-" 0.003'


LOG = "\n".join(
    [
        line("08:45:00.100", f"POST {ACT}/exec"),
        line("08:45:00.200", f"GET {ACT}/exec/b1?timeout=5"),
        line("08:45:00.300", f"GET {ACT}/exec/b1"),
        "[2026-12-02T08:45:00.400+0000 INFO  ya_market::matcher] not a request line",
        line("08:45:01.000", f"GET {ACT}/state?timeout=5"),
        line("08:46:00.000", f"GET {ACT}/state?timeout=5"),  # after the window
    ]
)


def test_each_request_of_a_batch_is_told_apart() -> None:
    assert request_kind("POST", f"{ACT}/exec", query=False) == "POST exec"
    assert request_kind("GET", f"{ACT}/exec/b1", query=True) == "GET exec results"
    assert request_kind("GET", f"{ACT}/exec/b1", query=False) == "GET exec stream"
    assert request_kind("GET", f"{ACT}/state", query=True) == "GET activity state"


def test_other_requests_are_named_by_method_and_path_without_ids() -> None:
    path = "/payment-api/v1/debitNotes/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0/accept"
    kind = request_kind("POST", path, query=False)
    assert kind == "POST /payment-api/v1/debitNotes/{id}/accept"


def test_proposal_ids_are_cut_with_their_side_prefix() -> None:
    # yagna's proposal ids start "R-" (requestor's side) or "P-" (provider's): one kind
    # for all counter-proposals, not one per proposal.
    proposal = "R-98cef30e5026d0da28e315e0461874e009d123b6e0b9c7647f56d33785f98094"
    path = f"/market-api/v1/demands/0b1c2d3e4f5061728394a5b6c7d8e9f0/proposals/{proposal}"
    kind = request_kind("POST", path, query=False)
    assert kind == "POST /market-api/v1/demands/{id}/proposals/{id}"


def test_only_request_lines_within_the_window_count(tmp_path: Path) -> None:
    log = tmp_path / "requestor.log"
    log.write_text(LOG)
    began = datetime.fromisoformat("2026-12-02T08:45:00+00:00")
    ended = datetime.fromisoformat("2026-12-02T08:45:30+00:00")
    counted = requests_between(log, began, ended)
    assert counted == {
        "POST exec": 1,
        "GET exec results": 1,
        "GET exec stream": 1,
        "GET activity state": 1,
    }
