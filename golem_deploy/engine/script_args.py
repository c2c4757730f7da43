"""yapapi's optional arguments of script steps: output capture and progress reports.

`Script.run(..., stdout=, stderr=)` takes a `CaptureContext` saying what the ExeUnit keeps
of a stream (yagna's `capture` modes); `deploy(progress_args=)` and the transfer steps take
a `ProgressArgs` asking for progress reports. Both are yapapi 0.13.1's names and builders,
so `CaptureContext.build(mode="all")` ports unchanged; any object with a yapapi-style
`to_dict()` is accepted as a capture too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["CaptureContext", "CaptureSpec", "ProgressArgs", "capture_dict", "progress_dict"]

_MODES = {"all": "head", "stream": "stream", "head": "head", "tail": "tail", "headTail": "headTail"}


class CaptureSpec(Protocol):
    """Anything that renders yagna's `capture` entry for one stream (yapapi's shape)."""

    def to_dict(self) -> dict[str, dict[str, int | str]]: ...


@dataclass(frozen=True)
class CaptureContext:
    """What to capture of one output stream, as yapapi's `CaptureContext`.

    `mode`: `stream` (every chunk as it comes; the default of `run`), `all`/`head`, `tail`,
    `headTail` (kept by the ExeUnit and returned at the end); `limit` bytes; `fmt` `str` or
    `bin`."""

    mode: Literal["stream", "head", "tail", "headTail"]
    limit: int | None = None
    fmt: Literal["str", "bin"] | None = None

    @classmethod
    def build(
        cls, mode: str | None = None, limit: int | None = None, fmt: str | None = None
    ) -> CaptureContext:
        """yapapi's builder: `mode` None or `all` means everything, kept to the end."""
        kind = _MODES.get(mode or "all")
        if kind is None:
            raise ValueError(f"Invalid output capture mode: {mode}")
        if fmt not in (None, "str", "bin"):
            raise ValueError(f"Invalid output capture format: {fmt}")
        if mode in (None, "all"):
            limit = None  # yapapi drops the limit of "all"
        return cls(mode=kind, limit=limit, fmt=fmt)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, dict[str, int | str]]:
        inner: dict[str, int | str] = {}
        if self.limit:
            inner[self.mode] = self.limit
        if self.fmt:
            inner["format"] = self.fmt
        return {"stream" if self.mode == "stream" else "atEnd": inner}

    def is_streaming(self) -> bool:
        return self.mode == "stream"


@dataclass(frozen=True)
class ProgressArgs:
    """Ask the ExeUnit for progress reports of a deploy or a transfer (yapapi's names):
    every `updateInterval` (a duration such as "1s") and/or every `updateStep` bytes."""

    updateInterval: str | None = None  # yagna's and yapapi's spelling
    updateStep: int | None = None


def capture_dict(stdout: CaptureSpec | None, stderr: CaptureSpec | None) -> dict[str, object]:
    """The `capture` entry of a run command: streamed unless told otherwise (yapapi's
    default)."""
    stream = CaptureContext(mode="stream")
    return {"stdout": (stdout or stream).to_dict(), "stderr": (stderr or stream).to_dict()}


def progress_dict(progress: ProgressArgs | None) -> dict[str, object]:
    """`{"progress": {...}}` for a command body, or nothing when no reports were asked."""
    if progress is None:
        return {}
    asked = {"updateInterval": progress.updateInterval, "updateStep": progress.updateStep}
    return {"progress": {k: v for k, v in asked.items() if v is not None}}
