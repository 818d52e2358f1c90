"""Process-level: the real daemon, a real socket, real signals (few and bounded)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest

from clients.client import Client, ConnectionClosed, RpcError
from daemon.store.format import StoredEvent
from tests.process import ROOT, Daemon, catches, wait_for

pytestmark = pytest.mark.process


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    d = Daemon(short_tmp, shutdown={"drain_timeout": 2})
    yield d.start()
    d.stop()


class Raw:
    """A bare socket: bytes in, lines out."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data + b"\n")

    def line(self) -> Any:
        raw = self.file.readline()
        return json.loads(raw) if raw else None

    def nothing_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""  # b"": closed, also nothing
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(10)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def by_id(batch: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {json.dumps(r["id"]): r for r in batch}


def test_jsonrpc_spec_section_7_over_the_socket(daemon: Daemon) -> None:
    raw = Raw(daemon.socket_path)
    try:
        raw.send(b'{"jsonrpc": "2.0", "method": "foobar", "id": "1"}')
        assert raw.line() == {
            "jsonrpc": "2.0",
            "error": {
                "code": -32601,
                "message": "method not found: 'foobar'",
                "data": {"method": "foobar"},
            },
            "id": "1",
        }
        raw.send(b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
        response = raw.line()
        assert (response["error"]["code"], response["id"]) == (-32700, None)
        raw.send(b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
        response = raw.line()
        assert (response["error"]["code"], response["id"]) == (-32600, None)
        raw.send(
            b'[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
            b'{"jsonrpc": "2.0", "method"]'
        )
        response = raw.line()
        assert (response["error"]["code"], response["id"]) == (-32700, None)
        raw.send(b"[]")
        response = raw.line()
        assert isinstance(response, dict)
        assert (response["error"]["code"], response["id"]) == (-32600, None)
        for batch, size in ((b"[1]", 1), (b"[1,2,3]", 3)):
            raw.send(batch)
            response = raw.line()
            assert isinstance(response, list)
            assert [(r["error"]["code"], r["id"]) for r in response] == [(-32600, None)] * size
        raw.send(
            b'[{"jsonrpc": "2.0", "method": "health", "id": "1"},'
            b'{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},'
            b'{"jsonrpc": "2.0", "method": "health", "id": "2"},'
            b'{"foo": "boo"},'
            b'{"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
            b'{"jsonrpc": "2.0", "method": "status", "id": "9"}]'
        )
        mixed = by_id(raw.line())
        assert set(mixed) == {'"1"', '"2"', "null", '"5"', '"9"'}
        assert mixed['"1"']["result"] == {"ok": True, "state": "serving"}
        assert mixed["null"]["error"]["code"] == -32600
        assert mixed['"5"']["error"]["code"] == -32601
        assert mixed['"9"']["result"]["state"] == "serving"
        # A batch of notifications only: zero bytes back.
        raw.send(
            b'[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
            b'{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]'
        )
        raw.send(b'{"jsonrpc": "2.0", "method": "health"}')
        assert raw.nothing_within(0.3)
        raw.send(b'{"jsonrpc": "2.0", "method": "health", "id": 10}')
        assert raw.line()["id"] == 10
    finally:
        raw.close()


def test_hostile_lines_do_not_kill_the_connection_or_the_daemon(daemon: Daemon) -> None:
    raw = Raw(daemon.socket_path)
    hostile = [
        (b'{"jsonrpc":"2.0","method":"health","id":NaN}', -32700),
        (b'{"jsonrpc":"2.0","method":"health","params":{"x":Infinity},"id":1}', -32700),
        (b"[" * 100_000 + b"]" * 100_000, -32700),
        (b'{"jsonrpc":"2.0","method":"health","id":"\xc3\x28"}', -32700),
        (b'{"jsonrpc":"2.0","method":"health","id":"\\ud834"}', -32700),
        (b'{"jsonrpc":"2.0","method":"health","id":' + b"1" * 5000 + b"}", -32600),
        (b'{"jsonrpc":"2.0","method":"health","params":[' + b"1" * 5000 + b'],"id":2}', -32602),
        (b'{"jsonrpc":"2.0","method":"health","id":[1,2]}', -32600),
        (b'{"jsonrpc":"2.0","method":"health","params":true,"id":3}', -32600),
        (b'{"jsonrpc":"2.1","method":"health","id":4}', -32600),
    ]
    try:
        for line, code in hostile:
            raw.send(line)
            assert raw.line()["error"]["code"] == code, line[:60]
        raw.send(b'{"jsonrpc":"2.0","method":"health","id":"after"}')
        assert raw.line()["result"]["ok"] is True
    finally:
        raw.close()
    with Client(daemon.socket_path) as client:
        assert client.call("status")["state"] == "serving"


def test_batch_cap_over_the_socket(daemon: Daemon) -> None:
    item = b'{"jsonrpc":"2.0","method":"health","id":1}'
    raw = Raw(daemon.socket_path)
    try:
        raw.send(b"[" + b",".join([item] * 1000) + b"]")
        assert len(raw.line()) == 1000
        raw.send(b"[" + b",".join([item] * 1001) + b"]")
        response = raw.line()
        assert response["error"]["code"] == -32600
        assert "at most 1000" in response["error"]["message"]
    finally:
        raw.close()


def test_sigterm_drains_background_tasks_and_exits_in_time(short_tmp: Path) -> None:
    daemon = Daemon(short_tmp, shutdown={"drain_timeout": 2}).start()
    try:
        with Client(daemon.socket_path) as client:
            client.call("background", [0.5, "short"])
            client.call("background", [60, "long"])
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            code = daemon.wait(timeout=10)
            elapsed = time.monotonic() - started
    finally:
        daemon.stop()
    log = daemon.log()
    assert code == 0, log
    assert 1.5 < elapsed < 2 + 1, log  # the long task held the drain until its deadline
    assert "test background task short finished" in log
    assert "test background task long finished" not in log
    assert "Drain deadline reached after 2s" in log
    assert "Background task test-long cancelled at the drain deadline" in log
    assert not os.path.exists(daemon.socket_path)


def test_sigterm_with_nothing_running_exits_at_once(daemon: Daemon) -> None:
    started = time.monotonic()
    daemon.signal(signal.SIGINT)
    assert daemon.wait(timeout=10) == 0
    assert time.monotonic() - started < 1.0
    assert "SIGINT received: draining" in daemon.log()


def test_second_signal_cancels_at_once(short_tmp: Path) -> None:
    daemon = Daemon(short_tmp, shutdown={"drain_timeout": 30}).start()
    try:
        with Client(daemon.socket_path) as client:
            client.call("background", [60, "long"])
            daemon.signal(signal.SIGTERM)
            time.sleep(0.3)
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            code = daemon.wait(timeout=10)
    finally:
        daemon.stop()
    assert code == 0
    assert time.monotonic() - started < 1.0
    assert "received again: cancelling everything now" in daemon.log()


def test_requests_in_flight_finish_during_drain(short_tmp: Path) -> None:
    daemon = Daemon(short_tmp, shutdown={"drain_timeout": 5}).start()
    try:
        with Client(daemon.socket_path) as client:
            results: list[Any] = []
            worker = threading.Thread(
                target=lambda: results.append(client.call("sleep", [0.8, "slow"]))
            )
            worker.start()
            time.sleep(0.2)
            daemon.signal(signal.SIGTERM)
            time.sleep(0.1)
            with pytest.raises(RpcError) as info:
                client.call("sleep", [0, "late"])
            assert info.value.code == -32000
            assert client.call("health")["state"] == "draining"
            worker.join(5)
            assert results, daemon.log()
            assert results[0]["tag"] == "slow"
            with pytest.raises(OSError, match=r"Connection refused|No such file"):
                Client(daemon.socket_path, connect_timeout=1)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.stop()


def test_second_daemon_on_the_same_socket_fails_clearly(daemon: Daemon) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.testd", "--config", str(daemon.config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "another ctxd (pid" in result.stderr
    with Client(daemon.socket_path) as client:
        assert client.call("health")["ok"] is True


def test_restart_after_kill_replaces_the_leftover_socket(short_tmp: Path) -> None:
    first = Daemon(short_tmp).start()
    assert first.proc is not None
    first.proc.kill()
    first.wait()
    assert os.path.exists(first.socket_path)  # kill -9 leaves the file behind
    second = Daemon(short_tmp).start()
    try:
        with Client(second.socket_path) as client:
            assert client.call("health")["ok"] is True
        # INFO lines reach the log within LineWriter.LINGER (20 ms), not at once
        wait_for(lambda: "Replacing leftover socket file" in second.log(), what="the line")
    finally:
        second.stop()


# ------------------------------------------------------------------ clients --

CTL = [sys.executable, "-I", "-S", str(ROOT / "clients" / "ctl.py")]  # -S: no site-packages


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CTL, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env if env is not None else dict(os.environ),
    )


def test_ctl_status_readable_json_and_exit_codes(daemon: Daemon) -> None:
    readable = ctl("--socket", daemon.socket_path, "status")
    assert readable.returncode == 0, readable.stderr
    assert "serving" in readable.stdout
    assert "multimodal" in readable.stdout
    assert "p99 ms" in readable.stdout
    assert not readable.stdout.lstrip().startswith("{")
    as_json = ctl("--socket", daemon.socket_path, "status", "--json")
    status = json.loads(as_json.stdout)
    assert status["state"] == "serving"
    assert status["strategies"]["premium"]["rank"] == 2
    env = {**os.environ, "CTXD_SOCKET": daemon.socket_path}
    assert ctl("health", env=env).returncode == 0
    gone = ctl("--socket", str(Path(daemon.socket_path).with_name("absent.sock")), "status")
    assert gone.returncode == 2
    assert "unreachable" in gone.stderr


def test_ctl_finds_the_socket_in_config_yaml(daemon: Daemon) -> None:
    result = subprocess.run(
        [*CTL, "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=daemon.root,
        env={k: v for k, v in os.environ.items() if k != "CTXD_SOCKET"},
    )
    assert result.returncode == 0, result.stderr


def test_client_concurrent_calls_on_one_connection(daemon: Daemon) -> None:
    with Client(daemon.socket_path) as client:
        results: dict[str, Any] = {}

        def call(tag: str, seconds: float) -> None:
            results[tag] = (
                client.call("sleep", {"seconds": seconds, "tag": tag}),
                time.monotonic(),
            )

        threads = [threading.Thread(target=call, args=(f"t{i}", 0.6 - 0.1 * i)) for i in range(6)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert {tag: r[0]["tag"] for tag, r in results.items()} == {
            f"t{i}": f"t{i}" for i in range(6)
        }
        assert time.monotonic() - started < 1.5  # concurrent, not 2.1 s in sequence
        with pytest.raises(TimeoutError):
            client.call("sleep", [2], timeout=0.2)
        with pytest.raises(RpcError) as info:
            client.call("no.such.method")
        assert info.value.code == -32601
        assert client.call("health")["ok"] is True
        daemon.signal(signal.SIGTERM)
        daemon.wait()
        with pytest.raises(ConnectionClosed):
            client.call("health")


SECTION_7 = [
    # (request, expected response or None for no output); error messages are
    # ctxd's own sentences, so errors compare by code and id.
    (
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        {"jsonrpc": "2.0", "result": 19, "id": 1},
    ),
    (
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        {"jsonrpc": "2.0", "result": -19, "id": 2},
    ),
    (
        b'{"jsonrpc": "2.0", "method": "subtract",'
        b' "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        {"jsonrpc": "2.0", "result": 19, "id": 3},
    ),
    (
        b'{"jsonrpc": "2.0", "method": "subtract",'
        b' "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        {"jsonrpc": "2.0", "result": 19, "id": 4},
    ),
    (b'{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    (b'{"jsonrpc": "2.0", "method": "foobar"}', None),
    (b'{"jsonrpc": "2.0", "method": "foobar", "id": "1"}', (-32601, "1")),
    (b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]', (-32700, None)),
    (b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}', (-32600, None)),
    (
        b'[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        b'{"jsonrpc": "2.0", "method"]',
        (-32700, None),
    ),
    (b"[]", (-32600, None)),
    (b"[1]", [(-32600, None)]),
    (b"[1,2,3]", [(-32600, None)] * 3),
    (
        b'[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        b'{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},'
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},'
        b'{"foo": "boo"},'
        b'{"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
        b'{"jsonrpc": "2.0", "method": "get_data", "id": "9"}]',
        [
            {"jsonrpc": "2.0", "result": 7, "id": "1"},
            {"jsonrpc": "2.0", "result": 19, "id": "2"},
            (-32600, None),
            (-32601, "5"),
            {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
        ],
    ),
    (
        b'[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
        b'{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]',
        None,
    ),
]


def as_expected(response: Any, expected: Any) -> Any:
    """An error as (code, id); anything else as it is."""
    if isinstance(response, dict) and "error" in response:
        return (response["error"]["code"], response["id"])
    return response


def test_every_example_of_jsonrpc_section_7_gives_the_specified_answer(daemon: Daemon) -> None:
    raw = Raw(daemon.socket_path)
    try:
        for request, expected in SECTION_7:
            raw.send(request)
            if expected is None:
                # No output at all: the next line read answers a later call.
                raw.send(b'{"jsonrpc": "2.0", "method": "health", "id": "probe"}')
                assert raw.line()["id"] == "probe", request
                continue
            response = raw.line()
            if isinstance(expected, list):
                got = sorted((as_expected(r, None) for r in response), key=repr)
                assert got == sorted(expected, key=repr), request
            else:
                assert as_expected(response, expected) == expected, request
    finally:
        raw.close()


# ------------------------------------------------------ lifecycle (issue 18) --


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_after_the_drain_still_stops_cleanly(
    short_tmp: Path, signum: signal.Signals
) -> None:
    """The drain has ended at its deadline and the writer's commit is still
    in progress (a stalled disk): a second signal must neither kill the
    daemon with its default action (SIGTERM: exit -15, socket left, store not
    closed) nor become a KeyboardInterrupt (SIGINT: "ctxd crashed", exit 1)."""
    hold = short_tmp / "hold"
    hold.touch()
    daemon = Daemon(
        short_tmp,
        env={"CTXD_TEST_HOLD_WRITES": str(hold)},
        module="tests.testd_lifecycle",
        shutdown={"drain_timeout": 0.3},
    ).start()
    client = Client(daemon.socket_path)

    def append() -> None:  # never answered: the drain ends first
        with contextlib.suppress(RpcError, ConnectionClosed, OSError):
            client.call(
                "events.append",
                {"session_id": "s", "category": "c", "resource": "r", "payload": {}},
            )

    appending = threading.Thread(target=append)
    try:
        appending.start()
        wait_for((short_tmp / "hold.entered").exists, what="the commit to start")
        daemon.signal(signum)
        wait_for(lambda: "Drain deadline reached" in daemon.log(), what=daemon.log())
        daemon.signal(signum)
        assert daemon.proc is not None
        wait_for(
            lambda: "received again" in daemon.log() or daemon.proc.poll() is not None,  # type: ignore[union-attr]
            what="the second signal",
        )
        hold.unlink()
        code = daemon.wait(timeout=15)
    finally:
        hold.unlink(missing_ok=True)
        daemon.stop()
        client.close()
        appending.join(10)
    log = daemon.log()
    assert code == 0, log
    assert f"{signum.name} received again: cancelling everything now" in log
    assert "ctxd stopped" in log
    assert "crashed" not in log
    assert not os.path.exists(daemon.socket_path)


def write_schema_1_store(path: Path, count: int) -> None:
    """A schema-1 store (events only) of ``count`` events: opening it migrates
    them, which makes the daemon's start take a second or more."""
    path.mkdir(parents=True)
    env = lmdb.open(str(path), max_dbs=8, map_size=1 << 30)
    meta, data = env.open_db(b"meta"), env.open_db(b"events")
    payload = msgspec.Raw(msgspec.msgpack.encode({"_strategy": "premium"}))
    with env.begin(write=True) as txn:
        txn.put(b"schema_version", (1).to_bytes(4, "big"), db=meta)
        txn.cursor(db=data).putmulti(
            [
                (
                    i.to_bytes(8, "big"),
                    msgspec.msgpack.encode(
                        StoredEvent(1.0, f"s{i % 100}", "c", f"r{i}", "", payload)
                    ),
                )
                for i in range(1, count + 1)
            ],
            append=True,
        )
    env.close()


def test_a_signal_during_the_start_wins_no_ready_and_never_serving(short_tmp: Path) -> None:
    """SIGTERM while the daemon is still starting (here: migrating a big
    store): it drains at once, never enters "serving" and never tells
    systemd READY=1 (which would come after STOPPING=1)."""
    write_schema_1_store(short_tmp / "store", 400_000)
    address = str(short_tmp / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    daemon = Daemon(short_tmp, env={"NOTIFY_SOCKET": address})
    try:
        daemon.start(wait=False)
        assert daemon.proc is not None
        pid = daemon.proc.pid
        wait_for(lambda: catches(pid, signal.SIGTERM), what="a SIGTERM handler")
        daemon.signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
        receiver.setblocking(False)
        messages = []
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(receiver.recv(4096).decode())
    finally:
        daemon.stop()
        receiver.close()
    log = daemon.log()
    assert code == 0, log
    assert "Migrated the store" in log  # the signal came during the start
    assert not any(m.startswith("READY=1") for m in messages), messages
    assert messages[0].startswith("STOPPING=1"), messages
    assert "SIGTERM received: draining" in log
    assert "draining without serving" in log
    assert "serving on" not in log
    assert "ctxd stopped" in log
    assert not os.path.exists(daemon.socket_path)


# ------------------------------------------- two daemons, one store (issue 18) --


def appended(client: Client, n: int, size: int, tag: str) -> list[int]:
    return [
        client.call(
            "events.append",
            {
                "session_id": "conv",
                "category": "context_analysis",
                "resource": "r",
                "payload": {"_strategy": "premium", "tag": tag, "i": i, "blob": "x" * size},
            },
        )["id"]
        for i in range(n)
    ]


def test_two_daemons_on_one_store_follow_the_map_the_other_grew(short_tmp: Path) -> None:
    """During a restart on a held socket the draining daemon and the new one
    share the store. Each grows the map past the other's in turn: the other
    must go on reading (best, list, status) and writing, not answer
    MDB_MAP_RESIZED forever."""
    store = {"path": str(short_tmp / "store"), "map_size_mb": 1, "max_events_per_key": 1000}
    daemons = []
    for name in ("old", "new"):
        (short_tmp / name).mkdir()
        daemons.append(Daemon(short_tmp / name, store=store))
    old, new = daemons
    try:
        for daemon in daemons:
            daemon.start()
        with Client(old.socket_path) as a, Client(new.socket_path) as b:
            appended(b, 1, 10, "new")
            key = {"session_id": "conv", "category": "context_analysis", "resource": "r"}
            for grower, other, tag, n in ((a, b, "old", 6), (b, a, "new", 12)):
                size_before = other.call("status")["store"]["map_size"]
                ids = appended(grower, n, 500_000, tag)  # past the other's map
                best = other.call("events.best", key)["event"]
                assert (best["id"], best["payload"]["tag"]) == (ids[-1], tag)
                assert other.call("status")["store"]["map_size"] > size_before
                (mine,) = appended(other, 1, 10, "after")
                assert mine > ids[-1]
                listed = other.call("events.list", {**key, "limit": 3})["events"]
                assert listed[0]["id"] == mine
        for daemon in daemons:
            daemon.signal(signal.SIGTERM)
            assert daemon.wait() == 0, daemon.log()
    finally:
        for daemon in daemons:
            daemon.stop()
    assert "adopted" in old.log()
    assert "adopted" in new.log()


# ------------------------------------------------- events.list by bytes --


def test_events_list_answers_fit_max_message_bytes_and_page_with_before_id(
    short_tmp: Path,
) -> None:
    """Ten events each under the limit made one answer of ten times it."""
    limit = 4 * 1024 * 1024
    daemon = Daemon(short_tmp, socket={"max_message_bytes": limit}).start()
    raw = None
    try:
        with Client(daemon.socket_path) as client:
            ids = [
                client.call(
                    "events.append",
                    {
                        "session_id": "big",
                        "category": "c",
                        "resource": f"r{i}",
                        "payload": {"i": i, "blob": "x" * 1_500_000},
                    },
                )["id"]
                for i in range(6)
            ]
        raw = Raw(daemon.socket_path)
        seen: list[int] = []
        params: dict[str, Any] = {"session_id": "big", "limit": 100}
        for n in range(10):
            raw.send(
                json.dumps(
                    {"jsonrpc": "2.0", "method": "events.list", "params": params, "id": n}
                ).encode()
            )
            line = raw.file.readline()
            assert len(line) <= limit, f"an answer of {len(line)} bytes"
            result = json.loads(line)["result"]
            seen += [e["id"] for e in result["events"]]
            if result["next_before_id"] is None:
                break
            params = {**params, "before_id": result["next_before_id"]}
        assert seen == ids[::-1]
        paged = ctl("--socket", daemon.socket_path, "events", "big", "--limit", "100", "--json")
        assert [e["id"] for e in json.loads(paged.stdout)] == ids[::-1], paged.stderr
    finally:
        if raw is not None:
            raw.close()
        daemon.stop()
