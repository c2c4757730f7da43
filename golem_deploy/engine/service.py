"""The Services API users (and the compiler) program against: Service, WorkContext, Script.

Shaped like yapapi 0.13 so yapapi users feel at home: a Service subclass defines
`get_payload()` and the async generators `start()`, `run()` and `shutdown()`; each yields
Scripts built with `self._ctx.new_script()`. The engine executes a yielded script on the
instance's activity and sends back an awaitable of its results; every step method returns a
`StepFuture` whose await gives that step's `CommandResult`. A failed command (non-zero exit
or an ExeUnit error) is thrown into the generator as `CommandFailed`, so a handler may catch
it; uncaught, the handler fails and the lifecycle decides what happens.

Size: the whole yapapi-shaped surface a user programs against (Service, Script,
WorkContext), which yapapi users expect to find together.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import anyio

from golem_deploy.engine.config import HealthCheck, RestartPolicy
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.network import DeployArgs, Network, Node
from golem_deploy.engine.payload import VmPayload
from golem_deploy.errors import GolemDeployError

if TYPE_CHECKING:
    from golem_deploy.engine.cluster import Cluster

__all__ = [
    "CommandFailed",
    "CommandResult",
    "InstanceSnapshot",
    "Script",
    "Service",
    "StepFuture",
    "Storage",
    "WorkContext",
]

DOWNLOAD_BYTES_LIMIT_DEFAULT = 1024 * 1024
_STREAM: dict[str, Any] = {"stdout": {"stream": {}}, "stderr": {"stream": {}}}


@dataclass(frozen=True)
class CommandResult:
    """What one step of a script produced."""

    index: int
    command: str
    return_code: int
    stdout: str | None = None
    stderr: str | None = None
    message: str | None = None

    @property
    def success(self) -> bool:
        return self.return_code == 0 and self.message is None


class CommandFailed(GolemDeployError):
    """A step of a script failed on the provider (thrown into the handler generator)."""

    def __init__(self, result: CommandResult, service: str = "", index: int = -1) -> None:
        where = f"{service}[{index}]: " if service else ""
        detail = result.message or f"exited with code {result.return_code}"
        stderr = (result.stderr or "").strip()
        tail = f"\n  stderr: {stderr[-500:]}" if stderr else ""
        super().__init__(f"{where}`{result.command}` failed: {detail}{tail}")
        self.result = result


class StepFuture:
    """The eventual result of one script step; `await step` gives its CommandResult."""

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._result: CommandResult | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done.is_set()

    def result(self) -> CommandResult:
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RuntimeError("the step has not finished yet (yield its script first)")
        return self._result

    def _set(self, result: CommandResult) -> None:
        self._result = result
        self._done.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def __await__(self) -> Generator[Any, None, CommandResult]:
        yield from self._done.wait().__await__()
        return self.result()


class Storage(Protocol):
    """Moves files between this machine and a provider (GFTP over the bus)."""

    async def publish(self, data: bytes) -> tuple[str, Callable[[], Awaitable[None]]]:
        """Make `data` fetchable by the provider; returns (url, release)."""
        ...

    async def receive(
        self,
    ) -> tuple[str, Callable[[], Awaitable[bytes]], Callable[[], Awaitable[None]]]:
        """A URL the provider can upload to; returns (url, wait_for_data, release)."""
        ...


@dataclass
class _Step:
    """One command of a script plus hooks that run before/after it (transfers)."""

    command: dict[str, Any]
    describe: str
    future: StepFuture = field(default_factory=StepFuture)
    before: Callable[[Storage], Awaitable[None]] | None = None
    after: Callable[[CommandResult], Awaitable[None]] | None = None
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


class Script:
    """An ordered batch of commands executed on one activity in one exec call."""

    def __init__(self, ctx: WorkContext, timeout: float | None = None) -> None:
        self._ctx = ctx
        self.timeout = timeout
        self._steps: list[_Step] = []

    @property
    def steps(self) -> list[_Step]:
        return self._steps

    def _add(self, command: dict[str, Any], describe: str) -> _Step:
        step = _Step(command=command, describe=describe)
        self._steps.append(step)
        return step

    # ------------------------------------------------------------------- plain commands

    def deploy(self, **kwargs: object) -> StepFuture:
        return self._add({"deploy": kwargs}, "deploy").future

    def start(self, *args: str) -> StepFuture:
        return self._add({"start": {"args": list(args)}}, "start").future

    def terminate(self) -> StepFuture:
        return self._add({"terminate": {}}, "terminate").future

    def run(self, cmd: str, *args: str, env: dict[str, str] | None = None) -> StepFuture:
        """Run `cmd args...` on the provider; stdout/stderr are streamed and kept.

        `env` is applied portably by wrapping the command in /usr/bin/env (yapapi accepts but
        silently drops it)."""
        argv = [cmd, *args]
        if env:
            argv = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *argv]
        body = {"entry_point": argv[0], "args": argv[1:], "capture": _STREAM}
        return self._add({"run": body}, "run " + shlex.join(argv)).future

    # --------------------------------------------------------------------- transfers

    def upload_bytes(self, data: bytes, dst: str) -> StepFuture:
        step = self._add({"transfer": {"from": "", "to": f"container:{dst}"}}, f"upload {dst}")

        async def before(storage: Storage) -> None:
            url, release = await storage.publish(data)
            step.command["transfer"]["from"] = url
            step.cleanup.append(release)

        step.before = before
        return step.future

    def upload_file(self, src: str | Path, dst: str) -> StepFuture:
        path = Path(src)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise GolemDeployError(
                f"cannot read {path} for upload: {e.strerror}", hint="check the upload's src"
            ) from e
        return self.upload_bytes(data, dst)

    def upload_json(self, data: object, dst: str) -> StepFuture:
        return self.upload_bytes(json.dumps(data).encode(), dst)

    def download_bytes(
        self,
        src: str,
        on_download: Callable[[bytes], Awaitable[None] | None] | None = None,
        limit: int = DOWNLOAD_BYTES_LIMIT_DEFAULT,
    ) -> StepFuture:
        step = self._add({"transfer": {"from": f"container:{src}", "to": ""}}, f"download {src}")
        wait_data: list[Callable[[], Awaitable[bytes]]] = []

        async def before(storage: Storage) -> None:
            url, wait, release = await storage.receive()
            step.command["transfer"]["to"] = url
            wait_data.append(wait)
            step.cleanup.append(release)

        async def after(result: CommandResult) -> None:
            data = await wait_data[0]()
            if len(data) > limit:
                raise GolemDeployError(
                    f"download of {src} is {len(data)} bytes, over the limit of {limit}"
                )
            if on_download is not None:
                maybe = on_download(data)
                if maybe is not None:
                    await maybe

        step.before = before
        step.after = after
        return step.future

    def download_file(self, src: str, dst: str | Path) -> StepFuture:
        target = Path(dst)

        def write(data: bytes) -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

        return self.download_bytes(src, write, limit=1 << 40)

    def download_json(
        self,
        src: str,
        on_download: Callable[[object], Awaitable[None] | None],
        limit: int = DOWNLOAD_BYTES_LIMIT_DEFAULT,
    ) -> StepFuture:
        def parse(data: bytes) -> Awaitable[None] | None:
            return on_download(json.loads(data))

        return self.download_bytes(src, parse, limit)


class WorkContext:
    """The handle a Service gets on its current activity (`self._ctx`)."""

    def __init__(
        self,
        *,
        activity_id: str,
        agreement_id: str,
        provider_id: str,
        provider_name: str,
    ) -> None:
        self.activity_id = activity_id
        self.agreement_id = agreement_id
        self.provider_id = provider_id
        self.provider_name = provider_name

    def new_script(self, timeout: float | None = None) -> Script:
        return Script(self, timeout=timeout)


@dataclass(frozen=True)
class ImageDownload:
    """How far the provider is with downloading the instance's image (its deploy step's
    progress reports): bytes done, bytes in all (None: unknown), and the mean rate."""

    done: int
    total: int | None
    bytes_per_s: float


@dataclass(frozen=True)
class InstanceSnapshot:
    """A plain copy of an instance's visible state, for the supervisor and UI."""

    service: str
    index: int
    state: ServiceState
    provider_id: str | None
    provider_name: str | None
    agreement_id: str | None
    activity_id: str | None
    started_at: datetime | None
    restarts: int
    cost: Decimal
    last_output: str
    reason: str
    restart_scheduled: bool = False  # ended on this provider, a restart will follow
    ip: str | None = None  # the instance's address on its network (kept across restarts)
    download: ImageDownload | None = None  # while its deploy step downloads the image


