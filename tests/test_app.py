"""The composed daemon in-process: real Unix socket, drain in virtual time."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from daemon.app import App
from daemon.config import Config
from daemon.errors import ServerError
from daemon.server import bind_unix
from daemon.store import Store
from tests.conftest import ConfigFactory, StoreFactory
from tests.helpers import LoopHold, Peer, register_test_methods


@asynccontextmanager
async def running(config: Config, finished: list[str] | None = None) -> AsyncIterator[App]:
    """An App serving in the background; cancelled (not drained) at exit."""
    store = Store.open(config.store, config.rank_of())
    app = App(config, store)
    register_test_methods(app.service, finished)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: app.run(handle_signals=False, task_status=task_status)
        )
        yield app
        nursery.cancel_scope.cancel()
    store.close()


_open_peers: list[Peer] = []


async def connect(config: Config) -> Peer:
    peer = Peer(await trio.open_unix_socket(config.socket.path))
    _open_peers.append(peer)
    return peer


@pytest.fixture(autouse=True)
def _close_peers() -> Iterator[None]:
    """Close the test's connections. Sync on purpose: pytest-trio never runs
    an autouse async fixture (python-trio/pytest-trio#123), and this one,
    async until now, left every connection open until the interpreter's exit
    (its ResourceWarnings); tests/test_suite.py keeps it from coming back.
    The test's trio run is over here, and a trio socket's ``close`` needs
    one: the descriptor is taken from it and closed."""
    yield
    while _open_peers:
        stream = _open_peers.pop().stream
        assert isinstance(stream, trio.SocketStream)
        fd = stream.socket.detach()  # -1 if the test closed it
        if fd != -1:
            os.close(fd)


def start(app: App) -> Callable[[trio.TaskStatus[None]], Awaitable[None]]:
    def run(task_status: trio.TaskStatus[None]) -> Awaitable[None]:
        return app.run(handle_signals=False, task_status=task_status)

    return run


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config(shutdown={"drain_timeout": 30})


async def test_drain_waits_for_requests_and_background_then_cancels_the_rest(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    app = App(config, open_store(config))
    finished: list[str] = []
    register_test_methods(app.service, finished)
    returned_at: list[float] = []

    async def run_app(task_status: trio.TaskStatus[None]) -> None:
        await app.run(handle_signals=False, task_status=task_status)
        returned_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        await nursery.start(run_app)
        peer = await connect(config)
        assert (await peer.call("background", [5, "short"]))["result"]["tag"] == "short"
        assert (await peer.call("background", [100, "long"], id=2))["result"]["tag"] == "long"
        await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [10, "req"], "id": 3})
        await trio.sleep(1)
        assert app.service.in_flight == 1
        t0 = trio.current_time()
        app.request_drain()
        await trio.lowlevel.checkpoint()
        assert app.service.state == "draining"
        # New work on an open connection is refused; status still answers.
        refused = await peer.call("sleep", [1], id=4)
        assert refused["error"]["code"] == -32000
        status = (await peer.call("status", id=5))["result"]
        assert status["state"] == "draining"
        assert status["drain"]["deadline_s"] == pytest.approx(30, abs=0.01)
        assert status["background"]["by_strategy"] == {"test-short": 1, "test-long": 1}
        # No new connections.
        with pytest.raises(OSError, match=r"Connection refused|No such file") as info:
            await trio.open_unix_socket(config.socket.path)
        assert info.value.errno in (errno.ECONNREFUSED, errno.ENOENT)
        # The request started before the drain is answered.
        answered = await peer.receive()
        assert (answered["id"], answered["result"]["done_at"]) == (3, 10)
    assert finished == ["short"]  # "long" was cancelled at the deadline
    assert returned_at == [pytest.approx(t0 + 30, abs=0.01)]
    assert not os.path.exists(config.socket.path)


async def test_drain_ends_as_soon_as_nothing_runs(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    app = App(config, open_store(config))
    register_test_methods(app.service)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: app.run(handle_signals=False, task_status=task_status)
        )
        peer = await connect(config)  # an idle connection does not hold the drain up
        await peer.call("background", [3, "bg"])
        app.request_drain()
    assert trio.current_time() == pytest.approx(3, abs=0.01)


async def test_second_signal_cancels_everything_at_once(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    finished: list[str] = []
    async with running(config, finished) as app:
        peer = await connect(config)
        await peer.call("background", [20, "bg"])
        app.request_drain()
        await trio.sleep(2)
        app.cancel_all()
    assert trio.current_time() == pytest.approx(2, abs=0.01)
    assert finished == []
    assert not os.path.exists(config.socket.path)


async def test_socket_has_its_mode_from_birth_and_chmod_is_never_used(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("chmod after bind leaves a window with the wrong mode")

    monkeypatch.setattr(os, "chmod", no_chmod)
    for mode in (0o600, 0o660, 0o666):
        config = make_config(socket={"mode": f"{mode:04o}"})
        umask_before = os.umask(0o022)
        os.umask(umask_before)
        bound = bind_unix(config.socket.path, config.socket.file_mode)
        try:
            assert stat.S_IMODE(os.stat(config.socket.path).st_mode) == mode
            assert os.umask(umask_before) == umask_before  # restored
        finally:
            bound.close()
        assert not os.path.exists(config.socket.path)


async def test_leftover_socket_file_is_replaced(config: Config) -> None:
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(config.socket.path)
    leftover.close()  # the file stays, nobody listens: what a kill -9 leaves
    async with running(config):
        peer = await connect(config)
        assert (await peer.call("health"))["result"]["ok"] is True


async def test_second_daemon_fails_clearly_and_the_first_keeps_serving(config: Config) -> None:
    async with running(config) as first:
        with pytest.raises(ServerError, match=r"another ctxd \(pid \d+\) is serving"):
            await App(config, first.store).run(handle_signals=False)
        peer = await connect(config)
        assert (await peer.call("health"))["result"]["ok"] is True


async def test_foreign_live_listener_is_not_replaced(
    config: Config, open_store: StoreFactory
) -> None:
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(config.socket.path)
    other.listen()
    try:
        with pytest.raises(ServerError, match="another server is listening"):
            await App(config, open_store(config)).run(handle_signals=False)
        assert os.path.exists(config.socket.path)
    finally:
        other.close()


async def test_path_that_is_not_a_socket_is_left_alone(
    config: Config, open_store: StoreFactory
) -> None:
    Path(config.socket.path).write_text("precious")
    with pytest.raises(ServerError, match="not a socket"):
        await App(config, open_store(config)).run(handle_signals=False)
    assert Path(config.socket.path).read_text() == "precious"


async def test_socket_file_removed_at_exit_only_if_still_ours(config: Config) -> None:
    async with running(config):
        os.unlink(config.socket.path)
        Path(config.socket.path).write_text("someone else's")
    assert Path(config.socket.path).read_text() == "someone else's"


async def test_forbidden_peer_gets_one_error_line(make_config: ConfigFactory) -> None:
    config = make_config(socket={"allowed_uids": [54321], "allowed_gids": [54321]})
    async with running(config):
        peer = await connect(config)
        line = await peer.receive()
        assert line["error"]["code"] == -32004
        assert line["error"]["data"] == {"uid": os.getuid(), "gid": os.getgid()}
        assert await peer.receive() is None


async def test_allowed_by_gid(make_config: ConfigFactory) -> None:
    config = make_config(socket={"allowed_uids": [54321], "allowed_gids": [os.getgid()]})
    async with running(config):
        peer = await connect(config)
        assert (await peer.call("health"))["result"]["ok"] is True


async def test_connection_cap_and_capacity_coming_back(make_config: ConfigFactory) -> None:
    config = make_config(socket={"max_connections": 2})
    async with running(config) as app:
        first, second = await connect(config), await connect(config)
        for peer in (first, second):
            assert (await peer.call("health"))["result"]["ok"] is True
        third = await connect(config)
        refused = await third.receive()
        assert refused["error"]["code"] == -32005
        assert refused["error"]["data"] == {"max_connections": 2}
        assert await third.receive() is None
        assert (await first.call("status"))["result"]["connections"] == 2
        await second.stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert app.service.connections == 1
        fourth = await connect(config)
        assert (await fourth.call("health"))["result"]["ok"] is True


async def test_rpc_discover_describes_the_served_methods(config: Config) -> None:
    async with running(config):
        peer = await connect(config)
        document = (await peer.call("rpc.discover"))["result"]
    assert document["openrpc"].startswith("1.")
    methods = {m["name"]: m for m in document["methods"]}
    assert {"status", "health", "rpc.discover", "sleep"} <= set(methods)
    sleep = methods["sleep"]
    assert sleep["params"][0] == {
        "name": "seconds",
        "required": True,
        "schema": {"type": "number"},
    }
    assert sleep["params"][1]["required"] is False
    status_schema = document["components"]["schemas"]["StatusResult"]
    assert {"version", "pid", "uptime_s", "state", "drain"} <= set(status_schema["properties"])
    assert document["components"]["errors"]["overloaded"]["code"] == -32005
    json.dumps(document)  # plain JSON all the way down


async def test_drain_delivers_the_response_of_a_request_in_flight(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    # Regression: the drain once ended when the handler returned, before its
    # response was written, so the client saw its connection close unanswered.
    # trio shuffles the order of runnable tasks, so one round caught it about
    # one time in five: 40 rounds miss it with odds of about 1 in 10,000.
    store = open_store(config)
    for _ in range(40):
        app = App(config, store)
        register_test_methods(app.service)
        async with trio.open_nursery() as nursery:
            await nursery.start(start(app))
            peer = await connect(config)
            await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [2, "x"], "id": 7})
            await trio.sleep(1)
            app.request_drain()
            response = await peer.receive()
        assert response is not None
        assert (response["id"], response["result"]["tag"]) == (7, "x")


async def test_events_methods_over_the_socket(config: Config) -> None:
    async with running(config):
        peer = await connect(config)
        key = {"session_id": "c1", "category": "context_analysis", "resource": "sha256:ab"}
        appended = await peer.call(
            "events.append", {**key, "payload": {"_strategy": "premium", "_model": "m", "n": 1}}
        )
        assert appended["result"] == {"id": 1}
        legacy = await peer.call("events.append", {**key, "payload": {"old": True}}, id=2)
        assert legacy["result"] == {"id": 2}
        best = (await peer.call("events.best", key, id=3))["result"]["event"]
        assert (best["id"], best["strategy"], best["model"]) == (1, "premium", "m")
        assert best["payload"] == {"_strategy": "premium", "_model": "m", "n": 1}
        assert best["provenance"] is None
        listed = (await peer.call("events.list", {"session_id": "c1"}, id=4))["result"]["events"]
        assert [(e["id"], e["strategy"], e["model"]) for e in listed] == [
            (2, "unknown", "unknown"),
            (1, "premium", "m"),
        ]
        missing = await peer.call("events.best", {**key, "scene": "x"}, id=5)
        assert missing["result"] == {"event": None}
        status = (await peer.call("status", id=6))["result"]["store"]
        assert status["events"] == 2
        assert status["path"] == config.store.path


@pytest.mark.parametrize(
    ("method", "params", "fragment"),
    [
        (
            "events.append",
            {"session_id": "", "category": "c", "resource": "r", "payload": {}},
            "length >= 1",
        ),
        (
            "events.append",
            {"session_id": "s", "category": "c", "resource": "r", "payload": []},
            "Expected `object` - at `$.payload`",
        ),
        (
            "events.append",
            {"session_id": "s", "category": "c", "resource": "r"},
            "missing required field `payload`",
        ),
        (
            "events.append",
            {"session_id": "s", "category": "c", "resource": "r", "payload": "text"},
            "Expected `object` - at `$.payload`",
        ),
        ("events.list", {"session_id": "s", "limit": 1001}, "<= 1000"),
        ("events.list", {"session_id": "s", "limit": 0}, ">= 1"),
        ("events.list", {"session_id": "s", "before_id": 0}, ">= 1"),
        ("events.best", {"session_id": "s", "category": "c"}, "missing required field `resource`"),
        (
            "events.append",
            {"session_id": "x" * 257, "category": "c", "resource": "r", "payload": {}},
            "length <= 256",
        ),
    ],
)
async def test_events_bad_params(
    config: Config, method: str, params: dict[str, Any], fragment: str
) -> None:
    async with running(config):
        peer = await connect(config)
        error = (await peer.call(method, params))["error"]
        assert error["code"] == -32602
        assert fragment in error["message"]
        if "$.payload" in fragment:  # a reason a program can act on, as for any wrong value
            assert (error["data"]["reason"], error["data"]["field"]) == ("invalid_value", "payload")
        assert (await peer.call("events.list", {"session_id": "s"}, id=2))["result"] == {
            "events": [],
            "next_before_id": None,
        }


STEP = {
    "participants": {"user": "u", "talker": "t"},
    "layout": {"left": "talker", "right": "user"},
    "bubbles": [{"speaker": "user", "side": "right", "bbox": [5, 5, 50, 20], "text": "yo"}],
    "conversation": [{"speaker": "user", "text": "yo"}],
    "summary": None,
    "_strategy": "premium",
    "_model": "m",
}


async def test_cache_hit_is_answered_by_the_fast_path(config: Config) -> None:
    async with running(config) as app:
        peer = await connect(config)
        key = {"session_id": "c1", "category": "context_analysis", "resource": "sha256:x"}
        assert "result" in await peer.call("events.append", {**key, "payload": STEP})
        params = {"conversation_id": "c1", "resource": "sha256:x"}
        spawned = app.supervisor.spawned
        hit = (await peer.call("analyze", params, id=2))["result"]
        assert hit["provenance"]["cached"] is True
        assert (hit["provenance"]["strategy"], hit["provenance"]["event_id"]) == ("premium", 1)
        assert hit["result"]["conversation"] == [{"speaker": "user", "text": "yo"}]
        merge = (await peer.call("merge_step", params, id=3))["result"]  # the alias
        assert merge["provenance"]["cached"] is True
        assert app.races.stats.hits == 2
        assert app.supervisor.spawned == spawned  # no race, no task
        await peer.send({"jsonrpc": "2.0", "method": "analyze", "params": params})  # notification
        # A notification runs in a task of its own (nothing to answer): it and
        # the next request may run in either order, so it is awaited first.
        await trio.testing.wait_all_tasks_blocked()
        assert app.races.stats.hits == 3  # the notification was served once
        refresh = await peer.call("analyze", {**params, "refresh": True}, id=4)
        assert refresh["error"]["code"] == -32602  # not cached for a refresh, and no image
        assert "send the image" in refresh["error"]["message"]
        assert app.races.stats.hits == 3  # ... and not twice


async def test_an_append_in_flight_at_the_drain_deadline_is_committed_at_once(
    config: Config, open_store: StoreFactory
) -> None:
    # Regression: the store writer was cancelled with everything else at the
    # drain deadline, so a result being stored right then (the race shields
    # that append) waited out its grace period: the exit came 10 s late.
    app = App(config, open_store(config))
    stored: list[int] = []

    async def storing_at_the_deadline() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                stored.append(await app.store.append("s", "c", "r", "", {"late": True}))

    async with trio.open_nursery() as nursery:
        await nursery.start(start(app))
        app.supervisor.spawn("late", storing_at_the_deadline)
        started = trio.current_time()
        with trio.fail_after(5):  # the writer must still be there to commit it
            app.request_drain()
            app.cancel_all()  # the deadline, now
            await app.supervisor.wait_idle()
    assert stored == [1]
    assert trio.current_time() - started < 2


def _blocking_calls(path: str, lines: list[bytes]) -> list[bytes]:
    """Send each line and read its answer line, from another thread: the
    client's own encoding must not count as the daemon's loop time."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        reader = sock.makefile("rb")
        answers = []
        for line in lines:
            sock.sendall(line + b"\n")
            answers.append(reader.readline())
        return answers


async def test_a_15_mib_event_is_stored_and_listed_without_holding_the_loop(
    make_config: ConfigFactory,
) -> None:
    """Issue 18.2: one event of ~15 MiB of small numbers was decoded from
    msgpack and encoded to JSON on the loop when listed (131 ms of CPU in one
    go here; dict-heavy payloads cost several times that), and built as
    objects when appended (144 ms). The payload is now kept as the client's
    JSON text: listing copies it (10-16 ms); appending is the request's own
    parse (~60 ms for this line, the RPC layer's cost for any message this
    size) plus a scan for its tags."""
    config = make_config(socket={"max_message_bytes": 32 << 20})
    payload = b'{"_strategy": "app", "n": [' + b",".join([b"1"] * (7 << 20)) + b"]}"
    assert len(payload) > 14 << 20
    append = b'{"jsonrpc": "2.0", "id": 1, "method": "events.append", "params": {'
    append += b'"session_id": "s", "category": "c", "resource": "r", "payload": ' + payload + b"}}"
    listing = b'{"jsonrpc": "2.0", "id": 2, "method": "events.list", "params": {"session_id": "s"}}'
    holds = LoopHold(), LoopHold()
    async with running(config):
        answers = []
        for line, hold in zip([append, listing], holds, strict=True):
            trio.lowlevel.add_instrument(hold)
            try:
                answers += await trio.to_thread.run_sync(
                    _blocking_calls, config.socket.path, [line]
                )
            finally:
                trio.lowlevel.remove_instrument(hold)
    stored, listed = answers
    assert json.loads(stored)["result"] == {"id": 1}
    event = json.loads(listed)["result"]["events"][0]
    assert (event["id"], event["strategy"]) == (1, "app")
    assert len(event["payload"]["n"]) == 7 << 20
    assert payload in listed  # byte for byte
    listing_hold = holds[1].longest
    assert listing_hold < 0.05, f"listing held the loop for {listing_hold * 1000:.0f} ms of CPU"
