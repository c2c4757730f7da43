"""The VM image every benchmark requestor asks for: ONE place to change it.

Today the local network never downloads an image (its ExeUnit runs commands on the host),
but yapapi checks that the image URL answers HEAD before it publishes a demand. So the
benchmarks serve a small placeholder file from a loopback HTTP server and name it with the
well-formed but fake hash "0" * 56.

When the local network starts downloading and verifying images (the sandbox work), the
placeholder stops working: set GOLEM_DEPLOY_BENCH_IMAGE to a real `.gvmi` file and it is
served instead, with its true sha3-224 (computed here, the same digest providers check).
Once that lands for good, make a real image the default below and drop the placeholder.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: The fake hash of the placeholder image (accepted because nothing downloads it yet).
PLACEHOLDER_HASH = "0" * 56
PLACEHOLDER_BYTES = b"golem-deploy benchmark placeholder, not a real image\n"


@dataclass(frozen=True)
class Image:
    url: str  # http://127.0.0.1:<port>/image.gvmi
    sha3: str  # 56 hex digits

    @property
    def task_package(self) -> str:
        """The demand property golem.srv.comp.task_package, as yapapi writes it."""
        return f"hash:sha3:{self.sha3}:{self.url}"


def _image_file() -> tuple[bytes, str]:
    """(content, sha3-224 hex) of the image to serve."""
    real = os.environ.get("GOLEM_DEPLOY_BENCH_IMAGE")
    if real:
        content = Path(real).read_bytes()
        return content, hashlib.sha3_224(content).hexdigest()
    return PLACEHOLDER_BYTES, PLACEHOLDER_HASH


@contextlib.contextmanager
def served_image() -> Iterator[Image]:
    """Serve the benchmark image on 127.0.0.1 (any free port) until the block ends."""
    content, sha3 = _image_file()
    www = Path(tempfile.mkdtemp(prefix="gd-bench-image-"))
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
