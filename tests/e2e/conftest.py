"""End-to-end fixtures: the golem-deploy CLI run as a subprocess, as a user runs it.

Every test gets its own GOLEM_DEPLOY_HOME, so its deployments, supervisors and private local
networks are its own. At teardown everything a test left running is ended, also when the
test failed: deployments go `down --force`, local networks are stopped by their state dirs,
and any process still tied to the home folder is killed by pid.
"""

from _cli_helpers import cli, external_net

__all__ = ["cli", "external_net"]
