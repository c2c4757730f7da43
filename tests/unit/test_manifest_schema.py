"""The published JSON Schema: valid 2020-12, the copy the code uses, documented, and in
agreement with the model's defaults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from golem_deploy.manifest import model
from golem_deploy.manifest.network import DEFAULT_CIDR
from golem_deploy.manifest.validate import schema, schema_text

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "schemas" / "manifest.schema.json"
PACKAGED = REPO / "golem_deploy" / "schemas" / "manifest.schema.json"


def test_the_code_uses_the_published_schema() -> None:
    assert PACKAGED.read_text() == PUBLISHED.read_text(), (
        "golem_deploy/schemas/manifest.schema.json must be a copy of schemas/; "
        "run: cp schemas/manifest.schema.json golem_deploy/schemas/"
    )
    assert schema_text() == PUBLISHED.read_text()


def test_the_schema_ships_in_the_package() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"]["package-data"]["golem_deploy"]
    assert "schemas/*.json" in package_data


def test_schema_is_valid_2020_12_and_its_examples_validate() -> None:
    loaded = json.loads(PUBLISHED.read_text())
    assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(loaded)
    validator = Draft202012Validator(loaded)
    for example in loaded["examples"]:
        assert list(validator.iter_errors(example)) == []


def _fields(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every (path, schema) of a named field: properties, plus $defs entries."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            found.append((f"{path}.{name}", sub))
        for key, value in node.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                for name, sub in value.items():
                    found.extend(_fields(sub, f"{path}.{name}"))
            elif isinstance(value, dict):
                found.extend(_fields(value, f"{path}.{key}"))
    return found


def test_every_field_has_a_description() -> None:
    loaded = schema()
    missing = [path for path, sub in _fields(loaded) if "description" not in sub]
    assert missing == []
    assert all("description" in d for d in loaded["$defs"].values())


def test_typos_are_caught_where_they_matter() -> None:
    loaded = schema()
    defs = loaded["$defs"]
    service = defs["service"]["properties"]
    for node in (
        loaded,
        defs["payload"],
        defs["service"],
        defs["upload"],
        defs["download"],
        loaded["properties"]["network"],
        service["healthcheck"],
        service["healthcheck"]["properties"]["http"],
    ):
        assert node["additionalProperties"] is False


def test_schema_defaults_document_the_model_defaults() -> None:
    defs = schema()["$defs"]
    service = defs["service"]["properties"]
    payload = defs["payload"]["properties"]
    for key in ("runtime", "min_mem_gib", "min_storage_gib", "min_cpu_threads"):
        assert payload[key]["default"] == getattr(model.Payload(), key)
    spec = model.ServiceSpec(name="x", payload=model.Payload())
    assert service["instances"]["default"] == spec.instances
    assert service["respawn_unstarted_instances"]["default"] == spec.respawn_unstarted_instances
    assert service["expiration"]["default"] == "1h" and spec.expiration == 3600.0
    restart = service["restart"]["properties"]
    assert restart["policy"]["default"] == model.RestartPolicy().policy
    assert restart["max_restarts"]["default"] == model.RestartPolicy().max_restarts
    assert restart["backoff"]["default"] == "5s" and model.RestartPolicy().backoff == 5.0
    update = service["update"]["properties"]["parallelism"]
    assert update["default"] == model.UpdatePolicy().parallelism and update["minimum"] == 1
    check = service["healthcheck"]["properties"]
    assert check["interval"]["default"] == "30s" and model.Healthcheck().interval == 30.0
    assert check["retries"]["default"] == model.Healthcheck().retries
    assert check["http"]["properties"]["path"]["default"] == model.HttpProbe(80).path
    assert service["ports"]["default"] == list(spec.ports)
    top = schema()["properties"]
    assert top["subnet"]["default"] == "public"
    assert top["network"]["properties"]["cidr"]["default"] == DEFAULT_CIDR
    assert top["payment"]["properties"]["driver"]["default"] == model.Payment().driver
    assert top["payment"]["properties"]["network"]["default"] == model.Payment().network


def test_an_installed_copy_of_the_package_finds_its_schema(tmp_path: Path) -> None:
    """Installed (non-editable), only the package is there: no repo, no top-level schemas/."""
    site = tmp_path / "site-packages"
    shutil.copytree(
        REPO / "golem_deploy", site / "golem_deploy", ignore=shutil.ignore_patterns("__pycache__")
    )
    probe = (
        "import golem_deploy, sys\n"
        "from golem_deploy.manifest import check_manifest\n"
        "from golem_deploy.manifest.validate import schema_text\n"
        "result = check_manifest(sys.argv[1])\n"
        "assert result.manifest is not None, result.diagnostics\n"
        "print(golem_deploy.__file__)\n"
        "sys.stdout.write(schema_text())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(REPO / "manifests" / "hello-world.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    where, text = done.stdout.split("\n", 1)
    assert where == str(site / "golem_deploy" / "__init__.py")
    assert text == PUBLISHED.read_text()
