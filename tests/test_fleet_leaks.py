"""No leak when the fleet's server is bad (issue 14, point 10): many lookups,
leases and publishes against a server that never answers, one that answers
garbage and one that drops every connection, given as a ``url`` and as the
lone seed of ``cluster_nodes``. The fleet runs as in the daemon
(``Fleet.run``: publisher, pinger and subscription retrying all the while)
and the request path's commands are sent as a request sends them, each
under its timeout. Open file descriptors, trio tasks and coredis's
connections must stay where they were after a warm-up, and the Python heap
(tracemalloc, after a full collection) may grow by 1 KB per round at most
(a leaked connection is ~10 KB). Virtual time (trio's autojump clock): each
round lets 1 to 2.4 s pass, so the background tasks retry about a hundred
times without the test waiting for it.

What it showed (``-s`` prints the measures; 25 rounds of warm-up, then two
windows of 20): fds and tasks back to the same count, or +2/+5 for a
connection being made at the instant of a measure; the heap +2 to +11 KB a
window, flat past ~50 rounds (a 4 x 100-round run of the garbage case:
190, 222, 221, 222 KB): no leak found."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import math
import os
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing
from coredis.tokens import PureToken

from daemon.models import CacheKey
from daemon.store.fleet import Fleet
from daemon.store.fleet_keys import key_tag, lease_key
from tests.test_fleet import HostFactory, hosts, run_writer, store_result

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function MemoryObject:pytest.PytestUnraisableExceptionWarning"
)

WARM_UP = 25  # rounds before the first measure: pools, caches, free lists settle
WINDOW = 20  # rounds between two measures; two windows, and a leak grows in both
HEAP_PER_ROUND = 1024  # bytes the heap may grow per round (a leaked connection: ~10 KB)


@pytest.fixture
def host(make_config: Any, short_tmp: Any) -> Iterator[HostFactory]:
    yield from hosts(make_config, short_tmp)


async def bad_server(nursery: trio.Nursery, mode: str) -> int:
    """A TCP server on 127.0.0.1: ``silent`` reads and never answers,
    ``garbage`` answers every read with a line that is not RESP, ``drop``
    closes each connection as soon as it has read from it."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some(65536):
                if mode == "garbage":
                    await stream.send_all(b"%%%garbage\r\n")
                elif mode == "drop":
                    return

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


def trio_tasks() -> int:
    """Every task of this trio run."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, todo = 0, [root]
    while todo:
        task = todo.pop()
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


def connections(fleet: Fleet) -> int:
    """coredis's connections of the fleet's client that are open."""
    pool = getattr(fleet.client, "connection_pool", None)
    return len(getattr(pool, "_online_connections", ()))


@dataclass(frozen=True)
class Usage:
    fds: int
    tasks: int
    connections: int
    heap: int


async def usage(fleet: Fleet) -> Usage:
    for _ in range(3):
        await trio.lowlevel.checkpoint()  # let the tasks that just ended be reaped
    gc.collect()
    return Usage(
        fds=len(os.listdir("/proc/self/fd")),
        tasks=trio_tasks(),
        connections=connections(fleet),
        heap=tracemalloc.get_traced_memory()[0],
    )


async def one_round(fleet: Fleet, i: int) -> None:
    """What requests do: a lookup, a lease, a publish of the waiting event;
    first the way a request sends each command (under its timeout, whatever
    the host believes of the server), then through the fleet's own paths
    (which, the server known down, do not wait); then a second passes."""
    key = CacheKey("conv-leak", "context_analysis", f"sha256:{i % 7:02x}")
    lease = lease_key(key_tag(key.session_id, key.category, key.resource, key.scene))
    timeout = fleet.config.timeout
    # Failing is the point: what each failure leaves behind is measured.
    with trio.move_on_after(timeout), contextlib.suppress(Exception):
        await fleet.fetch_best(key)
    with trio.move_on_after(timeout), contextlib.suppress(Exception):
        await fleet.client.set(lease, f"t{i}", condition=PureToken.NX, px=10_000)
    with contextlib.suppress(Exception):
        await fleet.publish_round()
    assert await fleet.read_through(key, -math.inf, top_rank=2) is None
    taken, _ = await fleet.leases.take(key, trio.current_time() + timeout, lambda: -1, 2, 2)
    assert taken in ("alone", "deadline")
    await fleet.leases.try_take(key)
    await trio.sleep(1)


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("silent", "server"), ("garbage", "server"), ("drop", "server"), ("silent", "cluster")],
)
async def test_a_bad_server_leaks_no_fd_task_connection_or_memory(
    host: HostFactory, autojump_clock: trio.testing.MockClock, mode: str, kind: str
) -> None:
    """As a cluster seed the fake never tells the slots, so the client is
    never entered: ``Fleet.run`` enters it again every backoff and each
    request's command fails at once, whatever the fake does (one mode
    shows it). As a server every command reaches the fake.

    A leak grows in both windows; a transient (a connection being made, a
    buffer in use when measured) shows in one at most, so each figure's
    smaller growth of the two is checked."""
    logging.disable(logging.CRITICAL)  # a line per failure would be kept by pytest
    tracemalloc.start()
    try:
        async with trio.open_nursery() as outer:
            port = await bad_server(outer, mode)
            seed = f"127.0.0.1:{port}"
            where = {"url": f"redis://{seed}"} if kind == "server" else {"cluster_nodes": [seed]}
            b = host("host-b", {**where, "timeout": 0.2})
            async with trio.open_nursery() as nursery:
                await run_writer(nursery, b)
                await nursery.start(b.run)
                await store_result(b, "local")  # waits in the outbox all along
                measures = []
                for i in range(WARM_UP + 2 * WINDOW + 1):
                    if i >= WARM_UP and (i - WARM_UP) % WINDOW == 0:
                        measures.append(await usage(b))
                    await one_round(b, i)
                outbox = b.store.outbox_peek(10)[1]
                nursery.cancel_scope.cancel()
            outer.cancel_scope.cancel()
    finally:
        tracemalloc.stop()
        logging.disable(logging.NOTSET)
    first, middle, last = measures
    print(f"{mode}/{kind}: {first}, {middle}, {last}")  # (-s shows it)

    def growth(field: str) -> int:
        a, b, c = (int(getattr(m, field)) for m in (first, middle, last))
        return min(b - a, c - b)

    assert outbox == 1  # nothing sent, nothing lost
    assert b.state == "disconnected"
    assert growth("fds") <= 1, measures
    assert growth("tasks") <= 1, measures
    assert growth("connections") <= 1, measures
    assert growth("heap") <= HEAP_PER_ROUND * WINDOW, measures


def test_the_measure_sees_a_leak() -> None:
    """The counters above do count: a socket left open, a task left
    running and a list that keeps growing each show."""

    async def main() -> tuple[Usage, Usage]:
        tracemalloc.start()
        kept: list[Any] = []
        try:
            async with trio.open_nursery() as nursery:
                fleet: Any = type("F", (), {"client": None})()
                before = await usage(fleet)
                for _ in range(10):
                    kept.append(trio.socket.socket())
                    nursery.start_soon(trio.sleep_forever)
                    kept.append(bytearray(10_000))
                after = await usage(fleet)
                nursery.cancel_scope.cancel()
        finally:
            tracemalloc.stop()
            for s in kept:
                if isinstance(s, trio.socket.SocketType):
                    s.close()
        return before, after

    before, after = trio.run(main)
    assert after.fds - before.fds == 10
    assert after.tasks - before.tasks == 10
    assert after.heap - before.heap >= 100_000
