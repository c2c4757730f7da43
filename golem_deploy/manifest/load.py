"""Reading a manifest file into plain data while remembering where every key and value was.

Why not `yaml.load`: validation messages must point at `path:line:column` of the offending
key or value, so we need positions for every node, and loading must be safe against hostile
input (this runs in CI on files from pull requests). We drive ruamel.yaml's event parser
(libyaml's C parser when ruamel.yaml.clib is installed, its pure-Python parser otherwise) and
build the data ourselves, which lets us

- keep the line/column of every key and value (`Document.values` / `Document.keys`),
- report duplicate keys as errors (YAML says keys are unique; silently keeping the last one
  hides typos),
- bound nesting depth while parsing (a deeply nested file would otherwise overflow the C
  stack of a recursive composer) and bound alias expansion while building (a
  "billion laughs" file is rejected after MAX_NODES nodes, in milliseconds),
- resolve scalars by the YAML 1.2 core schema (`yes`/`no`/`on` stay strings) and keep
  decimal numbers exact (`Decimal`), because budgets and prices are money.

The event parser is also an order of magnitude faster than ruamel's round-trip loader,
which matters for `golem-deploy validate` over many files.

Size: one job, file -> positioned data, a little over 400 lines: the safe read, the scalar
rules and the event builder share the Document, its positions and the limits above, and
each part alone would be a module a reader has to open next to this one anyway.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from golem_deploy.manifest.diagnostics import Diagnostic, ManifestError

MAX_BYTES = 1 << 20  # a manifest is a few kilobytes; 1 MiB leaves room for generated ones
MAX_DEPTH = 64  # nesting levels in the text (manifests need about 8)
MAX_NODES = 100_000  # keys + values after expanding aliases

JsonPath = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line, column

_TAG = "tag:yaml.org,2002:"
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_INT_OTHER = re.compile(r"^0o[0-7]+$|^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_NON_FINITE = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$")


@dataclass
class Document:
    """A parsed manifest: plain data (dict/list/str/int/Decimal/bool/None) plus positions.

    `values[path]` is where the value at `path` starts, `keys[path]` where the key that
    introduces it is written; `plain` holds the paths of unquoted scalars (interpolation
    re-types those, so `instances: ${N}` becomes a number).
    """

    path: str  # as shown to the user
    data: Any
    values: dict[JsonPath, Position] = field(default_factory=dict)
    keys: dict[JsonPath, Position] = field(default_factory=dict)
    plain: set[JsonPath] = field(default_factory=set)

    def position(self, path: JsonPath, *, key: bool = False) -> Position:
        """Where to point for `path`: its key (or value), else the nearest known ancestor."""
        table = self.keys if key else self.values
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in table:
                return table[prefix]
            if prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return (1, 1)


def resolve_plain(text: str) -> Any:
    """The value of an unquoted scalar under the YAML 1.2 core schema (numbers exact).

    Raises ValueError for `.inf`/`.nan`, which no manifest field accepts.
    """
    if _NULL.match(text):
        return None
    if _BOOL.match(text):
        return text.lower() == "true"
    if _INT.match(text):
        return int(text)
    if _INT_OTHER.match(text):
        return int(text, 0)
    if _FLOAT.match(text):
        return Decimal(text)
    if _NON_FINITE.match(text):
        raise ValueError(f"{text} is not a finite number")
    return text


def read_text(path: Path, display: str) -> str:
    """The manifest's text, or a ManifestError saying clearly why it cannot be read."""

    def fail(message: str, hint: str | None = None) -> ManifestError:
        return ManifestError([Diagnostic(display, 0, 0, "error", message, hint)])

    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise fail("is a directory, not a manifest file", "pass the manifest's YAML file")
        if not stat.S_ISREG(info.st_mode):
            # a FIFO or device would block or never end (/dev/zero)
            raise fail("is not a regular file", "pass the manifest's YAML file")
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise fail(
                f"file is larger than {MAX_BYTES} bytes, the limit for a manifest",
                "is this really a manifest?",
            )
    except FileNotFoundError:
        raise fail("no such file", "check the path") from None
    except PermissionError:
        raise fail("permission denied", "make the file readable") from None
    except OSError as e:
        raise fail(f"cannot read the file: {e.strerror or e}") from None
    except ValueError as e:  # e.g. a NUL character in the path
        raise fail(f"invalid path: {e}") from None
    if b"\x00" in raw:
        raise fail("file contains NUL bytes; it looks binary", "pass the manifest's YAML file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise fail(
            f"file is not UTF-8 text (bad byte at offset {e.start})", "save it as UTF-8"
        ) from None
    if not text.strip():
        raise fail("file is empty", "a manifest needs at least `name`, `budget` and `services`")
    return text


