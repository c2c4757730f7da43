"""${VAR} interpolation and .env files."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_deploy.manifest.interpolate import InterpolationError, interpolate, read_env_file

ENV = {"NAME": "web", "EMPTY": "", "N": "3"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${NAME}", "web"),
        ("pre-${NAME}-post", "pre-web-post"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),  # `-` only replaces unset
        ("${MISSING-fallback}", "fallback"),
        ("${MISSING:-${NAME}}", "web"),  # nested default
        ("$${NAME}", "${NAME}"),  # $$ is a literal $
        ("echo $HOME $(date)", "echo $HOME $(date)"),  # shell syntax passes through
        ("costs $5", "costs $5"),
        ("${NAME:?must be set}", "web"),
    ],
)
def test_interpolation(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${MISSING}", "variable MISSING is not set"),
        ("${MISSING:?give the image hash}", "give the image hash"),
        ("${EMPTY:?empty!}", "empty!"),
        ("${NAME", "invalid interpolation"),
        ("${MISSING:-oops", "unterminated"),
        ("${1BAD}", "invalid variable name"),
    ],
)
def test_interpolation_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationError) as info:
        interpolate(text, ENV)
    assert message in info.value.message


def test_env_file_forms(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# comment\n"
        "PLAIN=value # trailing comment\n"
        "export EXPORTED=yes\n"
        "SINGLE='keep $literal # too'\n"
        'DOUBLE="line\\nbreak"\n'
        "EMPTY=\n"
        "not a pair\n"
    )
    loaded = read_env_file(env)
    assert loaded.values == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SINGLE": "keep $literal # too",
        "DOUBLE": "line\nbreak",
        "EMPTY": "",
    }
    assert [(d.line, d.message) for d in loaded.diagnostics] == [(7, "expected KEY=value")]
