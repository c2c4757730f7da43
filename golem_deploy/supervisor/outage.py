"""Whether the yagna the deployment talks to answers right now, as its instances see it.

Why: when the user's yagna stops answering (stopped, restarting), each instance's watcher
waits for it (engine/watcher.py) instead of blaming its provider, and says so with a
YagnaOutageBegan event, then a YagnaOutage one when the wait ends. The journal and the
instance logs had the story; the live table and `status` showed instances `running` as if
nothing happened. This keeps the outage while any instance still waits, so the snapshot
can carry it (`network.outage` in `status --json`, a line under the table).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golem_deploy.engine import events as ev
from golem_deploy.supervisor.snapshot import OutageView, iso


@dataclass
class OutageWatch:
    """The instances now waiting for yagna, and since when (unix seconds)."""

    waiting: dict[tuple[str, int], float] = field(default_factory=dict)
    api_url: str | None = None
    error: str | None = None

    def on_event(self, event: ev.EngineEvent) -> None:
        match event:
            case ev.YagnaOutageBegan(service=s, index=i, api_url=url, error=error):
                self.waiting.setdefault((s, i), event.at.timestamp())
                self.api_url, self.error = url, error
            case ev.YagnaOutage(service=s, index=i):
                self.waiting.pop((s, i), None)
            case ev.InstanceStateChanged(service=s, index=i):
                # it moves on (stops, is replaced): its watcher no longer waits
                self.waiting.pop((s, i), None)

    def view(self, now: float) -> OutageView | None:
        """The outage now (None: every instance that waited got its answer)."""
        if not self.waiting:
            return None
        since = min(self.waiting.values())
        return OutageView(
            api_url=self.api_url or "?",
            since=iso(since) or "",
            seconds=round(max(0.0, now - since), 1),
            error=self.error,
        )
