"""The code base stays typed, lint-clean and layered: a contributor's first run says so.

mypy --strict and ruff are configured in pyproject.toml; running them here keeps CI honest
without a separate lint job. The architecture checks read golem_deploy/ with `ast` (nothing
is imported, so they are fast and see lazy imports too):

- no import cycles between modules, counting imports inside functions (a lazy import is
  still a dependency) but not `if TYPE_CHECKING:` ones (those never run);
- no module over 400 lines unless its docstring says why, on a line starting with `Size:`;
- no `Any` at a layer boundary: a public name (function, method, class attribute, dataclass
  field) of cli/, supervisor/, compiler.py, engine/, yagna/ or localnet/ that a module of
  another layer imports must not mention `Any` in its annotations. Inside a layer `Any` is a
  local decision; across one it hides a contract from mypy.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "golem_deploy"
MAX_LINES = 400
LAYERS = ("cli", "supervisor", "compiler", "engine", "yagna", "localnet")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy", "golem_deploy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint_is_clean() -> None:
    result = _run("ruff", "check", "golem_deploy", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run("ruff", "format", "--check", "golem_deploy", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- the source


@dataclass(frozen=True)
class Module:
    name: str  # golem_deploy.engine.cluster
    file: Path
    tree: ast.Module
    lines: int

    @property
    def is_package(self) -> bool:
        return self.file.name == "__init__.py"

    @property
    def layer(self) -> str:
        """engine, cli, ... for the packages; the module's own name for top-level ones."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    @property
    def shown(self) -> str:
        return str(self.file.relative_to(ROOT))


@cache
def modules() -> dict[str, Module]:
    found = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = list(file.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        text = file.read_text("utf-8")
        name = ".".join(parts)
        found[name] = Module(name, file, ast.parse(text, str(file)), len(text.splitlines()))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, *, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, in functions too; those in the body of `if
    TYPE_CHECKING:` only when `type_checking` (that body never runs; an `else:` does)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test) and not type_checking:
            yield from _imports(ast.Module(body=child.orelse, type_ignores=[]), type_checking=False)
        else:
            yield from _imports(child, type_checking=type_checking)


def _source_module(module: Module, node: ast.ImportFrom) -> str:
    """The absolute name of `from X import ...` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imported(module: Module, *, type_checking: bool) -> Iterator[tuple[str, str | None]]:
    """(module, name) for each imported name: name is None for `import X` and for
    `from P import submodule` (the module itself is what is imported)."""
    known = modules()
    for node in _imports(module.tree, type_checking=type_checking):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
            continue
        source = _source_module(module, node)
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            yield (submodule, None) if submodule in known else (source, alias.name)


# --------------------------------------------------------------------------- (a) cycles


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (at run time, at any depth of its code)."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, module in known.items():
        for target, _ in _imported(module, type_checking=False):
            if target in known and target != name:
                graph[name].add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """For each group of modules that import each other (a strongly connected component):
    one cycle path through it (a -> b -> ... -> a), and the group's other members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles = [_cycle_through(min(group), group, graph) for group in groups]
    return [(path, sorted(group - set(path))) for path, group in zip(cycles, groups, strict=True)]


def _cycle_through(start: str, group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest path start -> ... -> start inside `group` (breadth-first)."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - Tarjan said so


def test_architecture_no_import_cycles() -> None:
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(
        "  " + " -> ".join(path) + (f"  (also in this circle: {', '.join(more)})" if more else "")
        for path, more in cycles
    )


def test_cycle_finder_reports_the_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert import_cycles(graph) == [(["a", "b", "c", "a"], [])]
    graph["b"].add("a")
    assert import_cycles(graph) == [(["a", "b", "a"], ["c"])]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_imports_in_functions_count_but_type_checking_ones_do_not() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import golem_deploy.errors\n"
        "def f():\n    from golem_deploy import paths\n"
    )
    module = Module("golem_deploy.x", PACKAGE / "x.py", tree, 5)
    runtime = {target for target, _ in _imported(module, type_checking=False)}
    assert runtime == {"typing", "golem_deploy.paths"}


# --------------------------------------------------------------------------- (b) size


