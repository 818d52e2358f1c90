"""Where coredis's time goes (issue 14, point 8): sequential GETs over a Unix
socket to a redis-server this script starts, side by side in one run:
redis-benchmark, a raw trio socket, redis-py's sync client (RESP2 and RESP3,
only when redis-py is installed: it is no dependency of ctxd), and coredis on
trio and on asyncio (the client, a pipeline, a dedicated connection, 100
tasks sharing the client).

    .venv/bin/python bench/fleet_client_costs.py [--n 5000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import coredis
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.redis_servers import redis_server


def row(name: str, micros: float) -> None:
    print(f"{name:62s} {micros:8.1f} us/op", flush=True)


def redis_py(sock: str, n: int) -> None:
    try:
        import redis  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        print("redis-py not installed: its rows are left out (pip install redis to add them)")
        return
    for proto in (2, 3):
        r: Any = redis.Redis(unix_socket_path=sock, protocol=proto)
        r.set("k", b"v" * 100)
        for _ in range(200):
            r.get("k")
        t = time.perf_counter()
        for _ in range(n):
            r.get("k")
        row(f"redis-py sync RESP{proto} sequential GET", (time.perf_counter() - t) / n * 1e6)
        pipe = r.pipeline(transaction=False)
        t = time.perf_counter()
        for _ in range(n // 100):
            for _ in range(100):
                pipe.get("k")
            pipe.execute()
        row(
            f"redis-py sync RESP{proto} pipeline of 100, per GET",
            (time.perf_counter() - t) / n * 1e6,
        )
        r.close()


async def coredis_rows(
    sock: str, n: int, spawn_all: Callable[[int, Any], Awaitable[None]]
) -> dict[str, float]:
    out: dict[str, float] = {}
    async with coredis.Redis(unix_socket_path=sock) as c:
        await c.set("k", b"v" * 100)
        for _ in range(200):
            await c.get("k")
        t = time.perf_counter()
        for _ in range(n):
            await c.get("k")
        out["sequential GET (client.get)"] = (time.perf_counter() - t) / n * 1e6
        t = time.perf_counter()
        for _ in range(n // 100):
            async with c.pipeline(transaction=False) as p:
                for _ in range(100):
                    p.get("k")
        out["pipeline of 100, per GET"] = (time.perf_counter() - t) / n * 1e6
        conn = await c.connection_pool.get_connection()
        try:
            t = time.perf_counter()
            for _ in range(n):
                await conn.create_request(b"GET", b"k")
            out["dedicated connection, create_request(GET)"] = (time.perf_counter() - t) / n * 1e6
        finally:
            c.connection_pool.release(conn)
        t = time.perf_counter()
        await spawn_all(n, c)
        out["100 tasks sharing the client, per GET (throughput)"] = (
            (time.perf_counter() - t) / n * 1e6
        )
    return out


async def _trio_spawn(n: int, c: Any) -> None:
    async def worker() -> None:
        for _ in range(n // 100):
            await c.get("k")

    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(worker)


async def _asyncio_spawn(n: int, c: Any) -> None:
    async def worker() -> None:
        for _ in range(n // 100):
            await c.get("k")

    await asyncio.gather(*(worker() for _ in range(100)))


async def raw_trio(sock: str, n: int) -> float:
    stream = await trio.open_unix_socket(sock)
    request = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    for _ in range(200):
        await stream.send_all(request)
        await stream.receive_some(65536)
    t = time.perf_counter()
    for _ in range(n):
        await stream.send_all(request)
        await stream.receive_some(65536)
    await stream.aclose()
    return (time.perf_counter() - t) / n * 1e6


def benchmark(sock: str, *args: str) -> str:
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return "redis-benchmark not installed"
    out = subprocess.run([tool, "-s", sock, "-q", *args], capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


async def profile(sock: str, n: int) -> None:
    async with coredis.Redis(unix_socket_path=sock) as c:
        for _ in range(200):
            await c.get("k")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            await c.get("k")
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    n = args.n
    with redis_server() as server:
        sock = server.sock
        print(
            f"coredis {coredis.__version__}, {n} GETs of 100 bytes over {sock}, "
            f"{os.cpu_count()} cores"
        )
        print(
            "redis-benchmark -c 1 GET:      ",
            benchmark(sock, "-n", "100000", "-c", "1", "-t", "get"),
        )
        row("trio raw unix socket send_all + receive_some (no client)", trio.run(raw_trio, sock, n))
        redis_py(sock, n)
        for name, micros in trio.run(coredis_rows, sock, n, _trio_spawn).items():
            row(f"coredis trio: {name}", micros)
        for name, micros in asyncio.run(coredis_rows(sock, n, _asyncio_spawn)).items():
            row(f"coredis asyncio: {name}", micros)
        if args.profile:
            trio.run(profile, sock, n)


if __name__ == "__main__":
    main()
