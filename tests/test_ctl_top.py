"""``ctl.py top`` (clients/top.py): rates from two ``status`` answers, and a
clean end on Ctrl-C, SIGHUP, a closed terminal and a closed pipe."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.top import render
from tests.process import ROOT

CTL = str(ROOT / "clients" / "ctl.py")


def status(step: int, pid: int = 100) -> dict[str, Any]:
    """A ``status`` answer after ``step`` seconds of 40 hits/s, 2 misses/s."""
    return {
        "version": "0.1.0",
        "pid": pid,
        "uptime_s": 60.0 + step,
        "state": "serving",
        "connections": 3,
        "in_flight": 1,
        "background": {"count": 2, "max": 64, "by_strategy": {"premium": 2}},
        "cache": {"hits": 40 * step, "misses": 2 * step, "coalesced": 0, "upgrades": step},
        "strategies": {
            "premium": {"model": "slow", "rank": 2, "calls": 2 * step, "wins": step},
            "multimodal": {"model": "fast", "rank": 1, "calls": 2 * step, "wins": 2 * step},
        },
    }


def test_rates_per_second_over_the_interval() -> None:
    frame = render(status(12), status(10), 2.0)
    assert "hits 40.0  misses 2.0  coalesced 0.0  upgrades 1.0" in frame
    assert "totals:      hits 480  misses 24" in frame
    rows = {line.split()[0]: line.split() for line in frame.splitlines() if line}
    assert rows["premium"][:5] == ["premium", "slow", "1.0", "2.0", "0.0"]  # answers/s, calls/s
    assert rows["multimodal"][:4] == ["multimodal", "fast", "2.0", "2.0"]
    assert frame.index("premium") < frame.index("multimodal")  # best rank first


@pytest.mark.parametrize("previous", [None, status(10, pid=99), status(20)])
def test_no_rates_without_a_comparable_frame(previous: dict[str, Any] | None) -> None:
    """The first frame, a restarted daemon (another pid) and counters that
    went down show totals and "-", never a negative or made-up rate."""
    frame = render(status(12), previous, None if previous is None else 2.0)
    assert "hits -  misses -" in frame
    assert "totals:      hits 480" in frame


class FakeDaemon:
    """Answers ``status`` on a Unix socket, 40 more hits each time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.calls = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                request = json.loads(line)
                self.calls += 1
                reply = {"jsonrpc": "2.0", "id": request["id"], "result": status(self.calls)}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def fake(short_tmp: Path) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(str(short_tmp / "fake.sock"))
    yield daemon
    daemon.close()


def start_top(fake: FakeDaemon, **streams: Any) -> subprocess.Popen[bytes]:
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen(
        [sys.executable, CTL, "--socket", fake.path, "top", "--interval", "0.05"],
        **{**options, **streams},
    )


def read_frames(read: Any, count: int) -> bytes:
    """Output until ``count`` frames have been drawn (each ends with the quit hint)."""
    got = b""
    deadline = time.monotonic() + 15
    while got.count(b"Ctrl-C to quit") < count:
        assert time.monotonic() < deadline, got[-500:]
        got += read(4096)
    return got


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM])
def test_a_signal_ends_top_cleanly(fake: FakeDaemon, signum: int) -> None:
    """Ctrl-C (SIGINT), a hang-up (SIGHUP: the terminal closed) or SIGTERM:
    exit 0, no traceback, the prompt on a line of its own."""
    proc = start_top(fake)
    assert proc.stdout is not None
    frames = read_frames(proc.stdout.read1, 2)  # type: ignore[attr-defined]
    assert re.search(rb"per second:  hits [0-9][0-9,]*\.[0-9]", frames)  # a rate, not "-"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert err == b""
    assert (frames + out).endswith(b"\n\n")


def test_a_closed_terminal_ends_top_cleanly(fake: FakeDaemon) -> None:
    """The terminal goes away (its pty closes: every write fails with EIO,
    no SIGHUP since it is not the controlling terminal): exit 0, quietly."""
    master, slave = pty.openpty()
    proc = start_top(fake, stdout=slave)
    os.close(slave)
    try:
        frames = read_frames(lambda n: os.read(master, n), 2)
        assert frames.startswith(b"\x1b[H\x1b[2J")  # a terminal: each frame redraws the screen
    finally:
        os.close(master)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert err == b""


def test_a_closed_pipe_ends_top_cleanly(fake: FakeDaemon) -> None:
    proc = start_top(fake)
    assert proc.stdout is not None
    assert proc.stderr is not None
    read_frames(proc.stdout.read1, 1)  # type: ignore[attr-defined]
    proc.stdout.close()
    assert proc.wait(15) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


def test_top_exits_2_when_the_daemon_goes_away(short_tmp: Path) -> None:
    done = subprocess.run(
        [sys.executable, CTL, "--socket", str(short_tmp / "none.sock"), "top"],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert b"unreachable" in done.stderr


@pytest.mark.parametrize("interval", ["0", "-1", "soon"])
def test_a_bad_interval_is_a_usage_error(interval: str) -> None:
    done = subprocess.run(
        [sys.executable, CTL, "top", "--interval", interval], capture_output=True, timeout=30
    )
    assert done.returncode == 64
    assert b"--interval" in done.stderr
