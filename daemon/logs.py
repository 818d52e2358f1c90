"""Log lines in SPEC §6 form: ``<time> <LEVEL> [<conversation_id>] <message>``.

The conversation id comes from a context variable, so every line written while
serving a request, and by background tasks spawned for it (trio copies the
context into child tasks), carries it without passing it around. Secrets (the
API key values of configured providers) are replaced by ``***`` in every
formatted line, tracebacks included. Control characters in a message or a
conversation id (a peer or a model controls both) are escaped, so every
record is one line and none can be forged.

The daemon writes its lines through a ``LineWriter`` (``setup_logging(...,
background=True)``): a line is formatted where it is logged (so it says what
was true then) and handed to one writer thread, which writes the lines in
order, many per ``write``. The event loop never waits for the log's reader:
a line costs it a record, a formatted string and a list append, not a
``write`` system call; the line of every cache hit (``fast_info``) costs
the string and the append alone. While lines keep coming, INFO lines wait
``LineWriter.LINGER`` (20 ms) at most (a quiet log writes at once);
WARNING and above are written at once; a clean stop (``close``) writes
everything; a reader that stops reading makes lines past
``max_bytes`` dropped and counted, never the loop wait (docs/operations.md).
"""

from __future__ import annotations

import contextvars
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, TextIO

import msgspec

NO_CONVERSATION = "-"

conversation_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "conversation_id", default=NO_CONVERSATION
)


@contextmanager
def conversation(cid: str) -> Iterator[None]:
    """Tag every log line written inside the block (and by tasks it spawns) with ``cid``."""
    token = conversation_id.set(cid)
    try:
        yield
    finally:
        conversation_id.reset(token)


def _escapes() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    table |= {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
    table |= {0x2028: "\\u2028", 0x2029: "\\u2029"}  # line separators to some readers
    table[ord("\\")] = "\\\\"  # so that an escape in the log is never the peer's own text
    return table


_ESCAPES: Final = _escapes()
_CID_ESCAPES: Final = {**_ESCAPES, ord("]"): "\\x5d"}  # the id cannot close its brackets


def escape(text: str) -> str:
    """``text`` on one line: control characters (C0, DEL, C1, U+2028/2029) as
    ``\\n``, ``\\x1b``... A conversation id, a bubble's text or an error
    a peer controls can then never start a line of its own (a forged
    ``... INFO [admin] Background: Premium result cached successfully``)."""
    # Every character the table escapes is either not printable or a
    # backslash: most lines need no copy (one C scan instead of a translate).
    if text.isprintable() and "\\" not in text:
        return text
    return text.translate(_ESCAPES)


def escape_cid(cid: str) -> str:
    """``escape``, and ``]`` as ``\\x5d``: a conversation id ends only where
    the format says (``[x] Background: ...`` cannot pass for a message)."""
    if cid.isprintable() and "\\" not in cid and "]" not in cid:
        return cid
    return cid.translate(_CID_ESCAPES)


_MILLIS: Final = tuple(f".{ms:03d}" for ms in range(1000))


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    _second: tuple[int, str] = (-1, "")  # the last second formatted, and its text
    _milli: tuple[int, str] = (-1, "")  # the last millisecond formatted, and its text

    def stamp(self, created: float) -> str:
        """``created`` (``time.time()``) as lines show it, to the millisecond:
        ``2026-11-29T14:56:38.123``. Lines logged within one millisecond
        share its text; strftime runs once a second. (Each cache is one
        tuple, replaced whole: a thread never reads half of another's.)"""
        milli = int(created * 1000)
        last = self._milli
        if milli == last[0]:
            return last[1]
        second, ms = divmod(milli, 1000)
        day = self._second
        if second != day[0]:
            day = self._second = (
                second,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second)),
            )
        text = day[1] + _MILLIS[ms]
        self._milli = (milli, text)
        return text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created)

    def line(self, created: float, levelname: str, name: str, cid: str, message: str) -> str:
        """The line ``format`` makes of a record with these fields (logged at
        ``created`` by logger ``name`` in conversation ``cid``; ``message``
        with its arguments in, already ``escape``d) and no traceback;
        ``fast_info`` uses it."""
        raise NotImplementedError


