"""Newline-delimited messages over a ``trio.abc.ReceiveStream``, with a size limit.

The reader never holds more than ``max_message_bytes`` plus one receive chunk:
as soon as the bytes of an unfinished line pass the limit it raises
``MessageTooLarge``, without waiting for the newline. It records when the
current line started (``partial_since``), so that the caller can bound how
long a started line may take (slowloris), and when bytes last arrived
(``received_at``), so that keep-alive lines keep a connection from idling.

Blank lines (only spaces, tabs, ``\\r``, ``\\v``, ``\\f``) are keep-alives, not
messages: ``pop_line`` drops a run of them in one regular-expression match,
so a chunk of 64 KiB of newlines costs microseconds, not 65,536 turns of the
caller's loop.

From a socket the reader reads directly when bytes are there, and waits
(``trio.lowlevel.wait_readable``) only when there are none: trio's
``receive_some`` passes through the scheduler after every successful read,
a trip that costs as much as the rest of a cache hit's reading (see
``rpc``). What bounds the work between two checkpoints instead is time: a
``Turn``, shared with the caller, which checkpoints before a read once the
task has run ``Turn.seconds`` since it last waited, whether it was skipping
blank lines here or answering requests in the caller.

Cancellation: ``fill`` and ``receive_line`` may be cancelled at any time; the
bytes received so far stay buffered and the next call continues where it
stopped.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from trio.abc import ReceiveStream

CHUNK: Final = 64 * 1024
TURN: Final = 0.001  # seconds a reader's task runs at most without a checkpoint
# The bytes that bytes.strip() strips: a line of only these is blank.
_BLANK_BYTES: Final = b" \t\r\n\x0b\x0c"
_BLANK_LINES: Final = re.compile(rb"(?:[ \t\r\x0b\x0c]*\n)+")


class MessageTooLarge(Exception):
    """A line grew past the limit; the connection cannot be resynchronised."""


class Turn:
    """How long a task has run since it last let the others run, bounded.

    ``resumed`` notes that the task just came back from a wait;
    ``checkpoint_if_due`` yields once the turn is ``seconds`` long. Wall
    time (``perf_counter``), not trio's clock: it bounds how long the loop
    is held, which virtual time in tests does not see."""

    def __init__(self, seconds: float = TURN) -> None:
        self.seconds = seconds
        self.began = time.perf_counter()

    def resumed(self) -> None:
        self.began = time.perf_counter()

    async def checkpoint_if_due(self) -> None:
        if time.perf_counter() - self.began >= self.seconds:
            await trio.lowlevel.checkpoint()
            self.began = time.perf_counter()


class LineReader:
    def __init__(
        self, stream: ReceiveStream, max_message_bytes: int, turn: Turn | None = None
    ) -> None:
        self._stream = stream
        self._max = max_message_bytes
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._eof = False
        self.partial_since: float | None = None
        self.received_at = trio.current_time()
        self.turn = turn or Turn()
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None

    def pop_line(self) -> bytes | None:
        """A complete buffered line without its ``\\n``, if there is one; blank
        lines are skipped.

        At end of stream an unterminated last line counts as a line. Returns
        None when more input is needed (or ``finished``). Raises
        MessageTooLarge as soon as the line being received is over the limit."""
        buf = self._buf
        end = buf.find(b"\n", self._scanned)
        # Blank lines first, all of a run in one match; tried only once a
        # newline is in, so a long line of spaces is not rescanned per chunk.
        if end >= 0 and buf[0] in _BLANK_BYTES and (blank := _BLANK_LINES.match(buf)):
            del buf[: blank.end()]
            self._scanned = 0  # the match held a newline, so it covered what was scanned
            if not buf:
                self.partial_since = None
            end = buf.find(b"\n")
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > self._max:
                raise MessageTooLarge
            if self._eof and buf:
                rest = bytes(buf)
                buf.clear()
                self._scanned = 0
                self.partial_since = None
                return rest if rest.strip() else None
            return None
        if end > self._max:
            raise MessageTooLarge
        line = bytes(buf[:end])
        del buf[: end + 1]
        self._scanned = 0
        self.partial_since = trio.current_time() if buf else None
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
        data = await self._receive()
        if not data:
            self._eof = True
            return
        self.received_at = trio.current_time()
        if not self._buf:
            self.partial_since = self.received_at
        self._buf += data

    async def _receive(self) -> bytes | bytearray:
        """One chunk: from a socket, read at once when it has bytes (no
        schedule point), else wait until it has; from any other stream,
        ``receive_some``."""
        sock = self._socket
        if sock is None:
            data = await self._stream.receive_some(CHUNK)
            self.turn.resumed()
            return data
        await self.turn.checkpoint_if_due()
        while True:
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError
            try:
                return os.read(fd, CHUNK)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                self.turn.resumed()
            except OSError as exc:  # ECONNRESET and the like
                raise trio.BrokenResourceError(str(exc)) from None

    async def receive_line(self) -> bytes | None:
        """The next non-blank line (see ``pop_line``); ``None`` at end of stream."""
        while True:
            line = self.pop_line()
            if line is not None:
                return line
            if self.finished:
                return None
            await self.fill()
