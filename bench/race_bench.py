"""The race's own cost, cache hits against an echo server, and race against fallback.

    .venv/bin/python bench/race_bench.py [--seconds 3]

One run, one machine, side by side:

1. Overhead of a miss: the time from request to answer minus the latency of
   the fastest valid provider (the fake answers ``fast-model`` after 50 ms,
   ``slow-model`` after 300 ms), p50/p99, at 1 and at 100 concurrent misses.
   Each request has its own image URL (passed to the provider, never
   fetched), so each is a miss. The provider's latency is taken two ways: the
   scripted 50 ms, and a direct call to the fake from this process measured
   in the same run (the fake and the HTTP client cost a few ms themselves).
2. Cache hits: ``analyze`` of a cached resource, requests/s and p50 at 1 and
   8 connections, next to the bare trio echo server sending ctxd's own reply
   bytes, both driven by the C client (bench/loadgen.c), whose CPU share is
   printed. (bench/hit_bench.py does this with the log on and off, in rounds.)
3. The race against a sequential fallback (fast, then premium on failure)
   over the same scripted failures (every third screenshot is unreadable for
   the fast model): answer latency of each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import trio
from common import PIDS, ROOT, LineClient, c_drive, cpu_seconds, daemon, echo_server

sys.path.insert(0, str(ROOT))

from daemon.providers import DEFAULT_PROMPT, USER_TEXT

FAST_S, SLOW_S = 0.05, 0.3


def analyze_line(conversation: str, url: str, ident: int) -> bytes:
    params = {"conversation_id": conversation, "image": {"url": url}}
    return (
        json.dumps({"jsonrpc": "2.0", "method": "analyze", "params": params, "id": ident}).encode()
        + b"\n"
    )


async def call(client: LineClient, line: bytes) -> tuple[float, dict[str, Any]]:
    """(seconds to the whole answer, the reply as JSON)."""
    elapsed, reply = await client.round_trip(line)
    return elapsed, json.loads(reply)


async def one_call(path: str, line: bytes) -> tuple[float, dict[str, Any]]:
    stream = await trio.open_unix_socket(path)
    async with stream:
        return await call(LineClient(stream), line)


async def one_call_raw(path: str, line: bytes) -> bytes:
    """The reply line to ``line`` as sent, newline included."""
    stream = await trio.open_unix_socket(path)
    async with stream:
        _, reply = await LineClient(stream).round_trip(line)
    return reply + b"\n"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def misses(
    path: str, concurrent: int, rounds: int, tag: str
) -> tuple[list[float], list[float]]:
    """Overheads (ms) of misses: answer latency minus the scripted latency, and
    minus the winning leg's latency as the daemon recorded it in the event's
    provenance (the provider call through ctxd's HTTP client, and the parse)."""
    overheads: list[float] = []
    answered: list[tuple[str, int, float]] = []

    async def one(client: LineClient, i: int) -> None:
        url = f"https://img.example/{tag}-{i}.png"
        latency, reply = await call(client, analyze_line(f"{tag}-{i}", url, i))
        assert "result" in reply, reply
        overheads.append((latency - FAST_S) * 1000)
        event_id = reply["result"]["provenance"]["event_id"]
        answered.append((f"{tag}-{i}", event_id, latency * 1000))

    # Connections are opened first and kept: an app keeps its connection, and
    # the time measured is from request to answer.
    clients = [LineClient(await trio.open_unix_socket(path)) for _ in range(concurrent)]
    for r in range(rounds):
        async with trio.open_nursery() as nursery:
            for i, client in enumerate(clients):
                nursery.start_soon(one, client, r * concurrent + i)
    for client in clients:
        await client.stream.aclose()
    beyond_leg = []
    for conversation, event_id, latency_ms in answered:
        params = {"session_id": conversation}
        line = json.dumps({"jsonrpc": "2.0", "method": "events.list", "params": params, "id": 1})
        _, reply = await one_call(path, line.encode() + b"\n")
        (event,) = [e for e in reply["result"]["events"] if e["id"] == event_id]
        beyond_leg.append(latency_ms - event["provenance"]["latency_ms"])
    return overheads, beyond_leg


async def direct_calls(base_url: str, count: int) -> list[float]:
    """Latency (ms) of calling the fast model directly with the request ctxd
    sends (same prompt, same size), through httpx2 as it comes."""
    latencies = []
    async with httpx2.AsyncClient(base_url=base_url + "/") as client:
        for i in range(count):
            url = f"https://img.example/direct-{i}.png"
            body = {
                "model": "fast-model",
                "temperature": 0,
                "messages": [
                    {"role": "system", "content": DEFAULT_PROMPT},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": USER_TEXT},
                            {"type": "image_url", "image_url": {"url": url}},
                        ],
                    },
                ],
            }
            started = time.perf_counter()
            (await client.post("chat/completions", json=body)).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def race_vs_fallback(path: str, base_url: str, count: int) -> tuple[list[float], list[float]]:
    race: list[float] = []
    fallback: list[float] = []
    async with httpx2.AsyncClient(base_url=base_url + "/") as client:

        async def call(model: str, url: str) -> str:
            body = {
                "model": model,
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
                ],
            }
            reply = await client.post("chat/completions", json=body)
            return str(reply.json()["choices"][0]["message"]["content"])

        for i in range(count):
            url = f"https://img.example/cmp-{i}.png" + ("?unreadable=1" if i % 3 == 0 else "")
            latency, reply = await one_call(path, analyze_line(f"cmp-{i}", url, i))
            assert "result" in reply, reply
            race.append(latency * 1000)
            started = time.perf_counter()
            text = await call("fast-model", url)
            if text.startswith("Sorry"):
                await call("slow-model", url)
            fallback.append((time.perf_counter() - started) * 1000)
    return race, fallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ctxd-bench-", dir="/tmp"))
    # The fake provider runs in a process of its own, so that its threads do
    # not compete for a GIL with this process's client.
    fake_cmd = [
        sys.executable,
        "-m",
        "tests.fake_provider",
        f"fast-model={FAST_S}:unreadable=1",
        f"slow-model={SLOW_S}",
    ]
    fake = subprocess.Popen(fake_cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        base_url = fake.stdout.readline().strip()
        with contextlib.nullcontext():
            sections = (
                f"providers: {{fake: {{base_url: '{base_url}', max_connections: 256}}}}\n"
                "strategies: [{name: multimodal, provider: fake, model: fast-model, rank: 1},"
                " {name: premium, provider: fake, model: slow-model, rank: 2}]\n"
                "llm: {max_background_tasks: 512, premium_cache_timeout: 30}\n"
            )
            with daemon(tmp, "race", sections=sections) as path:
                trio.run(misses, path, 1, 5, "warm")
                direct = trio.run(direct_calls, base_url, 40)
                extra = pct(direct, 0.5) - FAST_S * 1000
                print(
                    f"1. overhead of a miss: answer - {FAST_S * 1000:.0f} ms scripted latency"
                    f" (a direct call to the fake takes p50 {pct(direct, 0.5):.1f} ms,"
                    f" so {extra:.1f} ms of each figure is the fake and the HTTP client)"
                )
                for concurrent, rounds in ((1, 40), (100, 3)):
                    cpu_before = cpu_seconds(PIDS[path])
                    over, beyond = trio.run(misses, path, concurrent, rounds, f"m{concurrent}")
                    # (events.list lookups of the answers included: a small share)
                    cpu_ms = (cpu_seconds(PIDS[path]) - cpu_before) * 1000 / len(over)
                    print(
                        f"   {concurrent:>3} concurrent: p50 {pct(over, 0.5):6.2f} ms"
                        f"   p99 {pct(over, 0.99):6.2f} ms   ({len(over)} requests);"
                        f" over a direct call: p50 {pct(over, 0.5) - extra:6.2f} ms;"
                        f" over the winning leg as ctxd timed it: p50 {pct(beyond, 0.5):6.2f}"
                        f" p99 {pct(beyond, 0.99):6.2f} ms; daemon CPU per miss {cpu_ms:.2f} ms"
                    )
                trio.run(one_call, path, analyze_line("hit", "https://img.example/hit.png", 1))
                hit = (
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "method": "analyze",
                            "params": {
                                "conversation_id": "hit",
                                "resource": "https://img.example/hit.png",
                            },
                            "id": 1,
                        }
                    ).encode()
                    + b"\n"
                )
                reply = trio.run(one_call_raw, path, hit)
                print(
                    "2. cache hits (analyze of a cached resource) next to an echo server"
                    f" sending the same {len(reply)}-byte reply (C client, bench/loadgen.c)"
                )
                health = b'{"jsonrpc":"2.0","method":"health","id":1}\n'
                with echo_server(tmp, reply) as echo_path:
                    for conns in (1, 8):
                        got = c_drive(path, conns, args.seconds, hit)
                        echo = c_drive(echo_path, conns, args.seconds, hit)
                        print(
                            f"   {conns} conns: ctxd {got.rate:8,.0f} req/s p50 {got.p50_ms:.3f} ms"
                            f" | echo {echo.rate:8,.0f} req/s p50 {echo.p50_ms:.3f} ms"
                            f" | ratio {got.rate / echo.rate:.2f},"
                            f" p50 {got.p50_ms / echo.p50_ms:.2f}x"
                            f" | client CPU {got.client_cpu:.2f}, {echo.client_cpu:.2f}"
                        )
                health_got = c_drive(path, 8, args.seconds, health)
                print(
                    f"   server CPU per request at 8 conns: ctxd hit {got.server_us:.1f} us,"
                    f" ctxd health {health_got.server_us:.1f} us ({health_got.rate:,.0f}/s,"
                    f" {health_got.rate / echo.rate:.2f} of echo), echo {echo.server_us:.1f} us"
                )
                race, fallback = trio.run(race_vs_fallback, path, base_url, 30)
                print("3. answer latency, every third screenshot unreadable for the fast model")
                for name, values in (("race", race), ("sequential fallback", fallback)):
                    print(
                        f"   {name:<20} mean {statistics.mean(values):6.1f} ms"
                        f"   p50 {pct(values, 0.5):6.1f} ms   p99 {pct(values, 0.99):6.1f} ms"
                    )
    finally:
        fake.kill()
        fake.wait()
        if fake.stdout is not None:
            fake.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
