"""`golem-deploy export`: the yapapi 0.13 program it prints compiles, defines the services,
and its handlers send the same commands as the classes golem-deploy itself runs."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from golem_deploy.compiler import compile_manifest, export_source
from golem_deploy.engine.service import WorkContext
from golem_deploy.manifest import load_manifest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "manifests").glob("*.yaml"))
HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "golem_deploy", *args], capture_output=True, text=True, timeout=60
    )


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    """Every call of `name` or `x.name` in the tree."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == name:
                found.append(node)
    return found


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_export_compiles_and_defines_the_services(example: Path) -> None:
    result = cli("export", str(example))
    assert result.returncode == 0, result.stderr
    source = result.stdout
    compile(source, f"{example.stem}.py", "exec")
    tree = ast.parse(source)
    manifest = load_manifest(example)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    expected = {c.__name__ for c in compile_manifest(manifest).values()}
    assert set(classes) == expected
    for cls in classes.values():
        assert [b.id for b in cls.bases if isinstance(b, ast.Name)] == ["Service"]
        [repo] = calls(cls, "repo")
        kwargs = {k.arg for k in repo.keywords}
        assert {"min_mem_gib", "min_storage_gib", "min_cpu_threads"} <= kwargs
        assert kwargs & {"image_hash", "image_tag"}
    [golem] = calls(tree, "Golem")
    assert {k.arg for k in golem.keywords} == {
        "budget", "subnet_tag", "payment_driver", "payment_network", "strategy",
    }  # fmt: skip
    [run_service] = calls(tree, "run_service")
    assert {k.arg for k in run_service.keywords} == {
        "num_instances", "expiration", "network", "network_addresses",
    }  # fmt: skip
    [create_network] = calls(tree, "create_network")
    assert [ast.unparse(a) for a in create_network.args] == ["NETWORK_CIDR"]
    cidr = manifest.network.cidr if manifest.network is not None else None
    assert f"NETWORK_CIDR = {cidr!r}" in source
    assert "from yapapi import Golem" in source
    assert f"BUDGET = Decimal({str(manifest.budget)!r})" in source


def test_export_puts_every_instance_at_its_planned_address(
    tmp_path: Path, fake_yapapi: None
) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        budget: 1
        network: {{cidr: 10.8.0.0/24}}
        services:
          db: {{payload: {{image_hash: {HASH}}}}}
          web:
            instances: 2
            depends_on: [db]
            payload: {{image_hash: {HASH}}}
            ports: ["8080:8000"]
            healthcheck: {{http: {{port: 8000, path: /health}}}}
        """)
    )
    source = export_source(load_manifest(path))
    namespace: dict[str, Any] = {"__file__": str(tmp_path / "program.py")}
    exec(compile(source, "program.py", "exec"), namespace)
    assert namespace["NETWORK_CIDR"] == "10.8.0.0/24"
    assert namespace["HOSTS"] == {
        "db": "10.8.0.2", "db-0": "10.8.0.2",
        "web": "10.8.0.3", "web-0": "10.8.0.3", "web-1": "10.8.0.4",
    }  # fmt: skip
    waves = [[(cls.__name__, *rest) for cls, *rest in wave] for wave in namespace["START_ORDER"]]
    assert waves == [
        [("Db", 1, 3600.0, ["10.8.0.2"])],
        [("Web", 2, 3600.0, ["10.8.0.3", "10.8.0.4"])],
    ]
    docstring = ast.get_docstring(ast.parse(source)) or ""
    assert "forwarded ports" in docstring and "http and tcp probes" in docstring


def test_export_without_a_network_passes_none(tmp_path: Path, fake_yapapi: None) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(f"budget: 1\nservices:\n  db: {{payload: {{image_hash: {HASH}}}}}\n")
    namespace: dict[str, Any] = {"__file__": str(tmp_path / "program.py")}
    exec(compile(export_source(load_manifest(path)), "program.py", "exec"), namespace)
    assert namespace["NETWORK_CIDR"] is None and "HOSTS" not in namespace
    assert [entry[3] for wave in namespace["START_ORDER"] for entry in wave] == [None]


def test_export_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "program.py"
    result = cli("export", str(EXAMPLES[0]), "-o", str(out))
    assert result.returncode == 0
    assert out.read_text().startswith("#!/usr/bin/env python3\n")
    assert os.access(out, os.X_OK)


def test_export_of_an_invalid_manifest_fails_cleanly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget: 1\n")
    result = cli("export", str(bad))
    assert result.returncode == 1 and result.stdout == ""
    assert f"{bad}:1:1: error: top level: missing required key 'services'" in result.stderr


# ---------------------------------------------------------------- behaviour, with a fake yapapi


class _Script:
    def __init__(self) -> None:
        self.commands: list[Any] = []

    def deploy(self, **kwargs: Any) -> None:
        self.commands.append(("deploy", kwargs))

    def start(self, *args: str) -> None:
        self.commands.append(("start", list(args)))

    def run(self, *argv: str) -> None:
        self.commands.append(("run", list(argv)))

    def upload_file(self, src: str, dst: str) -> None:
        self.commands.append(("upload", Path(src).resolve(), dst))

    def download_file(self, src: str, dst: str) -> None:
        self.commands.append(("download", src, Path(dst).resolve()))


class _Ctx:
    def new_script(self) -> _Script:
        return _Script()


@pytest.fixture
def fake_yapapi() -> Iterator[None]:
    """Just enough of yapapi's module layout for the exported module to import."""

    class Service:
        def get_deploy_args(self) -> dict[str, Any]:
            return {}  # yapapi's, off a VPN

    modules = {
        "yapapi": {"Golem": object},
        "yapapi.contrib": {},
        "yapapi.contrib.strategy": {"ProviderFilter": object},
        "yapapi.payload": {"vm": types.SimpleNamespace(repo=None)},
        "yapapi.props": {"com": types.SimpleNamespace(Counter=None)},
        "yapapi.services": {"Service": Service, "ServiceState": object},
        "yapapi.strategy": {"LeastExpensiveLinearPayuMS": object},
    }
    saved = {name: sys.modules.get(name) for name in modules}
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


