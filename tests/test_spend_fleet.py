"""Budgets in fleet mode (daemon/store/fleet_spend.py): counted fleet-wide on a
real redis-server, atomically; the server lost, each host counts alone.

Real time (the server is a real process): every wait here is short."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio

from daemon.analysis import RaceManager
from daemon.config import Config
from daemon.errors import StrategyError
from daemon.models import CacheKey, Usage
from daemon.spend import Spend, Ticket, utc_day
from daemon.stats import Stats
from daemon.store import Store, fleet_spend
from daemon.store.fleet import Fleet
from daemon.store.fleet_spend import FleetBudget, spend_keys
from daemon.supervisor import Supervisor
from tests.conftest import ConfigFactory
from tests.race_fakes import IMAGE, Behaviour, MemoryStore, harness
from tests.redis_servers import Shared, fleet_fixtures

# coredis 6.9 leaves a dead connection's anyio memory streams to the garbage
# collector, which warns (as in tests/test_fleet.py).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function MemoryObject:pytest.PytestUnraisableExceptionWarning"
)

FAST, SLOW = "fast-model", "slow-model"
# The hosts' wall clock, fixed: the start of the minute ten minutes ago.
# Not a fixed date: the server's expiries (a day key's EXPIREAT) run on the
# real clock. And behind it on purpose: a flush took "now" from the real
# clock, not the host's, so a call given back in the host's minute was
# dropped as "its minute is gone" (passed on 2026-12-06 until 12:02 UTC,
# when the real clock passed the fixed noon this file used).
WALL = float((int(time.time()) // 60 - 10) * 60)
MINUTE = int(WALL // 60)


# One server and a 3-master Cluster (issue 14, point 6): the budgets' keys
# have a hash tag per strategy, and a flush is a pipeline across slots.
backend, server = fleet_fixtures()


@pytest.fixture(autouse=True)
def _collect() -> Iterator[None]:
    """Dead connections' streams are collected here, under this module's
    filter, not in another test's teardown."""
    yield
    gc.collect()


def fleet_config(make_config: ConfigFactory, server: Shared, premium: dict[str, Any]) -> Config:
    return make_config(
        fleet={**server.fleet, "timeout": 0.5},
        strategies=[
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1, "timeout": 60},
            {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2, "timeout": 120,
             **premium},
        ],
    )  # fmt: skip


@asynccontextmanager
async def hosts(config: Config, *names: str) -> AsyncIterator[list[Spend]]:
    """One Spend per host, each on its own store and Fleet, all on the
    config's server. The fleet's client is entered as ``Fleet.run`` does
    (its publisher and lease listener are not needed here)."""
    assert config.fleet is not None
    stores: list[Store] = []
    spends = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            for name in names:
                fleet_cfg = msgspec.structs.replace(config.fleet, host_id=name)
                store_cfg = msgspec.structs.replace(
                    config.store, path=f"{config.store.path}-{name}"
                )
                store = Store.open(store_cfg, config.rank_of())
                stores.append(store)
                fleet = Fleet(fleet_cfg, store, config.rank_of())
                await stack.enter_async_context(fleet.client)
                fleet.running = True
                spend = Spend(config.strategies, now=lambda: WALL)
                spend.fleet = FleetBudget(fleet, spend.now)
                spends.append(spend)
            async with trio.open_nursery() as nursery:
                for spend in spends:
                    assert spend.fleet is not None
                    nursery.start_soon(spend.fleet.run)
                yield spends
                nursery.cancel_scope.cancel()
    finally:
        for store in stores:
            store.close()


def cli(server: Shared, *args: str) -> str:
    return server.cli(*args).strip()


async def admit(spend: Spend, strategy: Any) -> Ticket | StrategyError:
    """What a leg does: the local admission, then (in its task) the fleet's."""
    ticket = spend.admit(strategy)
    if isinstance(ticket, StrategyError):
        return ticket
    refused = await spend.admit_fleet(strategy, ticket)
    return refused if refused is not None else ticket


