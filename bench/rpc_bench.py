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
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b'{"jsonrpc":"2.0","method":"health","id":1}\n'


def wait_for_socket(path: str, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    raise SystemExit(f"{path} not ready after {timeout}s")


async def drive(path: str, connections: int, seconds: float) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of ``connections`` closed-loop clients."""
    latencies: list[float] = []
    stop_at = trio.current_time() + seconds

    async def client() -> None:
        stream = await trio.open_unix_socket(path)
        buf = bytearray()
        async with stream:
            while trio.current_time() < stop_at:
                started = time.perf_counter()
                await stream.send_all(REQUEST)
                while b"\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        raise SystemExit("server closed the connection")
                    buf += data
                del buf[: buf.index(b"\n") + 1]
                latencies.append(time.perf_counter() - started)

    begun = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(client)
    elapsed = time.perf_counter() - begun
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return len(latencies) / elapsed, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,8,64")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="ctxd-bench-", dir="/tmp"))
    config = tmp / "config.yaml"
    config.write_text(
        f"socket: {{path: {tmp / 'ctxd.sock'}}}\n"
        f"store: {{path: {tmp / 'store'}}}\n"
        "logging: {level: WARNING}\n"
    )
    echo_path = str(tmp / "echo.sock")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ctxd = subprocess.Popen(
        [sys.executable, "-m", "daemon", "--config", str(config)], cwd=ROOT, env=env
    )
    echo = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "echo_server.py"), echo_path], env=env
    )
    try:
        wait_for_socket(str(tmp / "ctxd.sock"), ctxd)
        wait_for_socket(echo_path, echo)
        print(f"health over a Unix socket, {args.seconds:g}s per run, closed-loop clients")
        header = f"{'conns':>5}  {'server':<6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        print(header)
        print("-" * len(header))
        for level in levels:
            figures = {}
            for name, path in (("echo", echo_path), ("ctxd", str(tmp / "ctxd.sock"))):
                rate, p50, p99 = trio.run(drive, path, level, args.seconds)
                figures[name] = rate
                print(f"{level:>5}  {name:<6} {rate:>9,.0f} {p50:>8.3f} {p99:>8.3f}")
            print(f"{level:>5}  ratio ctxd/echo = {figures['ctxd'] / figures['echo']:.2f}")
    finally:
        for proc in (ctxd, echo):
            proc.send_signal(signal.SIGTERM)
        for proc in (ctxd, echo):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