def _conversation_of(record: logging.LogRecord) -> str:
    """The record's conversation id: the context's when it was formatted
    (records are formatted where they are logged)."""
    cid = record.__dict__.get("conversation_id")
    return cid if isinstance(cid, str) else conversation_id.get()


class TextFormatter(_Redacting):
    """``2026-11-29T14:56:38.123 INFO [conv-1] message`` (+ traceback lines,
    each indented, so that no text inside a traceback starts a line)."""

    def format(self, record: logging.LogRecord) -> str:
        cid, message = _conversation_of(record), escape(record.getMessage())
        line = self.line(record.created, record.levelname, record.name, cid, message)
        if record.exc_info:
            # Redacted apart from the line before it: the same text, as no
            # secret holds a newline (a key in an HTTP header cannot).
            trace = self.formatException(record.exc_info).splitlines()
            line += self.redact("".join("\n  " + escape(part) for part in trace))
        return line

    def line(self, created: float, levelname: str, name: str, cid: str, message: str) -> str:
        line = f"{self.stamp(created)} {levelname} [{escape_cid(cid)}] {message}"
        return self.redact(line) if self._secrets else line


class JsonFormatter(_Redacting):
    """One JSON object per line with the same fields, for log shippers."""

    _encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        cid, message = _conversation_of(record), escape(record.getMessage())
        entry = self._entry(record.created, record.levelname, record.name, cid, message)
        if record.exc_info:
            entry["traceback"] = self.redact(self.formatException(record.exc_info))
        return self._encoder.encode(entry).decode()

    def line(self, created: float, levelname: str, name: str, cid: str, message: str) -> str:
        return self._encoder.encode(self._entry(created, levelname, name, cid, message)).decode()

    def _entry(
        self, created: float, levelname: str, name: str, cid: str, message: str
    ) -> dict[str, str]:
        return {
            "time": self.stamp(created),
            "level": levelname,
            "conversation_id": self.redact(escape_cid(cid)),  # a peer's text, like the message
            "logger": name,
            "message": self.redact(message),
        }


_WARNING: Final = logging.WARNING
_BATCH_BYTES: Final = 64 * 1024  # waiting this much ends the linger


