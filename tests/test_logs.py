"""SPEC §6 log format, conversation ids from a context variable, redaction."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import trio
import trio.lowlevel

from daemon.logs import conversation, setup_logging

LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (?P<level>[A-Z]+) \[(?P<cid>[^]]*)\] (?P<msg>.*)$"
)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = setup_logging("DEBUG", "text", ["sk-or-v1-abcdef", "sk-or"], out)
    yield out
    logging.getLogger("daemon").removeHandler(handler)
    logging.getLogger("daemon").propagate = True


def lines(out: io.StringIO) -> list[re.Match[str]]:
    matches = [LINE.match(line) for line in out.getvalue().splitlines() if line[:1].isdigit()]
    assert all(matches)
    return matches  # type: ignore[return-value]


async def test_conversation_id_reaches_child_tasks(stream: io.StringIO) -> None:
    log = logging.getLogger("daemon.race")

    async def background() -> None:
        await trio.lowlevel.checkpoint()
        log.info("Background: Premium result cached successfully")

    log.info("no conversation yet")
    with conversation("conv-42"):
        log.info("merge_step [CACHED|multimodal|m] Conversation: %d messages", 6)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(background)
    got = [(m["level"], m["cid"], m["msg"]) for m in lines(stream)]
    assert got == [
        ("INFO", "-", "no conversation yet"),
        ("INFO", "conv-42", "merge_step [CACHED|multimodal|m] Conversation: 6 messages"),
        ("INFO", "conv-42", "Background: Premium result cached successfully"),
    ]


def test_secrets_never_appear(stream: io.StringIO) -> None:
    log = logging.getLogger("daemon.providers")
    log.warning("calling with Authorization: Bearer %s", "sk-or-v1-abcdef")
    try:
        raise ValueError("key sk-or-v1-abcdef rejected")
    except ValueError:
        log.exception("provider failed")
    text = stream.getvalue()
    assert "sk-or" not in text
    assert "Bearer ***" in text
    assert "key *** rejected" in text


def test_json_format() -> None:
    out = io.StringIO()
    handler = setup_logging("INFO", "json", ["topsecret"], out)
    try:
        with conversation("c1"):
            logging.getLogger("daemon.x").info("hello %s", "topsecret")
    finally:
        logging.getLogger("daemon").removeHandler(handler)
        logging.getLogger("daemon").propagate = True
    entry = json.loads(out.getvalue())
    assert entry["conversation_id"] == "c1"
    assert entry["message"] == "hello ***"
    assert entry["level"] == "INFO"
