"""Where a miss's, an append's and a cache hit's time goes, inside a real daemon.

    .venv/bin/python bench/where_time_goes.py [--misses 40] [--seconds 4]
    .venv/bin/python bench/where_time_goes.py --hits [--seconds 4]

Runs the daemon with timing wrappers around a few functions (the daemon's
code is not changed: this script patches them in the daemon's process, then
runs ``daemon.__main__.main``), drives it, stops it, and prints what the
wrappers saw:

1. sequential misses against the fake provider (fast-model 50 ms,
   slow-model 300 ms): per call of ``Provider.complete`` (by model),
   ``Service.analyze``, ``Store.append`` and ``Store._write`` (the synced
   write transaction, in the writer thread);
2. ``events.append`` of 1 KiB from 64 closed-loop connections: commits,
   events per commit, the writer thread's busy share, wall and CPU time of a
   commit, appends/s.

``--hits`` instead: cache hits from the C client (bench/loadgen.c, 8
connections), each server alone on its own CPU at SCHED_FIFO
(``common.place``), against a daemon whose hit path's synchronous steps are
timed (``perf_counter_ns`` around each call: the socket read and write, the
framing, the parse, the params' decoding, ``analyze_cached`` with the store
read and the log line inside it, the encoding) at WARNING and at INFO; and,
run by run beside them, the same daemon untimed and the same-bytes echo
server. Prints each step's µs per hit and what is left of the server's CPU
per hit (trio's loop and scheduler, the RPC layer's own code, the kernel).
"""

from __future__ import annotations

import argparse
import atexit
import collections
import functools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from common import (
    PIDS,
    ROOT,
    SERVER_PREFIX,
    Load,
    LogReader,
    c_drive,
    daemon,
    drive,
    echo_server,
    fifo_server,
    place,
    wait_for_socket,
)

sys.path.insert(0, str(ROOT))

Timings = dict[str, list[tuple[float, float, int]]]  # label -> (wall ms, cpu ms, batch)


def _instrument(report: Path) -> None:
    """In the daemon's process: wrap, and write the timings at exit."""
    import daemon.providers as providers
    import daemon.service as service
    import daemon.store.lmdb as store

    timings: Timings = collections.defaultdict(list)

    def wrap_async(owner: Any, name: str, label: Callable[..., str]) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                timings[label(*args)].append(((time.perf_counter() - started) * 1000, 0.0, 0))

        setattr(owner, name, timed)

    wrap_async(providers.Provider, "complete", lambda _self, s, _i: f"Provider.complete {s.model}")
    wrap_async(service.Service, "analyze", lambda *_: "Service.analyze")
    wrap_async(store.Store, "append", lambda *_: "Store.append")
    write = store.Store._write

    def timed_write(self: Any, batch: list[Any]) -> list[int]:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return write(self, batch)
        finally:
            wall = (time.perf_counter() - started) * 1000
            timings["Store._write"].append((wall, (time.thread_time() - cpu) * 1000, len(batch)))

    store.Store._write = timed_write  # type: ignore[method-assign]
    atexit.register(lambda: report.write_text(json.dumps(timings)))


def _instrument_hits(report: Path) -> None:
    """In the daemon's process: time the hit path's synchronous steps."""
    import daemon.analysis as analysis
    import daemon.framing as framing
    import daemon.rpc as rpc
    import daemon.service as service
    import daemon.store.lmdb as store
    from daemon.protocol import ENCODER

    spent: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    clock = time.perf_counter_ns

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += clock() - started
                calls[label] += 1

        setattr(owner, name, timed)

    class Encoder:  # msgspec's Encoder cannot be patched: stand in for it
        def __init__(self, encoder: Any) -> None:
            self.encode = encoder.encode

    vars(rpc)["ENCODER"] = encoder = Encoder(ENCODER)
    wrap(os, "read", "read the socket (os.read)")
    wrap(framing.LineReader, "pop_line", "frame the line (pop_line)")
    wrap(rpc, "_parse", "parse the line")
    wrap(rpc, "decode_params", "decode the params")
    wrap(service.Service, "analyze_cached", "analyze_cached")
    wrap(store.Store, "best", "  of which the store read (Store.best)")
    wrap(analysis, "fast_info", "  of which the log line (fast_info)")
    wrap(encoder, "encode", "encode the reply")
    wrap(os, "write", "write the socket (os.write)")
    atexit.register(lambda: report.write_text(json.dumps({k: (spent[k], calls[k]) for k in spent})))


