"""The embedded lifecycle engine: a yapapi-shaped Services API over yagna's REST API.

from golem_deploy.engine import Golem, Service, Cluster, ServiceState, vm
"""

from golem_deploy.engine import payload as vm
from golem_deploy.engine.cluster import Cluster, HealthcheckConfig
from golem_deploy.engine.golem import EngineError, Golem
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.market import PriceCaps
from golem_deploy.engine.payload import VmPayload
from golem_deploy.engine.service import (
    CommandFailed,
    CommandResult,
    InstanceSnapshot,
    Script,
    Service,
    WorkContext,
)

__all__ = [
    "Cluster",
    "CommandFailed",
    "CommandResult",
    "EngineError",
    "Golem",
    "HealthcheckConfig",
    "InstanceSnapshot",
    "PriceCaps",
    "Script",
    "Service",
    "ServiceState",
    "VmPayload",
    "WorkContext",
    "vm",
]
