"""What a cache hit costs in Python, in-process: no socket, no trio scheduler.

    .venv/bin/python bench/hit_cost.py [--runs 7] [--calls 20000]

Builds the service on a real store (in a temp dir) holding one event, then
times, in CPU time of the whole process (so the log writer thread counts),
the steps the connection's reader does for a hit (``rpc._fast_answer``):
parse the line and decode the params, ``analyze_cached`` (store read, the
memoised MergeStep, the answer; the store read also alone), encode the
reply; with the log at WARNING and at INFO (the daemon's writer, onto a
pipe that a thread drains); and, at INFO, the hit's log line alone, as
``analyze_cached`` writes it (``logs.fast_info``) and through
``logger.info``. Prints the median and the minimum over the runs. Compare
with the server CPU per hit that bench/hit_bench.py prints: the rest is
sockets, trio and the RPC layer around these steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import trio
import yaml
from common import ROOT

sys.path.insert(0, str(ROOT))

from daemon.config import load_config
from daemon.logs import fast_info, setup_logging
from daemon.protocol import (
    ENCODER,
    AppendParams,
    ResultResponse,
    decode_params,
    parse_message,
)
from daemon.service import Service
from daemon.store import Store
from tests.conftest import config_data
from tests.fake_provider import ANSWER
from tests.helpers import make_service

HIT_LINE = "merge_step [CACHED|%s|%s] Conversation: %d messages"
LINE = (
    b'{"jsonrpc":"2.0","method":"analyze","params":{"conversation_id":"hit",'
    b'"resource":"https://img.example/hit.png"},"id":1}'
)


def timed(fn: Callable[[], object], runs: int, calls: int) -> tuple[float, float]:
    """(median, minimum) CPU µs per call over ``runs`` runs of ``calls`` calls."""
    per_call = []
    for _ in range(runs):
        started = time.process_time()
        for _ in range(calls):
            fn()
        per_call.append((time.process_time() - started) / calls * 1e6)
    per_call.sort()
    return per_call[len(per_call) // 2], per_call[0]


async def store_event(service: Service) -> None:
    payload = {
        **ANSWER,
        "conversation": [{"speaker": b["speaker"], "text": b["text"]} for b in ANSWER["bubbles"]],
        "_strategy": "premium",
        "_model": "slow-model",
    }
    body = {
        "session_id": "hit",
        "category": "context_analysis",
        "resource": "https://img.example/hit.png",
        "payload": payload,
    }
    await service.events_append(msgspec.json.decode(json.dumps(body), type=AppendParams))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ctxd-bench-", dir="/tmp"))
    (tmp / "config.yaml").write_text(yaml.safe_dump(config_data(tmp)))
    config = load_config(tmp / "config.yaml")
    store = Store.open(config.store, config.rank_of())
    read_end, write_end = os.pipe()

    def drain() -> None:
        while os.read(read_end, 1 << 16):
            pass

    threading.Thread(target=drain, daemon=True).start()

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run_writer)
            service = make_service(config, store)
            await store_event(service)
            method = service.methods["analyze"]
            params = decode_params(parse_message(LINE)[1][0].params, method.params)  # type: ignore[union-attr]
            result = method.fast(params) if method.fast is not None else None
            assert result is not None, "not a cache hit"

            def store_read() -> object:
                return store.best("hit", "context_analysis", "https://img.example/hit.png")

            def parse() -> object:
                return decode_params(parse_message(LINE)[1][0].params, method.params)  # type: ignore[union-attr]

            def answer() -> object:
                return method.fast(params) if method.fast is not None else None

            def encode() -> bytes:
                return ENCODER.encode(ResultResponse(result=result, id=1))

            def whole() -> bytes:
                return encode() if answer() is not None and parse() is not None else b""

            steps = (
                ("parse the line, decode params", parse),
                ("store read (Store.best)", store_read),
                ("analyze_cached (store read, answer)", answer),
                ("encode the reply", encode),
                ("all three", whole),
            )
            log = logging.getLogger("daemon.analysis")

            def line_fast() -> None:
                fast_info(log, HIT_LINE, "premium", "slow-model", 6)

            def line_logging() -> None:
                log.info(HIT_LINE, "premium", "slow-model", 6)

            lines = (
                ("the hit line: fast_info", line_fast),
                ("the hit line: logger.info", line_logging),
            )
            for level in ("WARNING", "INFO"):
                stream = os.fdopen(os.dup(write_end), "w")
                handler = setup_logging(level, "text", [], stream, background=True)
                try:
                    for label, fn in steps + (lines if level == "INFO" else ()):
                        median, least = timed(fn, args.runs, args.calls)
                        print(
                            f"{level:<8} {label:<38} median {median:6.2f} us  min {least:6.2f} us"
                        )
                finally:
                    handler.close()
                    stream.close()
            print(f"reply: {len(encode()) + 1} bytes")
            nursery.cancel_scope.cancel()

    try:
        trio.run(run)
    finally:
        store.close()
        os.close(write_end)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
