"""golem-deploy: declarative service deployments on the Golem Network."""

__version__ = "0.1.0"
