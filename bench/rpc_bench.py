"""Requests/s and latency of ``health`` over the socket, next to a bare echo server.

    .venv/bin/python bench/rpc_bench.py [--seconds 3] [--concurrency 1,8,64]

Starts ctxd (``python -m daemon``) and ``bench/echo_server.py`` as separate
processes, then drives each with the same trio client from this process: N
connections, each sending one request line and waiting for its response
before the next. Prints requests/s, p50 and p99 latency for both and the
ratio ctxd / echo of requests/s. Both servers are measured in the same run,
on the same machine, with the same client, so the ratio is what to compare
across machines, not the absolute figures.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import trio
from common import daemon, drive, echo_server, health_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,8,64")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="ctxd-bench-", dir="/tmp"))
    try:
        with daemon(tmp, "ctxd") as ctxd_path, echo_server(tmp) as echo_path:
            print(f"health over a Unix socket, {args.seconds:g}s per run, closed-loop clients")
            header = f"{'conns':>5}  {'server':<6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
            print(header)
            print("-" * len(header))
            for level in levels:
                rates = {}
                for name, path in (("echo", echo_path), ("ctxd", ctxd_path)):
                    rate, p50, p99 = trio.run(drive, path, level, args.seconds, health_request)
                    rates[name] = rate
                    print(f"{level:>5}  {name:<6} {rate:>9,.0f} {p50:>8.3f} {p99:>8.3f}")
                print(f"{level:>5}  ratio ctxd/echo = {rates['ctxd'] / rates['echo']:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