def _states_size_reason(module: Module) -> bool:
    doc = ast.get_docstring(module.tree) or ""
    return any(line.strip().startswith("Size:") for line in doc.splitlines())


def test_architecture_no_module_over_400_lines_without_a_reason() -> None:
    too_long = sorted(
        (m for m in modules().values() if m.lines > MAX_LINES and not _states_size_reason(m)),
        key=lambda m: -m.lines,
    )
    assert not too_long, (
        f"modules over {MAX_LINES} lines: split them, or say why not in the module "
        "docstring on a line starting with `Size:`\n"
        + "\n".join(f"  {m.shown}: {m.lines} lines" for m in too_long)
    )


def test_only_a_size_line_in_the_docstring_excuses_a_long_module() -> None:
    def module(source: str) -> Module:
        return Module("golem_deploy.x", PACKAGE / "x.py", ast.parse(source), 900)

    assert _states_size_reason(module('"""Parser.\n\nSize: one job, the grammar."""'))
    assert not _states_size_reason(module('"""Parser; its size is fine."""'))
    assert not _states_size_reason(module("x = 1  # Size: a comment is not the docstring"))


# --------------------------------------------------------------------------- (c) Any


def _mentions_any(annotation: ast.expr | None, aliases: dict[str, ast.expr]) -> bool:
    """Whether an annotation says `Any`, directly, in a string, or through a type alias
    defined in the same module (`Json = dict[str, Any]`)."""
    if annotation is None:
        return False
    for node in ast.walk(annotation):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                parsed = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                continue
            if _mentions_any(parsed, aliases):
                return True
        elif isinstance(node, ast.Attribute) and node.attr == "Any":
            return True
        elif isinstance(node, ast.Name):
            if node.id == "Any":
                return True
            alias = aliases.pop(node.id, None)  # popped: an alias is looked into once
            if alias is not None and _mentions_any(alias, aliases):
                return True
    return False


def _type_aliases(module: Module) -> dict[str, ast.expr]:
    aliases: dict[str, ast.expr] = {}
    for node in module.tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                aliases[target.id] = node.value
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and "TypeAlias" in ast.unparse(node.annotation)
            and node.value is not None
        ):
            aliases[node.target.id] = node.value
    return aliases


def _signature_with_any(
    function: ast.FunctionDef | ast.AsyncFunctionDef, aliases: dict[str, ast.expr]
) -> list[str]:
    """The parameters (and `return`) of `function` whose annotation mentions Any."""
    arguments = function.args
    params = [
        *arguments.posonlyargs,
        *arguments.args,
        *arguments.kwonlyargs,
        *([arguments.vararg] if arguments.vararg else []),
        *([arguments.kwarg] if arguments.kwarg else []),
    ]
    found = [p.arg for p in params if _mentions_any(p.annotation, dict(aliases))]
    if _mentions_any(function.returns, dict(aliases)):
        found.append("return")
    return found


def _public(name: str) -> bool:
    return not name.startswith("_") or name == "__init__"


def _any_in_definition(module: Module, name: str) -> list[str]:
    """What of the public name `name` of `module` mentions Any: `f(x, return)`,
    `Class.method(x)`, `Class.field`, `Class.self_attribute`, `VARIABLE`."""
    aliases = _type_aliases(module)
    found: list[str] = []
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            if where := _signature_with_any(node, aliases):
                found.append(f"{name}({', '.join(where)})")
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id == name and _mentions_any(node.annotation, dict(aliases)):
                found.append(name)
        elif isinstance(node, ast.Assign) and name in _assigned_names(node):
            if _mentions_any(node.value, dict(aliases)):
                found.append(f"{name} (a type alias)")
        elif isinstance(node, ast.ClassDef) and node.name == name:
            found += [f"{name}.{item}" for item in _class_members_with_any(node, aliases)]
    return found


def _class_members_with_any(cls: ast.ClassDef, aliases: dict[str, ast.expr]) -> list[str]:
    found: list[str] = []
    for item in cls.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            if _public(item.target.id) and _mentions_any(item.annotation, dict(aliases)):
                found.append(item.target.id)
        elif isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and _public(item.name):
            if where := _signature_with_any(item, aliases):
                found.append(f"{item.name}({', '.join(where)})")
            if item.name == "__init__":
                found += _self_attributes_with_any(item, aliases)
    return found


