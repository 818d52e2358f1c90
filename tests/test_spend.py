"""daemon/spend.py: usage and cost per call, budgets, persistence, the ``spend`` method."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from clients import ctl
from daemon.analysis import RaceManager
from daemon.app import App
from daemon.errors import AllStrategiesFailed, StrategyError
from daemon.models import CacheKey, Usage
from daemon.providers import Provider
from daemon.service import Service
from daemon.spend import Spend, Ticket, cost_of
from daemon.stats import Stats
from daemon.store import Store
from daemon.supervisor import Supervisor
from tests.conftest import ConfigFactory, StoreFactory
from tests.fake_provider import FakeProvider, Script
from tests.helpers import Peer
from tests.race_fakes import IMAGE, Behaviour, Harness, harness
from tests.test_ctl import StubClient

FAST, SLOW = "fast-model", "slow-model"
NOON = 1_796_558_400.0  # 2026-12-06 12:00:00 UTC


def key(n: int) -> CacheKey:
    return CacheKey("conv-1", "context_analysis", f"sha256:{n}", "")


class WallClock:
    """The wall clock Spend reads (UTC days, minutes), moved by hand."""

    def __init__(self, t: float = NOON) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def analyze(h: Harness, n: int, wait: Any = "first") -> Any:
    deadline = trio.current_time() + 60
    return await h.races.analyze(key(n), IMAGE, wait=wait, refresh=False, deadline=deadline)


def strategies(**extra: dict[str, Any]) -> list[dict[str, Any]]:
    base: list[dict[str, Any]] = [
        {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1, "timeout": 60},
        {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2, "timeout": 120},
    ]
    for item in base:
        item.update(extra.get(str(item["name"]), {}))
    return base


# ------------------------------------------------------ usage and cost --


async def test_cost_from_the_provider_else_the_price_else_unknown(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make_config(
        strategies=strategies(
            # usage: 100 prompt + 10 completion tokens per call (race_fakes)
            multimodal={"price": {"prompt_per_mtok": 1000, "completion_per_mtok": 5000}},
            premium={"price": {"prompt_per_mtok": 1, "completion_per_mtok": 1}},
        )
    )
    behaviours = {FAST: Behaviour(1), SLOW: Behaviour(2, cost=0.0123)}
    async with harness(config, behaviours) as h:
        await analyze(h, 1)
        await h.supervisor.wait_idle()
        fast, slow = h.store.events
        assert fast.provenance is not None
        assert slow.provenance is not None
        # no usage.cost from the provider: the config price, 100*1000/1e6 + 10*5000/1e6
        assert (fast.provenance.cost_usd, fast.provenance.cost_source) == (0.15, "price")
        # usage.cost given: the provider's figure wins over the price
        assert (slow.provenance.cost_usd, slow.provenance.cost_source) == (0.0123, "provider")
        assert slow.provenance.usage is not None
        assert slow.provenance.usage.total_tokens == 110
        status = h.races.stats.by_strategy()
        assert status["multimodal"].usage.usd == pytest.approx(0.15)
        assert status["premium"].usage.usd == pytest.approx(0.0123)
        assert status["premium"].usage.total_tokens == 110
        assert status["premium"].usage.calls == 1
        assert status["premium"].usage.cost_unknown == 0


async def test_without_cost_or_price_the_cost_is_unknown_never_guessed(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make_config(strategies=strategies())
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(2)}) as h:
        await analyze(h, 1)
        await h.supervisor.wait_idle()
        for event in h.store.events:
            assert event.provenance is not None
            assert (event.provenance.cost_usd, event.provenance.cost_source) == (None, None)
        usage = h.races.stats.by_strategy()["premium"].usage
        assert (usage.usd, usage.cost_unknown, usage.prompt_tokens) == (0.0, 1, 100)


async def test_an_invalid_answer_is_billed_too(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make_config(strategies=strategies())
    behaviours = {FAST: Behaviour(1, text="no JSON here", cost=0.5), SLOW: Behaviour(2, cost=2.0)}
    async with harness(config, behaviours) as h:
        answer = await analyze(h, 1)
        assert answer.provenance.strategy == "premium"
        status = h.races.stats.by_strategy()
        assert status["multimodal"].invalid == 1
        assert status["multimodal"].usage.usd == 0.5  # invalid, and still paid for
        assert h.races.stats.spend.report().strategies["multimodal"].today.usd == 0.5


async def test_a_call_cancelled_after_its_request_went_out_is_counted_with_cost_unknown(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make_config(
        strategies=strategies(
            multimodal={"price": {"prompt_per_mtok": 1, "completion_per_mtok": 1}},
        )
    )
    # the premium answers first: the multimodal, in flight, is cancelled
    async with harness(config, {FAST: Behaviour(5), SLOW: Behaviour(1)}) as h:
        answer = await analyze(h, 1)
        assert answer.provenance.strategy == "premium"
        await h.supervisor.wait_idle()
        usage = h.races.stats.by_strategy()["multimodal"].usage
        assert h.models.calls[FAST] == 1
        assert (usage.calls, usage.cancelled_after_send, usage.cost_unknown) == (1, 1, 1)
        assert usage.usd == 0.0  # a price is configured, but no usage came: unknown


async def test_a_call_cancelled_before_its_request_went_out_is_no_call_and_not_billable(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review of issue 17, finding 2: a call cancelled while it waited for
    # the pool's one connection was counted as cancelled_after_send (and a
    # call). The real pool (daemon/http11.py) says when the request goes out.
    monkeypatch.setenv("CTXD_TEST_KEY", "sk-test")
    with FakeProvider({FAST: Script(latency=0.0), SLOW: Script(latency=0.5)}) as fake:
        config = make_config(
            providers={"fake": {"base_url": fake.base_url, "api_key_env": "CTXD_TEST_KEY",
                                "max_connections": 1}},
            strategies=strategies(),
        )  # fmt: skip
        provider = Provider.from_config("fake", config.providers["fake"])
        spend = Spend(config.strategies)
        provider.ledger.usage_sink = spend
        multimodal, premium = config.strategies
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(provider.complete, premium, IMAGE)  # holds the connection
                await trio.sleep(0.1)
                with trio.move_on_after(0.1):  # waits for the pool's slot, then is cancelled
                    await provider.complete(multimodal, IMAGE)
            assert fake.calls(FAST) == 0  # the provider never saw it: it cannot bill it
            fast = spend.since_start["multimodal"]
            assert (fast.calls, fast.cancelled_after_send, fast.cost_unknown) == (0, 0, 0)
            # one cancelled on its way is counted: the provider may bill it
            with trio.move_on_after(0.25):
                await provider.complete(premium, IMAGE)
        finally:
            await provider.aclose()
        slow = spend.since_start["premium"]
        assert fake.calls(SLOW) == 2
        assert (slow.calls, slow.cancelled_after_send) == (2, 1)


async def test_a_leg_that_sends_no_request_makes_no_call_and_gives_its_minute_back(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    # Review finding 3: calls counted admissions: a strategy resting after a
    # 402 (no request sent) still counted calls and used up calls_per_minute.
    config = make_config(
        strategies=[
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1, "timeout": 60,
             "max_retries": 0, "budget": {"calls_per_minute": 2}},
        ],
    )  # fmt: skip
    spend = Spend(config.strategies, now=WallClock(NOON))
    async with harness(config, {FAST: Behaviour(0.1, status=402)}, spend=spend) as h:
        for n in range(5):
            with pytest.raises(AllStrategiesFailed) as failed:
                await analyze(h, n)
            assert failed.value.data is not None
            assert failed.value.data["strategies"]["multimodal"]["error"] == "http_status"
        assert h.models.calls[FAST] == 1  # the rest: four legs sent nothing
        figures = spend.since_start["multimodal"]
        assert (figures.calls, figures.budget_exhausted) == (1, 0)
        left = spend.budget_left(config.strategies[0])
        assert left is not None
        assert left.calls_left_this_minute == 1


async def test_each_retry_is_a_call_of_the_minute(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make_config(
        strategies=[
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1, "timeout": 60,
             "max_retries": 2, "budget": {"calls_per_minute": 10}},
        ],
    )  # fmt: skip
    spend = Spend(config.strategies, now=WallClock(NOON))
    async with harness(config, {FAST: Behaviour(0.1, status=500)}, spend=spend) as h:
        with pytest.raises(AllStrategiesFailed):
            await analyze(h, 1)
        assert h.models.calls[FAST] == 3
        assert spend.since_start["multimodal"].calls == 3
        left = spend.budget_left(config.strategies[0])
        assert left is not None
        assert left.calls_left_this_minute == 7


async def test_held_legs_released_together_never_overshoot_calls_per_minute(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    # Ten races whose fast legs all fail at once release ten hedges in one
    # step: admission reserves the minute's calls, so three go and seven wait.
    config = make_config(
        llm={"premium_cache_timeout": 30, "max_background_tasks": 64},
        strategies=strategies(premium={"start": {"after": 5}, "budget": {"calls_per_minute": 3}}),
    )
    spend = Spend(config.strategies, now=WallClock(NOON))
    behaviours = {FAST: Behaviour(1, status=400), SLOW: Behaviour(1)}
    async with harness(config, behaviours, spend=spend) as h:
        async with trio.open_nursery() as nursery:
            for n in range(10):
                nursery.start_soon(_swallow, analyze(h, n))
        await h.supervisor.wait_idle()
        assert h.models.calls[SLOW] == 3
        assert spend.since_start["premium"].calls == 3
        assert spend.since_start["premium"].budget_exhausted == 7


async def _swallow(coro: Any) -> None:
    with contextlib.suppress(AllStrategiesFailed):
        await coro


def test_usd_unknown_is_shown_as_unknown_never_as_zero(
    make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Review finding 7: a period whose calls all had an unknown cost read
    # 0.0000 USD in ctl.py spend.
    config = make_config(strategies=strategies(premium={"budget": {"usd_per_day": 5}}))
    spend = Spend(config.strategies, now=WallClock(NOON))
    spend.record("multimodal", Usage(prompt_tokens=10, completion_tokens=2))  # unknown
    spend.record("premium", Usage(cost=0.5))
    spend.record("premium", Usage(prompt_tokens=10))  # unknown
    spend.record("premium", Usage(prompt_tokens=10))  # unknown: warned once, not twice
    report = spend.report()
    fast, slow = report.strategies["multimodal"].today, report.strategies["premium"].today
    assert (fast.usd, fast.cost_known, fast.cost_unknown) == (0.0, 0, 1)
    assert (slow.usd, slow.cost_known, slow.cost_unknown) == (0.5, 1, 2)
    text = ctl.format_spend(msgspec.to_builtins(report))
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line[:1].isalpha()}
    assert rows["multimodal"][4] == "unknown"
    assert rows["premium"][4] == ">=0.5000"  # a lower bound: part of it is unknown
    warned = [r for r in caplog.records if "does not count it" in r.getMessage()]
    assert len(warned) == 1  # premium has a usd_per_day that cannot count these calls


def test_cost_of_refuses_nonsense_from_the_provider(make_config: ConfigFactory) -> None:
    config = make_config(strategies=strategies())
    premium = config.strategies[1]
    assert cost_of(premium, Usage(cost=float("nan"))) == (None, None)
    assert cost_of(premium, Usage(cost=-1.0)) == (None, None)
    assert cost_of(premium, None) == (None, None)
    assert cost_of(premium, Usage(cost=0.0)) == (0.0, "provider")


# ------------------------------------------------------------- budgets --


async def test_a_strategy_at_its_daily_budget_is_not_started_and_the_race_goes_on(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock, log: io.StringIO
) -> None:
    config = make_config(strategies=strategies(premium={"budget": {"usd_per_day": 1.0}}))
    wall = WallClock(NOON)
    spend = Spend(config.strategies, now=wall)
    behaviours = {FAST: Behaviour(1), SLOW: Behaviour(2, cost=1.0)}
    async with harness(config, behaviours, spend=spend) as h:
        await analyze(h, 1)
        await h.supervisor.wait_idle()  # the premium's 1.0 USD is spent
        assert h.models.calls[SLOW] == 1
        for n in (2, 3):
            answer = await analyze(h, n)
            assert answer.provenance.strategy == "multimodal"
            assert answer.pending == []  # the premium ended at once
        assert h.models.calls[SLOW] == 1  # not started
        status = h.races.stats.by_strategy()["premium"]
        assert (status.budget_exhausted, status.calls, status.usage.budget_exhausted) == (2, 1, 2)
        # (one more refusal below, by the upgrade of a hit)
        await trio.sleep(601)  # past llm.upgrade_retry_after of key 2's refusal
        hit = await analyze(h, 2)  # a hit below the top: its upgrade is refused too
        assert (hit.provenance.cached, hit.pending) == (True, [])
        await h.supervisor.wait_idle()
        assert h.races.stats.by_strategy()["premium"].budget_exhausted == 3
        assert h.models.calls[SLOW] == 1
        lines = [line for line in log.getvalue().splitlines() if "at its budget" in line]
        assert len(lines) == 1  # once per period, not per request (nor per upgrade)
        assert "premium is at its budget, not started until the period ends" in lines[0]
        assert "budget.usd_per_day 1 reached: 1.0000 USD spent today (UTC)" in lines[0]
        assert "resets at 2026-12-07 00:00 UTC" in lines[0]
        left = spend.report().strategies["premium"].budget
        assert left is not None
        assert (left.usd_left_today, left.exhausted) == (0.0, "usd_per_day")
        wall.t = NOON + 12 * 3600  # 2026-12-07 00:00 UTC: a new day
        await analyze(h, 4)
        await h.supervisor.wait_idle()
        assert h.models.calls[SLOW] == 2
        report = spend.report()
        assert report.day == "2026-12-07"
        assert report.strategies["premium"].today.usd == 1.0
        assert report.strategies["premium"].month.usd == 2.0
        assert report.strategies["premium"].month.budget_exhausted == 3


async def test_the_only_strategy_at_its_budget_gives_32001_naming_it(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make_config(
        strategies=[
            {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2, "timeout": 120,
             "budget": {"calls_per_minute": 2}},
        ]
    )  # fmt: skip
    wall = WallClock(NOON)
    spend = Spend(config.strategies, now=wall)
    async with harness(config, {SLOW: Behaviour(1)}, spend=spend) as h:
        await analyze(h, 1)
        await analyze(h, 2)
        with pytest.raises(AllStrategiesFailed) as failed:
            await analyze(h, 3)
        assert "budget" in failed.value.message
        assert failed.value.data is not None
        premium = failed.value.data["strategies"]["premium"]
        assert premium["error"] == "budget_exhausted"
        assert "calls_per_minute 2" in premium["detail"]
        assert h.models.calls[SLOW] == 2
        wall.t += 60  # the next minute: the budget is back
        answer = await analyze(h, 4)
        assert answer.provenance.strategy == "premium"


async def test_a_budget_refusal_does_not_hold_back_the_upgrade_past_the_reset(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    # Review finding 7: a refusal at calls_per_minute counted as a failure of
    # the key for llm.upgrade_retry_after (600 s): its upgrade waited ten
    # minutes although the budget was back the next minute.
    config = make_config(strategies=strategies(premium={"budget": {"calls_per_minute": 1}}))
    wall = WallClock(NOON)
    spend = Spend(config.strategies, now=wall)
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(2)}, spend=spend) as h:
        await analyze(h, 1)  # the minute's one premium call
        answer = await analyze(h, 2)  # the premium is refused: the fast answer is cached
        assert (answer.provenance.strategy, answer.pending) == ("multimodal", [])
        await h.supervisor.wait_idle()
        assert h.models.calls[SLOW] == 1
        wall.t += 60  # the next minute (and 60 s of trio time, far below 600)
        await trio.sleep(60)
        hit = await analyze(h, 2)
        assert (hit.provenance.cached, hit.pending) == (True, ["premium"])  # upgraded now
        await h.supervisor.wait_idle()
        assert h.models.calls[SLOW] == 2
        best = await analyze(h, 2)
        assert best.provenance.strategy == "premium"


# --------------------------------------------------------- persistence --


async def test_spend_survives_a_restart_in_the_store(
    make_config: ConfigFactory, open_store: StoreFactory
) -> None:
    config = make_config(
        strategies=strategies(premium={"budget": {"usd_per_day": 1.0}}),
        store={"path": "spend-store"},
    )
    wall = WallClock(NOON)
    store = open_store(config)
    spend = Spend(config.strategies, now=wall)
    spend.load(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(spend.run, store)
        assert isinstance(spend.admit(config.strategies[1]), Ticket)
        spend.record_sent("premium")  # its request went out
        spend.record("premium", Usage(prompt_tokens=7, completion_tokens=3, cost=0.6))
        spend.record_cancelled("premium")
        nursery.cancel_scope.cancel()  # the drain: saved once more on the way out
    store.close()
    again = open_store(config)
    restarted = Spend(config.strategies, now=wall)
    restarted.load(again)
    today = restarted.report().strategies["premium"].today
    assert (today.calls, today.usd, today.prompt_tokens, today.cancelled_after_send) == (
        1,
        0.6,
        7,
        1,
    )
    # and the budget counts what was spent before the restart
    restarted.record("premium", Usage(cost=0.5))
    refused = restarted.admit(config.strategies[1])
    assert isinstance(refused, StrategyError)
    assert refused.kind == "budget_exhausted"
    # two daemons on one store (a restart on a held socket) both add
    await restarted._flush(again)
    third = Spend(config.strategies, now=wall)
    third.load(again)
    assert third.report().strategies["premium"].today.usd == pytest.approx(1.1)


async def test_spend_figures_are_saved_a_second_after_a_change(
    make_config: ConfigFactory, open_store: StoreFactory
) -> None:
    config = make_config(strategies=strategies())
    store = open_store(config)
    spend = Spend(config.strategies)
    async with trio.open_nursery() as nursery:
        await nursery.start(spend.run, store)
        spend.record("multimodal", Usage(cost=0.25))
        deadline = time.monotonic() + 10
        while not store.load_spend():  # polled: real LMDB, real clock
            assert time.monotonic() < deadline
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    fresh = Spend(config.strategies)
    fresh.load(store)
    assert fresh.report().strategies["multimodal"].today.usd == 0.25


# ------------------------------------------------------- spend method --


async def test_the_spend_method_is_listed_by_rpc_discover_and_answers(
    make_config: ConfigFactory, open_store: StoreFactory
) -> None:
    config = make_config(strategies=strategies(premium={"budget": {"calls_per_minute": 5}}))
    store = open_store(config)
    races = RaceManager(config, store, Supervisor(8), {}, Stats(config.strategies))
    service = Service(config, Supervisor(8), store, races)
    document = msgspec.json.decode(await service.discover(None))  # type: ignore[arg-type]
    spend_method = next(m for m in document["methods"] if m["name"] == "spend")
    assert spend_method["result"]["schema"]
    races.stats.spend.record("premium", Usage(prompt_tokens=1, completion_tokens=1, cost=0.01))
    report = msgspec.to_builtins(await service.spend(None))  # type: ignore[arg-type]
    premium = report["strategies"]["premium"]
    assert premium["today"]["usd"] == 0.01
    assert premium["budget"]["calls_left_this_minute"] == 5
    assert report["strategies"]["multimodal"]["budget"] is None


# ----------------------------------------------------------- ctl spend --


async def test_ctl_spend_prints_today_and_this_month_with_the_budget_left(
    make_config: ConfigFactory, open_store: StoreFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(strategies=strategies(premium={"budget": {"usd_per_day": 1.0}}))
    store = open_store(config)
    wall = WallClock(NOON)
    stats = Stats(config.strategies, spend=Spend(config.strategies, now=wall))
    races = RaceManager(config, store, Supervisor(8), {}, stats)
    service = Service(config, Supervisor(8), store, races)
    premium = config.strategies[1]
    assert isinstance(stats.spend.admit(premium), Ticket)
    stats.spend.record_sent("premium")  # its request went out
    stats.spend.record("premium", Usage(prompt_tokens=900, completion_tokens=100, cost=1.25))
    refused = stats.spend.admit(premium)
    assert isinstance(refused, StrategyError)
    report = msgspec.to_builtins(await service.spend(None))  # type: ignore[arg-type]
    client = StubClient({"spend": report})
    assert ctl.run(client, argparse.Namespace(command="spend", json=False)) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["strategy", "period", "calls", "tokens"]
    today = next(line for line in lines if line.startswith("premium"))
    assert today.split()[1:7] == ["2026-12-06", "1", "1,000", "1.2500", "0", "0"]
    assert today.split()[7] == "1"  # refused once at the budget
    assert "0.0000 (at budget)" in today
    month = lines[lines.index(today) + 1]
    assert month.split()[:3] == ["2026-12", "1", "1,000"]
    multimodal = next(line for line in lines if line.startswith("multimodal"))
    assert multimodal.split()[-2:] == ["-", "-"]  # no budget
    assert ctl.run(client, argparse.Namespace(command="spend", json=True)) == 0  # type: ignore[arg-type]
    assert json.loads(capsys.readouterr().out)["strategies"]["premium"]["today"]["usd"] == 1.25
    assert ctl.main(["--socket", "/nonexistent/ctxd.sock", "spend"]) == ctl.EXIT_UNREACHABLE


async def test_the_daemon_keeps_the_days_spend_across_a_drain_and_a_restart(
    make_config: ConfigFactory,
) -> None:
    """App wiring: the figures are loaded at the start and saved at the drain
    (``spend.run`` in the writer's nursery); read back over the socket."""
    config = make_config(strategies=strategies(premium={"budget": {"usd_per_day": 1.0}}))

    async def serve_once(record: bool) -> dict[str, Any]:
        store = Store.open(config.store, config.rank_of())
        app = App(config, store)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: app.run(handle_signals=False, task_status=task_status)
                )
                if record:
                    assert isinstance(app.spend.admit(config.strategies[1]), Ticket)
                    app.spend.record_sent("premium")  # its request went out
                    app.spend.record(
                        "premium", Usage(prompt_tokens=10, completion_tokens=2, cost=1.5)
                    )
                peer = Peer(await trio.open_unix_socket(config.socket.path))
                answer = await peer.call("spend")
                await peer.stream.aclose()
                app.request_drain()  # returns once drained: the figures are saved on the way out
        finally:
            store.close()
        result: dict[str, Any] = answer["result"]
        return result

    before = await serve_once(record=True)
    after = await serve_once(record=False)  # a new daemon on the same store
    assert after["strategies"]["premium"]["today"] == before["strategies"]["premium"]["today"]
    assert after["strategies"]["premium"]["today"]["usd"] == 1.5
    assert after["strategies"]["premium"]["budget"]["exhausted"] == "usd_per_day"
