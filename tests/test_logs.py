"""SPEC §6 log format, conversation ids from a context variable, redaction, the writer thread."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

import pytest
import trio
import trio.lowlevel

from daemon import logs
from daemon.logs import LineWriter, TextFormatter, conversation, fast_info, setup_logging

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


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_secret_in_the_conversation_id_is_redacted_too(fmt: str) -> None:
    """The conversation id is a peer's text like the message: a key in it
    never reaches the log, in either format (the JSON one redacted only
    the message and the traceback)."""
    out = io.StringIO()
    handler = setup_logging("INFO", fmt, ["topsecret"], out)
    try:
        with conversation("c-topsecret"):
            logging.getLogger("daemon.x").info("hello")
    finally:
        logging.getLogger("daemon").removeHandler(handler)
        logging.getLogger("daemon").propagate = True
    assert "topsecret" not in out.getvalue()
    assert "c-***" in out.getvalue()


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


# The daemon's writer: lines formatted on the loop, written by a thread.


class Pipe:
    """A real pipe: the writer's end as a text stream, and a thread draining
    the other end (as journald does)."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.stream = os.fdopen(write_fd, "w", encoding="utf-8")
        self._read_fd = read_fd
        self._got = b""
        self._more = threading.Condition()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        while data := os.read(self._read_fd, 1 << 16):
            with self._more:
                self._got += data
                self._more.notify_all()

    def read_until(self, count: int) -> list[str]:
        """The first ``count`` lines; fails if they take longer than 10 s."""
        with self._more:
            done = self._more.wait_for(lambda: self._got.count(b"\n") >= count, timeout=10)
            assert done, f"{count} lines not there after 10 s: {self._got[-300:]!r}"
            return self._got.decode().splitlines()

    def close(self) -> None:
        self.stream.close()
        self._drainer.join(10)
        os.close(self._read_fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close()


@contextlib.contextmanager
def writing(stream: TextIO, **options: Any) -> Iterator[LineWriter]:
    """A LineWriter on the ``daemon`` loggers, closed at the end."""
    writer = LineWriter(stream, **options)
    writer.setFormatter(TextFormatter([]))
    root = logging.getLogger("daemon")
    saved = root.handlers[:], root.level, root.propagate
    root.handlers[:] = [writer]
    root.setLevel("DEBUG")
    root.propagate = False
    try:
        yield writer
    finally:
        writer.close()
        root.handlers[:], _, root.propagate = saved
        root.setLevel(saved[1])


def test_the_writer_keeps_every_line_in_order_and_in_form(pipe: Pipe) -> None:
    """Lines reach the reader in the order they were logged, each in SPEC §6
    form; closing (a clean stop) writes those still waiting."""
    log = logging.getLogger("daemon.analysis")
    with writing(pipe.stream, linger=3600):  # only close (or a WARNING) writes
        for i in range(3000):
            with conversation(f"c{i % 7}"):
                if i % 1000 == 999:
                    log.warning("line %d", i)
                else:
                    log.info("merge_step [CACHED|multimodal|m] Conversation: %d messages", i)
    got = pipe.read_until(3000)
    assert len(got) == 3000
    for i, text in enumerate(got):
        match = LINE.match(text)
        assert match, text
        assert match["cid"] == f"c{i % 7}"
        assert match["msg"].endswith(f" {i}" if i % 1000 == 999 else f": {i} messages")


def test_a_quiet_log_writes_at_once_and_a_busy_one_in_batches(pipe: Pipe) -> None:
    """The first line after a quiet spell is written at once (a crash right
    after it loses nothing); the lines after it, while they keep coming,
    wait for the linger (here an hour) until a WARNING cuts it short, and
    go out with it, in order."""
    log = logging.getLogger("daemon.race")
    with writing(pipe.stream, linger=3600):
        log.info("Premium task still running, will cache in background")
        [first] = pipe.read_until(1)
        log.info("Background: Waiting for premium task to complete...")
        log.warning("Premium task timeout after 30s")
        _, second, third = pipe.read_until(3)
    assert first.endswith("INFO [-] Premium task still running, will cache in background")
    assert second.endswith("INFO [-] Background: Waiting for premium task to complete...")
    assert third.endswith("WARNING [-] Premium task timeout after 30s")


class StoppedReader(io.StringIO):
    """A log reader that stops reading: the first write blocks (like a
    ``write`` on a full pipe) until ``resume``. A write from the event loop's
    own thread is counted instead of blocking it (a synchronous handler)."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = threading.Event()
        self.writes_on_the_loop = 0
        self.loop_thread = threading.current_thread()

    def write(self, text: str) -> int:
        if threading.current_thread() is self.loop_thread:
            self.writes_on_the_loop += 1
        else:
            self.reading.wait()  # the test resumes it in a ``finally``: no real-time bound
        return super().write(text)

    def resume(self) -> None:
        self.reading.set()


async def test_a_stopped_reader_never_stalls_the_loop(autojump_clock: trio.abc.Clock) -> None:
    """10 s (virtual) of cache hits, one INFO line each, while the log's
    reader does not read: every hit is served on time, no write happens on
    the loop's thread, the lines past the buffer are dropped and counted,
    and once the reader reads again it gets the kept lines in order, with
    the count of those dropped in their place."""
    reader = StoppedReader()
    log = logging.getLogger("daemon.analysis")
    with writing(reader, linger=0.001, max_bytes=20_000):
        try:
            started = trio.current_time()
            for served in range(10_000):
                with conversation("hit"):
                    log.info("merge_step [CACHED|multimodal|m] Conversation: %d messages", served)
                await trio.sleep(0.001)
            assert trio.current_time() - started == pytest.approx(10)
            assert reader.writes_on_the_loop == 0
            assert reader.getvalue() == ""  # the writer is still stuck in its first write
        finally:
            reader.resume()
    assert reader.writes_on_the_loop == 0
    # Each count of dropped lines stands where those lines would have been.
    following, notes = 0, 0
    for text in reader.getvalue().splitlines():
        match = LINE.match(text)
        assert match is not None, text
        if match["level"] == "WARNING":
            dropped = int(match["msg"].split()[0])
            assert match["msg"] == f"{dropped} log lines dropped: the log reader did not keep up"
            following += dropped
            notes += 1
        else:
            assert match["msg"].endswith(f": {following} messages")
            following += 1
    assert following == 10_000
    assert notes >= 1


def test_setup_logging_in_the_background_restores_logging_at_close(pipe: Pipe) -> None:
    """The daemon's set-up: a LineWriter, and lean records (no lookup of
    the caller's frame) while it is installed; logging as it was after."""
    factory = logging.getLogRecordFactory()
    handler = setup_logging("INFO", "text", ["sk-secret"], pipe.stream, background=True)
    try:
        assert isinstance(handler, LineWriter)
        assert logging._srcfile is None
        assert logging.getLogRecordFactory() is not factory
        with conversation("c-7"):
            logging.getLogger("daemon.x").info("key %s", "sk-secret")
            logging.getLogger("daemon.x").info("%(a)s and %(b)s", {"a": 1, "b": 2})
    finally:
        handler.close()
        logging.getLogger("daemon").removeHandler(handler)
        logging.getLogger("daemon").propagate = True
    assert logging._srcfile is not None
    assert logging.getLogRecordFactory() is factory
    first, second = pipe.read_until(2)
    assert first.endswith("INFO [c-7] key ***")
    assert second.endswith("INFO [c-7] 1 and 2")


# The hit line's fast path: the line logging would write, without a record.

HIT = "merge_step [CACHED|%s|%s] Conversation: %d messages"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_fast_info_writes_the_very_line_logging_would(
    pipe: Pipe, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same clock, same conversation, same arguments: ``fast_info`` and
    ``log.info`` write the same bytes (time, level, escaped id and message,
    secrets redacted), and ``fast_info`` makes no ``LogRecord`` doing it."""
    monkeypatch.setattr(time, "time", lambda: 1796541665.0429)
    log = logging.getLogger("daemon.analysis")
    handler = setup_logging("INFO", fmt, ["sk-secret"], pipe.stream, background=True)
    try:
        with conversation("c-1]\n"):
            log.info(HIT, "premium\x1b", "model-sk-secret", 6)
            with monkeypatch.context() as no_records:
                no_records.setattr(logging.Logger, "makeRecord", _no_record)
                fast_info(log, HIT, "premium\x1b", "model-sk-secret", 6)
    finally:
        handler.close()
        logging.getLogger("daemon").removeHandler(handler)
        logging.getLogger("daemon").propagate = True
    slow, fast = pipe.read_until(2)
    assert fast == slow
    assert "sk-secret" not in fast
    if fmt == "text":
        expected = "INFO [c-1\\x5d\\n] merge_step [CACHED|premium\\x1b|model-***] Conversation: 6"
        assert fast == time.strftime("%Y-%m-%dT%H:%M:%S.042 ", time.localtime(1796541665)) + (
            expected + " messages"
        )
    else:
        entry = json.loads(fast)
        assert entry["logger"] == "daemon.analysis"
        assert entry["conversation_id"] == "c-1\\x5d\\n"
        assert (
            entry["message"]
            == "merge_step [CACHED|premium\\x1b|model-***] Conversation: 6 messages"
        )


def _no_record(*args: object, **kwargs: object) -> logging.LogRecord:
    raise AssertionError("fast_info made a LogRecord")


def test_fast_info_lines_keep_their_place_among_the_others(pipe: Pipe) -> None:
    """Lines from ``fast_info``, ``log.info`` and ``log.warning`` reach the
    reader in the order they were logged, through the same queue."""
    log = logging.getLogger("daemon.analysis")
    with writing(pipe.stream, linger=3600):  # only close (or a WARNING) writes
        for i in range(900):
            with conversation(f"c{i % 5}"):
                if i % 3 == 0:
                    fast_info(log, HIT, "premium", "m", i)
                elif i % 3 == 1:
                    log.info(HIT, "multimodal", "m", i)
                elif i % 300 == 299:
                    log.warning("line %d", i)
                else:
                    log.info("line %d", i)
    got = pipe.read_until(900)
    assert len(got) == 900
    for i, text in enumerate(got):
        match = LINE.match(text)
        assert match, text
        assert match["cid"] == f"c{i % 5}"
        assert match["level"] == ("WARNING" if i % 300 == 299 else "INFO")
        if i % 3 == 0:
            assert match["msg"] == f"merge_step [CACHED|premium|m] Conversation: {i} messages"
        else:
            assert match["msg"].endswith(f" {i}" if i % 3 == 2 else f": {i} messages")


def test_fast_info_keeps_the_messages_it_escaped_but_never_too_many(pipe: Pipe) -> None:
    """The hit line's message repeats, so ``fast_info`` keeps it escaped for
    the next call: a kept message gives the same bytes as a new one (control
    characters escaped both times), and no more than ``_ESCAPED_KEPT``
    messages are kept, however many different ones come."""
    log = logging.getLogger("daemon.analysis")
    kept = logs._ESCAPED_KEPT
    logs._ESCAPED.clear()
    with writing(pipe.stream, linger=3600):
        for _ in range(2):  # the second from what the first kept
            fast_info(log, HIT, "premium\x1b[2J", "m\n", 6)
        for i in range(3 * kept):
            fast_info(log, HIT, "premium", "m", i)
            assert len(logs._ESCAPED) <= kept
    got = pipe.read_until(2 + 3 * kept)
    first, second = (LINE.match(text) for text in got[:2])
    assert first
    assert second
    assert (
        first["msg"]
        == second["msg"]
        == ("merge_step [CACHED|premium\\x1b[2J|m\\n] Conversation: 6 messages")
    )
    assert [text.split("Conversation: ")[1] for text in got[2:]] == [
        f"{i} messages" for i in range(3 * kept)
    ]


def test_fast_info_respects_the_level_set_at_run_time(pipe: Pipe) -> None:
    log = logging.getLogger("daemon.analysis")
    handler = setup_logging("WARNING", "text", [], pipe.stream, background=True)
    try:
        fast_info(log, HIT, "premium", "m", 1)  # below the level: nothing
        logging.getLogger("daemon").setLevel("INFO")
        fast_info(log, HIT, "premium", "m", 2)
        logging.getLogger("daemon").setLevel("WARNING")
        fast_info(log, HIT, "premium", "m", 3)
        logging.getLogger("daemon").setLevel("INFO")
        logging.disable(logging.INFO)
        fast_info(log, HIT, "premium", "m", 4)
        logging.disable(logging.NOTSET)
        log.warning("the end")
    finally:
        handler.close()
        logging.getLogger("daemon").removeHandler(handler)
        logging.getLogger("daemon").propagate = True
    first, last = pipe.read_until(2)
    assert first.endswith("INFO [-] merge_step [CACHED|premium|m] Conversation: 2 messages")
    assert last.endswith("WARNING [-] the end")


def test_fast_info_is_log_info_for_any_other_handler(
    caplog: pytest.LogCaptureFixture, pipe: Pipe
) -> None:
    """Without the daemon's writer (pytest's caplog), or with a handler
    next to it, every handler gets the record as ``log.info`` gives it."""
    log = logging.getLogger("daemon.analysis")
    with caplog.at_level(logging.INFO, logger="daemon"), conversation("c-9"):
        fast_info(log, HIT, "premium", "m", 7)
    [record] = caplog.records
    assert (record.levelname, record.name) == ("INFO", "daemon.analysis")
    assert record.getMessage() == "merge_step [CACHED|premium|m] Conversation: 7 messages"

    # A handler next to the writer: on the logger itself, or before it on ``daemon``.
    for place, where in ((log.handlers, 0), (logging.getLogger("daemon").handlers, 0)):
        other = io.StringIO()
        extra = logging.StreamHandler(other)
        extra.setFormatter(TextFormatter([]))
        with writing(pipe.stream):
            place.insert(where, extra)
            try:
                fast_info(log, HIT, "premium", "m", 8)
            finally:
                place.remove(extra)
        *_, line = pipe.read_until(1 if place is log.handlers else 2)
        assert line.endswith("merge_step [CACHED|premium|m] Conversation: 8 messages")
        assert other.getvalue() == line + "\n"


def test_fast_info_with_arguments_that_do_not_fit_reports_them_as_logging_does(
    pipe: Pipe, capsys: pytest.CaptureFixture[str]
) -> None:
    log = logging.getLogger("daemon.analysis")
    with writing(pipe.stream):
        fast_info(log, HIT, "premium", "m", "not a number")  # no exception for the caller
        log.info("after")
    [line] = pipe.read_until(1)
    assert line.endswith("INFO [-] after")
    assert "--- Logging error ---" in capsys.readouterr().err
