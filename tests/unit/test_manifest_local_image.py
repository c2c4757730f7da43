"""`local.image`: validated like local.mounts (must exist), resolved against the manifest's
folder, and carried to the local network as a demand property (issue 11)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio

from golem_deploy.compiler import LOCAL_IMAGE_PROPERTY, compile_manifest
from golem_deploy.manifest import check_manifest, load_manifest

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


def write(tmp_path: Path, image: str) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            budget: 1
            services:
              a:
                payload: {{image_hash: {HASH}}}
                local: {{image: {image}}}
            """
        )
    )
    return path


def test_a_missing_image_is_an_error_with_its_position(tmp_path: Path) -> None:
    found = [
        f"{p.line}:{p.column}: {p.severity}: {p.message}"
        for p in check_manifest(write(tmp_path, "./nope.gvmi")).diagnostics
    ]
    assert any(
        p.startswith("5:") and "error: local image './nope.gvmi' does not exist" in p for p in found
    ), found


def test_the_image_reaches_the_local_demand_only(tmp_path: Path) -> None:
    (tmp_path / "img.gvmi").write_bytes(b"x")
    manifest = load_manifest(write(tmp_path, "./img.gvmi"))
    assert manifest.services["a"].local_image == (tmp_path / "img.gvmi").resolve()

    async def properties(local: bool) -> dict[str, object]:
        service = compile_manifest(manifest, local=local)["a"]
        payload = await service.get_payload()  # type: ignore[attr-defined]
        return dict(payload.properties())

    assert anyio.run(properties, True)[LOCAL_IMAGE_PROPERTY] == str(tmp_path / "img.gvmi")
    assert LOCAL_IMAGE_PROPERTY not in anyio.run(properties, False)
