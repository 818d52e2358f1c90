"""A burst on the local OCR queue, as issue 13 point 4 describes it, and what
the callers get back (a scenario to run by hand; it asserts nothing: its
times are wall-clock).

    .venv/bin/python -m tests.ocr_burst [--calls 200] [--shots 12] [--delay 2]
                                        [--timeout 10] [--max-queue 16]

A daemon (tests.testd) with one ``local_ocr`` strategy of one worker
(tests.fake_ocr_worker, ``--delay`` seconds a screenshot) and a premium
strategy without its key (left out at start); ``--calls`` concurrent
``analyze`` calls over ``--shots`` new screenshots, on four connections.
Prints, for each outcome: how many callers got it, when the first and last
of them ended (seconds from the start), and one example of its error data.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from clients.async_client import AsyncClient, RpcError
from tests.process import Daemon


def outcome_of(error: RpcError) -> str:
    """``-32001 local=queued`` and the like: the code and each strategy's kind."""
    data = error.data if isinstance(error.data, dict) else {}
    if error.code == -32001:
        kinds = [f"{name}={f['error']}" for name, f in sorted(data.get("strategies", {}).items())]
        return f"-32001 {' '.join(kinds)}"
    return f"{error.code} {error.message}"


def burst(root: Path, args: argparse.Namespace) -> dict[str, list[tuple[float, Any]]]:
    shots = root / "shots"
    shots.mkdir(parents=True)
    paths = []
    for i in range(args.shots):
        path = shots / f"{i}.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([i]) * (64 + i))
        paths.append(str(path))
    local = {"name": "local", "kind": "local_ocr", "rank": 0, "timeout": args.timeout}
    local |= {"workers": 1, "max_queue": args.max_queue}
    worker = f"{sys.executable} -m tests.fake_ocr_worker --delay {args.delay}"
    daemon = Daemon(
        root,
        env={"CTXD_TEST_OCR_WORKER": worker},
        providers={"fake": {"base_url": "http://127.0.0.1:9", "api_key_env": "CTXD_UNSET_KEY"}},
        strategies=[local, {"name": "premium", "provider": "fake", "model": "m", "rank": 2}],
        inputs={"allowed_dirs": [str(shots)]},
    ).start()
    deadline = time.monotonic() + 30
    while "OCR worker" not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.05)  # its worker is up: the burst meets a warm pool
    ended: dict[str, list[tuple[float, Any]]] = collections.defaultdict(list)

    async def main() -> None:
        clients = [AsyncClient(daemon.socket_path) for _ in range(4)]
        for client in clients:
            await client.__aenter__()
        start = trio.current_time()

        async def one(i: int) -> None:
            params = {
                "conversation_id": f"b{i % args.shots}",
                "image": {"path": paths[i % args.shots]},
            }
            try:
                await clients[i % 4].call("analyze", params)
                ended["ok"].append((trio.current_time() - start, None))
            except RpcError as exc:
                ended[outcome_of(exc)].append((trio.current_time() - start, exc.data))

        async with trio.open_nursery() as nursery:
            for i in range(args.calls):
                nursery.start_soon(one, i)
        for client in clients:
            await client.aclose()

    try:
        trio.run(main)
    finally:
        daemon.stop()
    return ended


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds a screenshot")
    parser.add_argument("--timeout", type=float, default=10.0, help="the strategy's timeout")
    parser.add_argument("--max-queue", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="ctxd-burst-") as tmp:
        ended = burst(Path(tmp), args)
    print(f"{args.calls} calls over {args.shots} screenshots, one worker of {args.delay:g}s,")
    print(f"timeout {args.timeout:g}s, max_queue {args.max_queue}:")
    for outcome, calls in sorted(ended.items(), key=lambda item: -len(item[1])):
        times = sorted(t for t, _ in calls)
        print(f"  {len(calls):4d}  {outcome}  (ended {times[0]:.2f}-{times[-1]:.2f}s)")
        examples: dict[str, Any] = {}
        for _, data in calls:
            for name, failure in (data or {}).get("strategies", {}).items():
                if name == "local":
                    examples.setdefault(failure["detail"].split(":")[0], failure)
        for failure in examples.values():
            print(f"        {failure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
