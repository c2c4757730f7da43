"""Output capture of ExeScript ``run`` commands, as the real ExeUnit does it.

Pure logic (no I/O), so it is unit-tested on its own. Modes per stream (yagna-rest.md §5.2):

* no capture spec: output is discarded -> result ``null``, no events;
* ``{"stream": {"limit"?: N, "format"?: f}}``: every chunk becomes a stdout/stderr event and
  is kept for the result; with a limit only the first N bytes are streamed and kept;
* ``{"atEnd": {}}`` (everything), ``{"atEnd": {"head": N}}``, ``{"tail": N}``,
  ``{"headTail": N}`` (ceil(N/2) first + floor(N/2) last bytes): no events;
* format ``str``/``string`` (default: UTF-8 text, lossy) or ``bin``/``binary`` (a list of
  byte values). Empty output is ``null``.
"""

from __future__ import annotations

import codecs
from typing import Any

Output = str | list[int] | None


class Capture:
    """What to keep of one output stream and what to stream as events."""

    def __init__(self, spec: Any) -> None:
        self.mode: str | None = None
        self.binary = False
        self.limit: int | None = None  # stream mode
        self.head: int | None = None  # atEnd: bytes kept from the start
        self.tail: int | None = None  # atEnd: bytes kept from the end
        if isinstance(spec, dict) and spec:
            self.mode, options = next(iter(spec.items()))
            options = options if isinstance(options, dict) else {}
            self.binary = options.get("format") in ("bin", "binary")
            if self.mode == "stream":
                self.limit = _int_or_none(options.get("limit"))
            elif self.mode == "atEnd":
                if options.get("head") is not None:
                    self.head, self.tail = int(options["head"]), 0
                elif options.get("tail") is not None:
                    self.head, self.tail = 0, int(options["tail"])
                elif options.get("headTail") is not None:
                    n = int(options["headTail"])
                    self.head, self.tail = (n + 1) // 2, n // 2
            else:
                self.mode = None
        self._head = bytearray()
        self._tail = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def streaming(self) -> bool:
        return self.mode == "stream"

    def feed(self, chunk: bytes) -> Output:
        """Keep what the mode keeps of ``chunk``; return the event payload, if any."""
        if self.mode is None:
            return None
        if self.mode == "stream":
            if self.limit is not None:
                chunk = chunk[: max(0, self.limit - len(self._head))]
            self._head += chunk
            if not chunk:
                return None
            return list(chunk) if self.binary else self._decoder.decode(chunk) or None
        # atEnd
        if self.head is None:  # keep everything
            self._head += chunk
            return None
        room = self.head - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if self.tail and chunk:
            self._tail += chunk
            del self._tail[: max(0, len(self._tail) - self.tail)]
        return None

    def result(self) -> Output:
        if self.mode is None:
            return None
        data = bytes(self._head + self._tail)
        if not data:
            return None
        return list(data) if self.binary else data.decode("utf-8", errors="replace")


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
