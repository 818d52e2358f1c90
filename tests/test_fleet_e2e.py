"""Fleet mode end to end: real daemons sharing one real redis-server, a fake
OpenAI-compatible provider on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.client import Client
from tests.fake_provider import FakeProvider, Script
from tests.process import ROOT, Daemon, wait_for
from tests.redis_servers import RedisServer, redis_server

pytestmark = pytest.mark.process

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200
FAST, SLOW = "fast-model", "slow-model"


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider({FAST: Script(latency=0.05), SLOW: Script(latency=0.4)}) as server:
        yield server


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server() as s:
        yield s


def host(root: Path, name: str, fake: FakeProvider, server: RedisServer) -> Daemon:
    (root / name).mkdir()
    (root / "shots").mkdir(exist_ok=True)
    return Daemon(
        root / name,
        env={"CTXD_TEST_KEY": "sk-fleet-secret"},
        providers={"fake": {"base_url": fake.base_url, "api_key_env": "CTXD_TEST_KEY"}},
        llm={"premium_cache_timeout": 10, "request_timeout": 20},
        inputs={"allowed_dirs": [str(root / "shots")]},
        fleet={"url": server.url, "host_id": name},
    ).start()


def screenshot(root: Path, salt: str) -> str:
    path = root / "shots" / f"{salt}.png"
    path.write_bytes(PNG + salt.encode())
    return str(path)


def analyze(client: Client, path: str, **extra: Any) -> Any:
    params = {"conversation_id": "conv-fleet", "image": {"path": path}, **extra}
    return client.call("analyze", params, timeout=30)


def fleet_status(daemon: Daemon) -> dict[str, Any]:
    with Client(daemon.socket_path) as client:
        status: dict[str, Any] = client.call("status")["fleet"]
        return status


def origins_on_server(server: RedisServer) -> list[tuple[str, int]]:
    found = []
    for key in server.cli("--scan", "--pattern", "ctxd:*:hist").split():
        for line in server.cli("lrange", key, "0", "-1").splitlines():
            origin = json.loads(line)["origin"]
            found.append((origin["host"], origin["event_id"]))
    return found


def test_a_premium_result_made_on_host_a_is_served_by_host_b_as_cached(
    short_tmp: Path, fake: FakeProvider, server: RedisServer
) -> None:
    a = host(short_tmp, "host-a", fake, server)
    b = host(short_tmp, "host-b", fake, server)
    try:
        path = screenshot(short_tmp, "one")
        with Client(a.socket_path) as client:
            made = analyze(client, path, wait="best")
        assert made["provenance"]["strategy"] == "premium"
        wait_for(lambda: fleet_status(a)["outbox"] == 0, what="A's outbox sent")
        with Client(b.socket_path) as client:
            served = analyze(client, path)
            again = analyze(client, path)
            best = client.call(
                "events.best",
                {
                    "session_id": "conv-fleet",
                    "category": "context_analysis",
                    "resource": made_resource(client, path),
                },
            )["event"]
        assert served["provenance"]["cached"] is True
        assert served["provenance"]["strategy"] == "premium"
        assert served["provenance"]["origin"] == {
            "host": "host-a",
            "event_id": made["provenance"]["event_id"],
        }
        assert served["result"] == made["result"]
        assert again["provenance"]["origin"] == served["provenance"]["origin"]
        assert best["provenance"]["origin"]["host"] == "host-a"
        status = fleet_status(b)
        assert (status["hits"], status["lookups"], status["state"]) == (1, 1, "connected")
        assert fake.calls(SLOW) == 1  # in the whole fleet
        assert fake.calls(FAST) == 1
        shown = subprocess.run(
            [sys.executable, "clients/ctl.py", "--socket", b.socket_path, "status"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"fleet  host-b on {server.url}  connected" in shown
        assert "fleet hits 1 of 1 lookups" in shown
    finally:
        a.stop()
        b.stop()
    assert "sk-fleet-secret" not in a.log() + b.log()


def made_resource(client: Client, path: str) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_server_down_every_request_is_answered_and_the_outbox_drains_once_it_is_back(
    short_tmp: Path, fake: FakeProvider, server: RedisServer
) -> None:
    a = host(short_tmp, "host-a", fake, server)
    b = host(short_tmp, "host-b", fake, server)
    try:
        server.stop()
        answers = []
        for i in range(6):
            daemon = (a, b)[i % 2]
            with Client(daemon.socket_path) as client:
                answers.append(analyze(client, screenshot(short_tmp, f"down-{i}")))
        assert all(r["provenance"]["strategy"] == "multimodal" for r in answers)
        wait_for(  # the premium results land too, and wait in the outboxes
            lambda: fake.calls(SLOW) == 6 and sum(fleet_status(d)["outbox"] for d in (a, b)) == 12,
            what="12 events in the outboxes",
        )
        assert {fleet_status(d)["state"] for d in (a, b)} == {"disconnected"}
        server.start()
        wait_for(
            lambda: sum(fleet_status(d)["outbox"] for d in (a, b)) == 0,
            timeout=20,
            what="the outboxes drained",
        )
        on_server = origins_on_server(server)
        assert len(on_server) == 12
        assert len(set(on_server)) == 12  # each event exactly once
        assert {h for h, _ in on_server} == {"host-a", "host-b"}
        for d in (a, b):
            assert fleet_status(d)["state"] == "connected"
    finally:
        a.stop()
        b.stop()
    for d in (a, b):  # one WARNING when lost, one INFO when back: not a line per request
        log = d.log()
        assert log.count("WARNING") == log.count("unreachable") == 1, log
        assert log.count("is reachable again") == 1, log
