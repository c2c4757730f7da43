"""The supervisor's records, fanned out to every `/events` reader.

Why its own piece: the engine calls the supervisor synchronously, so publishing must never
block or wait on a reader. A reader that falls 1000 records behind (or went away) loses its
stream instead; when the supervisor is done, every stream ends after what it holds, so
`down` sees the last record and then the end, at once.
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

Record = dict[str, Any]


class Broadcast:
    def __init__(self) -> None:
        #: each reader's stream, and the kinds it asked for (prefixes; None: every record)
        self._streams: list[tuple[MemoryObjectSendStream[Record], tuple[str, ...] | None]] = []
        self._ended = False

    @property
    def readers(self) -> int:
        return len(self._streams)

    def wants(self, kind: str) -> bool:
        """Whether some reader takes records of `kind` (else the caller need not build one:
        `up -d` reads only the deployment's and the instances' state changes)."""
        return any(_takes(kinds, kind) for _, kinds in self._streams)

    def publish(self, record: Record) -> None:
        """Hand `record` to every reader that takes its kind, without ever blocking."""
        kind = str(record.get("kind", ""))
        for entry in list(self._streams):
            stream, kinds = entry
            if not _takes(kinds, kind):
                continue
            try:
                stream.send_nowait(record)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._streams.remove(entry)
                stream.close()

    def subscribe(
        self, stream: MemoryObjectSendStream[Record], kinds: tuple[str, ...] | None = None
    ) -> None:
        """Give `stream` every record from now on, or only those whose kind starts with one
        of `kinds`."""
        if self._ended:
            stream.close()  # nothing more will be published: the reader gets the end
            return
        self._streams.append((stream, kinds))

    def end(self) -> None:
        """No record follows: end every stream after what it already holds."""
        self._ended = True
        for stream, _ in self._streams:
            stream.close()
        self._streams.clear()


def _takes(kinds: tuple[str, ...] | None, kind: str) -> bool:
    return kinds is None or kind.startswith(kinds)
