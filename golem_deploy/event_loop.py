"""Which asyncio event loop the long-lived processes run on: uvloop where it is installed.

The supervisor and the local network's host spend most of their CPU in the event loop
itself, not in our code: at 100 running instances a py-spy profile of the supervisor put
~45 % of its samples in asyncio and the selector (one wake-up per HTTP answer, timer and
socket write), ~16 % in aiohttp, ~20 % in golem_deploy. uvloop (libuv under the same
asyncio API) runs that part in C. Short CLI commands keep the standard loop: importing
uvloop costs more than it saves in a process that makes a handful of requests.

``GOLEM_DEPLOY_EVENT_LOOP=asyncio`` keeps the standard loop everywhere (to rule uvloop out
when something looks wrong, and for side-by-side measurements in bench/).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

__all__ = ["ENV", "run", "uses_uvloop"]

ENV = "GOLEM_DEPLOY_EVENT_LOOP"

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def uses_uvloop() -> bool:
    """Whether :func:`run` runs on uvloop: it is installed and not turned off."""
    if os.environ.get(ENV, "").strip().lower() == "asyncio":
        return False
    return importlib.util.find_spec("uvloop") is not None


def run(func: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
    """`anyio.run(func, *args)` on asyncio, with uvloop's loop when :func:`uses_uvloop`."""
    import anyio  # here: the local network's host imports this module before anyio

    return anyio.run(func, *args, backend="asyncio", backend_options={"use_uvloop": uses_uvloop()})
