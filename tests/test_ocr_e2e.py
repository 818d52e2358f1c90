"""End to end with the local_ocr strategy: the real daemon, real worker processes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clients.client import Client, RpcError
from tests.process import ROOT, Daemon, gone

pytestmark = pytest.mark.process

CTL = [sys.executable, "-I", "-S", str(ROOT / "clients" / "ctl.py")]


SPEC_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[[^\]]+\] "
)


def worker_pids(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"OCR worker (\d+) ready", log)]


def shipped_strategies(**local: Any) -> list[dict[str, Any]]:
    """The strategies of config.yaml, models on a provider whose key is unset."""
    return [
        {"name": "local", "kind": "local_ocr", "rank": 0, "timeout": 30, **local},
        {"name": "multimodal", "provider": "fake", "model": "fast-model", "rank": 1},
        {"name": "premium", "provider": "fake", "model": "slow-model", "rank": 2},
    ]


def test_first_run_without_a_key_answers_from_the_local_strategy(short_tmp: Path) -> None:
    shots = short_tmp / "examples"
    shutil.copytree(ROOT / "examples", shots)
    daemon = Daemon(
        short_tmp,
        strategies=shipped_strategies(),
        inputs={"allowed_dirs": [str(shots)]},
    ).start()
    ctl = [*CTL, "--socket", daemon.socket_path]
    try:
        out = subprocess.run(
            [*ctl, "analyze", str(shots / "chat.png"), "--conversation", "demo"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr + daemon.log()
        assert "[local | rapidocr-onnxruntime 1.4.4 | fresh" in out.stdout
        assert "talker=Tom Baker" in out.stdout
        assert "  talker: 好的\n" in out.stdout
        assert "    user: OK\n" in out.stdout
        again = subprocess.run(
            [*ctl, "analyze", str(shots / "chat.png"), "--conversation", "demo", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert '"cached": true' in again.stdout
        served = json.loads(again.stdout)["provenance"]["model"]
        status = subprocess.run(
            [*ctl, "status"], capture_output=True, text=True, timeout=60, check=False
        )
        stored = subprocess.run(
            [*ctl, "events", "demo", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        (event,) = json.loads(stored.stdout)
        # what the layout left out as not sure reaches the stored provenance (issue 15.5)
        assert isinstance(event["provenance"]["dropped_lines"], int), event["provenance"]
        # one name in status and provenance (issue 13, point 6)
        assert served == "rapidocr-onnxruntime 1.4.4"
        assert re.search(rf"local\s+{re.escape(served)}\s+0\s+1\s+1", status.stdout), status.stdout
        daemon.signal()
        assert daemon.wait(30) == 0
    finally:
        daemon.stop()
    log = daemon.log()
    assert "merge_step [local|rapidocr-onnxruntime 1.4.4] Participants: User='None', " in log
    assert "Target='Tom Baker'" in log
    assert "[demo] FINAL [local|rapidocr-onnxruntime 1.4.4] Extracted 7 bubbles" in log
    assert "merge_step [CACHED|local|rapidocr-onnxruntime 1.4.4] Conversation: 7 messages" in log
    pids = worker_pids(log)
    assert pids
    assert all(gone(pid) for pid in pids)  # no worker outlives the daemon
    # The workers' stderr included: nothing reaches the journal outside SPEC §6 form.
    for line in log.splitlines():
        assert SPEC_LINE.match(line), line


def test_the_drain_does_not_wait_for_an_inference_past_its_deadline(short_tmp: Path) -> None:
    shots = short_tmp / "shots"
    shots.mkdir()
    (shots / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    jobs = short_tmp / "jobs"
    jobs.mkdir()
    worker = f"{sys.executable} -m tests.fake_ocr_worker --delay 60 --job-dir {jobs}"
    daemon = Daemon(
        short_tmp,
        env={"CTXD_TEST_OCR_WORKER": worker},
        strategies=shipped_strategies(),
        inputs={"allowed_dirs": [str(shots)]},
        shutdown={"drain_timeout": 1},
    ).start()
    outcome: list[object] = []

    def call() -> None:
        with Client(daemon.socket_path) as client:
            try:
                params = {"conversation_id": "d", "image": {"path": str(shots / "a.png")}}
                outcome.append(client.call("analyze", params, timeout=60))
            except (RpcError, OSError, ConnectionError) as exc:
                outcome.append(exc)

    caller = threading.Thread(target=call)
    try:
        deadline = time.monotonic() + 15
        while not worker_pids(daemon.log()):
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        caller.start()
        while not any(jobs.iterdir()):  # until the inference (of 60 s) is under way
            assert time.monotonic() < deadline + 15, daemon.log()
            time.sleep(0.02)
        started = time.monotonic()
        daemon.signal()
        assert daemon.wait(30) == 0
        stopped_in = time.monotonic() - started
        caller.join(30)
    finally:
        daemon.stop()
    assert stopped_in < 15, stopped_in  # the 1 s drain deadline, not the 60 s inference
    assert outcome, "the request never ended"
    assert all(gone(pid) for pid in worker_pids(daemon.log()))
    assert "Drain deadline reached" in daemon.log()
