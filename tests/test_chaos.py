"""Chaos providers end to end (issue 6): the daemon against a fake that, at
random, answers slowly, hangs, resets mid-body, sends 429 with odd Retry-After
values, 5xx, truncated JSON, huge bodies, non-UTF-8 and invalid output."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from clients.client import Client, RpcError
from tests.process import ROOT, Daemon

pytestmark = pytest.mark.process


def test_chaos_providers_leave_a_healthy_daemon_and_a_consistent_store(short_tmp: Path) -> None:
    seed = random.randrange(1 << 30)
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fake_provider",
            f"--chaos={seed}",
            "fast-model=0.05",
            "slow-model=0.2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    daemon = None
    try:
        assert fake.stdout is not None
        base_url = fake.stdout.readline().strip()
        daemon = Daemon(
            short_tmp,
            env={"CTXD_TEST_KEY": "k"},
            providers={
                "fake": {"base_url": base_url, "api_key_env": "CTXD_TEST_KEY", "max_connections": 8}
            },
            strategies=[
                {
                    "name": "multimodal",
                    "provider": "fake",
                    "model": "fast-model",
                    "rank": 1,
                    "timeout": 3,
                    "max_retries": 2,
                },
                {
                    "name": "premium",
                    "provider": "fake",
                    "model": "slow-model",
                    "rank": 2,
                    "timeout": 3,
                    "max_retries": 2,
                },
            ],
            llm={"premium_cache_timeout": 3, "request_timeout": 4},
        ).start()
        outcomes: list[tuple[str, Any]] = []
        lock = threading.Lock()

        def worker(w: int) -> None:
            with Client(daemon.socket_path, timeout=20) as client:
                for n in range(4):
                    session = f"chaos-{w}-{n}"
                    params = {
                        "conversation_id": session,
                        "image": {"url": f"https://img.example/{w}-{n}.png"},
                    }
                    try:
                        result = client.call("analyze", params)
                        outcome: tuple[str, Any] = (session, result)
                    except RpcError as exc:
                        outcome = (session, exc.code)
                    with lock:
                        outcomes.append(outcome)

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(outcomes) == 32, f"seed {seed}"
        errors = [o for _, o in outcomes if isinstance(o, int)]
        assert set(errors) <= {-32001, -32002}, f"seed {seed}: {errors}"

        with Client(daemon.socket_path) as client:
            deadline = time.monotonic() + 20
            while client.call("status")["background"]["count"]:
                assert time.monotonic() < deadline, f"background tasks never ended (seed {seed})"
                time.sleep(0.1)
            assert client.call("health")["ok"] is True
            # Every valid result that was answered is stored, with provenance.
            for session, outcome in outcomes:
                if isinstance(outcome, int):
                    continue
                events = client.call("events.list", {"session_id": session})["events"]
                stored = {e["id"]: e for e in events}
                event = stored[outcome["provenance"]["event_id"]]
                assert event["strategy"] == outcome["provenance"]["strategy"]
                assert event["provenance"]["served_model"].endswith("-served")
                assert event["provenance"]["usage"]["total_tokens"] == 1100
            # With the chaos over, the provider pools serve new calls.
            request = urllib.request.Request(
                base_url + "/control", data=json.dumps({"chaos": False}).encode(), method="POST"
            )
            urllib.request.urlopen(request, timeout=5).read()
            fresh = client.call(
                "analyze",
                {"conversation_id": "after", "image": {"url": "https://img.example/after.png"}},
                timeout=20,
            )
            assert fresh["provenance"]["cached"] is False
            status = client.call("status")
        counted = sum(
            s[k]
            for s in status["strategies"].values()
            for k in ("invalid", "errors", "timeouts", "cancelled")
        )
        assert counted > 0, f"the chaos did not reach the daemon (seed {seed})"
    finally:
        if daemon is not None:
            daemon.stop()
        fake.kill()
        fake.wait()
        if fake.stdout is not None:
            fake.stdout.close()
    log = daemon.log()
    assert "Traceback" not in log, log[-3000:]
