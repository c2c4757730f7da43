"""Validation end to end: schema and semantic errors at the right position, the model with
every default, interpolation from the environment and .env, and the shipped examples."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from golem_deploy.manifest import (
    DownloadStep,
    ManifestError,
    RunStep,
    UploadStep,
    check_manifest,
    load_manifest,
)
from golem_deploy.manifest.model import (
    Healthcheck,
    Payload,
    Payment,
    RestartPolicy,
    ServiceSpec,
)

REPO = Path(__file__).resolve().parents[2]
HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


def write(tmp_path: Path, text: str, name: str = "app.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path, **kwargs: object) -> list[str]:
    """Every diagnostic as `line:column: severity: message`."""
    result = check_manifest(path, **kwargs)  # type: ignore[arg-type]
    return [f"{d.line}:{d.column}: {d.severity}: {d.message}" for d in result.diagnostics]


def test_minimal_manifest_gets_every_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        services:
          web:
            payload: {{image_hash: {HASH}}}
        """,
        name="my-app.yaml",
    )
    m = load_manifest(path)
    assert m.name == "my-app"  # default: the file stem
    assert m.path == path.resolve()
    assert m.budget == Decimal(1) and m.version == "1" and m.subnet == "public"
    assert m.payment == Payment()
    spec = m.services["web"]
    assert spec == ServiceSpec(name="web", payload=Payload(image_hash=HASH))
    assert spec.instances == 1 and spec.expiration == 3600.0 and spec.restart == RestartPolicy()


def test_full_manifest_is_normalized(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("x")
    (tmp_path / "scripts").mkdir()
    path = write(
        tmp_path,
        f"""\
        version: 1
        name: full
        budget: 0.3
        market: {{max_price: {{start: 0.01, cpu_per_hour: 0.1}}, blacklist: [bad]}}
        services:
          db:
            payload: {{image_hash: {HASH.upper()}, min_mem_gib: 1, capabilities: [vpn]}}
          web:
            payload: {{image_tag: "golem/alpine:latest"}}
            instances: 0
            expiration: 1h30m
            restart: {{policy: always, backoff: 500ms}}
            env: {{DEBUG: true, N: 2}}
            start:
              - ["/bin/echo", "a"]
              - run: "echo $HOME"
              - upload: {{src: data.txt, dst: /golem/work/data.txt}}
            run: [{{download: {{src: /golem/output/o.txt, dst: out/o.txt}}}}]
            healthcheck: {{run: "true", interval: 1m, retries: 5}}
            depends_on: [db]
            local: {{mounts: {{/golem/run: scripts}}}}
        """,
    )
    m = load_manifest(path)
    assert m.version == "1" and m.budget == Decimal("0.3")
    assert m.market.max_price.start == Decimal("0.01") and m.market.max_price.env_per_hour is None
    assert m.market.blacklist == ("bad",)
    assert m.services["db"].payload.image_hash == HASH  # normalized to lowercase
    assert m.services["db"].payload.min_mem_gib == 1.0
    web = m.services["web"]
    assert web.instances == 0 and web.expiration == 5400.0
    assert web.restart == RestartPolicy(policy="always", max_restarts=3, backoff=0.5)
    assert web.env == {"DEBUG": "true", "N": "2"}
    assert web.start == (
        RunStep(("/bin/echo", "a")),
        RunStep(("/bin/sh", "-c", "echo $HOME"), shell=True),
        UploadStep(tmp_path.resolve() / "data.txt", "/golem/work/data.txt"),
    )
    assert web.run.every is None
    assert web.run.steps == (DownloadStep("/golem/output/o.txt", tmp_path.resolve() / "out/o.txt"),)
    assert web.healthcheck == Healthcheck(
        run=RunStep(("/bin/sh", "-c", "true"), shell=True), interval=60.0, retries=5
    )
    assert web.mounts == {"/golem/run": tmp_path.resolve() / "scripts"}
    assert m.start_order() == [["db"], ["web"]]


def test_all_problems_are_reported_with_positions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        name: ok
        budget: 0
        servics: {}
        services:
          web:
            payload: {image_hash: abc, image_tag: "golem/x:1"}
            instances: -1
            expiration: soon
            start:
              - rn: [/bin/true]
              - "just a string"
            depends_on: [dbb]
          db:
            payload: {image_url: "https://x/y.gvmi"}
            depends_on: [web]
        """,
    )
    found = problems(path)
    expected = [
        "2:9: error: budget: must be more than 0, not 0",
        "3:1: error: top level: unknown key 'servics'",
        "6:27: error: services.web.payload.image_hash: 'abc' must be 56 hexadecimal digits"
        " (the sha3-224 hash of the image)",
        "6:32: error: services.web.payload: give either image_tag or image_hash, not both",
        "7:16: error: services.web.instances: must be at least 0, not -1",
        "8:17: error: services.web.expiration: 'soon' must be a duration such as 500ms, 10s,"
        " 15m, 1h30m or 2d",
        "10:9: error: services.web.start[0]: unknown key 'rn'",
        "11:9: error: services.web.start[1]: must be a list or a mapping, not a string",
        "12:18: error: services.web.depends_on: unknown service 'dbb'",
        "14:15: error: services.db.payload: image_url needs image_hash",
    ]
    assert found == expected
    result = check_manifest(path)
    hints = {d.message.split(":")[0]: d.hint for d in result.diagnostics}
    assert hints["top level"] == "did you mean 'services'?"


def test_cycles_and_self_dependencies(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        services:
          a: {{payload: {{image_hash: {HASH}}}, depends_on: [b]}}
          b: {{payload: {{image_hash: {HASH}}}, depends_on: [c]}}
          c: {{payload: {{image_hash: {HASH}}}, depends_on: [a, c]}}
        """,
    )
    found = problems(path)
    assert any("depends_on forms a cycle: a -> b -> c -> a" in p for p in found)
    assert any("service 'c' depends on itself" in p for p in found)


