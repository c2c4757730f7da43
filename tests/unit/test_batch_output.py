"""engine/batch_output.py: what of a command's output the results must still supply
after the live-output stream."""

from __future__ import annotations

from golem_deploy.engine.batch_output import unseen_output


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
