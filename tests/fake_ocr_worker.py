"""A stand-in for ``daemon.ocr.worker`` that speaks its frame protocol.

    python -m tests.fake_ocr_worker [--delay S] [--start-delay S] [--die-on-job N]
                                    [--no-ready] [--garbage] [--pid-dir DIR]
                                    [--job-dir DIR] [--stderr TEXT] [--spew BYTES]
                                    [--crash-on-job N]

Answers every job with a one-bubble MergeStep whose text says how many bytes
the image had, after ``--delay`` seconds. ``--die-on-job N`` exits (status 3)
on the Nth job instead of answering; ``--no-ready`` exits before the ready
frame; ``--garbage`` answers every job with a frame that is not msgpack;
``--pid-dir`` writes an empty file named by the pid, so a test can
check that a killed worker is gone; ``--job-dir`` writes a file named
``<pid>-<n>`` when job n arrives, so a test knows an inference is under way.
``--stderr TEXT`` writes TEXT to stderr at start and on each job, once from
Python and once to fd 2 directly (as a C library would); ``--spew BYTES``
writes that many bytes of lines to stderr on each job (more than a pipe
holds); ``--crash-on-job N`` raises on the Nth job, so Python prints a
traceback and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import msgspec

from daemon.ocr.worker import decode_data_url, read_frame, write_frame


def say(text: str, when: str) -> None:
    if text:
        print(f"{text} ({when}, from Python)", file=sys.stderr, flush=True)
        os.write(2, f"{text} ({when}, from fd 2)\n".encode())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--start-delay", type=float, default=0.0)
    parser.add_argument("--die-on-job", type=int, default=0)
    parser.add_argument("--no-ready", action="store_true")
    parser.add_argument("--garbage", action="store_true")
    parser.add_argument("--pid-dir", type=Path)
    parser.add_argument("--job-dir", type=Path)
    parser.add_argument("--stderr", default="")
    parser.add_argument("--spew", type=int, default=0)
    parser.add_argument("--crash-on-job", type=int, default=0)
    args = parser.parse_args()
    if args.pid_dir is not None:
        (args.pid_dir / str(os.getpid())).touch()
    time.sleep(args.start_delay)
    if args.no_ready:
        return 4
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    say(args.stderr, "start")
    write_frame(stdout, {"ready": True, "engine": "fake-ocr 1.0"})
    jobs = 0
    while (frame := read_frame(stdin)) is not None:
        jobs += 1
        if jobs == args.die_on_job:
            return 3
        say(args.stderr, f"job {jobs}")
        if args.spew:
            line = b"spew " + b"x" * 94 + b"\n"
            os.write(2, line * (args.spew // len(line)))
        if jobs == args.crash_on_job:
            raise RuntimeError(f"scripted crash on job {jobs}")
        request = msgspec.msgpack.decode(frame)
        if args.job_dir is not None:
            (args.job_dir / f"{os.getpid()}-{jobs}").touch()
        time.sleep(args.delay)
        if args.garbage:
            stdout.write(b"\x00\x00\x00\x03\xc1\xc1\xc1")  # 0xc1 is never msgpack
            stdout.flush()
            continue
        try:
            data = decode_data_url(request["image_url"])
        except ValueError as exc:
            write_frame(stdout, {"error": str(exc)})
            continue
        if data.startswith(b"\x89PNG\r\n\x1a\nBROKEN"):
            write_frame(stdout, {"error": "image could not be decoded: truncated"})
            continue
        left = request["user_side"] == "right"
        step = {
            "participants": {"user": None, "talker": "Fake"},
            "layout": {"left": "talker", "right": "user"}
            if left
            else {"left": "user", "right": "talker"},
            "bubbles": [
                {
                    "speaker": "talker",
                    "side": "left" if left else "right",
                    "bbox": [10, 10, 100, 40],
                    "text": f"{len(data)} bytes",
                }
            ],
        }
        write_frame(stdout, {"step": json.dumps(step), "lines": 1, "ms": args.delay * 1000})
    return 0


if __name__ == "__main__":
    sys.exit(main())
