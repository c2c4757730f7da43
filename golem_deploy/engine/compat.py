"""yapapi's small top-level helpers, so a ported program's imports resolve unchanged.

yapapi's example programs (and many programs built from them) call
`enable_default_logger(log_file=...)` from `yapapi.log`, and the examples' shared `utils`
module imports `NoPaymentAccountError`, `windows_event_loop_fix` and `__version__` from
`yapapi`. With the import map of docs/engine.md ("Porting from yapapi") they come from
`golem_deploy.engine`, with yapapi's signatures and these meanings here.
"""

from __future__ import annotations

import logging
import os
import sys

from golem_deploy import __version__ as _golem_deploy_version
from golem_deploy.engine.run_args import EngineError

__all__ = [
    "NoPaymentAccountError",
    "__version__",
    "enable_default_logger",
    "windows_event_loop_fix",
]

#: what a ported program prints as "yapapi version": golem-deploy's own version
__version__ = _golem_deploy_version

_DEFAULT_FORMAT = "[%(asctime)s %(levelname)s %(name)s] %(message)s"


class NoPaymentAccountError(EngineError):
    """yapapi's name, exported so a ported `except NoPaymentAccountError` compiles.

    The engine does not raise it: a node without a payment account for the platform fails
    the allocation, which `Golem` reports as an EngineError naming the exact
    `yagna payment init` command (golem-deploy's one clear message per error)."""

    def __init__(self, required_driver: str, required_network: str) -> None:
        super().__init__(f"no payment account for {required_driver}/{required_network}")
        self.required_driver = required_driver
        self.required_network = required_network


def enable_default_logger(
    format_: str = _DEFAULT_FORMAT,
    log_file: str | None = None,
    debug_activity_api: bool = False,
    debug_market_api: bool = False,
    debug_payment_api: bool = False,
    debug_net_api: bool = False,
) -> None:
    """yapapi's default logging: golem-deploy's messages at INFO on stderr and, with
    `log_file`, at DEBUG to that file (overwritten). The `debug_*_api` flags named
    yapapi's generated REST clients; here every yagna request is logged at DEBUG by
    `golem_deploy.yagna`, which the file receives anyway, so they change nothing."""
    del debug_activity_api, debug_market_api, debug_payment_api, debug_net_api
    logger = logging.getLogger("golem_deploy")
    logger.setLevel(logging.DEBUG)
    logger.disabled = False
    formatter = logging.Formatter(fmt=format_)
    console = logging.StreamHandler()
    console.setFormatter(formatter)
    console.setLevel(logging.INFO)
    logger.addHandler(console)
    if log_file:
        file_handler = logging.FileHandler(filename=log_file, mode="w", encoding="utf-8")
        file_handler.setFormatter(formatter)
        file_handler.setLevel(logging.DEBUG)
        logger.addHandler(file_handler)
        logger.debug(
            "golem-deploy %s, script: %s, working directory: %s",
            __version__,
            sys.argv[0],
            os.getcwd(),
        )
        logger.info("Using log file `%s`; in case of errors look there for more", log_file)


def windows_event_loop_fix() -> None:
    """yapapi's workaround for asyncio on Windows before Python 3.8; golem-deploy needs
    Python >= 3.11 on Linux, so there is nothing to fix."""
