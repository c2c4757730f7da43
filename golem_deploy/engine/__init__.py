"""The embedded lifecycle engine: a yapapi-shaped Services API over yagna's REST API.

from golem_deploy.engine import Golem, Service, Cluster, ServiceState, vm

Layout (imports run one way): golem -> cluster -> runner -> {attempt, executor, watcher,
handlers} -> context; lifecycle (the pure instance state machine), config (typed service
configuration), market, payments, storage and events are used by all of them.
"""

from golem_deploy.engine import payload as vm
from golem_deploy.engine import yapapi_events
from golem_deploy.engine.api_config import ApiConfig, MissingConfiguration
from golem_deploy.engine.cluster import Cluster
from golem_deploy.engine.compat import (
    NoPaymentAccountError,
    __version__,
    enable_default_logger,
    windows_event_loop_fix,
)
from golem_deploy.engine.config import (
    HealthCheck,
    HealthcheckConfig,
    HttpProbe,
    PriceCaps,
    RestartPolicy,
)
from golem_deploy.engine.golem import EngineError, Golem
from golem_deploy.engine.lifecycle import RenewalPolicy, ServiceState
from golem_deploy.engine.network import Network, NetworkPlan, Node
from golem_deploy.engine.payload import VmPayload
from golem_deploy.engine.payment_terms import PaymentTerms
from golem_deploy.engine.runner import ServiceRunnerError
from golem_deploy.engine.script_args import CaptureContext, ProgressArgs
from golem_deploy.engine.service import (
    BatchError,
    BatchTimeoutError,
    CommandExecutionError,
    CommandFailed,
    CommandResult,
    InstanceSnapshot,
    Script,
    Service,
    WorkContext,
)
from golem_deploy.engine.summary import SummaryLogger, log_event_repr, log_summary
from golem_deploy.engine.timing import Timings

__all__ = [
    "ApiConfig",
    "BatchError",
    "BatchTimeoutError",
    "CaptureContext",
    "Cluster",
    "CommandExecutionError",
    "CommandFailed",
    "CommandResult",
    "EngineError",
    "Golem",
    "HealthCheck",
    "HealthcheckConfig",
    "HttpProbe",
    "InstanceSnapshot",
    "MissingConfiguration",
    "Network",
    "NetworkPlan",
    "NoPaymentAccountError",
    "Node",
    "PaymentTerms",
    "PriceCaps",
    "ProgressArgs",
    "RenewalPolicy",
    "RestartPolicy",
    "Script",
    "Service",
    "ServiceRunnerError",
    "ServiceState",
    "SummaryLogger",
    "Timings",
    "VmPayload",
    "WorkContext",
    "__version__",
    "enable_default_logger",
    "log_event_repr",
    "log_summary",
    "vm",
    "windows_event_loop_fix",
    "yapapi_events",
]