async def _first_scripts(gen: Any, count: int) -> list[list[Any]]:
    out = []
    for _ in range(count):
        script = await gen.asend(None)
        out.append([_normalize(step) for step in getattr(script, "commands", None) or script.steps])
    await gen.aclose()
    return out


def _normalize(step: Any) -> Any:
    """Engine script steps and fake yapapi commands in one comparable form."""
    if isinstance(step, tuple):
        return step
    command = step.command
    if "run" in command:
        return ("run", [command["run"]["entry_point"], *command["run"]["args"]])
    if "deploy" in command:
        return ("deploy", command["deploy"])
    if "start" in command:
        return ("start", command["start"]["args"])
    return ("transfer", step.describe)


def test_exported_handlers_send_what_the_engine_sends(tmp_path: Path, fake_yapapi: None) -> None:
    (tmp_path / "in.txt").write_text("x")
    path = tmp_path / "app.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        budget: 1
        services:
          api-server:
            payload: {{image_hash: {HASH}}}
            env: {{MODE: test}}
            start: [[/bin/echo, hi], {{run: "echo $MODE"}}]
            run: {{every: 10ms, steps: [[/bin/date]]}}
            shutdown: [{{upload: {{src: in.txt, dst: /golem/work/in.txt}}}}]
        """)
    )
    manifest = load_manifest(path)
    namespace: dict[str, Any] = {"__file__": str(tmp_path / "program.py")}
    exec(compile(export_source(manifest), "program.py", "exec"), namespace)
    exported = namespace["ApiServer"]()
    exported._ctx = _Ctx()
    compiled = compile_manifest(manifest)["api-server"]()
    compiled._ctx = WorkContext(
        activity_id="a", agreement_id="b", provider_id="c", provider_name="d"
    )

    async def both() -> None:
        start = await _first_scripts(exported.start(), 1)
        assert start == await _first_scripts(compiled.start(), 1)
        assert start[0] == [  # one batch, as the engine sends it
            ("deploy", {}),
            ("start", []),
            ("run", ["/usr/bin/env", "MODE=test", "/bin/echo", "hi"]),
            ("run", ["/usr/bin/env", "MODE=test", "/bin/sh", "-c", "echo $MODE"]),
        ]
        assert await _first_scripts(exported.run(), 2) == await _first_scripts(compiled.run(), 2)
        [shutdown] = await _first_scripts(exported.shutdown(), 1)
        assert shutdown == [("upload", (tmp_path / "in.txt").resolve(), "/golem/work/in.txt")]

    anyio.run(both)


# With the real yapapi: run_service takes the network arguments the program passes, and an
# instance on the network deploys with yapapi's `net` plus the deployment's `hosts`.
_YAPAPI_NETWORK_CHECK = """
import inspect, types
from yapapi import Golem
from yapapi.network import Node
params = inspect.signature(Golem.run_service).parameters
assert {"network", "network_addresses"} <= set(params), params
if ns["NETWORK_CIDR"]:
    # what yapapi's Node reads of its network (a real Network needs a yagna to be created)
    net = types.SimpleNamespace(
        network_id="n1", network_address="192.168.0.0", netmask="255.255.255.0", nodes_dict={}
    )
    for service_class, _, _, addresses in ns["START_ORDER"][0]:
        instance = service_class()
        instance._set_network_node(Node(net, "0xp1", addresses[0]))
        args = instance.get_deploy_args()
        assert args["net"][0]["nodeIp"] == addresses[0], args
        assert args["hosts"] == ns["HOSTS"], args
        instance._clear_network_node()
        assert instance.get_deploy_args() == {}
"""


def test_export_with_real_yapapi_when_available(tmp_path: Path) -> None:
    """With GOLEM_DEPLOY_TEST_YAPAPI_PYTHON (a python with yapapi 0.13.1), the program
    imports and builds its market strategy with the real library."""
    python = os.environ.get("GOLEM_DEPLOY_TEST_YAPAPI_PYTHON")
    if not python:
        pytest.skip("set GOLEM_DEPLOY_TEST_YAPAPI_PYTHON to a python with yapapi 0.13.1")
    for example in EXAMPLES:
        out = tmp_path / f"{example.stem}.py"
        out.write_text(export_source(load_manifest(example), output=out))
        check = (
            "import runpy, sys; ns = runpy.run_path(sys.argv[1], run_name='exported'); "
            "ns['make_strategy'](); print(sorted(n for n in ns if n[:1].isupper()))"
        ) + _YAPAPI_NETWORK_CHECK
        result = subprocess.run(
            [python, "-c", check, str(out)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr


def test_export_says_when_payment_terms_are_not_carried_over(tmp_path: Path) -> None:
    text = (REPO / "manifests" / "hello-world.yaml").read_text()
    plain = tmp_path / "plain.yaml"
    plain.write_text(text)
    asked = tmp_path / "asked.yaml"
    asked.write_text(text + "payment: {debit_note_interval: 10s}\n")
    assert "payment.debit_note_interval" not in export_source(load_manifest(plain))
    assert "payment.debit_note_interval" in export_source(load_manifest(asked))