async def test_calls_per_minute_is_the_fleets_and_never_overshoots(
    make_config: ConfigFactory, server: Shared
) -> None:
    config = fleet_config(make_config, server, {"budget": {"calls_per_minute": 3}})
    premium = config.strategies[1]
    results: list[tuple[Spend, Ticket | StrategyError]] = []
    async with hosts(config, "host-a", "host-b") as (a, b):

        async def one(spend: Spend) -> None:
            results.append((spend, await admit(spend, premium)))

        async with trio.open_nursery() as nursery:  # two hosts, three legs each, at once
            for spend in (a, b, a, b, a, b):
                nursery.start_soon(one, spend)
        admitted = [(s, r) for s, r in results if isinstance(r, Ticket)]
        refused = [r for _, r in results if isinstance(r, StrategyError)]
        assert len(admitted) == 3  # per host it would be 6
        assert all(r.kind == "budget_exhausted" and "fleet-wide" in r.detail for r in refused)
        _, calls_key = spend_keys("premium", utc_day(WALL), MINUTE)
        assert cli(server, "get", calls_key) == "3"
        assert 0 < int(cli(server, "pttl", calls_key)) <= 120_000  # it expires
        counted = a.since_start["premium"].budget_exhausted
        assert counted + b.since_start["premium"].budget_exhausted == len(refused) == 3
        # a leg that ends without its request gives its call back, fleet-wide
        owner, ticket = admitted[0]
        assert isinstance(ticket, Ticket)
        assert ticket.fleet
        owner.release(ticket)
        assert owner.fleet is not None
        assert await owner.fleet.flush()
        assert cli(server, "get", calls_key) == "2"
        again = await admit(owner, premium)
        assert isinstance(again, Ticket)  # the call given back, taken again
        assert again.fleet
        assert cli(server, "get", calls_key) == "3"


async def test_usd_per_day_is_the_sum_of_the_fleets_known_costs(
    make_config: ConfigFactory, server: Shared
) -> None:
    config = fleet_config(make_config, server, {"budget": {"usd_per_day": 1.0}})
    premium = config.strategies[1]
    async with hosts(config, "host-a", "host-b") as (a, b):
        a.record("premium", Usage(cost=0.6))
        b.record("premium", Usage(cost=0.5))
        for spend in (a, b):
            assert spend.fleet is not None
            assert await spend.fleet.flush()
        usd_key, _ = spend_keys("premium", utc_day(WALL), MINUTE)
        assert float(cli(server, "get", usd_key)) == pytest.approx(1.1)
        assert int(cli(server, "ttl", usd_key)) > 0  # gone a day after the day
        refused = await admit(b, premium)  # this host alone spent 0.5 of 1.0
        assert isinstance(refused, StrategyError)
        assert "reached fleet-wide: 1.1000 USD" in refused.detail
        assert f"resets at {utc_day(WALL + 86400)} 00:00 UTC" in refused.detail
        left = b.budget_left(premium)
        assert left is not None
        assert (left.usd_left_today, left.exhausted) == (0.0, "usd_per_day")
        # and the next leg on that host is refused at once, without the server
        assert isinstance(b.admit(premium), StrategyError)


async def test_a_flush_while_another_is_in_flight_returns_once_both_are_sent(
    make_config: ConfigFactory, server: Shared
) -> None:
    """``run``'s flush had taken the queue and was mid-pipeline when a second
    flush (a drain's, a test's) found nothing queued and returned at once:
    the caller read the server before the cost had landed (second cold
    review, 7: test_usd_per_day_is_the_sum... failed 1 run in 6)."""
    config = fleet_config(make_config, server, {"budget": {"usd_per_day": 1.0}})
    async with hosts(config, "host-a") as (a,):
        assert a.fleet is not None
        server.each("client", "pause", "300", "write")  # run's batch waits on the server
        a.record("premium", Usage(cost=0.5))
        await trio.sleep(0.05)  # run has taken the batch: it is in flight
        assert await a.fleet.flush()
        usd_key, _ = spend_keys("premium", utc_day(WALL), MINUTE)
        assert cli(server, "get", usd_key) == "0.5"