class LineWriter(logging.Handler):
    """Writes formatted lines to ``stream`` from a thread of its own, in order.

    ``emit`` (on the logging thread, usually the event loop) formats the
    record and appends the line to a list. The first line into an empty
    list wakes the writer thread, which writes at once if its last write was
    ``linger`` seconds ago or more (a quiet log loses nothing to a batch);
    else it lets a batch gather until then (cut short by a WARNING or
    worse, or ``BATCH_BYTES`` waiting), then takes the whole list and writes
    it with one ``write``. So under load a ``write`` carries many lines,
    and a blocked reader blocks only the writer thread: while it is
    blocked, lines are kept up to ``max_bytes`` and those past it are
    dropped and counted, then reported in a WARNING line (``N log lines
    dropped ...``) in their place once it reads again.

    ``close`` writes every line logged before it (a clean stop loses
    nothing; it waits for the reader to take them). A ``kill -9`` loses what
    is waiting: under load, INFO lines of the last ``linger`` seconds; more
    only if the reader was not reading.
    """

    LINGER: Final = 0.02  # seconds between writes while lines keep coming
    BATCH_BYTES: Final = _BATCH_BYTES
    MAX_BYTES: Final = 8 * 1024 * 1024  # kept while the reader is not reading

    def __init__(
        self, stream: TextIO, *, linger: float = LINGER, max_bytes: int = MAX_BYTES
    ) -> None:
        super().__init__()
        self.stream = stream
        self._linger = linger
        self._max_bytes = max_bytes
        # Guarded by _guard, not by the handler's own lock: logging.shutdown
        # holds that one while it calls close, which waits for the writer.
        self._guard = threading.Lock()
        self._lines: list[str] = []
        self._size = 0
        self._dropped = 0
        self._closing = False  # close() was called
        self._done = False  # the writer has written its last lines and stopped
        self._wake = threading.Event()  # lines are waiting
        self._hurry = threading.Event()  # write them now
        self._thread = threading.Thread(target=self._run, name="ctxd-log-writer", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """``Handler.handle`` without the handler's lock: ``emit`` guards
        only the list, and formatting needs no lock."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and queue its line; never blocks on I/O (but
        once the handler is closed, writes the line itself)."""
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.put(line, record.levelno)

    def put(self, line: str, levelno: int) -> None:
        """Queue ``line`` (formatted, without its newline), logged at ``levelno``."""
        self._guard.acquire()  # not ``with``: half the cost, on every hit
        try:
            if self._done:  # the writer has stopped: write it here
                self._write(line + "\n")
                return
            waiting = self._size
            size = waiting + len(line) + 1
            if size > self._max_bytes:
                self._dropped += 1
                return
            self._lines.append(line)
            self._size = size
        finally:
            self._guard.release()
        if levelno >= _WARNING or size >= _BATCH_BYTES:
            if not self._hurry.is_set():
                self._hurry.set()
                self._wake.set()
        elif not waiting:  # the first line: the writer may be asleep
            self._wake.set()

    def flush(self) -> None:
        """Have the writer write what waits now; does not wait for it."""
        self._hurry.set()
        self._wake.set()

    def close(self) -> None:
        """Write every line logged so far, then stop the writer thread."""
        with self._guard:
            if self._closing:
                return
            self._closing = True
        self.flush()
        if self._thread is not threading.current_thread():
            self._thread.join()
        super().close()

    def _run(self) -> None:
        done = False
        written = -math.inf  # when the last write ended
        while not done:
            self._wake.wait()
            busy = written + self._linger - time.monotonic()
            if busy > 0:  # lines keep coming: let a batch gather
                self._hurry.wait(busy)
            self._wake.clear()  # before the take: a line after it wakes us again
            self._hurry.clear()
            with self._guard:
                lines = self._take()
                if self._closing:  # the last round: written under the guard, so
                    self._write(_text(lines))  # a line logged meanwhile comes after
                    self._done = done = True
                    continue
            if lines:
                self._write(_text(lines))
                written = time.monotonic()

    def _take(self) -> list[str]:
        """The lines waiting, and the count of those dropped after them; with ``_guard``."""
        lines, self._lines, self._size = self._lines, [], 0
        if self._dropped:  # they came after the lines kept, before any later one
            lines.append(self._dropped_line(self._dropped))
            self._dropped = 0
        return lines

    def _dropped_line(self, count: int) -> str:
        note = logging.LogRecord(
            "daemon.logs",
            logging.WARNING,
            __file__,
            0,
            "%d log lines dropped: the log reader did not keep up",
            (count,),
            None,
        )
        note.conversation_id = NO_CONVERSATION
        return self.format(note)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: nowhere to report it
            pass


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def fast_info(log: logging.Logger, msg: str, *args: object) -> None:
    """``log.info(msg, *args)``, for the line logged on every cache hit, at
    40% of its cost when the daemon's set-up holds (``log`` is a
    ``daemon.x`` logger whose records go to a ``LineWriter`` and nowhere
    else): that writer's formatter makes the very line ``emit`` would make
    of the record and the writer queues it after the lines logged before
    it, but no ``LogRecord`` is made and no handler called. Else
    (pytest's ``caplog``, another handler, a filter) it is ``log.info``.
    The level is checked at each call, so a level set at run time holds."""
    if not log.isEnabledFor(logging.INFO):
        return
    route = _fast_route(log)
    if route is None:
        log.info(msg, *args)
        return
    writer, formatter = route
    try:
        text = msg % args
    except Exception:  # arguments that do not fit: reported the way logging reports them
        log.info(msg, *args)
        return
    message = _ESCAPED.get(text)  # the hit line repeats: a strategy, a model, a count
    if message is None:
        if len(_ESCAPED) >= _ESCAPED_KEPT:
            _ESCAPED.clear()
        message = _ESCAPED[text] = escape(text)
    line = formatter.line(time.time(), "INFO", log.name, conversation_id.get(), message)
    writer.put(line, logging.INFO)


_ESCAPED: dict[str, str] = {}  # fast_info's messages, escaped
_ESCAPED_KEPT: Final = 1024  # at most; then forgotten all at once


def _fast_route(log: logging.Logger) -> tuple[LineWriter, _Redacting] | None:
    """The ``LineWriter`` that is the only handler ``log``'s records reach
    (its parent's only handler, not passed further up), and its formatter
    (one of ours), if ``log`` has no handlers or filters of its own; else
    None. What ``Logger.callHandlers`` would walk, for the one shape the
    daemon has."""
    parent = log.parent
    if parent is None or log.handlers or log.filters or not log.propagate or parent.propagate:
        return None
    handlers = parent.handlers
    if len(handlers) != 1:
        return None
    writer = handlers[0]
    if not isinstance(writer, LineWriter) or writer.filters or writer.level > logging.INFO:
        return None
    formatter = writer.formatter
    return (writer, formatter) if isinstance(formatter, _Redacting) else None


def setup_logging(
    level: str = "INFO",
    fmt: str = "text",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    *,
    background: bool = False,
) -> logging.Handler:
    """Route the ``daemon`` loggers to ``stream`` (stderr) in SPEC form; idempotent.

    ``background``: through a ``LineWriter`` (what the daemon does), and
    without the record fields the SPEC line never shows (the caller's file
    and line, thread and process names: ``logging``'s own optimisation
    switches), which halves what a record costs to make. Otherwise each line
    is written when logged (tests read them at once). Close the handler
    returned to write what waits and restore those switches."""
    root = logging.getLogger("daemon")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    out = stream if stream is not None else sys.stderr
    handler: logging.Handler = _Lean(out) if background else logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return handler


class _LeanRecord(logging.LogRecord):
    """A record with what a line shows (time, level, conversation, message,
    traceback) filled in, and the caller's file, thread and process left
    empty: ``LogRecord.__init__`` costs twice as much, for fields no ctxd
    line shows. The conversation id is taken here, where the line is logged."""

    def __init__(
        self,
        name: str,
        level: int,
        pathname: str,
        lineno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        sinfo: str | None = None,
        **kwargs: object,
    ) -> None:
        now = time.time()
        if args and len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
            args = args[0]  # as LogRecord does: "%(key)s" % {"key": ...}
        self.name, self.msg, self.args = name, msg, args
        self.levelname, self.levelno = logging.getLevelName(level), level
        self.pathname = self.filename = self.module = pathname
        self.lineno, self.funcName = lineno, func or "(unknown function)"
        self.exc_info, self.exc_text, self.stack_info = exc_info, None, sinfo
        self.created, self.msecs = now, (now - int(now)) * 1000
        self.relativeCreated = (now - _LOADED) * 1000
        self.thread = self.process = None
        self.threadName = self.processName = None
        self.conversation_id = conversation_id.get()


_LOADED: Final = time.time()


class _Lean(LineWriter):
    """A ``LineWriter`` that makes records lean while it is installed: no
    lookup of the caller's frame (``logging._srcfile = None``, the switch
    the logging HOWTO's "Optimization" section names) and ``_LeanRecord``."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._saved: tuple[str | None, Callable[..., logging.LogRecord]] | None = (
            logging._srcfile,
            logging.getLogRecordFactory(),
        )
        logging._srcfile = None
        logging.setLogRecordFactory(_LeanRecord)

    def close(self) -> None:
        super().close()
        if self._saved is not None:
            logging._srcfile, factory = self._saved
            logging.setLogRecordFactory(factory)
            self._saved = None
