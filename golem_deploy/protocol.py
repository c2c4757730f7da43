"""The Golem protocol vocabulary: property names, usage counters, activity states, subnet.

Requestor and provider side must spell these exactly alike (a typo is a silent mismatch:
a demand that never meets an offer, a counter that bills nothing), so they live here once
and both the engine and the local network import them. Names follow the Golem standards
(golem.inf.*, golem.com.*, ...); the `golem_deploy.*` ones are golem-deploy's own extension,
understood only by its local providers.

Plain strings, not enums, on purpose: they are keys and values of JSON documents that yagna
passes through untouched.
"""

from __future__ import annotations

from enum import StrEnum

# ---------------------------------------------------------------- the service (golem.srv.*)

TASK_PACKAGE = "golem.srv.comp.task_package"
PACKAGE_FORMAT = "golem.srv.comp.vm.package_format"
EXPIRATION = "golem.srv.comp.expiration"
MULTI_ACTIVITY = "golem.srv.caps.multi-activity"
PAYLOAD_MANIFEST = "golem.srv.caps.payload-manifest"

# ---------------------------------------------------------------- the node (golem.node.*)

NODE_NAME = "golem.node.id.name"
SUBNET = "golem.node.debug.subnet"
IS_PUBLIC = "golem.node.net.is-public"

# ---------------------------------------------------------------- infrastructure (golem.inf.*)

MEM_GIB = "golem.inf.mem.gib"
STORAGE_GIB = "golem.inf.storage.gib"
CPU_CORES = "golem.inf.cpu.cores"
CPU_THREADS = "golem.inf.cpu.threads"
CPU_ARCHITECTURE = "golem.inf.cpu.architecture"
CPU_VENDOR = "golem.inf.cpu.vendor"
CPU_BRAND = "golem.inf.cpu.brand"
CPU_CAPABILITIES = "golem.inf.cpu.capabilities"

# ---------------------------------------------------------------- runtime and activity caps

RUNTIME_NAME = "golem.runtime.name"
RUNTIME_VERSION = "golem.runtime.version"
RUNTIME_CAPABILITIES = "golem.runtime.capabilities"
TRANSFER_PROTOCOLS = "golem.activity.caps.transfer.protocol"
TRANSFER_REPORTS_PROGRESS = "golem.activity.caps.transfer.report-progress"
DEPLOY_REPORTS_PROGRESS = "golem.activity.caps.deploy.report-progress"

# ---------------------------------------------------------------- commercial (golem.com.*)

PRICING_MODEL = "golem.com.pricing.model"
LINEAR_COEFFS = "golem.com.pricing.model.linear.coeffs"
USAGE_VECTOR = "golem.com.usage.vector"
SCHEME = "golem.com.scheme"
#: The trailing `?` is part of the names: yagna's marker of a negotiable property.
DEBIT_NOTE_INTERVAL = "golem.com.scheme.payu.debit-note.interval-sec?"
PAYMENT_TIMEOUT = "golem.com.scheme.payu.payment-timeout-sec?"
DEBIT_NOTE_ACCEPT_TIMEOUT = "golem.com.payment.debit-notes.accept-timeout?"
PAYMENT_PLATFORM_PREFIX = "golem.com.payment.platform."
CHOSEN_PLATFORM = "golem.com.payment.chosen-platform"
PAYMENT_PROTOCOL_VERSION = "golem.com.payment.protocol.version"


def platform_address(platform: str) -> str:
    """The offer property naming a provider's address on `platform`."""
    return f"{PAYMENT_PLATFORM_PREFIX}{platform}.address"


# ---------------------------------------------------------------- usage counters

CPU_SEC = "golem.usage.cpu_sec"
DURATION_SEC = "golem.usage.duration_sec"

# ---------------------------------------------------------------- reasons (rejections, ends)

REJECTION_IS_FINAL = "golem.proposal.rejection.is-final"
PROVIDER_CODE = "golem.provider.code"
REQUESTOR_CODE = "golem.requestor.code"

# ---------------------------------------------------------------- activity states


class ActivityStateName(StrEnum):
    """The states of an activity as yagna names them (a StrEnum: equal to those strings)."""

    NEW = "New"
    INITIALIZED = "Initialized"
    DEPLOYED = "Deployed"
    READY = "Ready"
    TERMINATED = "Terminated"
    UNRESPONSIVE = "Unresponsive"


# ---------------------------------------------------------------- golem-deploy's local network

#: The subnet of every golem-deploy local network: its providers serve only this one.
LOCAL_SUBNET = "local-dev"
#: The payment platform of the local providers (driver-network-token).
LOCAL_PLATFORM = "erc20-holesky-tglm"
#: Demand property (JSON {container path: absolute host path}): read-only bind mounts.
LOCAL_MOUNTS = "golem_deploy.local.mounts"
LOCAL_IMAGE = "golem_deploy.local.image"  # local.image: a .gvmi file or image tree here


MAINNET_NETWORKS = ("mainnet", "polygon")


def payment_platform(driver: str, network: str) -> str:
    """`<driver>-<network>-<token>` as yapapi builds it (glm on mainnets, tglm elsewhere)."""
    token = "glm" if network in MAINNET_NETWORKS else "tglm"
    return f"{driver}-{network}-{token}"
