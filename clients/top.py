"""``ctl.py top``: a live view of ``status``, redrawn every second; stdlib only.

Rates, not only totals: cache hits, misses, coalesced and upgrades per
second, and per strategy answers (results accepted), calls, invalid results,
errors and timeouts per second, each over the last interval. The first
frame, and a frame after the daemon restarted (another pid, counters that
went down), shows totals and ``-`` for rates.

Ends cleanly (exit 0, no traceback, the cursor on a fresh line) on Ctrl-C
(SIGINT), SIGTERM, on a closed terminal (SIGHUP, or a write that fails
with EIO) and when its output pipe is closed; exit 2 when the daemon goes
away.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from clients.client import Client

CLEAR = "\x1b[H\x1b[2J"  # cursor home, erase the screen
STRATEGY_RATES = ("wins", "calls", "invalid", "errors", "timeouts")
HEADER = ("strategy", "model", "answers/s", "calls/s", "invalid/s", "errors/s", "timeouts/s")


class _Stop(Exception):
    """A signal that ends ``top`` (SIGHUP, SIGTERM)."""


class _Gone(Exception):
    """The output is gone (a closed terminal: EIO; a closed pipe: EPIPE)."""


def _rate(now: float, before: float | None, seconds: float | None) -> str:
    if before is None or seconds is None or seconds <= 0 or now < before:
        return "-"
    return f"{(now - before) / seconds:,.1f}"


def render(status: dict[str, Any], previous: dict[str, Any] | None, seconds: float | None) -> str:
    """One frame: ``status`` now, rates against ``previous`` taken ``seconds`` before."""
    if previous is not None and previous.get("pid") != status.get("pid"):
        previous = None  # another daemon: its counters started again
    cache, before = status["cache"], (previous or {}).get("cache", {})
    background = status["background"]
    lines = [
        f"ctxd {status['version']}  pid {status['pid']}  {status['state']}"
        f"  up {status['uptime_s']:,.0f}s  {time.strftime('%H:%M:%S')}",
        f"connections {status['connections']}   in flight {status['in_flight']}"
        f"   background {background['count']}/{background['max']}",
        "per second:  "
        + "  ".join(
            f"{name} {_rate(cache.get(name, 0), before.get(name, 0) if before else None, seconds)}"
            for name in ("hits", "misses", "coalesced", "upgrades")
        ),
        "totals:      "
        + "  ".join(f"{name} {cache.get(name, 0):,}" for name in ("hits", "misses")),
        "",
    ]
    rows: list[tuple[str, ...]] = [HEADER]
    old = (previous or {}).get("strategies", {})
    by_rank = sorted(status["strategies"].items(), key=lambda item: -int(item[1].get("rank", 0)))
    for name, figures in by_rank:
        then = old.get(name)
        rates = [
            _rate(figures.get(k, 0), None if then is None else then.get(k, 0), seconds)
            for k in STRATEGY_RATES
        ]
        rows.append((name, str(figures.get("model", "")), *rates))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines.append("Ctrl-C to quit")
    return "\n".join(lines)


def top(
    client: Client,
    interval: float = 1.0,
    out: TextIO = sys.stdout,
    sleep: Callable[[float], None] = time.sleep,
    frames: int | None = None,
) -> int:
    """Draw a frame every ``interval`` seconds until stopped (``frames``: at
    most that many, for tests); returns the exit status. Raises what
    ``client.call`` raises when the daemon goes away."""
    tty = out.isatty()
    previous: dict[str, Any] | None = None
    taken = 0.0
    drawn = 0
    stops = {signal.SIGHUP: signal.getsignal(signal.SIGHUP)}
    stops[signal.SIGTERM] = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: object) -> None:
        raise _Stop(signum)

    for signum in stops:
        signal.signal(signum, stop)
    try:
        while frames is None or drawn < frames:
            status = client.call("status")
            now = time.monotonic()
            frame = render(status, previous, now - taken if previous is not None else None)
            _show(out, (CLEAR if tty else "\n") + frame + "\n")
            previous, taken, drawn = status, now, drawn + 1
            sleep(interval)
    except (KeyboardInterrupt, _Stop):
        with contextlib.suppress(_Gone):
            _show(out, "\n")  # the shell's prompt on a line of its own
    except _Gone:
        pass
    finally:
        for signum, handler in stops.items():
            signal.signal(signum, handler)
    return 0


def _show(out: TextIO, text: str) -> None:
    """Write and flush ``text``; ``_Gone`` if the output no longer takes it
    (then ``out`` is pointed at /dev/null, so the flush at exit is quiet)."""
    try:
        out.write(text)
        out.flush()
    except OSError:  # EIO from a closed terminal, EPIPE from a closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        raise _Gone() from None


def seconds(text: str) -> float:
    """``--interval``: a positive number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 to 3600)")
    return value
