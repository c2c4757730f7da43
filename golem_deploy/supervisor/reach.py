"""Is anybody listening at a yagna's REST address? (connection refused = nobody is).

Why: a graceful `down` needs the deployment's yagna to terminate agreements and release the
allocation. When that yagna is dead -- the local network's requestor daemon was killed, or
the user's yagna was stopped -- waiting out the graceful timeout cannot help, and `down`
should go to recovery at once. Only a refused connection counts as dead: a slow or
unanswered one may be a busy yagna, which the graceful timeout is for.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

PROBE_TIMEOUT = 1.0


def refuses(api_url: str, *, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when nothing listens at `api_url`'s host and port (the connection is refused)."""
    try:
        parts = urlsplit(api_url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False  # unreachable for another reason (timeout, no route): not proof
