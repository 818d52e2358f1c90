"""Cache hits against a same-bytes echo server, with the log on and off.

    .venv/bin/python bench/hit_bench.py [--seconds 0.2] [--rounds 40] [--stall 10]
                                        [--restarts 1] [--no-pin] [--no-fifo] [--verbose] [--a-a]

Driven by the C client (bench/loadgen.c: one process, epoll, one request in
flight per connection, its own CPU share printed so one can see it was not
the bottleneck), each server alone in turn:

* ``echo``: bench/echo_server.py answering every line with ctxd's own
  cache-hit reply (the bytes the INFO daemon sent for the same request);
* ``info``: ctxd with the shipped ``logging.level: INFO``, stderr a pipe
  that a reader drains (as journald does): one SPEC §6 line per hit;
* ``warning``: the same daemon with ``logging.level: WARNING`` (no line per hit).

Many short rounds, the servers in each of the six orders in turn; the
ratios (INFO against WARNING, each against echo) are taken within each
round, and their median printed with a 95% confidence interval and the
quartiles; ``--restarts N`` spreads the rounds over N fresh sets of
servers (a daemon's own layout can favour it by a few percent). The
servers run on a CPU of their own, the client and the log
readers on the other (``--no-pin``: wherever the scheduler puts them), and
the client, the log readers and the server being measured at SCHED_FIFO
(``--no-fifo``: the fair scheduler; see ``common.place`` for why). Server
CPU per request is every thread's (the event loop's apart, "loop").

``--a-a``: the "info" daemon at WARNING too, to check the bench itself:
its ratios against "warning" should come out at 1.

``--stall S``: then the INFO daemon's log reader stops reading for S
seconds while the client drives it: requests must still be served (the log
writer must not stall the event loop), and once the reader reads again the
lines come through.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from common import (
    READERS,
    ROOT,
    LineClient,
    Load,
    c_drive,
    daemon,
    echo_server,
    fifo_server,
    place,
)

FAST_S = 0.01


def line(method: str, params: dict[str, object]) -> bytes:
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    return json.dumps(body).encode() + b"\n"


async def round_trip(path: str, request: bytes) -> bytes:
    async with await trio.open_unix_socket(path) as stream:
        _, reply = await LineClient(stream).round_trip(request)
    return reply + b"\n"


def spread(values: list[float]) -> str:
    """The median of ``values``, a 95% confidence interval for it (order
    statistics: no assumption about the spread's shape), and the quartiles."""
    ordered, n = sorted(values), len(values)
    low = ordered[max(0, math.floor(n / 2 - 0.98 * math.sqrt(n)))]
    high = ordered[min(n - 1, math.ceil(n / 2 + 0.98 * math.sqrt(n)) - 1)]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{median:5.2f}  95% CI {low:.2f} to {high:.2f}  quartiles {q1:.2f} to {q3:.2f}"


def show(name: str, conns: int, load: Load) -> None:
    print(
        f"   {conns} conns  {name:<8} {load.rate:9,.0f} req/s  p50 {load.p50_ms:.3f} ms"
        f"  p99 {load.p99_ms:.3f} ms  server {load.server_us:5.1f} us/req"
        f" (loop {load.loop_us:4.1f})  client CPU {load.client_cpu:.2f}"
    )


# Round after round, the servers run in each of the six orders in turn: a
# server's place in a round (first after another's run, or between two)
# favours none of them.
ORDERS = tuple(itertools.permutations(("echo", "info", "warning")))


Ratios = dict[str, list[float]]  # "8 info/warning req/s" -> one per round
Loads = dict[tuple[int, str], list[Load]]  # (connections, server) -> one per round


def rounds(
    servers: dict[str, str],
    hit: bytes,
    numbers: range,
    seconds: float,
    options: argparse.Namespace,
    ratios: Ratios,
    loads: Loads,
) -> None:
    """Rounds ``numbers``: in each, for 1 then 8 connections, the three
    servers back to back, each alone for ``seconds`` (at SCHED_FIFO unless
    ``--no-fifo``), in the next of ``ORDERS``, so that a change of the
    machine's load falls on both sides of a ratio alike; the ratios, taken
    within each round, are added to ``ratios``."""
    fifo = not options.no_fifo
    for path in servers.values():
        if fifo:
            fifo_server(path, True)
    for r in numbers:
        for conns in (1, 8):
            got = {}
            for name in ORDERS[r % len(ORDERS)]:
                got[name] = c_drive(servers[name], conns, seconds, hit)
                loads.setdefault((conns, name), []).append(got[name])
                if options.verbose:
                    show(f"{name} {r + 1}", conns, got[name])
            info, warning, echo = got["info"], got["warning"], got["echo"]
            for key, value in (
                ("info/warning req/s", info.rate / warning.rate),
                ("info/warning CPU/req", info.server_us / warning.server_us),
                ("info/echo req/s", info.rate / echo.rate),
                ("warning/echo req/s", warning.rate / echo.rate),
                ("info/echo p50", info.p50_ms / echo.p50_ms),
                ("warning/echo p50", warning.p50_ms / echo.p50_ms),
            ):
                ratios.setdefault(f"{conns} {key}", []).append(value)
    for path in servers.values():
        if fifo:
            fifo_server(path, False)


def report(ratios: Ratios, loads: Loads) -> None:
    print("medians over the rounds, per server:")
    for (conns, name), runs in sorted(loads.items()):
        show(name, conns, median_load(runs))
    print(f"per-round ratios, median over {len(next(iter(ratios.values())))} rounds:")
    for key, values in ratios.items():
        print(f"   {key:<24} {spread(values)}")


def median_load(runs: list[Load]) -> Load:
    return Load(*(statistics.median(field) for field in zip(*runs, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="of each run")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--stall", type=float, default=0.0, help="seconds the log reader stops")
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place everyone")
    parser.add_argument("--no-fifo", action="store_true", help="the fair scheduler's priorities")
    parser.add_argument("--verbose", action="store_true", help="print every run")
    parser.add_argument(
        "--a-a", action="store_true", help="check the bench: 'info' at WARNING too (ratios ~1)"
    )
    parser.add_argument(
        "--restarts", type=int, default=1, help="fresh daemons this many times, rounds shared"
    )
    args = parser.parse_args()
    if args.rounds < 4 or not 1 <= args.restarts <= args.rounds:
        parser.error("--rounds must be at least 4, --restarts between 1 and --rounds")
    where = place(pin=not args.no_pin, fifo=not args.no_fifo)
    if "not SCHED_FIFO" in where:
        args.no_fifo = True
    tmp = Path(tempfile.mkdtemp(prefix="ctxd-bench-", dir="/tmp"))
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_provider", f"fast-model={FAST_S}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        base_url = fake.stdout.readline().strip()
        sections = (
            f"providers: {{fake: {{base_url: '{base_url}'}}}}\n"
            "strategies: [{name: multimodal, provider: fake, model: fast-model, rank: 1}]\n"
        )
        print(
            f"cache hits, {args.rounds} rounds of {args.seconds:g}s over {args.restarts} set(s)"
            f" of servers; {where};{' A/A: info at WARNING;' if args.a_a else ''}"
            f" load average before {os.getloadavg()[0]:.2f}"
        )
        ratios: Ratios = {}
        loads: Loads = {}
        for restart in range(args.restarts):
            numbers = range(args.rounds)[restart :: args.restarts]
            last = restart == args.restarts - 1
            session(tmp, f"{restart}", sections, numbers, args, ratios, loads, last)
        report(ratios, loads)
        print(f"load average after {os.getloadavg()[0]:.2f}")
    finally:
        fake.kill()
        fake.wait()
        if fake.stdout is not None:
            fake.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


def session(
    tmp: Path,
    tag: str,
    sections: str,
    numbers: range,
    args: argparse.Namespace,
    ratios: Ratios,
    loads: Loads,
    last: bool,
) -> None:
    """Fresh daemons (INFO, WARNING) and echo server, rounds ``numbers``
    against them (a daemon's own layout, its hash seed among others, can
    favour it by a few percent: ``--restarts`` averages that out); the
    stall test (``--stall``) after the ``last`` set's rounds."""
    url = "https://img.example/hit.png"
    miss = line("analyze", {"conversation_id": "hit", "image": {"url": url}})
    hit = line("analyze", {"conversation_id": "hit", "resource": url})
    info_level = "WARNING" if args.a_a else "INFO"
    with (
        daemon(tmp, f"info{tag}", sections=sections, level=info_level, stderr_pipe=True) as info,
        daemon(tmp, f"warning{tag}", sections=sections, level="WARNING", stderr_pipe=True) as warn,
    ):
        for path in (info, warn):
            trio.run(round_trip, path, miss)
        reply = trio.run(round_trip, info, hit)
        assert b'"cached":true' in reply, reply
        with echo_server(tmp, reply) as echo:
            servers = {"echo": echo, "info": info, "warning": warn}
            for path in servers.values():  # warm up: connections, caches
                c_drive(path, 8, 0.2, hit)
            if tag == "0":
                print(f"the reply: {len(reply)} bytes")
            rounds(servers, hit, numbers, args.seconds, args, ratios, loads)
            if last and args.stall:
                stall(info, hit, args.stall)


def stall(path: str, hit: bytes, seconds: float) -> None:
    reader = READERS[path]
    before = reader.lines
    reader.pause()
    started = time.monotonic()
    load = c_drive(path, 8, seconds, hit)
    print(
        f"log reader stopped for {seconds:g}s: {load.rate * seconds:,.0f} hits served meanwhile"
        f" ({load.rate:,.0f}/s, p50 {load.p50_ms:.3f} ms, p99 {load.p99_ms:.3f} ms),"
        f" {reader.lines - before} lines read meanwhile"
    )
    reader.resume()
    time.sleep(1)
    waited = time.monotonic() - started
    print(
        f"   {reader.lines - before:,} lines read {waited:.1f}s after the stop; the last:"
        f" {reader.last.decode(errors='replace').rstrip()[:160]}"
    )


if __name__ == "__main__":
    main()
