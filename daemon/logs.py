"""Log lines in SPEC §6 form: ``<time> <LEVEL> [<conversation_id>] <message>``.

The conversation id comes from a context variable, so every line written while
serving a request, and by background tasks spawned for it (trio copies the
context into child tasks), carries it without passing it around. Secrets (the
API key values of configured providers) are replaced by ``***`` in every
formatted line, tracebacks included.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO

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
    """``2026-11-29T14:56:38.123 INFO [conv-1] message`` (+ traceback lines)."""

    def format(self, record: logging.LogRecord) -> str:
        cid = getattr(record, "conversation_id", NO_CONVERSATION)
        line = f"{self.formatTime(record)} {record.levelname} [{cid}] {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return self.redact(line)


class JsonFormatter(_Redacting):
    """One JSON object per line with the same fields, for log shippers."""

    _encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "conversation_id": getattr(record, "conversation_id", NO_CONVERSATION),
            "logger": record.name,
            "message": self.redact(record.getMessage()),
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
