"""Pure helpers of the cluster, the script executor and the Service/Script API (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_deploy.compiler import health_check
from golem_deploy.engine import HealthCheck
from golem_deploy.engine.cluster import instance_params_list
from golem_deploy.engine.executor import exit_code
from golem_deploy.engine.service import (
    CommandFailed,
    CommandResult,
    Service,
    WorkContext,
    record_of,
)
from golem_deploy.errors import GolemDeployError
from golem_deploy.manifest.model import Healthcheck, Payload, RunStep, ServiceSpec

pytestmark = pytest.mark.anyio


def test_instance_params_follow_yapapi_rules() -> None:
    assert instance_params_list(None, None) == [{}]
    assert instance_params_list(3, None) == [{}, {}, {}]
    assert instance_params_list(None, [{"a": 1}, {"a": 2}]) == [{"a": 1}, {"a": 2}]
    assert instance_params_list(1, [{"a": 1}, {"a": 2}]) == [{"a": 1}]
    assert instance_params_list(0, None) == []
    with pytest.raises(GolemDeployError, match="instance_params has 1 entries for 2"):
        instance_params_list(2, [{"a": 1}])


def test_exit_code_from_yagna_message() -> None:
    assert exit_code("ExeScript command exited with code 3") == 3
    assert exit_code("Local service error: boom") == -1
    assert exit_code(None) == -1


def test_healthcheck_from_manifest() -> None:
    """The compiler translates the manifest's health check into the engine's own type."""
    check = Healthcheck(run=RunStep(argv=("/bin/true",)), interval=2, timeout=1, retries=4)
    spec = ServiceSpec(name="s", payload=Payload(image_hash="h"), healthcheck=check)
    hc = health_check(spec)
    assert hc == HealthCheck(argv=("/bin/true",), interval=2.0, timeout=1.0, retries=4)
    assert health_check(ServiceSpec(name="s", payload=Payload(image_hash="h"))) is None
    assert HealthCheck().argv is None  # without a command: the activity-state check


def ctx() -> WorkContext:
    return WorkContext(activity_id="a", agreement_id="g", provider_id="p", provider_name="n")


def test_script_commands_are_exescript_json() -> None:
    s = ctx().new_script()
    s.deploy()
    s.start()
    s.run("/bin/echo", "hi", env={"A": "1"})
    s.terminate()
    assert [st.command for st in s.steps] == [
        {"deploy": {}},
        {"start": {"args": []}},
        {
            "run": {
                "entry_point": "/usr/bin/env",
                "args": ["A=1", "/bin/echo", "hi"],
                "capture": {"stdout": {"stream": {}}, "stderr": {"stream": {}}},
            }
        },
        {"terminate": {}},
    ]
    assert s.steps[2].describe == "run /usr/bin/env A=1 /bin/echo hi"


async def test_uploading_a_missing_file_is_a_clear_error() -> None:
    """The file is read when the script executes (yapapi's semantics), so that is when a
    missing one is reported; test_script_transfers.py covers how the step then fails."""
    script = ctx().new_script()
    script.upload_file("/nonexistent/nope.txt", "/golem/work/x")
    [step] = script.steps
    assert step.before is not None

    class OpensFiles:  # a Storage whose publish_file opens the file, as GsbApiStorage's
        async def publish_file(self, path: Path) -> None:
            path.open("rb").close()

    with pytest.raises(GolemDeployError, match=r"cannot read .*nope\.txt for upload"):
        await step.before(OpensFiles())  # type: ignore[arg-type]


async def test_step_futures_resolve_and_fail() -> None:
    s = ctx().new_script()
    ok = s.run("/bin/true")
    bad = s.run("/bin/false")
    result = CommandResult(0, "run /bin/true", 0, "", None)
    ok._set(result)
    assert await ok is result
    failure = CommandFailed(CommandResult(1, "run /bin/false", 1, None, "oops\n"), "svc", 0)
    bad._fail(failure)
    with pytest.raises(CommandFailed, match=r"svc\[0\]: `run /bin/false` failed: exited with"):
        await bad
    assert "stderr: oops" in str(failure)


def test_service_snapshot_fields() -> None:
    class Web(Service):
        pass

    snap = Web(port=80).snapshot()
    assert snap.service == "Web" and snap.state.value == "pending" and snap.cost == 0
    assert snap.restart_scheduled is False
    assert record_of(Web(port=80)).params == {"port": 80}  # kept by the engine, not on self
