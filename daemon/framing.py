"""Newline-delimited messages over a ``trio.abc.ReceiveStream``, with a size limit.

The reader never holds more than ``max_message_bytes`` plus one receive chunk:
as soon as the bytes of an unfinished line pass the limit it raises
``MessageTooLarge``, without waiting for the newline. It records when the
current line started (``partial_since``), so that the caller can bound how
long a started line may take (slowloris).

Cancellation: ``fill`` and ``receive_line`` may be cancelled at any time; the
bytes received so far stay buffered and the next call continues where it
stopped. A caller with deadlines that depend on the state of the buffer loops
over ``pop_line`` and ``fill`` itself (see ``rpc.Connection``).
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

    def pop_line(self) -> bytes | None:
        """A complete buffered line without its ``\\n``, if there is one.

        At end of stream an unterminated last line counts as a line. Returns
        None when more input is needed (or ``finished``). Raises
        MessageTooLarge as soon as the line being received is over the limit."""
        end = self._buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(self._buf)
            if len(self._buf) > self._max:
                raise MessageTooLarge
            if self._eof and self._buf:
                rest = bytes(self._buf)
                self._buf.clear()
                self._scanned = 0
                self.partial_since = None
                return rest
            return None
        if end > self._max:
            raise MessageTooLarge
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        self._scanned = 0
        self.partial_since = trio.current_time() if self._buf else None
        return line

    def restart_line_clock(self) -> None:
        """Count the unfinished line as started now: for a caller that stopped
        reading for a while, so that its own pause is not held against the peer."""
        if self._buf:
            self.partial_since = trio.current_time()

    @property
    def finished(self) -> bool:
        """End of stream reached and every line handed out."""
        return self._eof and not self._buf

    async def fill(self) -> None:
        """Receive one chunk into the buffer (or note the end of stream)."""
        data = await self._stream.receive_some(CHUNK)
        if not data:
            self._eof = True
            return
        if not self._buf:
            self.partial_since = trio.current_time()
        self._buf += data

    async def receive_line(self) -> bytes | None:
        """The next line (see ``pop_line``); ``None`` at end of stream."""
        while True:
            line = self.pop_line()
            if line is not None:
                return line
            if self.finished:
                return None
            await self.fill()
