"""Log lines in SPEC §6 form: ``<time> <LEVEL> [<conversation_id>] <message>``.

The conversation id comes from a context variable, so every line written while
serving a request, and by background tasks spawned for it (trio copies the
context into child tasks), carries it without passing it around. Secrets (the
API key values of configured providers) are replaced by ``***`` in every
formatted line, tracebacks included. Control characters in a message or a
conversation id (a peer or a model controls both) are escaped, so every
record is one line and none can be forged.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Final, TextIO

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
    return text.translate(_ESCAPES)


def escape_cid(cid: str) -> str:
    """``escape``, and ``]`` as ``\\x5d``: a conversation id ends only where
    the format says (``[x] Background: ...`` cannot pass for a message)."""
    return cid.translate(_CID_ESCAPES)


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        ms = int(record.msecs)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f".{ms:03d}"


class TextFormatter(_Redacting):
    """``2026-11-29T14:56:38.123 INFO [conv-1] message`` (+ traceback lines,
    each indented, so that no text inside a traceback starts a line)."""

    def format(self, record: logging.LogRecord) -> str:
        cid = escape_cid(getattr(record, "conversation_id", NO_CONVERSATION))
        message = escape(record.getMessage())
        line = f"{self.formatTime(record)} {record.levelname} [{cid}] {message}"
        if record.exc_info:
            trace = self.formatException(record.exc_info).splitlines()
            line += "".join("\n  " + escape(part) for part in trace)
        return self.redact(line)


class JsonFormatter(_Redacting):
    """One JSON object per line with the same fields, for log shippers."""

    _encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "conversation_id": escape_cid(getattr(record, "conversation_id", NO_CONVERSATION)),
            "logger": record.name,
            "message": self.redact(escape(record.getMessage())),
        }
        if record.exc_info:
            entry["traceback"] = self.redact(self.formatException(record.exc_info))
        return self._encoder.encode(entry).decode()


class _ConversationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "conversation_id"):
            record.conversation_id = conversation_id.get()
        return True


def setup_logging(
    level: str = "INFO",
    fmt: str = "text",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route the ``daemon`` loggers to ``stream`` (stderr) in SPEC form; idempotent."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    handler.addFilter(_ConversationFilter())
    root = logging.getLogger("daemon")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return handler
