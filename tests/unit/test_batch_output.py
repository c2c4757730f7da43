"""engine/batch_output.py: when a batch needs its live-output stream, and what of a
command's output the results must still supply."""

from __future__ import annotations

from golem_deploy.engine.batch_output import stream_delay, unseen_output

RUN = {"run": {"entry_point": "/bin/date", "args": []}}
DEPLOY = {"deploy": {}}


def test_every_batch_waits_before_streaming() -> None:
    assert stream_delay([RUN, RUN], 1.0) == 1.0
    # a deploy of a cached image is done in milliseconds; a download reports its progress
    # once a second, so a stream opened after a second still shows it
    assert stream_delay([DEPLOY, {"start": {}}], 1.0) == 1.0
    assert stream_delay([RUN, {"transfer": {"from": "a", "to": "b"}}], 1.0) == 1.0


def test_stream_after_zero_streams_every_batch_at_once() -> None:
    assert stream_delay([RUN], 0.0) == 0.0
    assert stream_delay([], 1.0) == 0.0


def test_the_rest_after_what_the_stream_saw() -> None:
    assert unseen_output("a\nb\n", "a\n") == "b\n"
    assert unseen_output("a\n", "") == "a\n"


def test_nothing_when_the_stream_saw_it_all_or_there_is_none() -> None:
    assert unseen_output("a\n", "a\n") == ""
    assert unseen_output(None, "") == ""
    assert unseen_output("", "") == ""


def test_the_beginning_a_late_stream_missed() -> None:
    assert unseen_output("early\nlate\n", "late\n") == "early\n"


def test_nothing_when_what_was_seen_is_not_part_of_it() -> None:
    # e.g. an output limit cut the result: never tell something twice
    assert unseen_output("abcdef", "xyz") == ""
