"""Property tests: whatever the input, loading gives a Manifest or a clean ManifestError,
never another exception; and `config` output loads back to the same Manifest."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_deploy.cli.validate import to_yaml
from golem_deploy.manifest import ManifestError, check_manifest, load_manifest
from golem_deploy.manifest.dump import manifest_to_data
from golem_deploy.manifest.load import parse_yaml
from golem_deploy.manifest.model import PortSpec
from golem_deploy.manifest.ports import format_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "manifests").glob("*.yaml"))
SETTINGS = settings(
    max_examples=int(os.environ.get("MANIFEST_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["10s", "1h30m", "0s", "-1", "${X}", "$$", "golem/alpine:latest", "/bin/sh"]),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _check_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_text(text)
        result = check_manifest(path)
        assert (result.manifest is None) == bool(result.errors)
        for d in result.diagnostics:
            assert d.path == str(path) and d.message


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_never_crashes_the_parser(text: str) -> None:
    try:
        parse_yaml(text, "m.yaml")
    except ManifestError as e:
        assert e.diagnostics


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_bytes(data)
        result = check_manifest(path)
        assert (result.manifest is None) == bool(result.errors)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_paths(value, (*prefix, i)))
    return found


@st.composite
def mutated_manifests(draw: st.DrawFn) -> str:
    """An example manifest (as resolved data) with a few random edits."""
    example = draw(st.sampled_from(EXAMPLES))
    data = copy.deepcopy(manifest_to_data(load_manifest(example)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "rename"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = parent.pop(path[-1])
    return json.dumps(data)  # JSON is YAML; quoting keeps strings strings


# Networking (issue 12): values near the valid ones, so the fuzzing reaches the rules and
# not only the schema.
port_entries = st.one_of(
    st.integers(min_value=-1, max_value=70000),
    st.text(alphabet="0123456789:./-tcpu[] ", max_size=20),
    st.sampled_from(["8080:8000", "0.0.0.0:8080:80", "127.0.0.1::80", "80/udp", "1:2:3:4"]),
)
cidrs = st.one_of(
    st.builds(lambda a, p: f"10.{a}.0.0/{p}", st.integers(0, 300), st.integers(0, 34)),
    st.text(alphabet="0123456789./", max_size=18),
)
network_values = st.one_of(
    st.booleans(), st.just({}), st.builds(lambda c: {"cidr": c}, cidrs), values
)
probes = st.one_of(
    st.just({"run": "true"}),
    st.builds(lambda p: {"tcp": p}, st.integers(-1, 70000)),
    st.builds(
        lambda p, path: {"http": {"port": p, "path": path}},
        st.integers(0, 70000),
        st.sampled_from(["/", "/health", "health", ""]),
    ),
    st.builds(lambda a, b: {**a, **b}, st.just({"run": "true"}), st.just({"tcp": 80})),
    st.just({}),
)


@st.composite
def networked_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """An example manifest (as resolved data) given random ports, network and probes."""
    example = draw(st.sampled_from(EXAMPLES))
    data = copy.deepcopy(manifest_to_data(load_manifest(example)))
    if draw(st.booleans()):
        data["network"] = draw(network_values)
    else:
        del data["network"]
    for service in data["services"].values():
        service["ports"] = draw(st.lists(port_entries, max_size=3))
        if draw(st.booleans()):
            service["healthcheck"] = {**draw(probes), "interval": "5s"}
        service["instances"] = draw(st.integers(min_value=0, max_value=70))
    return data


@SETTINGS
@given(networked_manifests())
def test_networked_manifests_give_a_manifest_or_clean_errors(data: dict[str, Any]) -> None:
    _check_text(json.dumps(data))


@st.composite
def valid_networked_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """An example manifest with valid networking: a range that fits, forwarded ports whose
    local addresses never repeat, http/tcp probes."""
    example = draw(st.sampled_from(EXAMPLES))
    data = copy.deepcopy(manifest_to_data(load_manifest(example)))
    data["network"] = draw(
        st.sampled_from([True, {}, {"cidr": "10.8.0.0/24"}, {"cidr": "172.16.0.0/20"}])
    )
    host_ports = iter(draw(st.lists(st.integers(1, 65535), unique=True, min_size=9, max_size=9)))
    for service in data["services"].values():
        specs = [
            PortSpec(
                draw(st.sampled_from(["127.0.0.1", "0.0.0.0", "10.1.2.3"])),
                next(host_ports) if draw(st.booleans()) else None,
                draw(st.integers(1, 65535)),
            )
            for _ in range(draw(st.integers(0, 3)))
        ]
        service["ports"] = [
            s.port if s.host_port is None and s.host == "127.0.0.1" else format_port(s)
            for s in specs
        ]
        probe = draw(
            st.sampled_from(
                [
                    {"tcp": 6379},
                    {"http": {"port": 8000}},
                    {"http": {"port": 80, "path": "/health?x=1"}},
                    {"run": ["/bin/true"]},
                ]
            )
        )
        service["healthcheck"] = {**probe, "retries": draw(st.integers(1, 5))}
    return data


@SETTINGS
@given(valid_networked_manifests())
def test_config_output_of_networked_manifests_loads_back_the_same(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        copied = Path(folder) / "manifests"
        shutil.copytree(REPO / "manifests", copied)
        path = copied / "networked.yaml"
        path.write_text(json.dumps(data))
        result = check_manifest(path)
        assert result.manifest is not None, [d.format() for d in result.errors]
        manifest = result.manifest
        assert manifest.network is not None
        assert all("vpn" in s.payload.capabilities for s in manifest.services.values())
        resolved = copied / "resolved.yaml"
        resolved.write_text(to_yaml(manifest_to_data(manifest)))
        again = load_manifest(resolved)
        assert dataclasses.replace(again, path=manifest.path) == manifest


@SETTINGS
@given(mutated_manifests())
def test_mutated_manifests_give_a_manifest_or_clean_errors(text: str) -> None:
    _check_text(text)


@SETTINGS
@given(mutated_manifests())
def test_mutated_manifests_as_block_yaml(text: str) -> None:
    _check_text(to_yaml(json.loads(text)))


def test_config_output_loads_back_to_the_same_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", folder)
    for example in sorted(folder.glob("*.yaml")):
        manifest = load_manifest(example)
        resolved = folder / f"resolved-{example.name}"
        resolved.write_text(to_yaml(manifest_to_data(manifest)))
        again = load_manifest(resolved)
        assert dataclasses.replace(again, path=manifest.path) == manifest