def _self_attributes_with_any(
    init: ast.FunctionDef | ast.AsyncFunctionDef, aliases: dict[str, ast.expr]
) -> list[str]:
    """Public `self.x: <annotation>` assignments of a constructor that mention Any."""
    return [
        node.target.attr
        for node in ast.walk(init)
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Attribute)
        and isinstance(node.target.value, ast.Name)
        and node.target.value.id == "self"
        and _public(node.target.attr)
        and _mentions_any(node.annotation, dict(aliases))
    ]


def _defining_module(module_name: str, name: str, seen: int = 0) -> tuple[str, str] | None:
    """Where `name` as seen in `module_name` is defined, following re-exports
    (`from golem_deploy.engine import Service` -> engine.service)."""
    module = modules().get(module_name)
    if module is None or seen > 10:
        return None
    for node in module.tree.body:
        defined = (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and node.name == name
        ) or name in _assigned_names(node)
        if defined:
            return module_name, name
    for node in _imports(module.tree, type_checking=True):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _defining_module(_source_module(module, node), alias.name, seen + 1)
    return None


def _assigned_names(node: ast.stmt) -> set[str]:
    targets = node.targets if isinstance(node, ast.Assign) else []
    if isinstance(node, ast.AnnAssign):
        targets = [node.target]
    return {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}


def _attributes_used(module: Module, prefix: str) -> set[str]:
    """`x` for every `prefix.x` in the module's code (`prefix` being an imported module's
    name or alias)."""
    used = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) == prefix:
            used.add(node.attr)
    return used


def _names_used_across_layers(importer: Module) -> Iterator[tuple[str, str]]:
    """(module, name) of every name `importer` takes from another module: imported by name,
    or used as an attribute of an imported module."""
    known = modules()
    for node in _imports(importer.tree, type_checking=True):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    seen_as = alias.asname or alias.name
                    for attr in _attributes_used(importer, seen_as):
                        yield alias.name, attr
            continue
        source = _source_module(importer, node)
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in known:
                for attr in _attributes_used(importer, alias.asname or alias.name):
                    yield submodule, attr
            else:
                yield source, alias.name


def any_at_layer_boundaries() -> list[str]:
    known = modules()
    offenders: dict[str, set[str]] = {}
    for importer in known.values():
        for source, name in _names_used_across_layers(importer):
            if not _public(name) or name == "__init__":
                continue
            defined = _defining_module(source, name)
            if defined is None:
                continue
            owner = known[defined[0]]
            if owner.layer not in LAYERS or owner.layer == importer.layer:
                continue
            for what in _any_in_definition(owner, defined[1]):
                offenders.setdefault(f"{owner.shown}: {what}", set()).add(importer.shown)
    # One line per thing to retype, naming the modules that import it (not each call).
    return [
        f"  {what}  (used by {', '.join(sorted(users))})"
        for what, users in sorted(offenders.items())
    ]


def test_architecture_no_any_at_a_layer_boundary() -> None:
    offenders = any_at_layer_boundaries()
    assert not offenders, (
        "`Any` in public names another layer uses (give them real types: dataclasses, "
        "Protocols, TypedDicts):\n" + "\n".join(offenders)
    )


def test_any_is_found_through_aliases_strings_and_self_attributes() -> None:
    source = (
        "Json = dict[str, Any]\n"
        "def f(a: int, b: 'list[Any]') -> Json: ...\n"
        "class C:\n"
        "    x: typing.Any\n"
        "    _hidden: Any\n"
        "    def __init__(self) -> None:\n        self.y: Any = 1\n"
        "    def ok(self, a: int) -> int: ...\n"
    )
    module = Module("golem_deploy.engine.x", PACKAGE / "x.py", ast.parse(source), 8)
    assert _any_in_definition(module, "f") == ["f(b, return)"]
    assert _any_in_definition(module, "C") == ["C.x", "C.y"]
