"""Requests/s and latency of ``health`` over the socket, next to a bare echo server.

    .venv/bin/python bench/rpc_bench.py [--seconds 3] [--concurrency 1,8,64]

Starts ctxd (``python -m daemon``) and ``bench/echo_server.py`` (answering
every line with ctxd's own ``health`` reply bytes) as separate processes,
then drives each with the C client (bench/loadgen.c, built on first use): N
connections, each sending one request line and waiting for its response
before the next. Prints requests/s, p50 and p99 latency for both, the
client's own CPU share (1.00 would mean the client is the bottleneck) and
the ratio ctxd / echo of requests/s. Both servers are measured in the same
run, on the same machine, with the same client, so the ratio is what to
compare across machines, not the absolute figures.

Then ``health`` latency from one client while ``--floods`` connections send
blank lines as fast as they can (issue 20: two such clients once made a
``health`` wait 12-17 s).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import trio
from common import LineClient, c_drive, daemon, echo_server, health_request


async def under_flood(path: str, floods: int, seconds: float) -> list[float]:
    """Latencies (s) of one closed-loop health client while ``floods``
    connections write newlines as fast as the daemon takes them."""
    latencies: list[float] = []
    stop_at = trio.current_time() + seconds
    newlines = b"\n" * (1 << 20)

    async def flood() -> None:
        async with await trio.open_unix_socket(path) as stream:
            while trio.current_time() < stop_at:
                await stream.send_all(newlines)

    async def probe() -> None:
        async with await trio.open_unix_socket(path) as stream:
            client = LineClient(stream)
            while trio.current_time() < stop_at:
                latencies.append(await client.call(health_request(0, 0)))

    async with trio.open_nursery() as nursery:
        for _ in range(floods):
            nursery.start_soon(flood)
        nursery.start_soon(probe)
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--floods", type=int, default=2)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="ctxd-bench-", dir="/tmp"))
    try:
        with daemon(tmp, "ctxd") as ctxd_path:
            reply = trio.run(health_reply, ctxd_path)
            with echo_server(tmp, reply) as echo_path:
                compare(ctxd_path, echo_path, levels, args.seconds)
            if args.floods:
                got = trio.run(under_flood, ctxd_path, args.floods, args.seconds)
                p50, p99 = got[len(got) // 2] * 1000, got[int(len(got) * 0.99)] * 1000
                print(
                    f"health while {args.floods} connections send newlines flat out:"
                    f" {len(got):,} calls, p50 {p50:.3f} ms, p99 {p99:.3f} ms,"
                    f" max {got[-1] * 1000:.3f} ms"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def health_reply(path: str) -> bytes:
    async with await trio.open_unix_socket(path) as stream:
        _, reply = await LineClient(stream).round_trip(health_request(0, 0))
    return reply + b"\n"


def compare(ctxd_path: str, echo_path: str, levels: list[int], seconds: float) -> None:
    print(f"health over a Unix socket, {seconds:g}s per run, closed-loop C client")
    header = (
        f"{'conns':>5}  {'server':<6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'client CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    for level in levels:
        rates = {}
        for name, path in (("echo", echo_path), ("ctxd", ctxd_path)):
            got = c_drive(path, level, seconds, health_request(0, 0))
            rates[name] = got.rate
            print(
                f"{level:>5}  {name:<6} {got.rate:>9,.0f} {got.p50_ms:>8.3f}"
                f" {got.p99_ms:>8.3f} {got.client_cpu:>10.2f}"
            )
        print(f"{level:>5}  ratio ctxd/echo = {rates['ctxd'] / rates['echo']:.2f}")


if __name__ == "__main__":
    main()
