"""Cache hits against a same-bytes echo server, with the log on and off.

    .venv/bin/python bench/hit_bench.py [--seconds 3] [--rounds 3] [--stall 10]

One run, side by side, driven by the C client (bench/loadgen.c: one
process, epoll, one request in flight per connection, its own CPU share
printed so one can see it was not the bottleneck):

* ``echo``: bench/echo_server.py answering every line with ctxd's own
  cache-hit reply (the bytes the INFO daemon sent for the same request);
* ``info``: ctxd with the shipped ``logging.level: INFO``, stderr a pipe
  that a reader drains line by line (as journald does): one SPEC §6 line per
  hit;
* ``warning``: the same daemon with ``logging.level: WARNING`` (no line per hit).

Servers take turns, round after round, so that the load the other users
of the machine put on it falls on all three alike; each figure is printed,
then the median and spread of the ratios over the rounds.

``--stall S``: then the INFO daemon's log reader stops reading for S
seconds while the client drives it: requests must still be served (the log
writer must not stall the event loop), and once the reader reads again the
lines come through.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from common import PIDS, READERS, ROOT, LineClient, Load, c_drive, daemon, echo_server

FAST_S = 0.01


def line(method: str, params: dict[str, object]) -> bytes:
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    return json.dumps(body).encode() + b"\n"


async def round_trip(path: str, request: bytes) -> bytes:
    async with await trio.open_unix_socket(path) as stream:
        _, reply = await LineClient(stream).round_trip(request)
    return reply + b"\n"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def show(name: str, conns: int, load: Load, user_us: float) -> None:
    print(
        f"   {conns} conns  {name:<8} {load.rate:9,.0f} req/s  p50 {load.p50_ms:.3f} ms"
        f"  p99 {load.p99_ms:.3f} ms  server {load.server_us:5.1f} us/req"
        f" (user {user_us:4.1f})  client CPU {load.client_cpu:.2f}"
    )


def cpu_split(path: str) -> tuple[float, float]:
    """(user, system) CPU seconds the server at ``path`` has used so far:
    its own Python and C code; the kernel's work for it (sockets, wake-ups)."""
    fields = Path(f"/proc/{PIDS[path]}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def drive(path: str, conns: int, seconds: float, hit: bytes) -> tuple[Load, float]:
    """``c_drive``, and the user-space part of the server's CPU µs per request."""
    user, system = cpu_split(path)
    load = c_drive(path, conns, seconds, hit)
    more_user, more_system = cpu_split(path)
    user, system = more_user - user, more_system - system
    return load, load.server_us * user / (user + system) if user + system else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stall", type=float, default=0.0, help="seconds the log reader stops")
    args = parser.parse_args()
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
        url = "https://img.example/hit.png"
        miss = line("analyze", {"conversation_id": "hit", "image": {"url": url}})
        hit = line("analyze", {"conversation_id": "hit", "resource": url})
        with (
            daemon(tmp, "info", sections=sections, level="INFO", stderr_pipe=True) as info,
            daemon(tmp, "warning", sections=sections, level="WARNING", stderr_pipe=True) as warn,
        ):
            for path in (info, warn):
                trio.run(round_trip, path, miss)
            reply = trio.run(round_trip, info, hit)
            assert b'"cached":true' in reply, reply
            with echo_server(tmp, reply) as echo:
                servers = {"echo": echo, "info": info, "warning": warn}
                print(
                    f"cache hits: {len(reply)}-byte reply, {args.seconds:g}s per run,"
                    f" {args.rounds} rounds, load average before {os.getloadavg()[0]:.2f}"
                )
                ratios: dict[str, list[float]] = {}
                for r in range(args.rounds):
                    print(f"round {r + 1}")
                    for conns in (1, 8):
                        got, user = {}, {}
                        for name, path in servers.items():
                            got[name], user[name] = drive(path, conns, args.seconds, hit)
                            show(name, conns, got[name], user[name])
                        for key, value in (
                            (f"{conns} info/echo req/s", got["info"].rate / got["echo"].rate),
                            (f"{conns} warning/echo req/s", got["warning"].rate / got["echo"].rate),
                            (f"{conns} info/warning req/s", got["info"].rate / got["warning"].rate),
                            (f"{conns} info/echo p50", got["info"].p50_ms / got["echo"].p50_ms),
                            (
                                f"{conns} warning/echo p50",
                                got["warning"].p50_ms / got["echo"].p50_ms,
                            ),
                            (
                                f"{conns} info/warning CPU/req",
                                got["info"].server_us / got["warning"].server_us,
                            ),
                            (f"{conns} info/warning user/req", user["info"] / user["warning"]),
                        ):
                            ratios.setdefault(key, []).append(value)
                print(f"median (spread) over {args.rounds} rounds:")
                for key, values in ratios.items():
                    print(f"   {key:<24} {spread(values)}")
                print(f"load average after {os.getloadavg()[0]:.2f}")
                if args.stall:
                    stall(info, hit, args.stall)
    finally:
        fake.kill()
        fake.wait()
        if fake.stdout is not None:
            fake.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


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
