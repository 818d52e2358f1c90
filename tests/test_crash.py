"""Process-level: acknowledged events survive SIGKILL; memory does not follow the store."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clients.client import Client, ConnectionClosed, RpcError
from tests.process import ROOT, Daemon, proc_status_kib

pytestmark = pytest.mark.process

CLIENTS = 4
ROUNDS = 3
PER_SESSION = 400  # keep each session listable in one events.list call


def hammer(
    path: str, worker: int, round_: int, acked: dict[str, int], lock: threading.Lock
) -> None:
    """Append as fast as possible until the daemon dies; record what was acknowledged."""
    try:
        with Client(path, timeout=10) as client:
            n = 0
            while True:
                session = f"w{worker}-r{round_}-{n // PER_SESSION}"
                resource = f"res-{worker}-{round_}-{n}"
                params = {
                    "session_id": session,
                    "category": "crash",
                    "resource": resource,
                    "payload": {"n": n, "_strategy": "premium", "_model": "m"},
                }
                event_id = client.call("events.append", params)["id"]
                with lock:
                    acked[f"{session}|{resource}"] = event_id
                n += 1
    except (ConnectionClosed, OSError, TimeoutError, RpcError):
        return


def test_acknowledged_appends_survive_sigkill_with_no_id_gaps(short_tmp: Path) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    acked: dict[str, int] = {}
    lock = threading.Lock()
    sessions: set[str] = set()
    for round_ in range(ROUNDS):
        daemon = Daemon(short_tmp, store={"max_events_per_key": 5}).start()
        threads = [
            threading.Thread(target=hammer, args=(daemon.socket_path, w, round_, acked, lock))
            for w in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 0.7))
        assert daemon.proc is not None
        daemon.proc.kill()  # SIGKILL: no drain, no close
        daemon.wait()
        for t in threads:
            t.join(15)
    assert len(acked) > 100, f"too few appends to prove anything (seed {seed})"
    print(f"{len(acked)} acknowledged appends over {ROUNDS} kills (seed {seed})")
    for key in acked:
        sessions.add(key.split("|")[0])

    daemon = Daemon(short_tmp, store={"max_events_per_key": 5}).start()
    try:
        with Client(daemon.socket_path) as client:
            present: dict[str, int] = {}
            for session in sessions:
                events = client.call("events.list", {"session_id": session, "limit": 1000})[
                    "events"
                ]
                assert len(events) <= PER_SESSION
                for event in events:
                    present[f"{event['session_id']}|{event['resource']}"] = event["id"]
            missing = {k: v for k, v in acked.items() if present.get(k) != v}
            assert not missing, f"{len(missing)} acknowledged events lost (seed {seed})"
            ids = sorted(present.values())
            assert ids == list(range(1, len(ids) + 1)), f"gaps in ids (seed {seed})"
            assert client.call("status")["store"]["events"] == len(ids)
    finally:
        daemon.stop()


def test_daemon_memory_does_not_grow_with_stored_events(short_tmp: Path) -> None:
    daemon = Daemon(short_tmp).start()
    assert daemon.proc is not None
    payload: dict[str, Any] = {"text": "x" * 1000, "_strategy": "multimodal", "_model": "m"}

    def batch(start: int) -> list[dict[str, Any]]:
        return [
            {
                "jsonrpc": "2.0",
                "method": "events.append",
                "params": {
                    "session_id": f"s{(start + i) // 500}",
                    "category": "c",
                    "resource": f"r{start + i}",
                    "payload": payload,
                },
                "id": start + i,
            }
            for i in range(500)
        ]

    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(daemon.socket_path)
        reader = sock.makefile("rb")

        def append_batches(count: int, offset: int) -> None:
            for b in range(count):
                sock.sendall(json.dumps(batch(offset + b * 500)).encode() + b"\n")
                answers = json.loads(reader.readline())
                assert all("result" in a for a in answers)

        append_batches(4, 0)  # warm up: 2,000 events
        before = proc_status_kib(daemon.proc.pid, "RssAnon")
        append_batches(40, 2000)  # 20,000 more events, ~20 MB of data
        after = proc_status_kib(daemon.proc.pid, "RssAnon")
        sock.close()
        growth = (after - before) / 1024
        assert growth < 8, f"anonymous memory grew {growth:.1f} MiB over 20,000 events"
    finally:
        daemon.stop()


def test_sigkill_during_a_busy_mix_loses_nothing_acknowledged(short_tmp: Path) -> None:
    """Appends, analyses whose premium runs on in the background, and reads,
    all at once; SIGKILL at a random moment; three rounds."""
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_provider", "fast-model=0.02", "slow-model=0.15"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    acked: dict[tuple[str, str], int] = {}  # (session, resource) -> event id
    lock = threading.Lock()
    try:
        assert fake.stdout is not None
        base_url = fake.stdout.readline().strip()
        sections: dict[str, Any] = {
            "providers": {"fake": {"base_url": base_url}},
            "store": {"max_events_per_key": 50},
        }

        def analyzer(path: str, worker: int, round_: int) -> None:
            gone = (ConnectionClosed, OSError, TimeoutError, RpcError)
            with contextlib.suppress(*gone), Client(path, timeout=10) as client:
                for n in range(10_000):
                    session = f"a{worker}-r{round_}-{n}"
                    url = f"https://img.example/{session}.png"
                    result = client.call(
                        "analyze", {"conversation_id": session, "image": {"url": url}}
                    )
                    if result["provenance"]["event_id"] is not None:
                        with lock:
                            acked[(session, url)] = result["provenance"]["event_id"]

        def reader(path: str) -> None:
            gone = (ConnectionClosed, OSError, TimeoutError, RpcError)
            with contextlib.suppress(*gone), Client(path, timeout=10) as client:
                while True:
                    client.call("events.list", {"session_id": "a0-r0-0"})
                    client.call("status")

        appended: dict[str, int] = {}
        for round_ in range(3):
            daemon = Daemon(short_tmp, **sections).start()
            threads = [
                threading.Thread(
                    target=hammer, args=(daemon.socket_path, 9, round_, appended, lock)
                ),
                threading.Thread(target=reader, args=(daemon.socket_path,)),
                *(
                    threading.Thread(target=analyzer, args=(daemon.socket_path, w, round_))
                    for w in range(3)
                ),
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 0.9))
            assert daemon.proc is not None
            daemon.proc.kill()
            daemon.wait()
            for t in threads:
                t.join(15)

        daemon = Daemon(short_tmp, **sections).start()  # the store opens cleanly
        try:
            with Client(daemon.socket_path) as client:
                assert client.call("health")["ok"] is True
                missing = []
                for (session, _url), event_id in acked.items():
                    events = client.call("events.list", {"session_id": session})["events"]
                    if event_id not in {e["id"] for e in events}:
                        missing.append((session, event_id))
                for key, event_id in appended.items():
                    session, resource = key.split("|")
                    best = client.call(
                        "events.best",
                        {"session_id": session, "category": "crash", "resource": resource},
                    )["event"]
                    if best is None or best["id"] != event_id:
                        missing.append((session, event_id))
                assert not missing, f"{len(missing)} acknowledged events lost (seed {seed})"
                assert len(acked) > 10, f"too few analyses to prove anything (seed {seed})"
                print(
                    f"{len(acked)} analyses and {len(appended)} appends acknowledged (seed {seed})"
                )
        finally:
            daemon.stop()
    finally:
        fake.kill()
        fake.wait()
        if fake.stdout is not None:
            fake.stdout.close()