def load_document(path: Path, display: str | None = None) -> Document:
    """Read and parse a manifest file (see `parse_yaml`)."""
    shown = display if display is not None else str(path)
    return parse_yaml(read_text(path, shown), shown)


def parse_yaml(text: str, display: str) -> Document:
    """Parse YAML text into a Document; every problem becomes a Diagnostic of a
    ManifestError (syntax errors stop at the first, since the parser cannot go on)."""
    builder = _Builder(display)
    try:
        root = builder.compose(_events(text))
    except _Fatal as fatal:
        raise ManifestError([*builder.problems, fatal.diagnostic]) from None
    if root is None:
        raise ManifestError(
            [Diagnostic(display, 0, 0, "error", "file has no YAML document", "add the manifest")]
        )
    doc = Document(display, None)
    try:
        doc.data = builder.build(root, (), 0, doc)
    except _Fatal as fatal:
        raise ManifestError([*builder.problems, fatal.diagnostic]) from None
    if builder.problems:
        raise ManifestError(builder.problems)
    return doc


# --------------------------------------------------------------------------- internals


class _Fatal(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


@dataclass(slots=True)
class _Node:
    kind: str  # "map" | "seq" | "scalar"
    line: int
    column: int
    value: Any  # scalar: resolved value; seq: [node]; map: [key, value, key, value, ...]
    text: str = ""  # scalar: the text as written (keys use it)
    plain: bool = False  # scalar written without quotes (or block style)


def _events(text: str) -> Iterator[Any]:
    """ruamel.yaml's parse events, from libyaml's C parser when available."""
    return iter(_yaml().parse(text))


@lru_cache(maxsize=1)
def _yaml() -> Any:
    from ruamel.yaml import YAML

    # typ="safe" picks libyaml's C parser when ruamel.yaml.clib is installed, else the
    # pure-Python one; both produce the same events. Only its event parser is used.
    return YAML(typ="safe")


class _Builder:
    def __init__(self, display: str) -> None:
        self.display = display
        self.problems: list[Diagnostic] = []
        self.nodes = 0

    def error(self, line: int, column: int, message: str, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(self.display, line, column, "error", message, hint))

    def fatal(self, line: int, column: int, message: str, hint: str | None = None) -> _Fatal:
        return _Fatal(Diagnostic(self.display, line, column, "error", message, hint))

    # ------------------------------------------------------------------ events -> nodes

    def compose(self, events: Iterable[Any]) -> _Node | None:
        from ruamel.yaml import events as ev
        from ruamel.yaml.error import MarkedYAMLError, YAMLError

        anchors: dict[str, _Node] = {}
        stack: list[tuple[_Node, str | None]] = []
        root: _Node | None = None
        documents = 0

        def attach(node: _Node) -> None:
            nonlocal root
            if stack:
                stack[-1][0].value.append(node)
            else:
                root = node

        iterator = iter(events)
        while True:
            try:
                event = next(iterator)
            except StopIteration:
                break
            except MarkedYAMLError as e:
                mark = e.problem_mark or e.context_mark
                line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
                problem = e.problem or e.context or "invalid YAML"
                context = f" ({e.context})" if e.context and e.problem else ""
                raise self.fatal(
                    line,
                    column,
                    f"YAML syntax error: {problem}{context}",
                    "check indentation, quotes and brackets at this position",
                ) from None
            except YAMLError as e:
                raise self.fatal(0, 0, f"YAML error: {_one_line(str(e))}") from None
            except (ValueError, RecursionError, MemoryError) as e:
                raise self.fatal(0, 0, f"cannot parse YAML: {_one_line(str(e))}") from None

            mark = getattr(event, "start_mark", None)
            line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
            if isinstance(event, ev.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise self.fatal(
                        line,
                        column,
                        "more than one YAML document in the file",
                        "a manifest is a single document; remove the `---` separator",
                    )
            elif isinstance(event, ev.AliasEvent):
                target = anchors.get(event.anchor)
                if target is None:
                    raise self.fatal(
                        line,
                        column,
                        f"unknown alias *{event.anchor}",
                        f"define &{event.anchor} before using it",
                    )
                attach(target)
            elif isinstance(event, ev.ScalarEvent):
                node = self.scalar(event, line, column)
                if event.anchor:
                    anchors[event.anchor] = node
                attach(node)
            elif isinstance(event, ev.MappingStartEvent | ev.SequenceStartEvent):
                kind = "map" if isinstance(event, ev.MappingStartEvent) else "seq"
                if event.tag not in (None, "!", _TAG + kind):
                    self.error(
                        line,
                        column,
                        f"unsupported YAML tag {event.tag}",
                        "remove the tag; manifests use plain YAML",
                    )
                if len(stack) >= MAX_DEPTH:
                    raise self.fatal(
                        line,
                        column,
                        f"nesting deeper than {MAX_DEPTH} levels",
                        "a manifest needs only a few levels",
                    )
                stack.append((_Node(kind, line, column, []), event.anchor))
            elif isinstance(event, ev.MappingEndEvent | ev.SequenceEndEvent):
                node, anchor = stack.pop()
                if anchor:
                    # Registered only once complete, so an alias can never point into its
                    # own anchor: the data is always a tree-shaped DAG, never a cycle.
                    anchors[anchor] = node
                attach(node)
        return root

    def scalar(self, event: Any, line: int, column: int) -> _Node:
        text: str = event.value
        plain = event.style in (None, "")
        tag = event.tag
        value: Any = text
        try:
            if tag is None and plain:
                value = resolve_plain(text)
            elif tag in (None, "!", _TAG + "str"):
                value = text
            elif tag == _TAG + "int":
                value = int(text, 0) if _INT_OTHER.match(text) else int(text)
            elif tag == _TAG + "float":
                value = Decimal(text)
                if not value.is_finite():
                    raise ValueError(f"{text} is not a finite number")
            elif tag == _TAG + "bool":
                if not _BOOL.match(text):
                    raise ValueError(f"{text!r} is not a boolean")
                value = text.lower() == "true"
            elif tag == _TAG + "null":
                value = None
            else:
                self.error(
                    line,
                    column,
                    f"unsupported YAML tag {tag}",
                    "remove the tag; manifests use plain YAML",
                )
        except (ValueError, InvalidOperation) as e:
            self.error(
                line,
                column,
                str(e) if "finite" in str(e) else f"bad scalar: {e}",
                "write a plain number or quote the value",
            )
        return _Node("scalar", line, column, value, text, plain and tag is None)

    # ------------------------------------------------------------------ nodes -> data

    def build(self, node: _Node, path: JsonPath, depth: int, doc: Document) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fatal(
                node.line,
                node.column,
                f"the document expands to more than {MAX_NODES} values",
                "aliases (*name) that repeat large anchors multiply the document; "
                "a manifest needs far fewer values",
            )
        if depth > MAX_DEPTH:
            raise self.fatal(
                node.line,
                node.column,
                f"nesting deeper than {MAX_DEPTH} levels after expanding aliases",
            )
        doc.values[path] = (node.line, node.column)
        if node.kind == "scalar":
            if node.plain and isinstance(node.value, str):
                doc.plain.add(path)
            return node.value
        if node.kind == "seq":
            return [
                self.build(child, (*path, i), depth + 1, doc) for i, child in enumerate(node.value)
            ]
        result: dict[str, Any] = {}
        for key_node, value_node in self.pairs(node, depth):
            key = key_node.text
            child = (*path, key)
            doc.keys[child] = (key_node.line, key_node.column)
            result[key] = self.build(value_node, child, depth + 1, doc)
        return result

    def pairs(self, node: _Node, depth: int) -> list[tuple[_Node, _Node]]:
        """A mapping's (key, value) nodes: its own keys, then keys merged in with `<<`
        that it does not define itself (YAML merge-key semantics)."""
        own: dict[str, tuple[_Node, _Node]] = {}
        merged: list[tuple[_Node, _Node]] = []
        items = node.value
        for i in range(0, len(items) - 1, 2):
            key_node, value_node = items[i], items[i + 1]
            if key_node.kind != "scalar":
                self.error(
                    key_node.line,
                    key_node.column,
                    "a key must be a plain string",
                    "mappings and lists cannot be keys",
                )
                continue
            if key_node.plain and key_node.text == "<<":
                merged.extend(self.merge_sources(value_node, depth))
                continue
            if key_node.text in own:
                first = own[key_node.text][0]
                self.error(
                    key_node.line,
                    key_node.column,
                    f"duplicate key {key_node.text!r} (first defined at line {first.line})",
                    "keep one of them; YAML keys must be unique",
                )
                continue
            own[key_node.text] = (key_node, value_node)
        result = list(own.values())
        seen = set(own)
        for key_node, value_node in merged:
            if key_node.text not in seen:
                seen.add(key_node.text)
                result.append((key_node, value_node))
        return result

    def merge_sources(self, value: _Node, depth: int) -> list[tuple[_Node, _Node]]:
        if depth > MAX_DEPTH:
            raise self.fatal(value.line, value.column, "merge keys (<<) nested too deeply")
        sources = value.value if value.kind == "seq" else [value]
        pairs: list[tuple[_Node, _Node]] = []
        for source in sources:
            if source.kind != "map":
                self.error(
                    source.line,
                    source.column,
                    "`<<` merges only mappings",
                    "write `<<: *anchor` where &anchor names a mapping",
                )
                continue
            self.nodes += len(source.value)
            if self.nodes > MAX_NODES:
                raise self.fatal(
                    source.line,
                    source.column,
                    f"the document expands to more than {MAX_NODES} values",
                )
            pairs.extend(self.pairs(source, depth + 1))
        return pairs


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
