"""`python -m golem_deploy` is the same program as the `golem-deploy` script."""

from golem_deploy.cli.entry import main

main()