async def test_the_server_lost_each_host_counts_alone_and_says_so_once(
    make_config: ConfigFactory,
    server: Shared,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fleet_spend, "RETRY_EVERY", 0.2)
    config = fleet_config(make_config, server, {"budget": {"calls_per_minute": 2}})
    premium = config.strategies[1]
    caplog.set_level(logging.INFO, logger="daemon.store.fleet_spend")
    async with hosts(config, "host-a") as (a,):
        assert a.fleet is not None
        server.stop()
        first = await admit(a, premium)
        second = await admit(a, premium)
        third = await admit(a, premium)
        assert isinstance(first, Ticket)  # counted here alone
        assert isinstance(second, Ticket)
        assert not first.fleet
        assert isinstance(third, StrategyError)  # the host's own budget still holds
        assert "reached: 2 calls" in third.detail
        lost = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert [r.levelno for r in lost] == [logging.WARNING]
        await trio.to_thread.run_sync(server.start)  # (a cluster: ~2 s; the loop goes on)
        await trio.sleep(0.3)
        for _ in range(100):  # the fleet's probe finds it back
            if await a.fleet.fleet.probe():
                break
            await trio.sleep(0.05)
        a.release(first)
        a.release(second)
        back = await admit(a, premium)
        assert isinstance(back, Ticket)
        assert back.fleet  # fleet-wide again
        assert any("is back" in r.getMessage() for r in caplog.records)


async def test_legs_of_two_hosts_at_once_buy_the_premium_once_for_a_budget_of_one(
    make_config: ConfigFactory, server: Shared
) -> None:
    # The race as in the daemon: each host's leg asks the fleet in its task.
    config = fleet_config(make_config, server, {"budget": {"calls_per_minute": 1}})
    async with hosts(config, "host-a", "host-b") as (a, b):
        a.now = b.now = lambda: WALL  # the same UTC minute on both hosts
        behaviours = {FAST: Behaviour(0.01), SLOW: Behaviour(0.05)}
        async with (
            harness(config, behaviours, spend=a) as ha,
            harness(config, behaviours, spend=b) as hb,
        ):
            async with trio.open_nursery() as nursery:
                for n, h in enumerate((ha, hb)):
                    key = CacheKey("c", "context_analysis", f"sha256:{n}", "")
                    nursery.start_soon(_analyze, h, key)
            await ha.supervisor.wait_idle()
            await hb.supervisor.wait_idle()
            calls = ha.models.calls.get(SLOW, 0) + hb.models.calls.get(SLOW, 0)
            assert calls == 1
            exhausted = (
                ha.races.stats.by_strategy()["premium"].budget_exhausted
                + hb.races.stats.by_strategy()["premium"].budget_exhausted
            )
            assert exhausted == 1


async def _analyze(h: Any, key: CacheKey) -> None:
    await h.races.analyze(
        key, IMAGE, wait="first", refresh=False, deadline=trio.current_time() + 10
    )


async def test_the_fleet_of_the_race_manager_is_the_budgets_server(
    make_config: ConfigFactory, server: Shared, open_store: Any
) -> None:
    config = fleet_config(make_config, server, {})
    assert config.fleet is not None
    store = open_store(config)
    stats = Stats(config.strategies)
    races = RaceManager(config, MemoryStore(config.rank_of()), Supervisor(8), {}, stats)
    assert stats.spend.fleet is None
    races.fleet = Fleet(config.fleet, store, config.rank_of())  # what the app does
    assert isinstance(stats.spend.fleet, FleetBudget)
    assert stats.spend.fleet.fleet is races.fleet
