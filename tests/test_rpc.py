"""One connection, over in-memory streams and in virtual time."""

from __future__ import annotations

import array
import contextlib
import fcntl
import gc
import math
import socket
import termios
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.lowlevel
import trio.testing

from daemon.config import Config
from daemon.rpc import Connection
from daemon.service import Service
from tests.conftest import ConfigFactory, StoreFactory
from tests.helpers import Peer, make_service


def socket_stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected pair of Unix sockets: the daemon's own I/O paths (direct
    reads and writes without schedule points) run only on real sockets."""
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


PAIRS: dict[str, Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]] = {
    "memory": trio.testing.memory_stream_pair,
    "lockstep": trio.testing.lockstep_stream_pair,
    "socket": socket_stream_pair,
}


@asynccontextmanager
async def connected(
    service: Service, config: Config, *, lockstep: bool = False, kind: str = "memory"
) -> AsyncIterator[tuple[Peer, trio.Event]]:
    """A Connection served in the background; the event is set when it ends."""
    client, server = PAIRS["lockstep" if lockstep else kind]()
    ended = trio.Event()

    async def serve() -> None:
        try:
            await Connection(server, service, config.socket).serve()
        finally:
            await server.aclose()
            ended.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            yield Peer(client), ended
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(client)


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config(
        socket={"idle_timeout": 60, "line_timeout": 5, "write_timeout": 3, "max_in_flight": 4}
    )


async def test_slow_request_does_not_hold_up_a_fast_one(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    async with connected(make_service(config, open_store(config)), config) as (peer, _):
        await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [10, "slow"], "id": 1})
        await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [1, "fast"], "id": 2})
        first, second = await peer.receive(), await peer.receive()
    assert (first["id"], first["result"]["tag"], first["result"]["done_at"]) == (2, "fast", 1)
    assert (second["id"], second["result"]["done_at"]) == (1, 10)


async def test_spec_examples_over_a_stream(config: Config, open_store: StoreFactory) -> None:
    async with connected(make_service(config, open_store(config)), config) as (peer, _):
        assert await peer.call("health") == {
            "jsonrpc": "2.0",
            "result": {"ok": True, "state": "serving"},
            "id": 1,
        }
        assert (await peer.call("nope", id="x"))["error"]["code"] == -32601
        await peer.send(b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
        parse_error = await peer.receive()
        assert parse_error["error"]["code"] == -32700
        assert parse_error["error"]["message"].startswith("parse error")
        assert parse_error["id"] is None
        await peer.send(b"[]")
        assert (await peer.receive())["error"]["code"] == -32600
        await peer.send(b"[1,2,3]")
        batch = await peer.receive()
        assert [r["error"]["code"] for r in batch] == [-32600] * 3
        assert all(r["id"] is None for r in batch)
        # Notifications, alone or in a batch, produce no output at all: the
        # next thing received is the answer to a later call.
        await peer.send({"jsonrpc": "2.0", "method": "health"})
        await peer.send([{"jsonrpc": "2.0", "method": "health"}, {"jsonrpc": "2.0", "method": "x"}])
        assert (await peer.call("health", id=99))["id"] == 99


async def test_mixed_batch(config: Config, open_store: StoreFactory) -> None:
    async with connected(make_service(config, open_store(config)), config) as (peer, _):
        await peer.send(
            [
                {"jsonrpc": "2.0", "method": "health", "id": "1"},
                {"jsonrpc": "2.0", "method": "health"},
                {"jsonrpc": "2.0", "method": "sleep", "params": {"seconds": "x"}, "id": "2"},
                {"foo": "boo"},
                {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
                {"jsonrpc": "2.0", "method": "health", "id": "9"},
            ]
        )
        batch = await peer.receive()
    by_id = {r["id"]: r for r in batch}
    assert len(batch) == 5
    assert by_id["1"]["result"]["ok"] is True
    assert by_id["2"]["error"]["code"] == -32602
    assert by_id[None]["error"]["code"] == -32600
    assert by_id["5"]["error"]["code"] == -32601
    assert by_id["9"]["result"]["ok"] is True


async def test_handler_bug_is_internal_error_and_connection_lives(
    config: Config, caplog: pytest.LogCaptureFixture, open_store: StoreFactory
) -> None:
    async with connected(make_service(config, open_store(config)), config) as (peer, _):
        error = (await peer.call("boom", [0]))["error"]
        assert error == {"code": -32603, "message": "internal error"}
        assert (await peer.call("unencodable", [0]))["error"]["code"] == -32603
        assert (await peer.call("health"))["result"]["ok"] is True
    assert "a bug in a handler" in caplog.text
    assert "Traceback" in caplog.text


async def test_each_hostile_message_gets_its_error_and_the_connection_survives(
    config: Config, open_store: StoreFactory
) -> None:
    cases: list[tuple[bytes, int]] = [
        (b'{"jsonrpc":"2.0","method":"health","id":1,"x":NaN}', -32700),
        (b'{"jsonrpc":"2.0","method":"health","id":Infinity}', -32700),
        (b"[" * 100_000 + b"]" * 100_000, -32700),
        (b'{"jsonrpc":"2.0","method":"health","id":"\xff\xfe"}', -32700),
        (b'{"jsonrpc":"2.0","method":"health","id":"\\udc00"}', -32700),
        (b'{"jsonrpc":"1.0","method":"health","id":1}', -32600),
        (b'{"jsonrpc":"2.0","method":"health","id":[1]}', -32600),
        (b'{"jsonrpc":"2.0","method":"health","id":{"a":1}}', -32600),
        (b'{"jsonrpc":"2.0","method":"health","params":"x","id":1}', -32600),
        (b'{"jsonrpc":"2.0","method":"health","id":' + b"7" * 5000 + b"}", -32600),
        (b'{"jsonrpc":"2.0","method":"sleep","params":[' + b"7" * 5000 + b'],"id":1}', -32602),
    ]
    async with connected(make_service(config, open_store(config)), config) as (peer, _):
        for line, code in cases:
            await peer.send(line)
            response = await peer.receive()
            assert response["error"]["code"] == code, line[:80]
            assert response["jsonrpc"] == "2.0"
        assert (await peer.call("health"))["result"]["ok"] is True


async def test_message_too_large_closes_with_one_error(
    make_config: ConfigFactory, open_store: StoreFactory
) -> None:
    config = make_config(socket={"max_message_bytes": 1000})
    async with connected(make_service(config, open_store(config)), config) as (peer, ended):
        await peer.send(b'{"jsonrpc":"2.0","method":"health","params":{"pad":"' + b"x" * 2000)
        response = await peer.receive()
        assert response == {
            "jsonrpc": "2.0",
            "error": {
                "code": -32600,
                "message": "message too large",
                "data": {"max_message_bytes": 1000},
            },
            "id": None,
        }
        await ended.wait()
        assert await peer.receive() is None


async def test_exactly_max_message_bytes_is_accepted(
    make_config: ConfigFactory, open_store: StoreFactory
) -> None:
    config = make_config(socket={"max_message_bytes": 1000})
    message = b'{"jsonrpc":"2.0","method":"health","id":1}'
    padded = message[:-1] + b" " * (1000 - len(message)) + b"}"
    assert len(padded) == 1000
    async with connected(make_service(config, open_store(config)), config) as (peer, _):
        await peer.send(padded)
        assert (await peer.receive())["result"]["ok"] is True


async def test_idle_connection_is_closed(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    async with connected(make_service(config, open_store(config)), config) as (peer, ended):
        assert (await peer.call("health"))["id"] == 1
        await trio.sleep(59)
        assert not ended.is_set()
        await ended.wait()
        assert trio.current_time() == pytest.approx(60, abs=0.01)
        assert await peer.receive() is None


async def test_a_long_request_is_not_idle(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    async with connected(make_service(config, open_store(config)), config) as (peer, ended):
        response = await peer.call("sleep", [200])
        assert response["result"]["done_at"] == 200
        assert not ended.is_set()


async def test_slowloris_line_is_cut_off(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    async with connected(make_service(config, open_store(config)), config) as (peer, ended):
        for byte in b'{"jsonrpc":"2.0",':
            await peer.stream.send_all(bytes([byte]))
            await trio.sleep(0.25)
        response = await peer.receive()
        assert response["error"]["code"] == -32600
        assert "within 5 seconds" in response["error"]["message"]
        await ended.wait()
        assert trio.current_time() == pytest.approx(5, abs=0.01)


async def test_client_that_never_reads_is_dropped(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    # lockstep streams have no buffer at all: a response waits until it is read.
    async with connected(make_service(config, open_store(config)), config, lockstep=True) as (
        peer,
        ended,
    ):
        await peer.send({"jsonrpc": "2.0", "method": "health", "id": 1})
        with trio.fail_after(10):
            await ended.wait()
        assert trio.current_time() == pytest.approx(3, abs=0.01)


async def test_pipelining_client_is_held_back_not_buffered(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    config = make_config(socket={"max_requests_per_connection": 2, "max_in_flight": 100})
    service = make_service(config, open_store(config))
    async with connected(service, config) as (peer, _):
        for i in range(5):
            await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [10], "id": i})
        await trio.sleep(1)
        assert service.in_flight == 2  # the rest are still unread bytes
        done = [await peer.receive() for _ in range(5)]
    assert sorted(r["result"]["done_at"] for r in done) == [10, 10, 20, 20, 30]


async def test_in_flight_cap_gives_overloaded_then_recovers(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    service = make_service(config, open_store(config))  # max_in_flight 4
    async with connected(service, config) as (peer, _):
        for i in range(5):
            await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [10], "id": i})
        responses = [await peer.receive() for _ in range(5)]
        refused = [r for r in responses if "error" in r]
        assert len(refused) == 1  # which one depends on the order tasks start in
        assert refused[0]["error"]["code"] == -32005
        assert refused[0]["error"]["data"] == {"in_flight": 4, "max_in_flight": 4}
        assert responses[0] is refused[0]  # refused at once, the rest after 10 s
        assert (await peer.call("sleep", [1], id=9))["result"]["done_at"] == 11


async def test_draining_refuses_new_work_but_answers_status(
    config: Config, open_store: StoreFactory
) -> None:
    service = make_service(config, open_store(config))
    async with connected(service, config) as (peer, _):
        service.state = "draining"
        error = (await peer.call("sleep", [0]))["error"]
        assert error["code"] == -32000
        assert (await peer.call("health"))["result"]["state"] == "draining"
        assert (await peer.call("status"))["result"]["state"] == "draining"


async def test_eof_after_requests_still_answers_them(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    client, server = trio.testing.memory_stream_pair()
    service = make_service(config, open_store(config))
    peer = Peer(client)
    await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [3], "id": 1})
    await client.send_stream.aclose()  # half-close: "no more requests"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Connection(server, service, config.socket).serve)
        response = await peer.receive()
    assert response["result"]["done_at"] == 3
    assert math.isclose(trio.current_time(), 3)


async def test_line_started_while_the_watchdog_sleeps_is_cut_off_within_an_eighth(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    # idle 60 s, line 5 s, write 3 s: the watchdog looks at least every 3/8 s.
    async with connected(make_service(config, open_store(config)), config) as (peer, ended):
        await trio.sleep(30.1)
        await peer.stream.send_all(b'{"jsonrpc":')
        started = trio.current_time()
        response = await peer.receive()
        assert response["error"]["data"] == {"line_timeout": 5}
        await ended.wait()
        assert started + 5 <= trio.current_time() <= started + 5 + 3 / 8


async def test_requests_arriving_keep_a_connection_from_going_idle(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    async with connected(make_service(config, open_store(config)), config) as (peer, ended):
        for _ in range(10):
            await trio.sleep(50)  # idle_timeout is 60
            assert (await peer.call("health"))["result"]["ok"] is True
        assert not ended.is_set()


async def test_line_clock_stops_while_the_daemon_is_not_reading(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    # Regression: a pipelining client whose next request was half received
    # when every request slot was busy got cut off as a slowloris, although
    # it was the daemon that had stopped reading.
    config = make_config(socket={"line_timeout": 5, "max_requests_per_connection": 1})
    async with connected(make_service(config, open_store(config)), config) as (peer, ended):
        second = b'{"jsonrpc":"2.0","method":"sleep","params":[1],"id":2}\n'
        await peer.stream.send_all(
            b'{"jsonrpc":"2.0","method":"sleep","params":[20],"id":1}\n' + second[:20]
        )
        first = await peer.receive()
        assert (first["id"], first["result"]["done_at"]) == (1, 20)
        await peer.stream.send_all(second[20:])
        response = await peer.receive()
        assert (response["id"], response["result"]["done_at"]) == (2, 21)
        assert not ended.is_set()


@pytest.mark.parametrize("kind", ["memory", "socket"])
async def test_spec_methods_and_errors_over_both_kinds_of_stream(
    kind: str, config: Config, open_store: StoreFactory
) -> None:
    async with connected(make_service(config, open_store(config)), config, kind=kind) as (
        peer,
        _,
    ):
        assert (await peer.call("health"))["result"]["ok"] is True
        await peer.send(b'{"jsonrpc":"2.0","method":"nope","id":2}')
        assert (await peer.receive())["error"]["code"] == -32601
        await peer.send(b"{not json")
        assert (await peer.receive())["error"]["code"] == -32700
        reply = await peer.call("sleep", [0, "t"], id=3)
        assert reply["result"]["tag"] == "t"


async def test_over_a_socket_a_pipelining_client_does_not_starve_another(
    config: Config, open_store: StoreFactory
) -> None:
    """The reader answers cheap requests without schedule points and
    checkpoints once it has run ``rpc.TURN`` without one. 3,000 calls
    pipelined on one connection (all of them in the socket before the daemon
    reads) must not make another connection's one call wait for them all,
    nor hold a probe task of the loop for more than a few ms."""
    service = make_service(config, open_store(config))
    line = b'{"jsonrpc":"2.0","method":"health","id":1}\n'
    answer = b'{"jsonrpc":"2.0","result":{"ok":true,"state":"serving"},"id":1}\n'
    flood_client, flood_server = flood_pair()
    other_client, other_server = socket_stream_pair()
    flood_client.sendall(line * 3000)
    await other_client.send_all(line)
    probe = GapProbe()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe.run)
        nursery.start_soon(Connection(flood_server, service, config.socket).serve)
        nursery.start_soon(Connection(other_server, service, config.socket).serve)
        reply = await Peer(other_client).receive()
        assert reply["result"]["ok"] is True
        waiting = array.array("i", [0])
        fcntl.ioctl(flood_client.fileno(), termios.FIONREAD, waiting)
        flood_answered = waiting[0] // len(answer)
        nursery.cancel_scope.cancel()
    flood_client.close()
    for stream in (flood_server, other_client, other_server):
        await trio.aclose_forcefully(stream)
    assert flood_answered < 3000 / 4, flood_answered  # about 1 ms of answers
    assert probe.longest < 0.1, f"the loop was held for {probe.longest * 1000:.0f} ms"


async def test_over_a_socket_a_client_that_never_reads_is_dropped(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    """Responses that no longer fit the socket's buffer go through send_all,
    under the write timeout (3 s here)."""
    async with connected(make_service(config, open_store(config)), config, kind="socket") as (
        peer,
        ended,
    ):
        async with trio.open_nursery() as nursery:

            async def flood() -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    while True:
                        await peer.stream.send_all(
                            b'{"jsonrpc":"2.0","method":"health","id":1}\n' * 1000
                        )

            nursery.start_soon(flood)
            with trio.fail_after(10):
                await ended.wait()
            nursery.cancel_scope.cancel()
        assert 3 <= trio.current_time() <= 3 + 3 / 8


async def test_over_a_socket_slowloris_and_eof_behave_as_over_memory(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    service = make_service(config, open_store(config))
    async with connected(service, config, kind="socket") as (peer, ended):
        for byte in b'{"jsonrpc":"2.0",':  # one byte at a time, never the end
            await peer.stream.send_all(bytes([byte]))
            await trio.sleep(0.1)
        response = await peer.receive()
        assert response["error"]["data"] == {"line_timeout": 5}
        await ended.wait()
    async with connected(service, config, kind="socket") as (peer, ended):
        await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [2], "id": 1})
        await peer.stream.send_eof()  # type: ignore[attr-defined]
        assert (await peer.receive())["result"]["done_at"] == pytest.approx(
            trio.current_time(), abs=0.01
        )
        await ended.wait()


# ----------------------------------------------------- issue 20: fairness, caps, hang-ups --


def flood_pair() -> tuple[socket.socket, trio.SocketStream]:
    """A socket pair whose client side is a blocking stdlib socket (for a
    flooding thread: it refills the daemon's socket while the loop runs, as
    a client process would) and queues up to 4 MiB (as root; else what the
    system allows)."""
    client, server = socket.socketpair()
    so_sndbufforce = getattr(socket, "SO_SNDBUFFORCE", 32)
    try:
        client.setsockopt(socket.SOL_SOCKET, so_sndbufforce, 4 << 20)
    except OSError:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    return client, trio.SocketStream(trio.socket.from_stdlib_socket(server))


def flood(client: socket.socket, chunk: bytes, total: int) -> None:
    """Write ``total`` bytes of ``chunk`` as fast as the peer takes them (in a thread)."""
    with contextlib.suppress(OSError):
        for _ in range(total // len(chunk)):
            client.sendall(chunk)


class GapProbe:
    """A task of the loop that only yields: the longest time between two of
    its turns is the longest the loop was held by someone else."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await trio.lowlevel.checkpoint()
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now