def run_daemon(config: str, report: str, hits: bool = False) -> None:
    (_instrument_hits if hits else _instrument)(Path(report))
    from daemon.__main__ import main

    sys.exit(main(["--config", config]))


def start(config: Path, report: Path, sock: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, __file__, "--daemon", str(config), str(report)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_for_socket(sock, proc)
    return proc


def stop(proc: subprocess.Popen[bytes], report: Path) -> Timings:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    data: Timings = json.loads(report.read_text())
    return data


def p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def misses(tmp: Path, count: int) -> None:
    import race_bench

    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_provider", "fast-model=0.05", "slow-model=0.3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        base_url = fake.stdout.readline().strip()
        sock, report, config = str(tmp / "m.sock"), tmp / "m.json", tmp / "m.yaml"
        config.write_text(
            f"socket: {{path: {sock}}}\nstore: {{path: {tmp / 'm-store'}}}\n"
            "logging: {level: WARNING}\n"
            f"providers: {{fake: {{base_url: '{base_url}', max_connections: 64}}}}\n"
            "strategies: [{name: multimodal, provider: fake, model: fast-model, rank: 1},"
            " {name: premium, provider: fake, model: slow-model, rank: 2}]\n"
        )
        proc = start(config, report, sock)
        overheads, _ = trio.run(race_bench.misses, sock, 1, count, "w")
        time.sleep(0.5)  # the last premium legs end (300 ms) before the daemon stops
        timings = stop(proc, report)
    finally:
        fake.terminate()
        fake.wait(10)
    print(f"1. {count} sequential misses: answer p50 {50 + p50(overheads):.2f} ms")
    for label in sorted(timings):
        walls = [t[0] for t in timings[label]]
        print(f"   {label:<34} n={len(walls):4}  p50 {p50(walls):8.3f} ms")


def appends(tmp: Path, seconds: float, max_batch: int) -> None:
    from store_bench import append_request

    sock, report, config = str(tmp / "a.sock"), tmp / "a.json", tmp / "a.yaml"
    config.write_text(
        f"socket: {{path: {sock}}}\n"
        f"store: {{path: {tmp / 'a-store'}, max_batch_events: {max_batch}}}\n"
        "logging: {level: WARNING}\n"
    )
    proc = start(config, report, sock)
    begun = time.perf_counter()
    rate, latency_p50, _ = trio.run(drive, sock, 64, seconds, append_request)
    elapsed = time.perf_counter() - begun
    writes = stop(proc, report)["Store._write"]
    walls = [w[0] for w in writes]
    print(
        f"2. events.append, 64 connections, {seconds:g}s: {rate:,.0f} appends/s "
        f"(p50 {latency_p50:.2f} ms)\n"
        f"   {len(writes)} commits, {statistics.mean(w[2] for w in writes):.1f} events each; "
        f"a commit p50 {p50(walls):.2f} ms wall, "
        f"{p50([w[1] for w in writes]):.2f} ms CPU of the writer thread; "
        f"the writer was busy {sum(walls) / 1000 / elapsed:.0%} of the run"
    )


STEPS = (  # in the order a hit takes them
    "read the socket (os.read)",
    "frame the line (pop_line)",
    "parse the line",
    "decode the params",
    "analyze_cached",
    "  of which the store read (Store.best)",
    "  of which the log line (fast_info)",
    "encode the reply",
    "write the socket (os.write)",
)


def hits(tmp: Path, seconds: float) -> None:
    import hit_bench

    print(place(pin=True, fifo=True))
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_provider", "fast-model=0.01"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = "https://img.example/hit.png"
    miss = hit_bench.line("analyze", {"conversation_id": "hit", "image": {"url": url}})
    hit = hit_bench.line("analyze", {"conversation_id": "hit", "resource": url})
    try:
        assert fake.stdout is not None
        sections = (
            f"providers: {{fake: {{base_url: '{fake.stdout.readline().strip()}'}}}}\n"
            "strategies: [{name: multimodal, provider: fake, model: fast-model, rank: 1}]\n"
        )
        print(f"3. cache hits, 8 connections, {seconds:g}s per server, steps timed inside:")
        for level in ("WARNING", "INFO"):
            name = level.lower()
            sock, report, config = str(tmp / f"{name}.sock"), tmp / f"{name}.json", tmp / "c"
            config.write_text(
                f"socket: {{path: {sock}, max_in_flight: 4096}}\n"
                f"store: {{path: {tmp / name}-store}}\nlogging: {{level: {level}}}\n" + sections
            )
            cmd = [*SERVER_PREFIX, sys.executable, __file__, "--daemon-hits", str(config)]
            proc = subprocess.Popen(
                [*cmd, str(report)], cwd=ROOT, stderr=subprocess.PIPE, env=os.environ
            )
            assert proc.stderr is not None
            log = LogReader(proc.stderr)
            log.start()
            wait_for_socket(sock, proc)
            PIDS[sock] = proc.pid
            with daemon(
                tmp, f"{name}-untimed", sections=sections, level=level, stderr_pipe=True
            ) as plain:
                for path in (sock, plain):
                    trio.run(hit_bench.round_trip, path, miss)
                    c_drive(path, 8, 0.5, hit)  # warm up
                reply = trio.run(hit_bench.round_trip, plain, hit)
                with echo_server(tmp, reply) as echo:
                    runs = {"timed": sock, "untimed": plain, "echo": echo}
                    got: dict[str, list[Load]] = {k: [] for k in runs}
                    for _ in range(math.ceil(seconds / 0.5)):
                        for key, path in runs.items():
                            fifo_server(path, True)
                            got[key].append(c_drive(path, 8, 0.5, hit))
                            fifo_server(path, False)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            log.join(5)
            proc.stderr.close()
            steps = json.loads(report.read_text())
            served = steps["encode the reply"][1]
            cpu = {k: statistics.median(x.server_us for x in v) for k, v in got.items()}
            print(
                f"   {level}: CPU per hit: timed {cpu['timed']:.1f} us, untimed"
                f" {cpu['untimed']:.1f} us, echo {cpu['echo']:.1f} us (medians of"
                f" {len(got['echo'])} runs of 0.5s, each server alone in turn)"
            )
            top = 0.0
            for label in STEPS:
                us = steps.get(label, (0, 0))[0] / 1000 / served
                top += 0 if label.startswith(" ") else us
                print(f"      {label:<44} {us:5.2f} us")
            rest = "the rest (trio, the RPC layer, the kernel)"
            print(f"      {rest:<44} {cpu['timed'] - top:5.2f} us")
    finally:
        fake.kill()
        fake.wait()
        if fake.stdout is not None:
            fake.stdout.close()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] in ("--daemon", "--daemon-hits"):
        run_daemon(sys.argv[2], sys.argv[3], hits=sys.argv[1] == "--daemon-hits")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--misses", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--max-batch", type=int, default=1000, help="store.max_batch_events")
    parser.add_argument("--hits", action="store_true", help="time cache hits instead")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ctxd-where-", dir="/tmp"))
    try:
        if args.hits:
            hits(tmp, args.seconds)
            return
        misses(tmp, args.misses)
        appends(tmp, args.seconds, args.max_batch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
