"""The embedded lifecycle engine: a yapapi-shaped Services API over yagna's REST API.

from golem_deploy.engine import Golem, Service, Cluster, ServiceState, vm

Layout (imports run one way): golem -> cluster -> runner -> {attempt, executor, watcher,
handlers} -> context; lifecycle (the pure instance state machine), config (typed service
configuration), market, payments, storage and events are used by all of them.
"""

from golem_deploy.engine import payload as vm
from golem_deploy.engine.cluster import Cluster
from golem_deploy.engine.config import (
    HealthCheck,
    HealthcheckConfig,
    HttpProbe,
    PriceCaps,
    RestartPolicy,
)
from golem_deploy.engine.golem import EngineError, Golem
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.network import Network, NetworkPlan, Node
from golem_deploy.engine.payload import VmPayload
from golem_deploy.engine.payment_terms import PaymentTerms
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
from golem_deploy.engine.timing import Timings

__all__ = [
    "BatchError",
    "BatchTimeoutError",
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
    "Network",
    "NetworkPlan",
    "Node",
    "PaymentTerms",
    "PriceCaps",
    "RestartPolicy",
    "Script",
    "Service",
    "ServiceState",
    "Timings",
    "VmPayload",
    "WorkContext",
    "vm",
]
