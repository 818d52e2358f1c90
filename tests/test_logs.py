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


FORGED = "\n2026-12-06T10:00:00.000 INFO [admin] Background: Premium result cached successfully"


def test_a_peer_cannot_forge_a_line(stream: io.StringIO) -> None:
    """A conversation id, a bubble's text or an error text carrying a newline
    wrote a well-formed line of its own; now every record is one line."""
    log = logging.getLogger("daemon.race")
    with conversation("c" + FORGED + "\x1b[2J"):
        log.info("  [1] talker(left) OK bbox=[1,2,3,4]: %s", "hi" + FORGED + "\r\u2028")
        try:
            raise ValueError("bad input" + FORGED)
        except ValueError:
            log.exception("handler failed")
    text = stream.getvalue()
    found = lines(stream)
    assert [m["level"] for m in found] == ["INFO", "ERROR"]  # nothing forged
    assert found[0]["cid"].startswith("c\\n2026-12-06T10:00:00.000 INFO [admin\\x5d Back")
    assert "\\x1b[2J" in text
    assert found[0]["msg"].endswith("successfully\\r\\u2028")
    trace = text.splitlines()[2:]
    assert trace
    assert all(line.startswith("  ") for line in trace)  # a traceback never starts a line
    assert "\n  2026-12-06T10:00:00.000 INFO [admin]" in text  # indented: not a line of its own


def test_a_peer_cannot_forge_a_json_line() -> None:
    out = io.StringIO()
    handler = setup_logging("INFO", "json", [], out)
    try:
        with conversation("c" + FORGED):
            logging.getLogger("daemon.race").info("text: %s", "hi" + FORGED + "\x1b")
    finally:
        logging.getLogger("daemon").removeHandler(handler)
        logging.getLogger("daemon").propagate = True
    [line] = out.getvalue().splitlines()
    entry = json.loads(line)
    assert "\n" not in entry["conversation_id"]
    assert "\n" not in entry["message"]
    assert entry["message"].endswith("successfully\\x1b")


def test_a_conversation_id_cannot_close_its_brackets(stream: io.StringIO) -> None:
    """``[x] Background: Premium result cached successfully] merge_step ...``
    read as a forged operator message; and a peer's literal backslash-n
    looked like an escaped newline."""
    with conversation("x] Background: Premium result cached successfully"):
        logging.getLogger("daemon.race").info("text: %s", "a\\nb")
    [found] = lines(stream)
    assert found["cid"] == "x\\x5d Background: Premium result cached successfully"
    assert found["msg"] == "text: a\\\\nb"
