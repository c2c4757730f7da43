"""Watching one provider attempt: is the activity still there, is the service healthy, and
(when the lifecycle asks, after a failure) is the provider still there at all.

Health is a command run on the provider, an http/tcp probe sent from the requestor over
the instance's VPN (engine/probe.py), or the Service's own `is_activity_responsive()` when it
overrides yapapi's. These tasks only observe and report events to the
lifecycle; what the events mean is decided there."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.config import HealthCheck
from golem_deploy.engine.executor import ScriptExecutor
from golem_deploy.engine.network import Node
from golem_deploy.engine.probe import http_probe, tcp_probe
from golem_deploy.engine.timing import Timings
from golem_deploy.protocol import ActivityStateName
from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import (
    ActivityGone,
    YagnaError,
    YagnaStatusError,
    YagnaUnreachable,
)
from golem_deploy.yagna.wire import JsonValue

__all__ = ["PROOF_LOOKS", "Watcher"]

log = logging.getLogger(__name__)
Send = Callable[[lc.Event], None]

#: A batch's results answered within this many of the watcher's pauses stand in for a state
#: query. Two, not one: a step `every: 5s` comes back every 5 s *plus* its own run time,
#: so with a window of one 5 s pause one look in five to ten found no answer and asked
#: (2-4 state queries a second at 100 instances). A lost activity is not noticed later for
#: it: the next batch finds it gone (the executor's ProviderGone), and an instance whose
#: batches stop is asked again within two pauses.
PROOF_LOOKS = 2


class Watcher:
    """The observing side of one instance; `send` delivers events to its lifecycle."""

    def __init__(
        self,
        client: YagnaClient,
        executor: ScriptExecutor,
        healthcheck: HealthCheck,
        timings: Timings,
        name: str,
        node: Callable[[], Node | None] = lambda: None,
        responsive: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.client = client
        self.responsive = responsive  # the service's is_activity_responsive() override
        self.node = node  # the instance's place on its network, for http/tcp probes
        self.executor = executor
        self.healthcheck = healthcheck
        self.timings = timings
        self.name = name  # "service[index]", for logs

    async def watch(self, activity_id: str, checks_due: Callable[[], bool], send: Send) -> None:
        """While this provider attempt lives: report a vanished activity; while
        `checks_due()` (the instance runs), run the health check command when one is set."""
        hc, t = self.healthcheck, self.timings
        pause = min(hc.interval, t.watch_interval)
        failures = 0
        await anyio.sleep(pause)
        running_since: float | None = None
        last_check = anyio.current_time()
        while True:
            state = None
            if self.executor.answered_within(activity_id, PROOF_LOOKS * pause):
                # The ExeUnit answered a batch's results lately: fresher proof of life than
                # a state query, so none is sent (a service with a periodic step at 100
                # instances: 20 requests a second fewer to yagna).
                failures = 0
            else:
                try:
                    with anyio.fail_after(t.state_query_timeout):
                        state = await self.client.activity_state(activity_id)
                    failures = 0
                except YagnaUnreachable as e:
                    # yagna itself is down or restarting: that says nothing about the activity.
                    if not await self._ride_out_outage(e):
                        failures += 1  # still down after the grace: count it, as before
                    continue
                except TimeoutError:
                    # The client's retries against a yagna that is down can outlast the query's
                    # time limit: look whether anything listens there before blaming the activity.
                    if await self._yagna_refuses():
                        gone = YagnaUnreachable("connection refused", "GET activity state")
                        if not await self._ride_out_outage(gone):
                            failures += 1
                        continue
                    failures += 1
                    log.info("%s: activity state: no answer in time", self.name)
                except YagnaError as e:
                    failures += 1
                    log.info("%s: activity state: %s", self.name, e)
            if state is not None and state.lost:
                lost: str | None = state.why_lost
                if state.state == ActivityStateName.UNRESPONSIVE:
                    # Only a usage report 5 s late (an overloaded provider, or its busy
                    # yagna), or a dead ExeUnit: the ExeUnit itself has the last word.
                    lost = await self.provider_gone(activity_id)
                if lost is not None:
                    send(lc.ActivityUnresponsive(lost))
                    return
                log.info("%s: yagna says Unresponsive, but the ExeUnit answers", self.name)
            if failures >= t.watch_failures:
                send(lc.ActivityUnresponsive("activity not answering"))
                return
            if checks_due():
                now = anyio.current_time()
                running_since = running_since if running_since is not None else now
                due = now - running_since >= hc.start_period and now - last_check >= hc.interval
                if (hc.probes or self.responsive is not None) and due:
                    last_check = now
                    if self.responsive is not None:
                        await self._responsive_hook(self.responsive, send)
                    elif hc.argv is not None:
                        await self._health_command(activity_id, hc.argv, send)
                    else:
                        await self._vpn_probe(send)
            await anyio.sleep(pause)

    async def _yagna_refuses(self) -> bool:
        """Whether nothing accepts a connection at yagna's address (within 2 s)."""
        url = urlsplit(self.client.config.api_url)
        try:
            with anyio.fail_after(2.0):
                stream = await anyio.connect_tcp(url.hostname or "127.0.0.1", url.port or 80)
        except (OSError, TimeoutError):
            return True
        await stream.aclose()
        return False

    async def _ride_out_outage(self, error: YagnaUnreachable) -> bool:
        """Wait (bounded by the outage grace) for yagna to answer again; True when it does.
        The wait is reported (YagnaOutageBegan, then YagnaOutage) so the journal, the
        instance's log and the live table say it."""
        log.warning("%s: yagna does not answer (%s): waiting for it", self.name, error)
        began = anyio.current_time()
        executor = self.executor
        executor.emit(
            ev.YagnaOutageBegan(
                service=executor.service,
                index=executor.index,
                api_url=self.client.config.api_url,
                error=str(error),
            )
        )
        back = await executor.wait_for_yagna()
        executor.emit(
            ev.YagnaOutage(
                service=executor.service,
                index=executor.index,
                seconds=round(anyio.current_time() - began, 1),
                back=back,
            )
        )
        return back

    async def _health_command(self, activity_id: str, argv: tuple[str, ...], send: Send) -> None:
        hc = self.healthcheck
        if self.executor.lock.locked():
            return  # a script is running; the ExeUnit would answer Busy
        ok, message = False, ""
        try:
            async with self.executor.lock:
                with anyio.fail_after(hc.timeout):
                    body: dict[str, JsonValue] = {
                        "entry_point": argv[0],
                        "args": list(argv[1:]),
                        "capture": {
                            "stdout": {"atEnd": {"tail": 512}},
                            "stderr": {"atEnd": {"tail": 512}},
                        },
                    }
                    batch = await self.client.exec(activity_id, [{"run": body}])
                    while True:
                        res = await self.client.exec_results(
                            activity_id, batch, timeout=self.timings.health_poll
                        )
                        if res and res[-1].is_batch_finished:
                            break
                    ok = res[-1].result == "Ok"
                    message = (res[-1].message or res[-1].stderr or "").strip()[-200:]
        except TimeoutError:
            message = f"no answer within {hc.timeout:g} s"
        except ActivityGone as e:
            send(lc.ActivityUnresponsive(f"the provider's ExeUnit is gone ({e.detail})"))
            return
        except YagnaError as e:
            message = e.detail
        if ok:
            send(lc.HealthCheckPassed(message or "ok"))
        else:
            send(lc.HealthCheckFailed(message or "failed"))

    async def _responsive_hook(self, hook: Callable[[], Awaitable[bool]], send: Send) -> None:
        """The service's `is_activity_responsive()`: False, an exception or no answer within
        the check's timeout is a failed check."""
        timeout = self.healthcheck.timeout
        try:
            with anyio.fail_after(timeout):
                ok = bool(await hook())
            message = "is_activity_responsive() returned " + str(ok)
        except TimeoutError:
            ok, message = False, f"is_activity_responsive() gave no answer within {timeout:g} s"
        except Exception as e:  # user code: whatever it raises is a failed check
            ok, message = False, f"is_activity_responsive() raised {e!r}"
        send(lc.HealthCheckPassed(message) if ok else lc.HealthCheckFailed(message))

    async def _vpn_probe(self, send: Send) -> None:
        """The http or tcp probe, from the requestor over the instance's network."""
        hc, node = self.healthcheck, self.node()
        if node is None:
            send(lc.HealthCheckFailed("the instance is on no network: http/tcp probes need one"))
            return
        net = node.network
        try:
            with anyio.fail_after(hc.timeout):
                if hc.http is not None:
                    ok, message = await http_probe(net.api, net.network_id, node.ip, hc.http)
                else:
                    assert hc.tcp is not None
                    ok, message = await tcp_probe(net.api, net.network_id, node.ip, hc.tcp)
        except TimeoutError:
            ok, message = False, f"no answer within {hc.timeout:g} s"
        send(lc.HealthCheckPassed(message) if ok else lc.HealthCheckFailed(message))

    async def check_provider(self, activity_id: str | None, send: Send) -> None:
        """Answer the lifecycle's CheckProvider: ProviderAlive, or ActivityUnresponsive."""
        gone = "the activity is gone"
        if activity_id is not None:
            gone = await self.provider_gone(activity_id) or ""
        send(lc.ActivityUnresponsive(gone) if gone else lc.ProviderAlive())

    async def provider_gone(self, activity_id: str) -> str | None:
        """Why the provider of `activity_id` is gone, or None when it is still there.

        First the provider's yagna (it marks the activity Unresponsive/Terminated), then
        the ExeUnit itself: asking it for a batch's results is answered by the ExeUnit when
        it is there (with the results, or an error for an unknown batch) and by yagna with
        ActivityGone when it is not. Only an answer from the ExeUnit proves it alive."""
        t = self.timings
        unresponsive: str | None = None  # what yagna said, while the ExeUnit may yet answer
        for _ in range(t.watch_failures):
            try:
                with anyio.fail_after(t.state_query_timeout):
                    state = await self.client.activity_state(activity_id)
                if state.lost:
                    if state.state != ActivityStateName.UNRESPONSIVE:
                        return state.why_lost
                    # Late usage reports, or a dead ExeUnit: asking it tells which.
                    unresponsive = state.why_lost
            except ActivityGone as e:
                return f"the provider's ExeUnit is gone ({e.detail})"
            except (YagnaError, TimeoutError) as e:
                await self._pause_after(e)
                continue
            try:
                batch = self.executor.last_batch or "liveness-check"
                with anyio.fail_after(t.state_query_timeout):
                    await self.client.exec_results(activity_id, batch, timeout=0)
                return None
            except ActivityGone as e:
                return f"the provider's ExeUnit is gone ({e.detail})"
            except YagnaStatusError:
                return None  # the ExeUnit answered, if only that it knows no such batch
            except (YagnaError, TimeoutError) as e:
                await self._pause_after(e)
        return unresponsive or "activity not answering"

    async def _pause_after(self, error: Exception) -> None:
        """Before asking again: wait for an unreachable yagna, else a short pause."""
        log.info("%s: provider check: %s", self.name, error)
        if isinstance(error, YagnaUnreachable):
            await self.executor.wait_for_yagna()
        else:
            await anyio.sleep(self.timings.retry_pause)
