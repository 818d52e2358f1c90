"""The local_ocr strategy: throughput, latency, the event loop under OCR load, memory.

    .venv/bin/python bench/ocr_bench.py [--seconds 20] [--memory 1000]
    .venv/bin/python bench/ocr_bench.py --apps [--before 8327f98] [--set DIR]

One run, one machine, side by side:

1. Analyses/s and latency of the local strategy through the daemon's socket
   (``analyze`` with ``refresh`` and a new resource each time, so every call
   is an inference; the three screenshots of examples/ in turn), with 1 and
   with 2 workers, as many closed-loop clients as workers.
2. ``health`` p50/p99 on its own connection: on the idle daemon, then while
   the OCR runs at full load (target p99 <= 20 ms).
3. Why worker processes: the lateness of a 1 ms trio timer while inferences
   run in a thread of the same process (``trio.to_thread``) versus in a
   worker process, and how long a cancelled inference keeps the CPU busy.
4. ``--memory N``: RSS of the daemon and of its worker before and after N
   analyses.
5. ``--apps``: tests/data/apps read by PP-OCR (in this process, one
   worker's threads) as the worker read it before issue 15 (full size) and
   as it reads it now (shorter side at most 736 px, ``ocr_worker.ocr_scale``),
   the layout of commit ``--before`` (loaded from git) on the first lines
   and today's on the second, side by side: the quality table of each
   (tests/ocr_eval.py), the OCR's seconds by screenshot width, and the time
   of OCR, of each layout and of a worker's whole read (OCR + layout) per
   screenshot (p50, p95; 720x1280 shots apart). Only this section runs.
   What the rows mix (printed with them): "before" is two changes behind
   "now" (the old layout and the full-size read), so their difference is
   not the layout's alone; the times are both reads of each shot back to
   back in this one process under whatever else runs on the machine (the
   load average is printed before and after), so they compare before with
   now, and are not the daemon's latency on a quiet machine.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import trio
from common import ROOT, LineClient, process

sys.path.insert(0, str(ROOT))

from daemon.config import StrategyConfig
from daemon.ocr.pool import LocalOcr
from daemon.providers import ImageInput

EXAMPLES = sorted((ROOT / "examples").glob("*.png"))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


@contextlib.contextmanager
def ocr_daemon(tmp: Path, workers: int) -> Iterator[tuple[str, int]]:
    name = f"ocr{workers}"
    sock = str(tmp / f"{name}.sock")
    config = tmp / f"{name}.yaml"
    config.write_text(
        f"socket: {{path: {sock}}}\n"
        f"store: {{path: {tmp / name}-store}}\n"
        "logging: {level: WARNING}\n"
        "llm: {request_timeout: 120}\n"
        "strategies:\n"
        f"  - {{name: local, kind: local_ocr, rank: 0, timeout: 60, workers: {workers}}}\n"
    )
    with process([sys.executable, "-m", "daemon", "--config", str(config)], sock) as proc:
        yield sock, proc.pid


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory_line(daemon: int, worker: int) -> str:
    """RSS, and its anonymous part (the heap: the rest is the mapped store
    and libraries, which grow with the events read, not with leaks)."""
    return (
        f"daemon {rss_mib(daemon):6.1f} MiB (anon {rss_mib(daemon, 'RssAnon'):5.1f})   "
        f"worker {rss_mib(worker):6.1f} MiB (anon {rss_mib(worker, 'RssAnon'):5.1f})"
    )


_ids = itertools.count()
_DATA = [base64.b64encode(p.read_bytes()).decode() for p in EXAMPLES]


def analyze_line() -> bytes:
    n = next(_ids)
    params = {
        "conversation_id": "bench",
        "image": {"data": _DATA[n % len(_DATA)], "mime": "image/png"},
        "resource": f"bench-{n}",
        "refresh": True,
    }
    request = {"jsonrpc": "2.0", "method": "analyze", "params": params, "id": n}
    return json.dumps(request).encode() + b"\n"


async def health_probe(sock: str, stop: trio.Event, out: list[float]) -> None:
    stream = await trio.open_unix_socket(sock)
    connection = LineClient(stream)
    line = b'{"jsonrpc":"2.0","method":"health","id":1}\n'
    async with stream:
        while not stop.is_set():
            out.append(await connection.call(line))
            await trio.sleep(0.005)


async def load(sock: str, clients: int, seconds: float, health: list[float]) -> list[float]:
    latencies: list[float] = []
    stop = trio.Event()

    async def client() -> None:
        stream = await trio.open_unix_socket(sock)
        connection = LineClient(stream)
        async with stream:
            while not stop.is_set():
                latencies.append(await connection.call(analyze_line()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(health_probe, sock, stop, health)
        for _ in range(clients):
            nursery.start_soon(client)
        await trio.sleep(seconds)
        stop.set()
    return latencies


async def idle_health(sock: str, seconds: float) -> list[float]:
    out: list[float] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(health_probe, sock, stop, out)
        await trio.sleep(seconds)
        stop.set()
    return out


async def warm(sock: str, count: int) -> None:
    stream = await trio.open_unix_socket(sock)
    connection = LineClient(stream)
    async with stream:
        for _ in range(count):
            await connection.call(analyze_line())


def throughput(tmp: Path, seconds: float) -> None:
    print("local_ocr through the socket (examples/*.png, refresh, one inference per call)")
    print(
        f"{'workers':>7}  {'analyses/s':>10}  {'p50 ms':>7}  {'p99 ms':>7}  "
        f"{'health p50':>10}  {'health p99':>10}"
    )
    for workers in (1, 2):
        with ocr_daemon(tmp, workers) as (sock, _):
            trio.run(warm, sock, 2 * workers)
            idle = trio.run(idle_health, sock, 3.0)
            if workers == 1:
                print(
                    f"{'idle':>7}  {'':>10}  {'':>7}  {'':>7}  "
                    f"{pct(idle, 0.5) * 1000:>10.2f}  {pct(idle, 0.99) * 1000:>10.2f}"
                )
            health: list[float] = []
            started = time.perf_counter()
            latencies = trio.run(load, sock, workers, seconds, health)
            elapsed = time.perf_counter() - started
            print(
                f"{workers:>7}  {len(latencies) / elapsed:>10.2f}  "
                f"{pct(latencies, 0.5) * 1000:>7.0f}  {pct(latencies, 0.99) * 1000:>7.0f}  "
                f"{pct(health, 0.5) * 1000:>10.2f}  {pct(health, 0.99) * 1000:>10.2f}"
            )
    print("(health: ms, one closed-loop client with 5 ms pauses; target p99 <= 20 ms)")


async def lateness_during(run_inferences: object) -> tuple[float, float]:
    """p50/p99 ms by which a 1 ms timer fires late while inferences run."""
    late: list[float] = []
    done = trio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = trio.current_time()
            await trio.sleep(0.001)
            late.append(trio.current_time() - before - 0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await run_inferences()  # type: ignore[operator]
        done.set()
    return pct(late, 0.5) * 1000, pct(late, 0.99) * 1000


def thread_vs_process(rounds: int) -> None:
    from daemon.ocr.worker import Reader

    images = [p.read_bytes() for p in EXAMPLES]
    print("\nwhere the inference runs: 1 ms timer lateness in the daemon's process")
    strategy = StrategyConfig(name="local", kind="local_ocr", rank=0)
    reader = Reader()
    reader.read(images[0], "right")

    async def in_thread() -> None:
        for i in range(rounds):
            await trio.to_thread.run_sync(reader.read, images[i % len(images)], "right")

    async def in_process() -> None:
        engine = LocalOcr(strategy)
        await engine.warm()
        try:
            for i in range(rounds):
                data = ImageInput.from_bytes(images[i % len(images)], "image/png")
                await engine.complete(strategy, data)
        finally:
            await engine.aclose()

    for name, runner in (("thread", in_thread), ("process", in_process)):
        p50, p99 = trio.run(lateness_during, runner)
        print(f"  {name:<8} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")

    async def cancel_thread() -> float:
        finished = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def work() -> None:
            reader.read(images[1], "right")
            token.run_sync_soon(finished.set)

        with trio.move_on_after(0.05):
            await trio.to_thread.run_sync(work, abandon_on_cancel=True)
        cancelled = trio.current_time()
        await finished.wait()
        return trio.current_time() - cancelled

    async def cancel_process() -> float:
        engine = LocalOcr(strategy)
        await engine.warm()
        try:
            with trio.move_on_after(0.05):
                await engine.complete(strategy, ImageInput.from_bytes(images[1], "image/png"))
            return 0.0 if not engine._idle else float("nan")
        finally:
            await engine.aclose()

    busy = trio.run(cancel_thread)
    trio.run(cancel_process)
    print(
        f"  a cancelled inference keeps the CPU busy: thread {busy * 1000:.0f} ms more, "
        "process 0 ms (killed)"
    )


def memory(tmp: Path, count: int) -> None:
    print(f"\nmemory over {count} analyses (1 worker)")
    with ocr_daemon(tmp, 1) as (sock, pid):
        trio.run(warm, sock, 20)
        (worker,) = children(pid)
        print(f"  after {20:>5}: {memory_line(pid, worker)}")
        done = 20
        while done < count:
            step = min(200, count - done)
            trio.run(warm, sock, step)
            done += step
            print(f"  after {done:>5}: {memory_line(pid, worker)}")


def _layout_at(rev: str) -> Any:
    """The layout as it was at ``rev`` (then ``daemon/ocr_layout.py``, one
    module that imported no other of ours), as a module."""
    import subprocess
    import types

    source = subprocess.run(
        ["git", "show", f"{rev}:daemon/ocr_layout.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(f"ocr_layout_{rev}")
    module.__dict__["__name__"] = module.__name__
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:daemon/ocr_layout.py", "exec"), module.__dict__)
    return module


def apps(before: str, folder: Path | None) -> None:
    import numpy as np
    from PIL import Image

    from daemon.extract import parse_merge_step
    from daemon.ocr import layout as layout_now
    from daemon.ocr.worker import Reader, is_empty_chat, ocr_input, ocr_scale
    from tests.ocr_eval import APPS, HEADER, Score, app_key, cases

    old = _layout_at(before)
    reader = Reader(len(os.sched_getaffinity(0)))  # one worker: all the cores
    print(
        f"before = the layout of {before} on lines read at full size (the worker before"
        " issue 15); now = today's layout on lines read at 736 px: the rows differ by both"
        " changes. Times: both reads of each shot back to back in this process, load"
        " average {:.1f} {:.1f} {:.1f} at the start".format(*os.getloadavg())
    )
    layouts = {f"{before} (before)": old, "now": layout_now}
    scores: dict[str, dict[str, Score]] = {name: {} for name in layouts}
    by_width: dict[int, list[float]] = {}  # shots, OCR seconds at full size, at 736
    ocr_before, ocr_now = "ocr at full size (before)", "ocr at 736 px (now)"
    ms: dict[str, list[tuple[bool, float]]] = {ocr_before: [], ocr_now: []}
    ms.update({name: [] for name in layouts})
    unanswered: dict[str, int] = {}  # shots the worker answers with an error, by layout
    for png, truth in cases(folder or APPS):
        rgb = np.asarray(Image.open(png).convert("RGB"))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        small = rgb.shape[1] == 720 and rgb.shape[0] == 1280
        started = time.perf_counter()
        full, _ = reader.engine(bgr, use_cls=False)  # what the worker read before
        ms[ocr_before].append((small, (time.perf_counter() - started) * 1000))
        started = time.perf_counter()
        scaled, _ = reader.engine(ocr_input(rgb), use_cls=False)  # what it reads now
        ms[ocr_now].append((small, (time.perf_counter() - started) * 1000))
        sums = by_width.setdefault(rgb.shape[1], [0.0, 0.0, 0.0])
        sums[0] += 1
        sums[1] += ms[ocr_before][-1][1] / 1000
        sums[2] += ms[ocr_now][-1][1] / 1000
        scale = ocr_scale(rgb.shape[1], rgb.shape[0])
        for name, layout in layouts.items():
            started = time.perf_counter()
            lines = (
                layout.lines_from_ocr(full)
                if layout is old
                else layout.lines_from_ocr(scaled, scale)
            )
            if hasattr(layout, "read"):  # since issue 15: the step and its dropped lines
                step, dropped = layout.read(rgb, lines, "right")
            else:
                step, dropped = layout.build_step(rgb, lines, "right"), 0
            ms[name].append((small, (time.perf_counter() - started) * 1000))
            if not step["bubbles"] and (layout is old or not is_empty_chat(step)):
                # The worker answers "no chat bubble found" (daemon.ocr.worker.answer):
                # the daemon gets no step, so no names either (cold review 4, finding 5).
                unanswered[name] = unanswered.get(name, 0) + 1
                step = {**step, "participants": {"user": None, "talker": None, "group": None}}
            parsed = msgspec.to_builtins(parse_merge_step(json.dumps(step, ensure_ascii=False)))
            for key in (app_key(truth), "total"):
                scores[name].setdefault(key, Score()).add(png.name, truth, parsed, dropped)
    for name in layouts:
        lines = "full-size lines" if name.endswith("(before)") else "lines read at 736 px"
        print(f"\nlayout {name} on {folder or 'tests/data/apps'}, {lines}")
        if unanswered.get(name):
            print(f"({unanswered[name]} shots with no bubble: the worker answers an error)")
        print(HEADER)
        for key in sorted(scores[name], key=lambda k: (k == "total", k)):
            print(scores[name][key].row(key))
    print("\nOCR by width    shots   s full size   per shot   s at 736 px   per shot")
    for w, (count, full_s, now_s) in sorted(by_width.items()):
        print(
            f"  {w:>5} px     {count:5.0f}   {full_s:11.1f}   {full_s / count:8.2f}"
            f"   {now_s:11.1f}   {now_s / count:8.2f}"
        )
    # A worker's read of a shot (OCR, then the layout; decoding aside), before and now.
    for name, ocr in ((f"{before} (before)", ocr_before), ("now", ocr_now)):
        ms[f"read: {name}"] = [
            (small, a + b) for (small, a), (_, b) in zip(ms[ocr], ms[name], strict=True)
        ]
    print(
        "\nload average {:.1f} {:.1f} {:.1f} at the end: the times compare before with now"
        " in this run; they are not the daemon's latency on a quiet machine".format(
            *os.getloadavg()
        )
    )
    print("\nms per screenshot                 p50 all   p95 all   p50 720x1280")
    for name, values in ms.items():
        every = [v for _, v in values]
        small = [v for s, v in values if s] or [0.0]
        print(
            f"  {name:<32} {pct(every, 0.5):8.1f}  {pct(every, 0.95):8.1f}  {pct(small, 0.5):8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=12, help="inferences per thread/process run")
    parser.add_argument("--memory", type=int, default=0, help="analyses for the memory run")
    parser.add_argument("--apps", action="store_true", help="quality and layout time on the apps")
    parser.add_argument("--before", default="8327f98", help="the layout to compare with (--apps)")
    parser.add_argument(
        "--set",
        type=Path,
        default=None,
        help="--apps on another folder of shots and truth (render_apps.py --seed 1 --out DIR)",
    )
    args = parser.parse_args()
    if args.apps:
        apps(args.before, args.set)
        return
    tmp = Path(tempfile.mkdtemp(prefix="ctxd-ocr-bench-", dir="/tmp"))
    try:
        print(f"{os.cpu_count()} CPUs; {len(EXAMPLES)} screenshots of examples/")
        throughput(tmp, args.seconds)
        thread_vs_process(args.rounds)
        if args.memory:
            memory(tmp, args.memory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
