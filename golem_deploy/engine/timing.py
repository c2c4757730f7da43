"""Every wait of the engine's instance runner, named in one place.

The values are what the engine always used; the reasons are next to each. `Golem(...,
timings=Timings(...))` may change them (tests shorten them; a slow network may lengthen
them)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Timings"]


@dataclass(frozen=True)
class Timings:
    """Seconds (and a few counts) the runner waits for yagna and providers."""

    #: How long a running instance waits for an unreachable yagna (restarting, overloaded)
    #: to answer again before a failed call counts against the instance.
    yagna_outage_grace: float = 60.0
    #: Pause between attempts to reach yagna or retry a failed call.
    retry_pause: float = 1.0
    #: Pause after yagna failed a negotiation step, before signing is tried again.
    negotiation_retry: float = 2.0
    #: Bound on destroying the activity and on terminating the agreement, each.
    release_patience: float = 15.0
    #: How long yagna may wait for the provider to end an activity on DELETE before it
    #: answers (its provider side looks only every 750 ms; the provider is done far sooner,
    #: which the activity's state then shows), and how often that state is asked.
    destroy_wait: float = 0.2
    destroy_poll: float = 0.05
    #: How long the state may take to say Terminated before a plain, waiting DELETE. Just
    #: over yagna's 750 ms provider-side poll: after a shutdown's `terminate` the state
    #: often stays [Initialized -> Terminated] until a DELETE completes, and waiting 3 s
    #: for it was the tail of a 10-instance down (its invoices were long accepted); the
    #: plain DELETE then answered within that poll.
    destroy_confirm: float = 0.8
    #: The same for a vanished provider: it cannot answer, don't let yagna hold us up.
    release_patience_vanished: float = 3.0
    #: How long to wait for yagna to report a vanished provider's activity lost (the
    #: provider's node marks it Unresponsive after 5 s without usage reports) before
    #: reporting it abandoned; unconfirmed, it stays in the journal for `down`.
    loss_confirmation: float = 15.0
    #: Tries to create an exec batch (an error in between is checked, then retried).
    exec_tries: int = 4
    #: Server-side long poll for batch results.
    exec_poll: float = 5.0
    #: Failed result polls in a row before the script fails.
    exec_poll_failures: int = 4
    #: After a batch finished: how long trailing output may still arrive over SSE.
    output_grace: float = 0.5
    #: A batch opens its live-output stream only once it has run this long (0: every
    #: batch streams from its start). A shorter batch needs no stream: its results carry its
    #: whole output, and the stream would cost yagna a request and a new connection per
    #: batch (engine/batch_output.py). Output of a longer one is live from then on, the
    #: start of its output included (the results fill in what the stream missed).
    stream_after: float = 1.0
    #: Bound on the activity-state query made after an exec error.
    state_check_timeout: float = 6.0
    #: Bound on one activity-state query of the watcher and the provider check.
    state_query_timeout: float = 10.0
    #: The watcher's longest sleep between two looks at the activity.
    watch_interval: float = 5.0
    #: State queries failing in a row before the activity counts as not answering.
    watch_failures: int = 3
    #: Long poll for a health check command's result.
    health_poll: float = 2.0
    #: Long poll for agreement events (terminations by providers).
    agreement_events_poll: float = 3.0
    #: After stopping timed out: how long cancelled clusters get to clean up.
    cluster_cancel_grace: float = 20.0
    #: At most this many demand subscriptions a service negotiates on at once (engine/
    #: market.py): more let many instances on few providers get their agreements in a few
    #: rounds (100 on 4 local providers: 11.6 s instead of 33.5 s to every agreement). The
    #: burst of starts that follows is paced by the three below (engine/pacing.py).
    market_lanes: int = 16
    #: At most this many instances start (activity create, deploy, `start` handler) at once
    #: on one provider: 100 activities deployed at once on one local provider host made
    #: providers miss their heartbeats (bench/RESULTS.md), and a real provider is one
    #: machine too. The engine-wide bound is for your own machine (your yagna, and a local
    #: network's one provider host); it is larger, because on the real network a start is
    #: mostly the provider downloading the image, which a tight bound would serialize.
    #: 8, not 4, since the local providers see activity events within 0.25 s (bench/
    #: RESULTS.md: 100 instances on 4 providers came up in 0.80-0.92x the time, no failure).
    start_slots_per_provider: int = 8
    start_slots: int = 32
    #: A start holding its slot longer than this (a `start` handler running a long job)
    #: stops counting against the others.
    start_slot_hold_max: float = 30.0
    #: How long a provider that failed us (lost activity, failed health checks, rejected
    #: agreement) is passed over before it may be signed with again (engine/context.py).
    avoid_for: float = 600.0
