"""The VM image every benchmark requestor asks for: ONE place to change it.

The local network downloads the payload's image from its (loopback) URL, verifies its
sha3-224 and runs the service in it, as a real provider does; yapapi also checks the URL
with HEAD. So the benchmarks build a small real `.gvmi` (a few host binaries: echo, sh,
date, ... -- what the benchmark services run) with the test suite's builder
(tests/integration/_gvmi.py, needs Debian's squashfs-tools) and serve it from a loopback
HTTP server. GOLEM_DEPLOY_BENCH_IMAGE=/path/to/image.gvmi serves that file instead.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Image:
    url: str  # http://127.0.0.1:<port>/image.gvmi
    sha3: str  # 56 hex digits

    @property
    def task_package(self) -> str:
        """The demand property golem.srv.comp.task_package, as yapapi writes it."""
        return f"hash:sha3:{self.sha3}:{self.url}"


def _image_file(scratch: Path) -> tuple[bytes, str]:
    """(content, sha3-224 hex) of the image to serve (built in `scratch` unless given)."""
    real = os.environ.get("GOLEM_DEPLOY_BENCH_IMAGE")
    if real:
        content = Path(real).read_bytes()
        return content, hashlib.sha3_224(content).hexdigest()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
    from _gvmi import build_gvmi, mksquashfs_available

    from golem_deploy.localnet.image import ImageConfig

    if not mksquashfs_available():
        raise SystemExit(
            "the benchmarks build their image with mksquashfs: install squashfs-tools "
            "(bench/run does, as root with apt-get, before it goes offline)"
        )
    gvmi = build_gvmi(scratch / "image", ImageConfig(workdir="/golem/work"))
    return gvmi.path.read_bytes(), gvmi.digest


@contextlib.contextmanager
def served_image() -> Iterator[Image]:
    """Serve the benchmark image on 127.0.0.1 (any free port) until the block ends."""
    www = Path(tempfile.mkdtemp(prefix="gd-bench-image-"))
    content, sha3 = _image_file(www)
    (www / "image.gvmi").write_bytes(content)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Image(url=f"http://127.0.0.1:{server.server_address[1]}/image.gvmi", sha3=sha3)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        shutil.rmtree(www, ignore_errors=True)
