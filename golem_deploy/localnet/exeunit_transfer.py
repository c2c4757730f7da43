"""The ExeUnit's `transfer` command: copy one file between URLs for an activity.

A source is fetched into a staging file on the host, then delivered to the destination, so
any pair of schemes works: ``container:`` (a path in the activity's sandbox; a bare path
means the same), ``gftp:`` (a file published on the bus, see :mod:`gftp`) and loopback
``http(s):``. Archives and filesets are not supported locally. Every failure is a
:class:`~golem_deploy.localnet.exeunit_batch.CommandError` with the transfer in its message.
"""

from __future__ import annotations

import ipaddress
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio

from golem_deploy.localnet import gftp
from golem_deploy.localnet.exeunit_batch import CommandError
from golem_deploy.localnet.gsb import GsbClient
from golem_deploy.localnet.sandbox import Sandbox, SandboxError


async def transfer(
    body: dict[str, Any], sandbox: Sandbox | None, bus: GsbClient | None, staging: Path
) -> None:
    """Run one `transfer` command (its JSON `body`) through the staging directory."""
    source, dest = str(body.get("from") or ""), str(body.get("to") or "")
    if body.get("format") or body.get("fileset") or body.get("depth"):
        raise CommandError("transfer: archives and filesets are not supported locally")
    assert sandbox is not None
    staging.mkdir(parents=True, exist_ok=True)
    tmp = staging / f"{time.monotonic_ns()}.part"
    try:
        await _fetch(source, tmp, sandbox, bus)
        await _deliver(tmp, dest, sandbox, bus)
    except (gftp.GftpError, SandboxError, OSError, aiohttp.ClientError) as exc:
        raise CommandError(f"transfer {source} -> {dest} failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


async def _fetch(url: str, into: Path, sandbox: Sandbox, bus: GsbClient | None) -> None:
    scheme = _scheme(url)
    if scheme == "container":
        await anyio.to_thread.run_sync(sandbox.copy_out, _container_part(url), into)
    elif scheme == "gftp":
        assert bus is not None
        await gftp.download(bus, url, into)
    elif scheme in ("http", "https"):
        _require_loopback(url)
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.get(url) as response,
        ):
            response.raise_for_status()
            with open(into, "wb") as out:
                async for chunk in response.content.iter_chunked(64 * 1024):
                    out.write(chunk)
    else:
        raise CommandError(f"Unsupported scheme: {scheme}")


async def _deliver(data: Path, url: str, sandbox: Sandbox, bus: GsbClient | None) -> None:
    scheme = _scheme(url)
    if scheme == "container":
        sandbox.deliver(data, _container_part(url))
    elif scheme == "gftp":
        assert bus is not None
        await gftp.upload(bus, data, url)
    elif scheme in ("http", "https"):
        _require_loopback(url)
        async with aiohttp.ClientSession(trust_env=False) as session:
            with open(data, "rb") as body:
                async with session.put(url, data=body) as response:
                    response.raise_for_status()
    else:
        raise CommandError(f"Unsupported scheme: {scheme}")


def _scheme(url: str) -> str:
    """The scheme of a transfer URL; a bare path means ``container:``."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)
    return match.group(1).lower() if match else "container"


def _container_part(url: str) -> str:
    return url[len("container:") :] if url.lower().startswith("container:") else url


def _require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise CommandError(f"only loopback http(s) URLs can be reached from the local network: {url}")
