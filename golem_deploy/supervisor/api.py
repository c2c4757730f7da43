"""The supervisor's control API: aiohttp on a Unix socket in the deployment folder.

Why a Unix socket: only the user who owns the deployment may steer it. The socket is created
under umask 077 and chmod'ed 0600 before anyone can use it, inside a 0700 folder.

  GET  /snapshot              the deployment as plain data (status shape + extras)
  GET  /status                exactly `status --json` (answered here so the CLI need not
                              import anything to print it: cli/entry.py)
  GET  /events[?kinds=A,B]    newline-delimited JSON records as they happen (journal + output;
                              with kinds, only those whose kind starts with one of them),
                              {"kind": "Heartbeat"} every second when nothing happens
  POST /down {"timeout": s}   ask for a graceful down; answers at once (202)
  GET  /logs?selector=&tail=  merged `service.index | text` lines
  POST /reconcile             plan (dry_run) or start a change of the running deployment:
                              {manifest, env_file, scale, restart, dry_run, timeout}
  GET  /reconcile             the last change: its plan, done, ok, reason

Hostile or broken clients (the socket is private, but a buggy script is a client too) get
a 4xx and never stop the supervisor: a request body over MAX_BODY is 413, a body that does
not arrive within BODY_TIMEOUT is 408, a request head not complete within HEAD_TIMEOUT of
connecting closes the connection (aiohttp's keep-alive timer, which also runs before the
first request), a malformed request line or header is aiohttp's own 400, and a malformed
query or body is 400 naming what is wrong. Fuzzed in
tests/reliability/test_control_fuzz.py against a real supervisor.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from aiohttp import http_exceptions, web

from golem_deploy.supervisor import logs
from golem_deploy.supervisor.snapshot import public_status

if TYPE_CHECKING:
    from golem_deploy.supervisor.daemon import Supervisor

SUPERVISOR_KEY = web.AppKey("supervisor", object)
HEARTBEAT: dict[str, Any] = {"kind": "Heartbeat"}
HEARTBEAT_INTERVAL = 1.0
MAX_BODY = 64 * 1024  # the largest body any route reads is a few bytes of JSON
BODY_TIMEOUT = 5.0  # seconds for a request body to arrive, once its head has
HEAD_TIMEOUT = 10.0  # seconds a connection may stay without a complete request head
MAX_TAIL = 10**9  # GET /logs?tail=: the largest number of lines that can be asked for


def _supervisor(request: web.Request) -> Supervisor:
    return request.app[SUPERVISOR_KEY]  # type: ignore[return-value]


async def get_snapshot(request: web.Request) -> web.Response:
    return web.json_response(_supervisor(request).snapshot().plain())


async def get_status(request: web.Request) -> web.Response:
    public = public_status(_supervisor(request).snapshot())
    return web.Response(text=json.dumps(public, indent=2) + "\n", content_type="application/json")


async def get_events(request: web.Request) -> web.StreamResponse:
    supervisor = _supervisor(request)
    kinds = None
    if "kinds" in request.query:
        kinds = tuple(k for k in request.query["kinds"].split(",") if k.strip())
        if not kinds:
            return _error(400, "kinds must name record kinds, e.g. kinds=Deployment,Instance")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    send, receive = anyio.create_memory_object_stream[dict[str, Any]](1000)
    # Subscribed before the headers go out: a client that got them misses no event.
    supervisor.records.subscribe(send, kinds)
    await response.prepare(request)
    with receive:
        try:
            while True:  # until the supervisor ends the stream (EndOfStream)
                record: dict[str, Any] = HEARTBEAT
                with anyio.move_on_after(HEARTBEAT_INTERVAL):
                    record = await receive.receive()
                # A heartbeat when idle lets readers tell "quiet" from "stuck".
                await response.write((json.dumps(record, default=str) + "\n").encode())
        except (anyio.EndOfStream, anyio.ClosedResourceError, ConnectionResetError):
            pass
    return response


async def _json_object(request: web.Request, example: str) -> dict[str, Any] | web.Response:
    """The request's JSON object body ({} when there is none), or the 4xx answer to give:
    413 past the app's client_max_size, 408 when it does not arrive in time, 400 when it
    is not a JSON object (`example` shows one)."""
    if not request.can_read_body:
        return {}
    try:
        with anyio.fail_after(BODY_TIMEOUT):
            data = await request.read()
    except TimeoutError:
        return _error(408, f"the request body did not arrive within {BODY_TIMEOUT:g}s")
    try:
        body = json.loads(data) if data.strip() else {}
    except (ValueError, RecursionError):
        return _error(400, "body must be JSON")
    if not isinstance(body, dict):
        return _error(400, f"body must be a JSON object like {example}")
    return body


async def post_down(request: web.Request) -> web.Response:
    supervisor = _supervisor(request)
    timeout: float | None = None
    body = await _json_object(request, '{"timeout": 30}')
    if isinstance(body, web.Response):
        return body
    if body:
        raw = body.get("timeout")
        if raw is not None:
            if (
                isinstance(raw, bool)
                or not isinstance(raw, int | float)
                or not math.isfinite(raw)
                or raw <= 0
            ):
                return _error(400, "timeout must be seconds > 0")
            timeout = float(raw)
    supervisor.down.request("down requested", timeout)
    return web.json_response({"accepted": True, "state": supervisor.state}, status=202)


async def get_logs(request: web.Request) -> web.Response:
    supervisor = _supervisor(request)
    selector = request.query.get("selector") or None
    tail_text = request.query.get("tail")
    tail = None
    if tail_text:
        if not tail_text.isascii() or not tail_text.isdigit() or int(tail_text) > MAX_TAIL:
            return _error(400, f"tail must be a whole number of lines up to {MAX_TAIL}")
        tail = int(tail_text)
    files = logs.log_files(supervisor.folder.logs, selector)
    lines = logs.read_merged(files, tail)
    width = max((len(f"{s}.{i}") for s, i, _ in files), default=0)
    text = "".join(line.format(width=width) + "\n" for line in lines)
    return web.Response(text=text, content_type="text/plain")


async def post_reconcile(request: web.Request) -> web.Response:
    """Answers 200 with the plan (and whether it is being applied), or {"error", "hint"}:
    a refused change is an answer, not a failure of the API."""
    supervisor = _supervisor(request)
    body = await _json_object(request, '{"scale": {"web": 3}, "dry_run": true}')
    if isinstance(body, web.Response):
        return body
    if supervisor.reconciler is None:
        answer: dict[str, object] = {
            "error": f"the deployment is {supervisor.state}: a change applies once it runs"
        }
    else:
        answer = await supervisor.reconciler.handle(body)
    return web.json_response(answer)


async def get_reconcile(request: web.Request) -> web.Response:
    reconciler = _supervisor(request).reconciler
    status = reconciler.status if reconciler is not None else None
    return web.json_response(status.plain() if status is not None else {})


class _ClientFaultsInOneLine(logging.Filter):
    """aiohttp logs every malformed request with a full traceback ("Error handling
    request"); in supervisor.log that reads like a supervisor crash. A client's fault
    becomes one plain line instead; anything else keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, http_exceptions.HttpProcessingError):
            record.msg, record.args = (
                "control socket: refused a malformed request: %s",
                (error.message,),
            )
            record.exc_info, record.exc_text, record.levelno = None, None, logging.WARNING
            record.levelname = "WARNING"
        return True