def test_paths_must_stay_inside_the_manifest_folder_and_mounts_must_exist(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        services:
          a:
            payload: {{image_hash: {HASH}}}
            start:
              - upload: {{src: ../secret, dst: /golem/work/s}}
              - upload: {{src: /etc/passwd, dst: /golem/work/p}}
              - upload: {{src: later.txt, dst: /golem/work/l}}
            shutdown:
              - download: {{src: /golem/output/x, dst: ../../x}}
            local: {{mounts: {{/golem/run: ./nowhere}}}}
        """,
    )
    found = problems(path)
    assert "6:23: error: upload src: '../secret' is outside the manifest's folder" in found
    assert "7:23: error: upload src: '/etc/passwd' is an absolute path" in found
    assert "8:23: warning: upload source 'later.txt' does not exist yet" in found
    assert any(p.startswith("10:47: error: download dst: '../../x' is outside") for p in found)
    assert any("mount source './nowhere' does not exist" in p for p in found)


def test_zero_durations_where_time_must_pass(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        services:
          a:
            payload: {{image_hash: {HASH}}}
            expiration: 0s
            run: {{every: 0, steps: [[/bin/date]]}}
        """,
    )
    found = problems(path)
    assert "5:17: error: services.a.expiration: must be longer than 0s" in found
    assert "6:18: error: services.a.run.every: must be longer than 0s" in found


def test_budget_warning_does_not_make_the_manifest_invalid(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 0.1
        market: {{max_price: {{start: 0.01, cpu_per_hour: 0.2, env_per_hour: 0.1}}}}
        services:
          a:
            payload: {{image_hash: {HASH}, min_cpu_threads: 2}}
            instances: 3
            expiration: 2h
        """,
    )
    result = check_manifest(path)
    assert result.manifest is not None
    [warning] = result.warnings
    # 3 x (0.01 + (0.2 x 2 threads + 0.1) x 2h) = 3.03
    assert "worst case of 3.03 GLM" in warning.message and warning.line == 1


def test_interpolation_from_environment_and_env_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        """\
        name: ${NAME:-interp}
        budget: ${BUDGET}
        services:
          a:
            payload: {image_hash: "${HASH:?set HASH to the image hash}"}
            instances: ${COUNT:-2}
            env: {PRICE: "$$5", WHERE: "${WHERE}"}
        """,
    )
    (tmp_path / ".env").write_text(f"BUDGET=0.5\nHASH={HASH}\nWHERE=dotenv\n")
    monkeypatch.setenv("WHERE", "environment")  # the environment wins over .env
    monkeypatch.delenv("COUNT", raising=False)
    m = load_manifest(path)
    assert m.name == "interp" and m.budget == Decimal("0.5")
    assert m.services["a"].instances == 2  # unquoted: re-typed as a number
    assert m.services["a"].env == {"PRICE": "$5", "WHERE": "environment"}

    other = tmp_path / "other.env"
    other.write_text(f"BUDGET=2\nHASH={HASH}\nCOUNT=4\n")
    m = load_manifest(path, env_file=other)
    assert m.budget == Decimal(2) and m.services["a"].instances == 4


def test_missing_variable_is_reported_at_its_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        budget: 1
        services:
          a:
            payload: {image_hash: "${NO_SUCH_HASH:?set NO_SUCH_HASH first}"}
        """,
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    first = info.value.diagnostics[0]
    assert (first.line, first.column, first.message) == (4, 27, "set NO_SUCH_HASH first")


def test_bad_file_name_without_name_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"budget: 1\nservices: {{a: {{payload: {{image_hash: {HASH}}}}}}}\n",
        "My App.yaml",
    )
    assert any("not a valid deployment name" in p for p in problems(path))


