"""The CLI side of the control socket: tiny synchronous HTTP over a Unix socket.

Why not aiohttp here: `status --json` must answer in well under 150 ms, and importing
aiohttp alone costs most of that. The standard library's http.client over an AF_UNIX
socket is enough for a handful of JSON requests.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from golem_deploy.errors import GolemDeployError


class SupervisorUnreachable(GolemDeployError):
    """The control socket is missing or nobody answers on it."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("supervisor", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(
    sock_path: Path,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = 5.0,
) -> Any:
    """One request; returns the decoded JSON body (or text for text/plain answers)."""
    connection = _UnixConnection(sock_path, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as error:
        raise SupervisorUnreachable(
            f"the supervisor does not answer on {sock_path}: {error}"
        ) from None
    finally:
        connection.close()
    if response.status >= 400:
        raise GolemDeployError(
            f"supervisor answered {response.status}: {data.decode(errors='replace')}"
        )
    if response.getheader("Content-Type", "").startswith("application/json"):
        return json.loads(data)
    return data.decode(errors="replace")


class EventStream:
    """GET /events, opened eagerly: once constructed, no later event is missed.

    Iterating yields decoded records (heartbeats included, about one a second) and stops
    when the supervisor closes the stream, or when nothing at all arrived for `idle`
    seconds (a stuck supervisor; the caller decides what to do).
    """

    def __init__(self, sock_path: Path, *, idle: float = 10.0, kinds: tuple[str, ...] = ()) -> None:
        """`kinds`: only records whose kind starts with one of these (and heartbeats)."""
        self._connection = _UnixConnection(sock_path, 5.0)
        path = "/events" + (f"?kinds={','.join(kinds)}" if kinds else "")
        try:
            self._connection.request("GET", path)
            self._response = self._connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            self._connection.close()
            raise SupervisorUnreachable(f"no event stream on {sock_path}: {error}") from None
        if self._connection.sock is not None:
            self._connection.sock.settimeout(idle)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            while True:
                line = self._response.readline()
                if not line:
                    return
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record
        except (OSError, http.client.HTTPException):
            return
        finally:
            self.close()

    def close(self) -> None:
        self._connection.close()
