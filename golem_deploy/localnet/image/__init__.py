"""Payload images for the local network: the ``.gvmi`` format and the shared image cache."""

from golem_deploy.localnet.image.cache import CachedImage, ImageCache, ImageUnreachable
from golem_deploy.localnet.image.gvmi import (
    ImageConfig,
    ImageError,
    TaskPackage,
    metadata_trailer,
    parse_task_package,
    read_config,
)

__all__ = [
    "CachedImage",
    "ImageCache",
    "ImageConfig",
    "ImageError",
    "ImageUnreachable",
    "TaskPackage",
    "metadata_trailer",
    "parse_task_package",
    "read_config",
]
