"""Import aiohttp without loading the system's CA certificates: the supervisor's start-up.

aiohttp builds two default SSL contexts when `aiohttp.connector` is imported, and each
loads the system's CA bundle (OpenSSL parses every certificate in it): 100-200 ms apiece on
a busy machine, on the critical path of every `golem-deploy up`, since `up` waits for the
supervisor. The supervisor only ever talks to yagna (REST, SSE, and the VPN / GSB
websockets all go through `YagnaClient`'s session), which is `http://127.0.0.1` for the
local network and for a local yagna alike. So the supervisor imports aiohttp with the CA
loading left out, and `YagnaClient` brings its own, fully loaded context when a yagna URL
is `https://` (yagna/client.py).

The contexts aiohttp keeps for everybody else then hold no CA certificate while still
requiring verification: anything that would use them fails the TLS handshake (it fails
closed, it is never insecure). Two callers: the supervisor's entry point (and the child
`up` forks for it, supervisor/prefork.py), and the checks `up` runs on your yagna
(cli/doctor.preflight), whose https clients, yagna's and the registry's
(preflight/registry.py), bring their own contexts too. The rest of the CLI imports aiohttp
normally.
"""

from __future__ import annotations

import ssl
import sys
from os import PathLike

_Path = str | bytes | PathLike[str] | PathLike[bytes]

__all__ = ["import_aiohttp_without_ca_store"]


def _bare_context(
    purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
    *,
    cafile: _Path | None = None,
    capath: _Path | None = None,
    cadata: str | bytes | None = None,
) -> ssl.SSLContext:
    """`ssl.create_default_context()` without the CA store: still a client context that
    checks host names and requires a verified certificate (of which it knows none)."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _no_default_paths(self: ssl.SSLContext) -> None:
    """`SSLContext.set_default_verify_paths` left out (that is the slow CA loading)."""


def import_aiohttp_without_ca_store() -> None:
    """Import aiohttp (once per process) while creating an SSL context skips the CA store.

    The two `ssl` functions are swapped only for the duration of the import and restored
    afterwards, also when the import fails; nothing else runs meanwhile (the process is
    still single-threaded at start-up). A no-op when aiohttp is already imported."""
    if "aiohttp" in sys.modules:
        return
    create_default_context = ssl.create_default_context
    set_default_verify_paths = ssl.SSLContext.set_default_verify_paths
    ssl.create_default_context = _bare_context  # type: ignore[assignment]  # cadata: Buffer
    ssl.SSLContext.set_default_verify_paths = _no_default_paths  # type: ignore[method-assign]
    try:
        import aiohttp  # noqa: F401  (imported for its side effect: now it is loaded)
    finally:
        ssl.create_default_context = create_default_context
        ssl.SSLContext.set_default_verify_paths = set_default_verify_paths  # type: ignore[method-assign]