HandlerGen = AsyncGenerator[Script, object]


class Service:
    """Base class of a service; subclass it and override the handlers you need.

    The engine creates one object per instance (`instance_params` become keyword arguments
    of `__init__`) and keeps it across replacements on other providers. The snapshot
    attributes (service, index, state, provider_id, ...) are maintained by the engine.
    """

    # Defaults of `Golem.run_service` for this class (the compiler sets them from the
    # manifest): the restart policy, the health check, and whether an instance whose start
    # failed is tried on another provider (None: yes).
    restart: ClassVar[RestartPolicy | None] = None
    healthcheck: ClassVar[HealthCheck | None] = None
    respawn_unstarted_instances: ClassVar[bool | None] = None

    def __init__(self, **params: object) -> None:
        self.params = params
        self._ctx: WorkContext = None  # type: ignore[assignment]  # set before any handler
        self.cluster: Cluster | None = None
        self.service: str = self.service_name()
        self.index: int = 0
        self.state: ServiceState = ServiceState.pending
        self.provider_id: str | None = None
        self.provider_name: str | None = None
        self.agreement_id: str | None = None
        self.activity_id: str | None = None
        self.started_at: datetime | None = None
        self.restarts: int = 0
        self.cost: Decimal = Decimal(0)
        self.last_output: str = ""
        self.reason: str = ""
        self.restart_scheduled: bool = False
        # Set by the engine (yapapi's names): the network, the address this instance keeps
        # across providers, and its node on the current provider (None between providers).
        self._network: Network | None = None
        self._download: ImageDownload | None = None  # set by the engine during deploy
        self._network_address: str | None = None
        self._network_node: Node | None = None

    @classmethod
    def service_name(cls) -> str:
        """The name events and snapshots use (the class name unless overridden)."""
        return cls.__name__

    @staticmethod
    async def get_payload() -> VmPayload | None:
        """The payload every instance of this service runs (None: given to run_service)."""
        return None

    @property
    def id(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def network(self) -> Network | None:
        """The network the instance is on (``run_service(network=...)``), or None."""
        return self._network

    @property
    def network_node(self) -> Node | None:
        """The instance's node on its network while it holds a provider (``.ip``,
        ``.node_id``, ``.get_websocket_uri(port)``), else None."""
        return self._network_node

    def get_deploy_args(self) -> DeployArgs:
        """The ``deploy`` command's arguments: the network and hosts when on one, else {}."""
        return self._network_node.get_deploy_args() if self._network_node is not None else {}

    @property
    def is_available(self) -> bool:
        return self.state in (ServiceState.starting, ServiceState.running, ServiceState.stopping)

    async def start(self) -> HandlerGen:
        """Deploy and start the VM; override and call `async for s in super().start()`."""
        script = self._ctx.new_script()
        script.deploy(**self.get_deploy_args())
        script.start()
        yield script

    async def run(self) -> HandlerGen:
        """Runs while the instance is running; the default just waits to be stopped."""
        await anyio.sleep_forever()
        yield self._ctx.new_script()  # pragma: no cover - unreachable

    async def shutdown(self) -> HandlerGen:
        """Runs once when a running instance stops; the default terminates the VM."""
        script = self._ctx.new_script()
        script.terminate()
        yield script

    def snapshot(self) -> InstanceSnapshot:
        return InstanceSnapshot(
            service=self.service,
            index=self.index,
            state=self.state,
            provider_id=self.provider_id,
            provider_name=self.provider_name,
            agreement_id=self.agreement_id,
            activity_id=self.activity_id,
            started_at=self.started_at,
            restarts=self.restarts,
            cost=self.cost,
            last_output=self.last_output,
            reason=self.reason,
            restart_scheduled=self.restart_scheduled,
            ip=self._network_address,
            download=self._download,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state.value}>"
