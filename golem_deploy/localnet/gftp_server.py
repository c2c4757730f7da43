"""`gftp server` for requestors on the local network: yagna's gftp, spoken over stdio.

yapapi (and other SDKs built on it) start `gftp server` for every `Golem` and talk JSON-RPC
2.0 to it over stdin/stdout, one message a line, even when they transfer no file. The
golem-node wheel ships yagna without that binary, so on a machine without a yagna install
yapapi stops with `gftp: not found`. `golem-deploy localnet start` therefore writes a `gftp`
launcher for this module into the network's state folder and prints a `PATH` export that puts
it first.

Methods (names, parameters and answers as yagna's gftp has them, which yapapi relies on):

* ``version`` -> a version string (the first word is a semantic version);
* ``publish {files: [path, ...]}`` -> ``[{file, url}, ...]``: each file is served at
  ``gftp://<node id>/<sha3-256 of its content>``, so publishing the same content twice gives
  the same URL;
* ``receive {output_file}`` -> ``{file, url}``: an upload slot a provider writes into;
* ``upload {file, url}`` -> ``null``: send a local file to another node's upload slot;
* ``close {urls: [...]}`` -> ``["ok" | "error", ...]``: stop serving those URLs;
* ``shutdown`` -> ``"ok"``, then the process ends (so does end of input).

Files travel over the requestor node's service bus exactly as with real gftp
(:mod:`golem_deploy.localnet.gftp` has the bus side), so a provider's ExeUnit fetches them
with the same ``transfer`` command it uses for yagna's gftp.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from golem_deploy import __version__
from golem_deploy.localnet.gftp import GftpError, GftpPublisher, upload
from golem_deploy.localnet.gsb import GsbClient, GsbError

__all__ = ["GftpServer", "main", "write_launcher"]

LAUNCHER_DIR = "bin"
"""Folder of a local network's state dir holding the `gftp` launcher (put first on PATH)."""

# JSON-RPC 2.0 error codes.
_PARSE_ERROR = -32700
_INVALID_REQUEST = -32600
_METHOD_NOT_FOUND = -32601
_INVALID_PARAMS = -32602
_SERVER_ERROR = -32000


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class GftpServer:
    """The JSON-RPC methods of `gftp server`, over a publisher on the requestor's bus."""

    def __init__(self, bus: GsbClient, publisher: GftpPublisher) -> None:
        self._bus = bus
        self._publisher = publisher
        self.done = False
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "version": self._version,
            "publish": self._publish,
            "receive": self._receive,
            "upload": self._upload,
            "close": self._close,
            "shutdown": self._shutdown,
        }

    async def handle_line(self, line: str) -> str | None:
        """Answer one request line; None for a notification (a request without an id)."""
        try:
            request = json.loads(line)
        except ValueError as exc:
            return _error(None, _RpcError(_PARSE_ERROR, f"not JSON: {exc}"))
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _error(None, _RpcError(_INVALID_REQUEST, "expected a JSON-RPC request"))
        request_id = request.get("id")
        params = request.get("params") or {}
        try:
            method = self._methods.get(request["method"])
            if method is None:
                raise _RpcError(_METHOD_NOT_FOUND, f"unknown method {request['method']!r}")
            if not isinstance(params, dict):
                raise _RpcError(_INVALID_PARAMS, "params must be an object")
            result = await method(params)
        except _RpcError as exc:
            return _error(request_id, exc) if request_id is not None else None
        except (GftpError, GsbError, OSError) as exc:
            return _error(request_id, _RpcError(_SERVER_ERROR, str(exc)))
        if request_id is None:
            return None
        return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def _version(self, params: dict[str, Any]) -> str:
        return f"{__version__} (golem-deploy gftp for the local network)"

    async def _publish(self, params: dict[str, Any]) -> list[dict[str, str]]:
        files = _param(params, "files", list)
        links = []
        for name in files:
            path = Path(str(name))
            if not path.is_file():
                raise _RpcError(_SERVER_ERROR, f"{path}: no such file")
            links.append({"file": str(path), "url": await self._publisher.publish(path)})
        return links

    async def _receive(self, params: dict[str, Any]) -> dict[str, str]:
        path = Path(str(_param(params, "output_file", str)))
        url, _finished = await self._publisher.receive(path)
        return {"file": str(path), "url": url}

    async def _upload(self, params: dict[str, Any]) -> None:
        path = Path(str(_param(params, "file", str)))
        await upload(self._bus, path, str(_param(params, "url", str)))

    async def _close(self, params: dict[str, Any]) -> list[str]:
        urls = _param(params, "urls", list)
        return ["ok" if await self._publisher.release(str(url)) else "error" for url in urls]

    async def _shutdown(self, params: dict[str, Any]) -> str:
        self.done = True
        return "ok"


def _param(params: dict[str, Any], name: str, kind: type) -> Any:
    value = params.get(name)
    if not isinstance(value, kind):
        raise _RpcError(_INVALID_PARAMS, f"parameter {name!r} must be a {kind.__name__}")
    return value


def _error(request_id: Any, exc: _RpcError) -> str:
    body = {"code": exc.code, "message": exc.message}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": body})


async def serve(gsb_url: str, node_id: str) -> None:
    """Answer requests from stdin until `shutdown` or end of input."""
    async with GsbClient.connect(gsb_url, name="gftp") as bus:
        publisher = GftpPublisher(bus, node_id)
        server = GftpServer(bus, publisher)
        try:
            while not server.done:
                line = await anyio.to_thread.run_sync(sys.stdin.readline)
                if not line:
                    break
                if not line.strip():
                    continue
                answer = await server.handle_line(line)
                if answer is not None:
                    sys.stdout.write(answer + "\n")
                    sys.stdout.flush()
        finally:
            with anyio.CancelScope(shield=True):
                await publisher.close()


def write_launcher(state_dir: Path, gsb_url: str, node_id: str) -> Path:
    """Write `<state_dir>/bin/gftp`, which runs this module against the network's bus.

    Returns the folder to put first on PATH.
    """
    folder = state_dir / LAUNCHER_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    # Run the golem_deploy that wrote the launcher, whatever PATH/PYTHONPATH the SDK has.
    package_root = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {package_root!r}); "
        "from golem_deploy.localnet.gftp_server import main; "
        f"sys.exit(main([{'--gsb-url'!r}, {gsb_url!r}, {'--node-id'!r}, {node_id!r}, "
        "*sys.argv[1:]]))"
    )
    script = folder / "gftp"
    temp = script.with_suffix(".tmp")
    temp.write_text(
        "#!/bin/sh\n# yagna's `gftp server` for the golem-deploy local network\n"
        f'exec {shlex.quote(sys.executable)} -c {shlex.quote(code)} "$@"\n'
    )
    temp.chmod(0o700)
    temp.replace(script)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gftp", description="yagna's `gftp server`, for the golem-deploy local network"
    )
    parser.add_argument("--gsb-url", required=True, help="the requestor node's bus")
    parser.add_argument("--node-id", required=True, help="the requestor node's identity")
    parser.add_argument("command", choices=["server"], help="only `server` is supported")
    args = parser.parse_args(argv)
    try:
        anyio.run(serve, args.gsb_url, args.node_id)
    except (OSError, GsbError) as exc:
        print(
            f"gftp: cannot reach the local network's bus at {args.gsb_url}: {exc}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
