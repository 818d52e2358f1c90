"""Newline-delimited messages over a ``trio.abc.ReceiveStream``, with a size limit.

The reader never holds more than ``max_message_bytes`` plus one receive chunk:
as soon as the bytes of an unfinished line pass the limit it raises
``MessageTooLarge``, without waiting for the newline. It records when the
current line started (``partial_since``), so that the caller can bound how
long a started line may take (slowloris).

Cancellation: ``receive_line`` may be cancelled at any time; the bytes received
so far stay buffered and the next call continues where it stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from trio.abc import ReceiveStream

CHUNK: Final = 64 * 1024


class MessageTooLarge(Exception):
    """A line grew past the limit; the connection cannot be resynchronised."""


class LineReader:
    def __init__(self, stream: ReceiveStream, max_message_bytes: int) -> None:
        self._stream = stream
        self._max = max_message_bytes
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._eof = False
        self.partial_since: float | None = None

    def _pop_line(self) -> bytes | None:
        end = self._buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(self._buf)
            if len(self._buf) > self._max:
                raise MessageTooLarge
            return None
        if end > self._max:
            raise MessageTooLarge
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        self._scanned = 0
        self.partial_since = trio.current_time() if self._buf else None
        return line

    async def receive_line(self) -> bytes | None:
        """The next line without its ``\\n`` (a trailing ``\\r`` is kept);
        ``None`` at end of stream. An unterminated last line is returned as a
        line. Raises MessageTooLarge."""
        while True:
            line = self._pop_line()
            if line is not None:
                return line
            if self._eof:
                if self._buf:
                    rest = bytes(self._buf)
                    self._buf.clear()
                    self.partial_since = None
                    return rest
                return None
            data = await self._stream.receive_some(CHUNK)
            if not data:
                self._eof = True
            elif not self._buf:
                self.partial_since = trio.current_time()
            self._buf += data

    @property
    def has_partial(self) -> bool:
        return bool(self._buf)
