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
        self._streams: list[MemoryObjectSendStream[Record]] = []
        self._ended = False

    @property
    def readers(self) -> int:
        return len(self._streams)

    def publish(self, record: Record) -> None:
        """Hand `record` to every reader, without ever blocking."""
        for stream in list(self._streams):
            try:
                stream.send_nowait(record)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._streams.remove(stream)
                stream.close()

    def subscribe(self, stream: MemoryObjectSendStream[Record]) -> None:
        if self._ended:
            stream.close()  # nothing more will be published: the reader gets the end
            return
        self._streams.append(stream)

    def end(self) -> None:
        """No record follows: end every stream after what it already holds."""
        self._ended = True
        for stream in self._streams:
            stream.close()
        self._streams.clear()
