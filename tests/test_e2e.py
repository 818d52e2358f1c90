"""End to end: the real daemon, the socket, a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.client import Client, RpcError
from tests.fake_provider import FakeProvider, Script
from tests.process import ROOT, Daemon

pytestmark = pytest.mark.process

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200
FAST, SLOW = "fast-model", "slow-model"


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider({FAST: Script(latency=0.2), SLOW: Script(latency=1.5)}) as server:
        yield server


def start(root: Path, fake: FakeProvider, **extra: Any) -> Daemon:
    shots = root / "shots"
    shots.mkdir(exist_ok=True)
    daemon = Daemon(
        root,
        env={"CTXD_TEST_KEY": "sk-e2e-secret"},
        providers={"fake": {"base_url": fake.base_url, "api_key_env": "CTXD_TEST_KEY"}},
        llm={"premium_cache_timeout": 10, "request_timeout": 20},
        inputs={"allowed_dirs": [str(shots)]},
        shutdown={"drain_timeout": 10},
        **extra,
    )
    return daemon.start()


def screenshot(root: Path, name: str = "chat.png", salt: bytes = b"") -> str:
    path = root / "shots" / name
    path.write_bytes(PNG + salt)
    return str(path)


def analyze(client: Client, conversation: str, path: str, **extra: Any) -> Any:
    params = {"conversation_id": conversation, "image": {"path": path}, **extra}
    return client.call("analyze", params, timeout=30)


def clean_stop(daemon: Daemon) -> None:
    """SIGTERM and wait: every line logged is then written (a ``kill -9``
    may lose the last few ms of lines: docs/operations.md, "Logs")."""
    daemon.signal()
    try:
        daemon.wait()
    finally:
        daemon.stop()


def wait_for(predicate: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_fast_answer_cache_hit_then_premium_from_cache(short_tmp: Path, fake: FakeProvider) -> None:
    daemon = start(short_tmp, fake)
    try:
        path = screenshot(short_tmp)
        with Client(daemon.socket_path) as client:
            first = analyze(client, "conv-e2e", path)
            assert first["provenance"]["strategy"] == "multimodal"
            assert first["provenance"]["cached"] is False
            assert first["pending"] == ["premium"]
            assert [m["text"] for m in first["result"]["conversation"]] == ["真的假的", "真的"]
            hit = analyze(client, "conv-e2e", path)
            assert (hit["provenance"]["cached"], hit["provenance"]["strategy"]) == (
                True,
                "multimodal",
            )
            key = {
                "session_id": "conv-e2e",
                "category": "context_analysis",
                "resource": "sha256:" + hashlib.sha256(PNG).hexdigest(),  # the default key
            }
            wait_for(lambda: client.call("events.best", key)["event"]["strategy"] == "premium")
            premium = analyze(client, "conv-e2e", path)
            assert (premium["provenance"]["cached"], premium["provenance"]["strategy"]) == (
                True,
                "premium",
            )
            assert premium["provenance"]["model"] == f"{SLOW}-served"
            status = client.call("status")
            assert status["cache"]["hits"] == 2
            assert status["cache"]["misses"] == 1
            assert status["strategies"]["premium"]["wins"] == 1
            assert status["strategies"]["premium"]["tokens"] == 1100
            assert status["strategies"]["multimodal"]["latency_ms"]["p50"] is not None
        assert fake.calls(FAST) == 1
        assert fake.calls(SLOW) == 1
        assert fake.requests[0]["authorization"] == "Bearer sk-e2e-secret"
    finally:
        clean_stop(daemon)
    log = daemon.log()
    for line in [
        "[conv-e2e] Premium task still running, will cache in background",
        "[conv-e2e] Background: Waiting for premium task to complete...",
        "[conv-e2e] Background: Premium task completed, processing result",
        "[conv-e2e] Background: Premium result is valid",
        "[conv-e2e] Background: Logging premium extraction details",
        f"[conv-e2e] merge_step [premium|{SLOW}-served] Participants: User='Zhang', Target='徐康'",
        f"[conv-e2e] FINAL [premium|{SLOW}-served] Layout: left=talker, right=user",
        f"[conv-e2e] FINAL [premium|{SLOW}-served] Extracted 2 bubbles (sorted top->bottom):",
        "[conv-e2e]   [1] talker(left) OK bbox=[100,200,350,250]: 真的假的",
        "[conv-e2e] Background: Premium result cached successfully",
        f"[conv-e2e] merge_step [CACHED|multimodal|{FAST}-served] Conversation: 2 messages",
        f"[conv-e2e] merge_step [CACHED|premium|{SLOW}-served] Conversation: 2 messages",
    ]:
        assert line in log, line
    assert "sk-e2e-secret" not in log


def test_sigterm_during_background_premium_waits_caches_and_exits_0(
    short_tmp: Path, fake: FakeProvider
) -> None:
    daemon = start(short_tmp, fake)
    path = screenshot(short_tmp, "drain.png", b"drain")
    try:
        with Client(daemon.socket_path) as client:
            answer = analyze(client, "conv-drain", path)
            assert answer["pending"] == ["premium"]
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
    finally:
        daemon.stop()
    log = daemon.log()
    assert "[conv-drain] Background: Premium result cached successfully" in log
    assert log.index("SIGTERM received: draining") < log.index("Premium result cached successfully")
    again = start(short_tmp, fake)
    try:
        with Client(again.socket_path) as client:
            cached = analyze(client, "conv-drain", path)
            assert (cached["provenance"]["cached"], cached["provenance"]["strategy"]) == (
                True,
                "premium",
            )
    finally:
        again.stop()


def test_event_without_provenance_reads_and_logs_as_unknown(
    short_tmp: Path, fake: FakeProvider
) -> None:
    daemon = start(short_tmp, fake)
    try:
        with Client(daemon.socket_path) as client:
            legacy = {  # written by the old orchestrator: no _model, no _strategy
                "participants": {"user": "u", "talker": "t"},
                "layout": {"left": "talker", "right": "user"},
                "bubbles": [
                    {"speaker": "talker", "side": "left", "bbox": [1, 1, 9, 9], "text": "hi"}
                ],
                "conversation": [{"speaker": "talker", "text": "hi"}],
                "summary": None,
            }
            client.call(
                "events.append",
                {
                    "session_id": "old",
                    "category": "context_analysis",
                    "resource": "sha256:legacy",
                    "payload": legacy,
                },
            )
            hit = client.call("analyze", {"conversation_id": "old", "resource": "sha256:legacy"})
            assert (hit["provenance"]["strategy"], hit["provenance"]["model"]) == (
                "unknown",
                "unknown",
            )
            events = client.call("events.list", {"session_id": "old"})["events"]
            assert (events[0]["strategy"], events[0]["model"]) == ("unknown", "unknown")
    finally:
        clean_stop(daemon)
    assert "[old] merge_step [CACHED|unknown|unknown] Conversation: 1 messages" in daemon.log()


def test_bad_inputs_over_the_socket(short_tmp: Path, fake: FakeProvider) -> None:
    daemon = start(short_tmp, fake)
    try:
        with Client(daemon.socket_path) as client:
            for params, code in [
                ({"conversation_id": "c", "image": {"path": "/etc/passwd"}}, -32003),
                ({"conversation_id": "c", "image": {"data": "bm90IGFuIGltYWdl"}}, -32003),
                ({"conversation_id": "c"}, -32602),
                ({"conversation_id": "c", "resource": "sha256:nothing"}, -32602),
                ({"conversation_id": "", "resource": "r"}, -32602),
                ({"conversation_id": "c", "image": {"path": "/x"}, "wait": "soon"}, -32602),
            ]:
                with pytest.raises(RpcError) as info:
                    client.call("analyze", params)
                assert info.value.code == code, params
            assert client.call("health")["ok"] is True
        assert fake.requests == []
    finally:
        daemon.stop()


def test_ctl_analyze_and_events(short_tmp: Path, fake: FakeProvider) -> None:
    daemon = start(short_tmp, fake)
    path = screenshot(short_tmp, "ctl.png", b"ctl")
    ctl = [
        sys.executable,
        "-I",
        "-S",
        str(ROOT / "clients" / "ctl.py"),
        "--socket",
        daemon.socket_path,
    ]
    try:
        out = subprocess.run(
            [*ctl, "analyze", path, "--conversation", "demo"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "[multimodal | fast-model-served | fresh" in out.stdout
        assert "talker: 真的假的" in out.stdout
        assert "still running in the background: premium" in out.stdout
        events = subprocess.run(
            [*ctl, "events", "demo"], capture_output=True, text=True, timeout=60, check=False
        )
        assert events.returncode == 0, events.stderr
        assert "multimodal" in events.stdout
        assert "ago" in events.stdout
        status = subprocess.run(
            [*ctl, "status"], capture_output=True, text=True, timeout=60, check=False
        )
        assert "premium" in status.stdout
    finally:
        daemon.stop()


def test_a_retired_model_id_is_named_at_start_and_cost_reaches_status(
    short_tmp: Path, fake: FakeProvider
) -> None:
    """The daemon asks the provider's model list at start, in the background,
    and warns of a configured id it does not have; the cost the provider
    reports for each call adds up in status."""
    daemon = start(
        short_tmp,
        fake,
        strategies=[
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1},
            {
                "name": "premium",
                "provider": "fake",
                "model": "anthropic/claude-3.5-sonnet",
                "rank": 2,
            },
        ],
    )
    try:
        wait_for(lambda: "is not in fake's model list" in daemon.log())
        warnings = [line for line in daemon.log().splitlines() if "model list" in line]
        assert len(warnings) == 1
        assert " WARNING [-] strategy premium: model 'anthropic/claude-3.5-sonnet'" in warnings[0]
        with Client(daemon.socket_path) as client:
            answer = analyze(client, "conv-cost", screenshot(short_tmp))
            assert answer["provenance"]["strategy"] == "multimodal"
            status = client.call("status")
        assert status["strategies"]["multimodal"]["cost_usd"] > 0
    finally:
        daemon.stop()
