"""The ExeUnit as the provider agent uses it; the real one is golem_deploy.localnet.exeunit.

The agent depends on this narrow view only, so tests can hand it another factory and the
ExeUnit can change inside without the agent noticing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from anyio.abc import TaskStatus

from golem_deploy.localnet.vpn_host import VpnHost


class ExeUnitLike(Protocol):
    async def serve(self, *, task_status: TaskStatus[None] = ...) -> None: ...
    async def shutdown(self, reason: str) -> bool:
        """End the activity; whether yagna was told it is Terminated (if not, the agent
        tells it over REST, else the requestor's DELETE waits for it until a 408)."""
        ...

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
        task_package: str | None = None,
        local_image: Path | None = None,
        storage_gib: float | None = None,
        cpu_threads: float | None = None,
        mem_gib: float | None = None,
        unsafe_host_exec: bool = False,
        vpn: VpnHost | None = None,
        provider_id: str = "",
        lose_terminated_report: bool = False,
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
    task_package: str | None = None,
    local_image: Path | None = None,
    storage_gib: float | None = None,
    cpu_threads: float | None = None,
    mem_gib: float | None = None,
    unsafe_host_exec: bool = False,
    vpn: VpnHost | None = None,
    provider_id: str = "",
    lose_terminated_report: bool = False,
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
            task_package=task_package,
            local_image=local_image,
            storage_gib=storage_gib,
            cpu_threads=cpu_threads,
            mem_gib=mem_gib,
            unsafe_host_exec=unsafe_host_exec,
            vpn=vpn,
            provider_id=provider_id,
            lose_terminated_report=lose_terminated_report,
        )
    )
    return unit
