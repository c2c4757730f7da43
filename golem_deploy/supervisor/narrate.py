"""What an engine event means for the journal and for an instance's log file.

Why its own module: the supervisor decides per event class, with the engine's typed events
(never their class names), whether the event is journaled and which line, if any, the
instance's log file gets. Keeping that table apart from the supervisor's control flow makes
both readable, and a renamed event field a type error here.
"""

from __future__ import annotations

from golem_deploy.engine import events as ev


def journal_worthy(event: ev.EngineEvent) -> bool:
    """Everything but routine command traffic: successful commands and health checks.

    Routine traffic would grow the journal with every run step; the log files have it."""
    match event:
        case ev.CommandStarted() | ev.CommandOutput():
            return False
        case ev.CommandFinished(return_code=code):
            return code != 0
        case ev.HealthCheckResult(ok=ok):
            return not ok
    return True


def log_line(event: ev.EngineEvent) -> tuple[str, int, str, str] | None:
    """(service, index, stream, text) an instance's log file gets for `event`, or None."""
    match event:
        case ev.InstanceStateChanged(service=s, index=i, old=old, new=new, reason=reason):
            text = f"{old.value} -> {new.value}" + (f" ({reason})" if reason else "")
            return s, i, "state", text
        case ev.CommandStarted(service=s, index=i, command=command):
            return s, i, "cmd", command
        case ev.CommandFinished(service=s, index=i, command=command, return_code=code, message=m):
            if code == 0 and not m:
                return None
            return s, i, "state", f"{command}: exit code {code}" + (f": {m}" if m else "")
        case ev.AgreementCreated(service=s, index=i, agreement_id=a, provider_name=provider):
            return s, i, "state", f"agreement {short(a)} with {provider}"
        case ev.AgreementRejected(service=s, index=i, agreement_id=a, reason=reason):
            return s, i, "state", f"agreement {short(a)} rejected: {reason}"
        case ev.ActivityCreated(service=s, index=i, activity_id=a):
            return s, i, "state", f"activity {short(a)} created"
        case ev.ActivityCreateFailed(service=s, index=i, reason=reason):
            return s, i, "state", f"activity creation failed: {reason}"
        case ev.ActivityDestroyed(service=s, index=i, activity_id=a):
            return s, i, "state", f"activity {short(a)} destroyed"
        case ev.InstanceRestartScheduled(
            service=s, index=i, attempt=attempt, delay=delay, reason=reason
        ):
            return s, i, "state", f"restart #{attempt} in {delay:g}s: {reason}"
        case ev.YagnaOutageBegan(service=s, index=i, api_url=url, error=error):
            return s, i, "state", f"yagna at {url} does not answer ({error}); waiting for it"
        case ev.YagnaOutage(service=s, index=i, seconds=seconds, back=back):
            what = "carried on" if back else "still no answer: counted as a failed check"
            return s, i, "state", f"yagna did not answer for {seconds:g}s; {what}"
        case ev.HealthCheckResult(service=s, index=i, ok=False) as check:
            text = f"health check failed ({check.consecutive_failures} in a row): {check.message}"
            return s, i, "state", text
    return None


def short(ident: str) -> str:
    return ident if len(ident) <= 12 else ident[:12] + "…"
