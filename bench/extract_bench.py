"""How long one model answer can hold the event loop in extraction.

Times ``parse_merge_step`` on crafted answers (each the worst of its kind we
know) next to a valid answer of 500 bubbles, in this process, best of 5 runs:

    .venv/bin/python bench/extract_bench.py
"""

from __future__ import annotations

import json
import time

from daemon.errors import StrategyError
from daemon.extract import MAX_TEXT, parse_merge_step


def valid(bubbles: int, chars: int) -> str:
    return json.dumps(
        {
            "participants": {"user": "me", "talker": "you"},
            "layout": {"left": "talker", "right": "user"},
            "bubbles": [
                {"speaker": "talker", "side": "left", "bbox": [1, i, 9, i + 1], "text": "x" * chars}
                for i in range(bubbles)
            ],
        }
    )


CASES = {
    "valid, 500 bubbles of 120 chars": valid(500, 120),
    "64 nested objects around 1.8 MB of numbers, then too deep": '{"a":' * 64
    + "["
    + "1," * 900_000
    + "[" * 100_000,
    "2 MB of numbers in one list, never closed": '{"a":[' + "1," * 1_000_000,
    "unterminated strings, 2 MB": '{"a":"' + 'x{"b":' * 400_000,
    "2 MB of prose, then an object": "prose " * 400_000 + "{}",
    "400,000 nested objects": '{"a":' * 400_000,
}


def main() -> None:
    print(f"MAX_TEXT = {MAX_TEXT} characters looked at")
    for name, text in CASES.items():
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            try:
                parse_merge_step(text)
                outcome = "valid"
            except StrategyError as exc:
                outcome = exc.detail[:50]
            best = min(best, time.perf_counter() - started)
        print(f"{best * 1000:8.2f} ms  {name:56}  {outcome}")


if __name__ == "__main__":
    main()
