"""The fleet through Redis Sentinel (issue 14, point 1): a primary, its
replica and a real ``redis-server --sentinel``; the hosts are given the
Sentinel and the primary's service name, never the primary's address, and
keep working when the Sentinel promotes the replica."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import trio

from daemon.store.fleet import Fleet
from daemon.store.fleet_keys import key_tag, record_keys
from tests.redis_servers import RedisSentinel, redis_sentinel
from tests.test_fleet import KEY, HostFactory, hosts, run_writer, store_result

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function MemoryObject:pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture
def sentinel() -> Iterator[RedisSentinel]:
    with redis_sentinel() as s:
        yield s


@pytest.fixture
def host(make_config: Any, short_tmp: Any) -> Iterator[HostFactory]:
    yield from hosts(make_config, short_tmp)


async def published(fleet: Fleet, count: int) -> None:
    """Until ``count`` events are published: woken by each publish round."""
    with trio.fail_after(20):  # a safety bound; the publisher retries with a backoff
        while fleet.published < count:
            await fleet._published.wait()


@pytest.mark.parametrize("kill_clients", [True, False], ids=["clients-dropped", "clients-kept"])
async def test_hosts_share_results_through_sentinel_and_across_a_failover(
    sentinel: RedisSentinel,
    host: HostFactory,
    kill_clients: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``clients-dropped``: what a Sentinel does to the old primary (REPLICAOF,
    CLIENT KILL): the hosts reconnect through the Sentinel. ``clients-kept``:
    a primary demoted with its clients still connected: their writes are
    refused (READONLY), and the host drops its connections so that new ones
    ask the Sentinel (before: it wrote to the replica for ever). Either way
    each host that lost its server says so once (WARNING) and once that it
    is back (INFO), as docs/fleet.md says."""
    a = host("host-a", sentinel.fleet)
    b = host("host-b", sentinel.fleet)
    assert a.server == f"sentinel ctxd via 127.0.0.1:{sentinel.port}"
    async with trio.open_nursery() as nursery:
        await run_writer(nursery, a, b)
        for f in (a, b):
            await nursery.start(f.run)
        await store_result(a, "multimodal", text="before")
        await published(a, 1)
        first = await b.read_through(KEY, -math.inf, top_rank=2)
        assert first is not None
        assert msgspec.json.decode(first.payload)["text"] == "before"
        # The Sentinel promotes the replica (what it does when the primary
        # is down); the old primary becomes a replica and refuses writes.
        # (in a thread: the hosts' tasks run on meanwhile, as they would)
        caplog.set_level(logging.INFO, logger="daemon.store.fleet")
        await trio.to_thread.run_sync(sentinel.failover, kill_clients)
        await store_result(a, "premium", text="after")
        await published(a, 2)
        with trio.fail_after(20):
            while True:
                newer = await b.read_through(KEY, 1, top_rank=2)
                if newer is not None:
                    break
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert msgspec.json.decode(newer.payload)["text"] == "after"
    best, _, _ = record_keys(key_tag(KEY.session_id, KEY.category, KEY.resource, KEY.scene))
    assert sentinel.replica.cli("hget", best, "rank").strip() == "2"  # on the new primary
    assert a.status().state == "connected"
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "daemon.store.fleet"]
    lost = [m for level, m in said if level == logging.WARNING and "unreachable" in m]
    back = [m for level, m in said if level == logging.INFO and "reachable again" in m]
    assert len(lost) == len(back), said  # each host lost it once and is back once
    assert 1 <= len(lost) <= 2, said  # (a host that sent nothing meanwhile may not notice)
