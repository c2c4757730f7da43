"""Names follow a renewed instance: which names move (pure), and the /etc/hosts rewrite
run for real by the shells an image may have (dash, bash, busybox sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_deploy.engine.names import index_names, moved, rewrite_command

BASE = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tgolem\n"
SHELLS = [s for s in ("/bin/sh", "dash", "bash", "busybox") if shutil.which(s)]


def test_index_zero_also_answers_to_the_service_name() -> None:
    assert index_names("web", 0) == ("web", "web-0")
    assert index_names("web", 3) == ("web-3",)


def test_only_the_names_of_the_moved_index_change() -> None:
    hosts = {"web": "10.0.0.2", "web-0": "10.0.0.2", "web-1": "10.0.0.3", "db": "10.0.0.4"}
    assert moved(hosts, "web", 0, "10.0.0.9") == {"web": "10.0.0.9", "web-0": "10.0.0.9"}
    assert moved(hosts, "web", 1, "10.0.0.9") == {"web-1": "10.0.0.9"}
    assert moved(hosts, "web", 1, "10.0.0.3") == {}  # already there
    assert moved({}, "api", 2, "10.0.0.5") == {}  # a network without names gets none


def _rewrite(shell: str, path: Path, hosts: dict[str, str]) -> str:
    argv = rewrite_command(hosts, str(path))
    assert argv[:2] == ["/bin/sh", "-c"]
    prefix = ["busybox", "sh"] if shell == "busybox" else [shell]
    subprocess.run([*prefix, *argv[1:]], check=True, timeout=30)
    return path.read_text()


def _entries(text: str) -> dict[str, str]:
    names: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        for name in words[1:]:
            names.setdefault(name, words[0])  # the resolver takes the first match
    return names


@pytest.mark.parametrize("shell", SHELLS)
def test_the_rewrite_moves_names_and_keeps_every_other_line(shell: str, tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    image_line = "10.9.9.9\tmirror.example  # the image's own\n"
    path.write_text(BASE + image_line + "192.168.0.2\tweb\n192.168.0.2\tweb-0\n192.168.0.3\tdb\n")
    hosts = {"web": "192.168.0.10", "web-0": "192.168.0.10", "db": "192.168.0.3"}
    text = _rewrite(shell, path, hosts)
    assert text.startswith(BASE + image_line)
    assert _entries(text) == {
        "localhost": "127.0.0.1",
        "ip6-localhost": "::1",
        "ip6-loopback": "::1",
        "golem": "127.0.1.1",
        "mirror.example": "10.9.9.9",
        **hosts,
    }
    again = _rewrite(shell, path, hosts)
    assert _entries(again) == _entries(text)  # idempotent, and the padding does not pile up
    assert len(again) == len(text)


@pytest.mark.parametrize("shell", SHELLS)
def test_the_file_is_never_shortened_so_a_reader_never_sees_it_empty(
    shell: str, tmp_path: Path
) -> None:
    path = tmp_path / "hosts"
    hosts = {f"web-{i}": f"192.168.0.{100 + i}" for i in range(20)}
    commented = "".join(f"{ip}\t{name}  # set by an earlier deploy\n" for name, ip in hosts.items())
    path.write_text(BASE + commented)
    before, inode = path.stat().st_size, path.stat().st_ino
    text = _rewrite(shell, path, hosts)  # the same names without comments: shorter
    assert path.stat().st_size >= before and path.stat().st_ino == inode  # in place
    assert "earlier deploy" not in text
    assert _entries(text) == {**_entries(BASE), **hosts}


@settings(max_examples=25, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
        st.from_regex(r"192\.168\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
        max_size=8,
    ),
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
        st.from_regex(r"192\.168\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
        min_size=1,
        max_size=8,
    ),
)
def test_after_any_rewrite_the_map_is_exactly_what_resolves(
    before: dict[str, str], after: dict[str, str]
) -> None:
    path = Path("/tmp/names-sh") / "hosts-property"
    path.parent.mkdir(exist_ok=True)
    path.write_text(BASE + "".join(f"{ip}\t{name}\n" for name, ip in before.items()))
    entries = _entries(_rewrite("/bin/sh", path, after))
    for name, ip in after.items():
        assert entries[name] == ip
    assert entries["localhost"] == "127.0.0.1"
    for name in set(before) - set(after) - {"localhost", "golem", "ip6-localhost"}:
        assert entries.get(name) == before[name]  # names the map does not hold are kept