def test_a_list_document_is_not_a_manifest(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    assert problems(path) == ["1:1: error: a manifest is a mapping of keys, not a list"]


@pytest.mark.parametrize("example", sorted((REPO / "manifests").glob("*.yaml")))
def test_examples_are_valid_and_point_editors_at_the_schema(example: Path) -> None:
    result = check_manifest(example)
    assert result.diagnostics == []
    assert result.manifest is not None
    first_line = example.read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=../schemas/manifest.schema.json"


def test_examples_cover_the_documented_shapes() -> None:
    hello = load_manifest(REPO / "manifests/hello-world.yaml")
    [spec] = hello.services.values()
    assert spec.instances == 1 and spec.run.every == 5.0 and spec.start
    simple = load_manifest(REPO / "manifests/simple-service.yaml")
    [spec] = simple.services.values()
    assert spec.run.every == 10.0 and spec.shutdown and spec.start
    assert spec.mounts == {"/golem/run": (REPO / "manifests/simple-service").resolve()}
    for step in (*spec.start, *spec.run.steps, *spec.shutdown):
        assert isinstance(step, RunStep)
        script = spec.mounts["/golem/run"] / Path(step.argv[0]).name
        assert script.read_text().startswith("#!/usr/bin/env python3\n")
        assert script.stat().st_mode & 0o111, f"{script} must be executable"
    multi = load_manifest(REPO / "manifests/multi-service.yaml")
    assert len(multi.services) == 2
    assert all(s.instances == 2 for s in multi.services.values())
    assert multi.start_order() == [["db"], ["web"]]


def test_update_parallelism_is_read_and_at_least_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        budget: 1
        services:
          web:
            payload: {{image_hash: {HASH}}}
            update: {{parallelism: 2}}
          db:
            payload: {{image_hash: {HASH}}}
            update: {{parallelism: 0}}
        """,
    )
    assert problems(path) == [
        "8:27: error: services.db.update.parallelism: must be at least 1, not 0"
    ]
    path.write_text(path.read_text().replace("parallelism: 0", "parallelism: 1"))
    m = load_manifest(path)
    assert m.services["web"].update.parallelism == 2 and m.services["db"].update.parallelism == 1


def test_payment_terms_are_durations_of_at_least_a_second(tmp_path: Path) -> None:
    from golem_deploy.compiler import payment_terms
    from golem_deploy.engine import PaymentTerms
    from golem_deploy.manifest.dump import manifest_to_data as dump_manifest

    good = write(
        tmp_path,
        f"""\
        budget: 1
        payment: {{debit_note_interval: 10s, payment_timeout: 1m}}
        services:
          web:
            payload: {{image_hash: {HASH}}}
        """,
    )
    m = load_manifest(good)
    assert m.payment == Payment(debit_note_interval=10.0, payment_timeout=60.0)
    assert payment_terms(m.payment) == PaymentTerms(10.0, 60.0)
    assert dump_manifest(m)["payment"]["payment_timeout"] == "1m"
    assert "debit_note_interval" not in dump_manifest(load_manifest(_plain(tmp_path)))["payment"]
    bad = write(
        tmp_path,
        f"""\
        budget: 1
        payment:
          debit_note_interval: 500ms
          payment_timeout: soon
        services:
          web:
            payload: {{image_hash: {HASH}}}
        """,
        name="bad.yaml",
    )
    found = problems(bad)
    assert any(p.startswith("3:24: error: payment.debit_note_interval") for p in found), found
    assert any("payment.payment_timeout" in p and "duration" in p for p in found), found


def _plain(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        f"""\
        budget: 1
        services:
          web:
            payload: {{image_hash: {HASH}}}
        """,
        name="plain.yaml",
    )
