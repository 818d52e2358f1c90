"""The providers' HTTP client: httpx2's own pool next to daemon/http11.py, side by side.

    .venv/bin/python bench/http_bench.py [--requests 3000]

A trio server in a process of its own answers every POST at once with a chat
completion (keep-alive). This process sends ``--requests`` POSTs of ctxd's
request size through one ``httpx2.AsyncClient`` at 1, 100 and 200 concurrent
requests, once with httpx2's default transport (httpcore2's pool) and once
with ``PoolTransport``, and prints requests/s and the client's CPU time per
request (``time.process_time``: the cost the daemon's event loop pays).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import httpx2
import trio
from common import ROOT

sys.path.insert(0, str(ROOT))

from daemon.http11 import PoolTransport

SERVER = r"""
import sys, trio
BODY = b'{"choices":[{"message":{"content":"{}"}}],"model":"m"}'
REPLY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(BODY), BODY)

async def handle(stream):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(buf) < length:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            buf = buf[length:]
            await stream.send_all(REPLY)
    except trio.BrokenResourceError:
        pass

async def main():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(handle, listeners)

trio.run(main)
"""

BODY = b"x" * 1400  # about the size of ctxd's request with a URL image


async def run(
    port: int, transport: httpx2.AsyncBaseTransport | None, total: int, conc: int
) -> tuple[float, float]:
    limits = httpx2.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx2.AsyncClient(
        base_url=f"http://127.0.0.1:{port}/v1/", limits=limits, transport=transport
    ) as client:

        async def worker() -> None:
            for _ in range(total // conc):
                response = await client.post("chat/completions", content=BODY)
                response.raise_for_status()

        began, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as nursery:
            for _ in range(conc):
                nursery.start_soon(worker)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    done = total // conc * conc
    return done / elapsed, cpu / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        print(f"{args.requests} POSTs per row; client CPU per request is what the daemon pays")
        for conc in (1, 100, 200):
            rows = []
            for name, make in (
                ("httpx2 default", lambda: None),
                ("PoolTransport", lambda: PoolTransport(max_connections=256)),
            ):
                rate, cpu_us = trio.run(run, port, make(), args.requests, conc)
                rows.append(cpu_us)
                print(
                    f"  {conc:>3} concurrent  {name:<15} {rate:8,.0f} req/s"
                    f"  {cpu_us:5.0f} us CPU/request"
                )
            print(
                f"  {conc:>3} concurrent  CPU ratio default/PoolTransport = {rows[0] / rows[1]:.2f}"
            )
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
