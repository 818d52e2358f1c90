"""Durable appends/s through the RPC: group commit against one fsync per event.

    .venv/bin/python bench/store_bench.py [--seconds 3]

Two daemons in the same run: one as configured (one writer commits whatever
is queued in one synced transaction), one with ``store.max_batch_events: 1``
(one synced transaction, one fsync, per event). Each is driven with
``events.append`` of a 1 KiB payload by 1 and by 64 closed-loop connections;
an append is answered only after its commit. ``health`` at 64 connections on
the first daemon is measured in the same run as the RPC path's ceiling.
Then the store alone, in this process and without the RPC: 64 trio tasks
calling ``Store.append`` in a loop, the same payload, the same disk. Finally
it times, in this process, an LMDB read transaction with one lookup against
one ``trio.to_thread.run_sync`` hop: the reason cache reads run on the event
loop.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lmdb
import trio
from common import PIDS, ROOT, daemon, drive, health_request, loop_and_threads_cpu

sys.path.insert(0, str(ROOT))

from daemon.config import StoreConfig
from daemon.store import Store

PAYLOAD = json.dumps({"text": "x" * 1000, "_strategy": "multimodal", "_model": "bench"}).encode()


def append_request(connection: int, sequence: int) -> bytes:
    """One events.append line; the 1 KiB payload is encoded once, so that the
    client's JSON encoder is not what the benchmark measures."""
    return b"".join(
        [
            b'{"jsonrpc":"2.0","method":"events.append","id":%d,"params":' % sequence,
            b'{"session_id":"bench-%d","category":"bench","resource":"r-%d-%d","payload":'
            % (connection, connection, sequence),
            PAYLOAD,
            b"}}\n",
        ]
    )


def read_vs_hop(tmp: Path) -> tuple[float, float]:
    env = lmdb.open(str(tmp / "micro"), map_size=1 << 28, max_dbs=2)
    db = env.open_db(b"events")
    with env.begin(write=True) as txn:
        for i in range(1000):
            txn.put(i.to_bytes(8, "big"), b"x" * 1024, db=db)
    n = 100_000
    started = time.perf_counter()
    for i in range(n):
        with env.begin(db=db) as txn:
            txn.get((i % 1000).to_bytes(8, "big"))
    read_us = (time.perf_counter() - started) / n * 1e6
    env.close()

    async def hops() -> float:
        count = 2000
        started = time.perf_counter()
        for _ in range(count):
            await trio.to_thread.run_sync(lambda: None)
        return (time.perf_counter() - started) / count * 1e6

    return read_us, trio.run(hops)


async def store_alone(path: Path, writers: int, seconds: float) -> float:
    """Durable appends/s of ``writers`` tasks calling Store.append directly."""
    store = Store.open(StoreConfig(path=str(path)), lambda strategy: 0)
    appended = 0
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run_writer)
            payload = json.loads(PAYLOAD)
            stop_at = trio.current_time() + seconds

            async def writer(number: int) -> None:
                nonlocal appended
                while trio.current_time() < stop_at:
                    await store.append(f"s{number}", "bench", f"r{appended}", "", payload)
                    appended += 1

            began = time.perf_counter()
            async with trio.open_nursery() as writing:
                for number in range(writers):
                    writing.start_soon(writer, number)
            elapsed = time.perf_counter() - began
            nursery.cancel_scope.cancel()
    finally:
        store.close()
    return appended / elapsed


def per_request(
    before: tuple[float, float], after: tuple[float, float], requests: float
) -> tuple[float, float]:
    """CPU µs per request, on the event loop and in other threads, between two readings."""
    return tuple(  # type: ignore[return-value]
        (b - a) * 1e6 / requests for a, b in zip(before, after, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ctxd-bench-", dir="/var/tmp"))
    rates: dict[tuple[str, int], float] = {}
    try:
        print(f"durable events.append (1 KiB payload), {args.seconds:g}s per run, closed loop")
        header = f"{'conns':>5}  {'mode':<22} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
        print(header)
        print("-" * len(header))
        modes = [
            ("group commit", ""),
            ("one fsync per event", ", max_batch_events: 1"),
        ]  # store_extra
        cpu: dict[str, tuple[float, float]] = {}  # per request: loop, other threads (us)
        for index, (mode, extra) in enumerate(modes):
            with daemon(tmp, f"store{index}", extra) as path:
                for conns in (1, 64):
                    before = loop_and_threads_cpu(PIDS[path])
                    rate, p50, p99 = trio.run(drive, path, conns, args.seconds, append_request)
                    after = loop_and_threads_cpu(PIDS[path])
                    rates[(mode, conns)] = rate
                    if index == 0 and conns == 64:
                        cpu["append"] = per_request(before, after, rate * args.seconds)
                    print(f"{conns:>5}  {mode:<22} {rate:>10,.0f} {p50:>8.2f} {p99:>8.2f}")
                if index == 0:
                    before = loop_and_threads_cpu(PIDS[path])
                    rate, p50, p99 = trio.run(drive, path, 64, args.seconds, health_request)
                    after = loop_and_threads_cpu(PIDS[path])
                    cpu["health"] = per_request(before, after, rate * args.seconds)
                    rates[("health", 64)] = rate
                    print(
                        f"{64:>5}  {'health (no store)':<22} {rate:>10,.0f} {p50:>8.2f} {p99:>8.2f}"
                    )
        group, single = rates[("group commit", 64)], rates[("one fsync per event", 64)]
        print(
            f"group commit / one fsync per event at 64 conns = {group / single:.1f}x (target >= 5)"
        )
        health = rates[("health", 64)]
        print(f"group commit / health at 64 conns = {group / health:.2f} (target >= 0.5)")
        (append_loop, append_other), (health_loop, _) = cpu["append"], cpu["health"]
        print(
            f"daemon CPU per request at 64 conns: append {append_loop:.1f} us on the event loop"
            f" + {append_other:.1f} us in the writer thread; health {health_loop:.1f} us."
            f" The loop alone caps appends at {health_loop / append_loop:.2f} of health"
        )
        alone = trio.run(store_alone, tmp / "alone", 64, args.seconds)
        print(
            f"the store alone (this process, no RPC), 64 writers: {alone:,.0f} appends/s"
            f" = {alone / health:.2f} of health"
        )
        read_us, hop_us = read_vs_hop(tmp)
        print(f"LMDB read txn + get: {read_us:.1f} us; trio.to_thread hop: {hop_us:.0f} us")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
