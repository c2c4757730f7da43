"""The ExeUnit as the provider agent uses it; the real one is golem_deploy.localnet.exeunit.

The agent depends on this narrow view only, so tests can hand it another factory and the
ExeUnit can change inside without the agent noticing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from anyio.abc import TaskStatus


class ExeUnitLike(Protocol):
    async def serve(self, *, task_status: TaskStatus[None] = ...) -> None: ...
    async def shutdown(self, reason: str) -> None: ...
    def vanish(self) -> None: ...
    @property
    def usage(self) -> tuple[float, float]: ...


class ExeUnitFactory(Protocol):
    def __call__(
        self,
        *,
        activity_id: str,
        agreement_id: str,
        gsb_url: str,
        work_dir: Path,
        mounts: dict[str, Path],
        usage_vector: list[str],
        requestor_id: str,
        fail_commands_matching: re.Pattern[str] | None,
        slow_start: float,
    ) -> ExeUnitLike: ...


def real_exeunit(
    *,
    activity_id: str,
    agreement_id: str,
    gsb_url: str,
    work_dir: Path,
    mounts: dict[str, Path],
    usage_vector: list[str],
    requestor_id: str,
    fail_commands_matching: re.Pattern[str] | None,
    slow_start: float,
) -> ExeUnitLike:
    """Build the in-process ExeUnit of golem_deploy.localnet.exeunit (imported late: heavy)."""
    from golem_deploy.localnet.exeunit import ExeUnit, ExeUnitConfig

    unit: ExeUnitLike = ExeUnit(
        ExeUnitConfig(
            activity_id=activity_id,
            agreement_id=agreement_id,
            gsb_url=gsb_url,
            work_dir=work_dir,
            mounts=mounts,
            usage_vector=usage_vector,
            requestor_id=requestor_id,
            fail_commands_matching=fail_commands_matching,
            slow_start=slow_start,
        )
    )
    return unit
