"""LineReader: newline framing with a hard size limit."""

from __future__ import annotations

import itertools
import re

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from daemon.framing import LineReader, MessageTooLarge


async def feed(chunks: list[bytes], limit: int = 100) -> list[bytes]:
    send, receive = trio.testing.memory_stream_pair()
    for chunk in chunks:
        await send.send_all(chunk)
    await send.aclose()
    reader = LineReader(receive, limit)
    lines = []
    while (line := await reader.receive_line()) is not None:
        lines.append(line)
    return lines


async def test_lines_across_and_within_chunks() -> None:
    assert await feed([b"ab", b"c\nde", b"f\n\ng\nh"]) == [b"abc", b"def", b"g", b"h"]


async def test_blank_lines_are_skipped_a_chunk_at_a_time() -> None:
    """Keep-alive lines are not messages: a run of them, however long, is
    dropped by one ``pop_line`` (issue 20.1: one caller turn per blank line,
    65,536 in a chunk, froze the daemon). A blank last line is no line."""
    assert await feed([b"\n \r\n\t\x0b\x0c\n", b"a\n  ", b" \nb\r\n", b"   "]) == [b"a", b"b\r"]
    send, receive = trio.testing.memory_stream_pair()
    reader = LineReader(receive, 100)
    await send.send_all(b"\r\n" * 30000 + b'{"a":1}\n' + b" \n" * 30000)
    await reader.fill()
    while len(reader._buf) < 60000 + 8 + 60000:  # memory streams may cut the chunk
        await reader.fill()
    assert reader.pop_line() == b'{"a":1}'
    assert reader.pop_line() is None
    assert not reader._buf
    assert reader.partial_since is None


async def test_a_long_run_of_spaces_without_newline_is_not_rescanned_per_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line of 16 MiB of spaces and no newline made ``pop_line`` run the
    blank-line match over the whole buffer after every 64 KiB read: ~256
    matches of up to 16 MiB, 4.4 s of loop (review finding). The match is
    tried only once a newline is in."""
    import daemon.framing

    scanned = [0]
    real = daemon.framing._BLANK_LINES

    class Counting:
        def match(self, buf: bytearray) -> re.Match[bytes] | None:
            scanned[0] += len(buf)
            return real.match(buf)

    monkeypatch.setattr(daemon.framing, "_BLANK_LINES", Counting())
    reader = LineReader(trio.testing.memory_stream_pair()[1], 32 * 1024 * 1024)
    for _ in range(256):
        reader._buf += b" " * 65536
        assert reader.pop_line() is None
    reader._buf += b"x\n"
    assert reader.pop_line() == b" " * (256 * 65536) + b"x"
    assert scanned[0] <= 256 * 65536 + 2  # one match, when the newline came


async def test_limit_is_the_line_length_without_newline() -> None:
    assert await feed([b"x" * 100 + b"\n"]) == [b"x" * 100]
    with pytest.raises(MessageTooLarge):
        await feed([b"x" * 101 + b"\n"])


async def test_too_large_is_detected_before_the_newline_arrives() -> None:
    send, receive = trio.testing.memory_stream_pair()
    reader = LineReader(receive, 1000)
    await send.send_all(b"y" * 1001)  # no newline, and none ever comes
    with pytest.raises(MessageTooLarge):
        await reader.receive_line()


async def test_partial_since_tracks_a_started_line(autojump_clock: trio.testing.MockClock) -> None:
    send, receive = trio.testing.memory_stream_pair()
    reader = LineReader(receive, 1000)
    assert reader.partial_since is None
    await send.send_all(b'{"a"')
    with trio.move_on_after(5):
        await reader.receive_line()
    assert reader.partial_since == 0
    await send.send_all(b":1}\n")
    assert await reader.receive_line() == b'{"a":1}'
    assert reader.partial_since is None


LINES = [b"", b" ", b"\r", b" \t\r", b"\x0b\x0c", b"{}", b" {} ", b"x", b'{"a":"\\n"}', b"\r{}"]


@given(
    lines=st.lists(st.sampled_from(LINES), max_size=30),
    last=st.sampled_from([b"", b"{}", b"  "]),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_any_chunking_gives_exactly_the_non_blank_lines(
    lines: list[bytes], last: bytes, cuts: list[int]
) -> None:
    """However the bytes arrive, the reader hands out every line that is not
    blank (``bytes.strip`` leaves something), in order, and nothing else; an
    unterminated last line counts when it is not blank."""
    data = b"".join(line + b"\n" for line in lines) + last
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    expected = [line for line in [*lines, last] if line.strip()]
    assert trio.run(feed, chunks, 1000) == expected
