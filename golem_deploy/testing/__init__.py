"""Helpers the test suite and the benchmarks (bench/) share: small services to deploy and
the manifests for them. Nothing in golem-deploy itself imports this package."""
