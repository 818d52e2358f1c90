"""``start:`` policies (SPEC §7) in virtual time: when the premium is bought."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import trio
import trio.testing

from daemon.config import Config
from daemon.errors import AllStrategiesFailed
from daemon.models import CacheKey
from tests.conftest import ConfigFactory
from tests.race_fakes import IMAGE, Behaviour, Harness, harness

FAST, SLOW = "fast-model", "slow-model"
KEY = CacheKey("conv-1", "context_analysis", "sha256:abc", "")


def make(make_config: ConfigFactory, start: Any, **llm: Any) -> Config:
    return make_config(
        llm={"premium_cache_timeout": 30, "max_background_tasks": 8, **llm},
        strategies=[
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1, "timeout": 60},
            {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2, "timeout": 120,
             "start": start},
        ],
    )  # fmt: skip


async def analyze(h: Harness, wait: Any = "first", within: float = 60) -> Any:
    deadline = trio.current_time() + within
    return await h.races.analyze(KEY, IMAGE, wait=wait, refresh=False, deadline=deadline)


# ------------------------------------------------------------- always --


async def test_always_starts_the_premium_with_the_fast_one(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(make(make_config, "always"), {FAST: Behaviour(1), SLOW: Behaviour(3)}) as h:
        answer = await analyze(h)
        assert (answer.provenance.strategy, answer.pending) == ("multimodal", ["premium"])
        assert h.models.calls == {FAST: 1, SLOW: 1}


# -------------------------------------------------------------- after --


async def test_after_the_fast_answer_in_time_the_premium_is_never_bought(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make(make_config, {"after": 1.0})
    async with harness(config, {FAST: Behaviour(0.5), SLOW: Behaviour(3)}) as h:
        answer = await analyze(h)
        assert answer.provenance.strategy == "multimodal"
        assert answer.pending == []
        await h.supervisor.wait_idle()
        assert trio.current_time() == pytest.approx(0.5)
        assert h.models.calls == {FAST: 1}
        status = h.races.stats.by_strategy()["premium"]
        assert (status.calls, status.skipped, status.cancelled) == (0, 1, 0)
        assert h.races.races == {}


async def test_after_a_slow_fast_answer_the_hedge_starts_at_its_delay(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make(make_config, {"after": 1.0})
    async with harness(config, {FAST: Behaviour(5), SLOW: Behaviour(2)}) as h:
        answer = await analyze(h)
        assert h.models.at[SLOW] == [pytest.approx(1.0)]  # started at its delay
        assert answer.provenance.strategy == "premium"  # and answered first, at 3 s
        assert trio.current_time() == pytest.approx(3.0)


async def test_after_starts_at_once_when_every_other_strategy_failed(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make(make_config, {"after": 10.0})
    async with harness(config, {FAST: Behaviour(0.2, status=400), SLOW: Behaviour(2)}) as h:
        answer = await analyze(h)
        assert h.models.at[SLOW] == [pytest.approx(0.2)]  # not at 10 s
        assert answer.provenance.strategy == "premium"
        assert trio.current_time() == pytest.approx(2.2)


# --------------------------------------------------------- on_failure --


async def test_on_failure_never_starts_when_the_fast_one_is_valid(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make(make_config, "on_failure")
    async with harness(config, {FAST: Behaviour(4), SLOW: Behaviour(1)}) as h:
        answer = await analyze(h)
        assert answer.provenance.strategy == "multimodal"  # even though it took 4 s
        await h.supervisor.wait_idle()
        assert h.models.calls == {FAST: 1}


async def test_on_failure_starts_when_the_lower_strategy_is_invalid(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make(make_config, "on_failure")
    async with harness(config, {FAST: Behaviour(1, text="nope"), SLOW: Behaviour(3)}) as h:
        answer = await analyze(h)
        assert h.models.at[SLOW] == [pytest.approx(1.0)]
        assert answer.provenance.strategy == "premium"
        assert trio.current_time() == pytest.approx(4.0)


# ------------------------------------------------------- upgrade_only --


async def test_upgrade_only_is_never_in_the_answer_path_but_upgrades_a_hit(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make(make_config, "upgrade_only")
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(3)}) as h:
        answer = await analyze(h)
        assert (answer.provenance.strategy, answer.pending) == ("multimodal", [])
        await h.supervisor.wait_idle()
        assert h.models.calls == {FAST: 1}
        hit = await analyze(h)  # a later hit: the upgrade starts the premium
        assert hit.provenance.cached is True
        assert hit.pending == ["premium"]
        await h.supervisor.wait_idle()
        assert h.models.calls == {FAST: 1, SLOW: 1}
        best = await analyze(h)
        assert (best.provenance.strategy, best.provenance.cached) == ("premium", True)


async def test_upgrade_only_gives_no_answer_when_the_fast_one_fails(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make(make_config, "upgrade_only")
    async with harness(config, {FAST: Behaviour(1, status=400), SLOW: Behaviour(3)}) as h:
        with pytest.raises(AllStrategiesFailed) as failed:
            await analyze(h)
        assert failed.value.data is not None
        assert set(failed.value.data["strategies"]) == {"multimodal"}
        assert SLOW not in h.models.calls


# ------------------------------------------- the race's rules unchanged --


@pytest.mark.parametrize("start", [{"after": 5.0}, "on_failure"])
async def test_wait_best_starts_a_held_premium_at_once(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock, start: Any
) -> None:
    config = make(make_config, start)
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(3)}) as h:
        answer = await analyze(h, wait="best")
        assert h.models.at[SLOW] == [pytest.approx(0.0)]
        assert answer.provenance.strategy == "premium"


async def test_single_flight_holds_with_a_held_premium(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make(make_config, {"after": 1.0})
    async with harness(config, {FAST: Behaviour(3), SLOW: Behaviour(5)}) as h:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(analyze, h)
        await h.supervisor.wait_idle()
        assert h.models.calls == {FAST: 1, SLOW: 1}
        assert h.races.stats.coalesced == 2


async def test_a_held_leg_nobody_waits_for_is_background_work_and_starts_at_its_delay(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    # The only client leaves at 0.5 s: the running fast leg and the held
    # premium are background work, and the premium still waits out its delay.
    config = make(make_config, {"after": 1.0}, max_background_tasks=2)
    async with harness(config, {FAST: Behaviour(5), SLOW: Behaviour(2)}) as h:
        with trio.move_on_after(0.5):
            await analyze(h)
        assert h.supervisor.by_name == {"multimodal": 1, "premium": 1}
        await h.supervisor.wait_idle()
        assert h.models.at[SLOW] == [pytest.approx(1.0)]  # at its delay, not at 0.5 s
        assert [e.strategy for e in h.store.events] == ["premium"]


@pytest.mark.parametrize("start", [{"after": 1.0}, "on_failure"])
async def test_at_the_cap_the_running_fast_leg_keeps_its_slot_and_the_held_premium_is_skipped(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock, start: Any
) -> None:
    # Review of issue 17, finding 1: the cap's one slot went to the held
    # premium (it costs nothing yet) and the fast call, already paid for,
    # was cancelled; its end then released the premium as if it had failed.
    config = make(make_config, start, max_background_tasks=1)
    async with harness(config, {FAST: Behaviour(5), SLOW: Behaviour(2)}) as h:
        with trio.move_on_after(0.5):
            await analyze(h)
        assert h.supervisor.by_name == {"multimodal": 1}
        await h.supervisor.wait_idle()
        assert SLOW not in h.models.calls  # never bought
        assert [e.strategy for e in h.store.events] == ["multimodal"]  # the paid call kept
        status = h.races.stats.by_strategy()
        assert (
            status["multimodal"].cancelled,
            status["multimodal"].usage.cancelled_after_send,
        ) == (
            0,
            0,
        )
        assert (status["premium"].skipped, status["premium"].cancelled) == (1, 0)


@pytest.mark.parametrize("start", [{"after": 1.0}, "on_failure"])
async def test_a_lower_leg_cancelled_is_no_failure_that_releases_a_held_premium(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock, start: Any
) -> None:
    # Only a lower leg that failed (an error, an invalid answer, its budget)
    # starts on_failure; one cancelled does not. A hedge whose every other leg
    # has ended waits for nothing: it starts then (it would at its delay, at
    # the same cost, since no valid answer can come), not at its delay.
    config = make(make_config, start)
    async with harness(config, {FAST: Behaviour(5), SLOW: Behaviour(2)}) as h:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_swallow, analyze(h))
            await trio.sleep(0.2)
            race = h.races.races[KEY]
            fast = next(leg for leg in race.legs if leg.name == "multimodal")
            race._cancel(fast, "cancelled for the test")
        await h.supervisor.wait_idle()
        if start == "on_failure":
            assert SLOW not in h.models.calls
            assert h.races.stats.by_strategy()["premium"].skipped == 1
        else:
            assert h.models.at[SLOW] == [pytest.approx(0.2)]  # when the other leg ended


async def test_a_held_leg_past_premium_cache_timeout_is_skipped_not_a_timeout(
    make_config: ConfigFactory,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Review finding 6: handed off held, cancelled by premium_cache_timeout
    # before it ever started: no timeout, no warning, no upgrade retry window.
    config = make(make_config, {"after": 10.0}, premium_cache_timeout=2)
    async with harness(config, {FAST: Behaviour(30), SLOW: Behaviour(2)}) as h:
        with trio.move_on_after(0.5):
            await analyze(h)
        await h.supervisor.wait_idle()
        assert SLOW not in h.models.calls
        premium = h.races.stats.by_strategy()["premium"]
        assert (premium.timeouts, premium.skipped) == (0, 1)
        assert (KEY, "premium") not in h.races.ctx.failed_at
        assert (KEY, "multimodal") in h.races.ctx.failed_at  # it did run out of time
        timeouts = [r for r in caplog.records if r.getMessage().startswith("Premium task timeout")]
        assert len(timeouts) == 1  # the fast leg's, which ran


async def _swallow(coro: Any) -> None:
    with contextlib.suppress(AllStrategiesFailed):
        await coro
