"""Requests that leave before their race ends: what the work they leave costs.

    .venv/bin/python bench/abandon_bench.py [--calls 150] [--root CHECKOUT]

Issue 12, point 5: ``--calls`` ``analyze`` calls at once, each on its own
connection and with its own conversation (a new race each), a screenshot of
~2 MiB sent as ``image.data``, with ``timeout: 0.01`` against models that
take 20 s (fast) and 40 s (premium), ``llm.max_background_tasks: 4``. Every
call gets -32002. Printed: the daemon's anonymous memory before, at its
peak while the calls come in and 2 s after (what the races they left hold),
``status.background`` after the calls,
and how long a legitimate ``analyze`` sent right after them takes (its
model answers in 20 s). ``--root`` runs the daemon of another checkout (e.g.
a ``git worktree`` of an older commit), the client and the fake from this one.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from common import ROOT, LineClient, wait_for_socket
from PIL import Image


def screenshot(seed: int) -> str:
    """A PNG of noise, ~2 MiB (noise does not compress), base64."""
    rng = os.urandom(900 * 800 * 3)
    image = Image.frombytes("RGB", (900, 800), rng)
    image.putpixel((0, 0), (seed % 256, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return base64.b64encode(out.getvalue()).decode()


def line(ident: int, data: str, timeout: float) -> bytes:
    params = {
        "conversation_id": f"abandon-{ident}",
        "image": {"data": data, "mime": "image/png"},
        "timeout": timeout,
    }
    return (
        json.dumps({"jsonrpc": "2.0", "id": ident, "method": "analyze", "params": params}) + "\n"
    ).encode()


def anon_kib(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("RssAnon:"):
            return int(row.split()[1])
    return 0


async def run(path: str, pid: int, calls: int) -> None:
    images = [screenshot(i) for i in range(8)]
    print(f"screenshot: {len(images[0]) * 3 // 4 / 2**20:.2f} MiB, {calls} calls, timeout 0.01")
    before = anon_kib(pid)
    peak = before
    codes: dict[int, int] = {}
    lines = [line(i, images[i % len(images)], 0.01) for i in range(calls)]

    async def one(request: bytes) -> None:
        async with await trio.open_unix_socket(path) as stream:
            _, reply = await LineClient(stream).round_trip(request)
        error = json.loads(reply).get("error")
        code = error["code"] if error else 0
        codes[code] = codes.get(code, 0) + 1

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:  # all at once, a connection each
        for request in lines:
            nursery.start_soon(one, request)
        while len(lines) > sum(codes.values()):
            peak = max(peak, anon_kib(pid))
            await trio.sleep(0.05)
    sent = time.perf_counter() - started
    await trio.sleep(2)
    settled = anon_kib(pid)
    stream = await trio.open_unix_socket(path)
    client = LineClient(stream)
    _, reply = await client.round_trip(b'{"jsonrpc":"2.0","id":"s","method":"status"}\n')
    background = json.loads(reply)["result"]["background"]
    print(f"answers by code: {codes} in {sent:.1f} s")
    print(f"status.background right after: {background}")
    legit_started = time.perf_counter()
    _, reply = await client.round_trip(line(10_000, screenshot(99), 30))
    legit = time.perf_counter() - legit_started
    outcome = json.loads(reply)
    what = outcome.get("error", {}).get("code") or outcome["result"]["provenance"]["strategy"]
    for _ in range(20):
        peak = max(peak, anon_kib(pid))
        await trio.sleep(0.1)
    print(f"a legitimate call right after: {legit:.2f} s ({what}); its model answers in 20 s")
    print(
        f"daemon anonymous memory: {before / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB"
        f" while the calls came in, {settled / 1024:.0f} MiB 2 s after they were answered"
    )
    await stream.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ctxd-abandon-", dir="/tmp"))
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_provider", "fast-model=20", "slow-model=40"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        base_url = fake.stdout.readline().strip()
        sock = str(tmp / "ctxd.sock")
        config = tmp / "config.yaml"
        config.write_text(
            f"socket: {{path: {sock}}}\n"
            f"store: {{path: {tmp / 'store'}}}\n"
            "logging: {level: WARNING}\n"
            f"providers: {{fake: {{base_url: '{base_url}', max_connections: 16}}}}\n"
            "strategies: [{name: multimodal, provider: fake, model: fast-model, rank: 1},"
            " {name: premium, provider: fake, model: slow-model, rank: 2}]\n"
            "llm: {max_background_tasks: 4, premium_cache_timeout: 30}\n"
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(config)], cwd=args.root
        )
        try:
            wait_for_socket(sock, daemon)
            trio.run(run, sock, daemon.pid, args.calls)
        finally:
            daemon.terminate()
            daemon.wait(60)
    finally:
        fake.terminate()
        fake.wait(10)


if __name__ == "__main__":
    main()
