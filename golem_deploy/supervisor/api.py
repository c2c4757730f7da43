"""The supervisor's control API: aiohttp on a Unix socket in the deployment folder.

Why a Unix socket: only the user who owns the deployment may steer it. The socket is created
under umask 077 and chmod'ed 0600 before anyone can use it, inside a 0700 folder.

  GET  /snapshot              the deployment as plain data (status shape + extras)
  GET  /status                exactly `status --json` (answered here so the CLI need not
                              import anything to print it: cli/entry.py)
  GET  /events                newline-delimited JSON records as they happen (journal + output),
                              {"kind": "Heartbeat"} every second when nothing happens
  POST /down {"timeout": s}   ask for a graceful down; answers at once (202)
  GET  /logs?selector=&tail=  merged `service.index | text` lines
  POST /reconcile             plan (dry_run) or start a change of the running deployment:
                              {manifest, env_file, scale, restart, dry_run, timeout}
  GET  /reconcile             the last change: its plan, done, ok, reason
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from aiohttp import web

from golem_deploy.supervisor import logs
from golem_deploy.supervisor.snapshot import public_status

if TYPE_CHECKING:
    from golem_deploy.supervisor.daemon import Supervisor

SUPERVISOR_KEY = web.AppKey("supervisor", object)
HEARTBEAT: dict[str, Any] = {"kind": "Heartbeat"}
HEARTBEAT_INTERVAL = 1.0


def _supervisor(request: web.Request) -> Supervisor:
    return request.app[SUPERVISOR_KEY]  # type: ignore[return-value]


async def get_snapshot(request: web.Request) -> web.Response:
    return web.json_response(_supervisor(request).snapshot().plain())


async def get_status(request: web.Request) -> web.Response:
    public = public_status(_supervisor(request).snapshot())
    return web.Response(text=json.dumps(public, indent=2) + "\n", content_type="application/json")


async def get_events(request: web.Request) -> web.StreamResponse:
    supervisor = _supervisor(request)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    send, receive = anyio.create_memory_object_stream[dict[str, Any]](1000)
    # Subscribed before the headers go out: a client that got them misses no event.
    supervisor.records.subscribe(send)
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


async def post_down(request: web.Request) -> web.Response:
    supervisor = _supervisor(request)
    timeout: float | None = None
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        raw = body.get("timeout") if isinstance(body, dict) else None
        if raw is not None:
            if not isinstance(raw, int | float) or not math.isfinite(raw) or raw <= 0:
                return web.json_response({"error": "timeout must be seconds > 0"}, status=400)
            timeout = float(raw)
    supervisor.down.request("down requested", timeout)
    return web.json_response({"accepted": True, "state": supervisor.state}, status=202)


async def get_logs(request: web.Request) -> web.Response:
    supervisor = _supervisor(request)
    selector = request.query.get("selector") or None
    tail_text = request.query.get("tail")
    tail = int(tail_text) if tail_text and tail_text.isdigit() else None
    files = logs.log_files(supervisor.folder.logs, selector)
    lines = logs.read_merged(files, tail)
    width = max((len(f"{s}.{i}") for s, i, _ in files), default=0)
    text = "".join(line.format(width=width) + "\n" for line in lines)
    return web.Response(text=text, content_type="text/plain")


async def post_reconcile(request: web.Request) -> web.Response:
    """Answers 200 with the plan (and whether it is being applied), or {"error", "hint"}:
    a refused change is an answer, not a failure of the API."""
    supervisor = _supervisor(request)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    if supervisor.reconciler is None:
        answer: dict[str, object] = {
            "error": f"the deployment is {supervisor.state}: a change applies once it runs"
        }
    else:
        answer = await supervisor.reconciler.handle(body if isinstance(body, dict) else {})
    return web.json_response(answer)


async def get_reconcile(request: web.Request) -> web.Response:
    reconciler = _supervisor(request).reconciler
    status = reconciler.status if reconciler is not None else None
    return web.json_response(status.plain() if status is not None else {})


def build_app(supervisor: Supervisor) -> web.Application:
    app = web.Application()
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
        build_app(supervisor), handle_signals=False, access_log=None, shutdown_timeout=2.0
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
