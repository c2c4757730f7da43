"""The YAML loader: positions, duplicate keys, bounded aliases/depth, clean file errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from golem_deploy.manifest import ManifestError
from golem_deploy.manifest.load import MAX_NODES, load_document, parse_yaml


def _error(text: str) -> str:
    with pytest.raises(ManifestError) as info:
        parse_yaml(text, "m.yaml")
    return str(info.value)


def test_positions_of_keys_and_values_are_one_based() -> None:
    doc = parse_yaml("name: x\nservices:\n  web:\n    instances: 2\n", "m.yaml")
    assert doc.keys[("services", "web", "instances")] == (4, 5)
    assert doc.values[("services", "web", "instances")] == (4, 16)
    assert doc.values[("name",)] == (1, 7)


def test_scalars_follow_yaml_1_2_core_and_keep_money_exact() -> None:
    doc = parse_yaml("a: yes\nb: true\nc: 0.1\nd: 10\ne: ~\nf: '12'\ng: 0x1F\nh: 1e3\n", "m.yaml")
    assert doc.data == {
        "a": "yes",  # YAML 1.1's boolean `yes` is a string in 1.2
        "b": True,
        "c": Decimal("0.1"),
        "d": 10,
        "e": None,
        "f": "12",
        "g": 31,
        "h": Decimal("1e3"),
    }


def test_duplicate_keys_are_errors_at_the_second_key() -> None:
    message = _error("services:\n  web: {}\n  web: {}\n")
    assert "m.yaml:3:3: error: duplicate key 'web' (first defined at line 2)" in message


def test_every_duplicate_is_reported() -> None:
    message = _error("a: 1\na: 2\nb: 1\nb: 2\n")
    assert "m.yaml:2:1" in message and "m.yaml:4:1" in message


def test_billion_laughs_is_rejected_fast() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    # 10**10 values if expanded: without the node limit this never returns.
    message = _error("\n".join(lines) + "\n")
    assert f"more than {MAX_NODES} values" in message


def test_deep_nesting_is_rejected_without_crashing() -> None:
    assert "nesting deeper than" in _error("[" * 100_000)
    assert "nesting deeper than" in _error("- " * 100_000)


def test_merge_keys_and_aliases_work_and_own_keys_win() -> None:
    doc = parse_yaml("base: &b {x: 1, y: 2}\nsvc:\n  <<: *b\n  y: 3\n", "m.yaml")
    assert doc.data["svc"] == {"y": 3, "x": 1}


def test_alias_to_an_unfinished_anchor_is_an_error_not_a_cycle() -> None:
    assert "unknown alias *a" in _error("a: &a [*a]\n")


def test_syntax_error_points_at_the_problem() -> None:
    message = _error("a: [1, 2\nb: 3\n")
    assert message.startswith("m.yaml:2:") and "YAML syntax error" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !custom x\n", "unsupported YAML tag !custom"),
        ("a: .nan\n", "not a finite number"),
        ("a: 1\n---\nb: 2\n", "more than one YAML document"),
        ("? [a]\n: 1\n", "a key must be a plain string"),
    ],
)
def test_unusual_yaml_gets_a_clear_error(text: str, expected: str) -> None:
    assert expected in _error(text)


def test_file_problems_are_clean_errors(tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.yaml": "no such file",
        tmp_path: "is a directory",
    }
    (tmp_path / "empty.yaml").write_text("  \n")
    cases[tmp_path / "empty.yaml"] = "file is empty"
    (tmp_path / "binary.yaml").write_bytes(b"\x7fELF\x00\x01\x02")
    cases[tmp_path / "binary.yaml"] = "looks binary"
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    cases[tmp_path / "latin1.yaml"] = "not UTF-8"
    (tmp_path / "huge.yaml").write_bytes(b"#" * (2 << 20))
    cases[tmp_path / "huge.yaml"] = "the limit for a manifest"
    cases[Path("/dev/zero")] = "not a regular file"
    cases[Path("bad\x00name.yaml")] = "invalid path"
    for path, expected in cases.items():
        with pytest.raises(ManifestError) as info:
            load_document(path)
        assert expected in str(info.value), path
        assert info.value.diagnostics[0].path == str(path)