_SERVER_LOG = logging.getLogger("aiohttp.server")
if not any(isinstance(f, _ClientFaultsInOneLine) for f in _SERVER_LOG.filters):
    _SERVER_LOG.addFilter(_ClientFaultsInOneLine())


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def build_app(supervisor: Supervisor) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SUPERVISOR_KEY] = supervisor
    app.router.add_get("/snapshot", get_snapshot)
    app.router.add_get("/status", get_status)
    app.router.add_get("/events", get_events)
    app.router.add_post("/down", post_down)
    app.router.add_get("/logs", get_logs)
    app.router.add_post("/reconcile", post_reconcile)
    app.router.add_get("/reconcile", get_reconcile)
    return app


async def serve(supervisor: Supervisor, path: Path) -> web.AppRunner:
    """Start serving on `path` (0600); the caller cleans the returned runner up."""
    if path.exists() or path.is_symlink():
        path.unlink()  # a socket left behind by a crashed supervisor (we hold the lock)
    # At exit, handlers still streaming to a reader that does not read get 2 s, not 60.
    runner = web.AppRunner(
        build_app(supervisor),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=2.0,
        keepalive_timeout=HEAD_TIMEOUT,
    )
    await runner.setup()
    old_umask = os.umask(0o177)
    try:
        site = web.UnixSite(runner, str(path))
        await site.start()
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return runner