class LoopHold(trio.abc.Instrument):
    """The longest the loop ran without looking at I/O, in this thread's CPU
    time: what the tasks held, whatever the OS or the other threads took
    meanwhile (a wall-clock gap also counts the process being preempted,
    which a loaded 2-core machine does for 100 ms at a time)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._since: float | None = None

    def after_io_wait(self, timeout: float) -> None:
        self._since = time.thread_time()

    def before_io_wait(self, timeout: float) -> None:
        if self._since is not None:
            self.longest = max(self.longest, time.thread_time() - self._since)


@pytest.mark.parametrize(
    ("filler", "total"),
    [
        (b"\n", 64 << 20),
        (b"\r\n", 64 << 20),
        (b" \t \n", 64 << 20),
        (b'{"jsonrpc":"2.0","method":"health"}\n', 4 << 20),  # 10 us each, not 10 ns
        # 1,000 notifications a batch: they used to start 1,000 tasks at once
        (b"[" + b",".join([b'{"jsonrpc":"2.0","method":"health"}'] * 1000) + b"]\n", 8 << 20),
    ],
    ids=["lf", "crlf", "spaces", "notification", "batch"],
)
async def test_a_flood_of_lines_without_answers_never_holds_the_loop(
    filler: bytes, total: int, config: Config, open_store: StoreFactory
) -> None:
    """Issue 20.1: blank keep-alive lines skipped the reader's every-16-lines
    checkpoint and the line reader read 8 times 64 KiB in a row: two clients
    sending newlines froze the daemon (another client's health took 12-17 s).
    Two threads flood 64 MiB of blank lines (4 MiB of notifications) each,
    keeping the daemon's sockets full as client processes would; a probe
    task in the loop must get a turn every few ms, and a third client's
    health calls must be answered."""
    service = make_service(config, open_store(config))
    floods = [flood_pair() for _ in range(2)]
    other_client, other_server = socket_stream_pair()
    probe = GapProbe()
    hold = LoopHold()
    # What this measures is the daemon's loop, not the garbage of the test
    # run: late in a whole-suite run the process holds millions of objects
    # the earlier tests left, and one full collection of them costs ~1.3 s
    # of CPU here; landing inside the flood it would count as a hold. (Runs
    # under load saw 450-530 ms holds; alone it passes.) The objects alive
    # now are set aside for the measurement.
    gc.collect()
    gc.freeze()
    trio.lowlevel.add_instrument(hold)
    chunk = filler * ((256 << 10) // len(filler))
    latencies: list[float] = []

    async def flood_in_a_thread(client: socket.socket) -> None:
        await trio.to_thread.run_sync(flood, client, chunk, total)

    async with trio.open_nursery() as nursery:
        for _, server in floods:
            nursery.start_soon(Connection(server, service, config.socket).serve)
        nursery.start_soon(Connection(other_server, service, config.socket).serve)
        nursery.start_soon(probe.run)
        other = Peer(other_client)
        with trio.fail_after(120):
            async with trio.open_nursery() as flooding:
                for client, _ in floods:
                    flooding.start_soon(flood_in_a_thread, client)
                while len(latencies) < 20:
                    started = time.perf_counter()
                    assert (await other.call("health"))["result"]["ok"] is True
                    latencies.append(time.perf_counter() - started)
        nursery.cancel_scope.cancel()
    for client, server in floods:
        client.close()
        await trio.aclose_forcefully(server)
    for stream in (other_client, other_server):
        await trio.aclose_forcefully(stream)
    trio.lowlevel.remove_instrument(hold)
    gc.unfreeze()
    # The loop's own hold, in CPU time: before the fixes seconds (blank lines)
    # or ~100 ms (batches). The wall-clock bounds are generous for a shared
    # 2-core machine (preemption, the GIL shared with the flooding threads).
    assert hold.longest < 0.1, f"the loop ran {hold.longest * 1000:.0f} ms without I/O"
    assert probe.longest < 0.5, f"the loop was held for {probe.longest * 1000:.0f} ms"
    assert max(latencies) < 0.5, f"health took {max(latencies) * 1000:.0f} ms"


async def test_methods_that_never_wait_and_cache_hits_answer_at_the_in_flight_cap(
    config: Config, open_store: StoreFactory
) -> None:
    """Issue 20.2: at max_in_flight, health and status answered -32005 (ctl
    said "not serving" exactly when the daemon was only busy), and so did a
    cache hit. They never wait, so the cap does not count them; real work
    past the cap is still refused."""
    store = open_store(config)
    service = make_service(config, store)  # max_in_flight 4
    key = {"session_id": "c1", "category": "context_analysis", "resource": "sha256:x"}
    async with (
        trio.open_nursery() as writer,
        connected(service, config, kind="socket") as (
            peer,
            _,
        ),
    ):
        await writer.start(store.run_writer)
        assert "result" in await peer.call("events.append", {**key, "payload": CACHED_STEP})
        for i in range(4):
            await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [60], "id": i})
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
            assert (await peer.call("health", id="h"))["result"]["ok"] is True
            assert (await peer.call("status", id="s"))["result"]["in_flight"] == 4
            best = await peer.call("events.best", key, id="b")
            assert best["result"]["event"]["id"] == 1
            hit = await peer.call("analyze", {"conversation_id": "c1", "resource": "sha256:x"})
            assert hit["result"]["provenance"]["cached"] is True
            refused = await peer.call("sleep", [0], id="past the cap")
            assert refused["error"]["code"] == -32005
        writer.cancel_scope.cancel()


CACHED_STEP = {
    "participants": {"user": "u", "talker": "t"},
    "layout": {"left": "talker", "right": "user"},
    "bubbles": [{"speaker": "user", "side": "right", "bbox": [5, 5, 50, 20], "text": "yo"}],
    "conversation": [{"speaker": "user", "text": "yo"}],
    "summary": None,
    "_strategy": "premium",
    "_model": "m",
}


async def test_a_notification_in_a_batch_does_not_hold_the_batch_answer(
    config: Config, autojump_clock: trio.testing.MockClock, open_store: StoreFactory
) -> None:
    """Issue 20.3: ``[slow notification, health]`` was answered when the
    notification's work ended. The answer goes out when the items with an id
    are done; the notification goes on, and the drain still waits for it."""
    service = make_service(config, open_store(config))
    async with connected(service, config, kind="socket") as (peer, ended):
        await peer.send(
            [
                {"jsonrpc": "2.0", "method": "sleep", "params": [10]},
                {"jsonrpc": "2.0", "method": "health", "id": 1},
                {"jsonrpc": "2.0", "method": "sleep", "params": [2], "id": 2},
            ]
        )
        answer = await peer.receive()
        assert [r["id"] for r in answer] == [1, 2]
        assert trio.current_time() == pytest.approx(2, abs=0.01)
        await service.wait_all_answered()  # the notification is still counted
        assert trio.current_time() == pytest.approx(10, abs=0.01)
        assert not ended.is_set()


@pytest.mark.parametrize("slots", [1, 64], ids=["reader-parked", "reader-reading"])
async def test_a_client_that_hangs_up_frees_its_slots_at_once(
    slots: int,
    make_config: ConfigFactory,
    autojump_clock: trio.testing.MockClock,
    open_store: StoreFactory,
) -> None:
    """Issue 20.4: a client that closed its connection kept its connection
    and in-flight slots until its handlers finished. A full close ends the
    connection's waits at once (whether or not the reader was reading: with
    one request slot it is parked); a half-close still gets its answers
    (``test_over_a_socket_slowloris_and_eof_behave_as_over_memory``)."""
    config = make_config(
        socket={"idle_timeout": 600, "max_requests_per_connection": slots, "max_in_flight": 8}
    )
    service = make_service(config, open_store(config))
    async with connected(service, config, kind="socket") as (peer, ended):
        await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [100], "id": 1})
        await peer.send({"jsonrpc": "2.0", "method": "sleep", "params": [100], "id": 2})
        await trio.testing.wait_all_tasks_blocked()
        assert service.in_flight == (1 if slots == 1 else 2)
        await peer.stream.aclose()
        await ended.wait()
        assert trio.current_time() < 1
        assert service.in_flight == 0


async def test_a_hang_up_watch_that_cannot_register_serves_on(
    make_config: ConfigFactory,
    open_store: StoreFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``epoll.register`` fails with ENOSPC past fs.epoll.max_user_watches:
    that escaped the connection into the handlers' nursery (review finding).
    The connection is served without the early close, with a warning."""
    import errno
    import select

    real = select.epoll

    class Full:
        def __init__(self) -> None:
            self._epoll = real()

        def register(self, fd: int, events: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self._epoll.close()

    monkeypatch.setattr(select, "epoll", Full)
    config = make_config()
    service = make_service(config, open_store(config))
    async with connected(service, config, kind="socket") as (peer, _ended):
        assert (await peer.call("health"))["result"]["ok"] is True
    assert "cannot watch a connection for hang-ups" in caplog.text
