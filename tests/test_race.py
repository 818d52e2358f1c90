"""Every rule of SPEC §4, in virtual time, with scripted providers and a memory store."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from daemon.analysis import MissingInput, Wait
from daemon.config import Config, StrategyConfig
from daemon.errors import AllStrategiesFailed, DeadlineExceeded, Overloaded
from daemon.models import AnalyzeResult, CacheKey, MergeStep
from daemon.providers import Completion, ImageInput, Provider
from tests.conftest import ConfigFactory
from tests.fake_provider import ANSWER
from tests.race_fakes import IMAGE, Behaviour, GatedStore, Harness, MemoryStore, harness

KEY = CacheKey("conv-1", "context_analysis", "sha256:abc", "")
FAST, SLOW = "fast-model", "slow-model"  # multimodal (rank 1), premium (rank 2)


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config(
        llm={"premium_cache_timeout": 30, "max_background_tasks": 8, "upgrade_retry_after": 600},
        strategies=[
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1, "timeout": 60},
            {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2, "timeout": 120},
        ],
    )


def messages(out: io.StringIO) -> list[str]:
    """``[conversation] message`` of every line, without the time and level."""
    return [line.split(" ", 2)[2] for line in out.getvalue().splitlines() if line[:1].isdigit()]


async def analyze(
    h: Harness,
    wait: Wait = "first",
    refresh: bool = False,
    within: float = 60,
    key: CacheKey = KEY,
    image: ImageInput | None = IMAGE,
) -> AnalyzeResult:
    deadline = trio.current_time() + within
    return await h.races.analyze(key, image, wait=wait, refresh=refresh, deadline=deadline)


async def test_first_valid_answers_and_premium_is_cached_in_the_background(
    config: Config, autojump_clock: trio.testing.MockClock, log: io.StringIO
) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(10)}) as h:
        answer = await analyze(h)
        assert trio.current_time() == pytest.approx(1)
        assert (answer.provenance.strategy, answer.provenance.model) == ("multimodal", FAST)
        assert answer.provenance.cached is False
        assert answer.provenance.event_id == 1
        assert answer.pending == ["premium"]
        assert h.store.strategies() == ["multimodal"]  # stored before the answer
        assert h.supervisor.by_name == {"premium": 1}  # handed off to the supervisor
        hit = await analyze(h)
        assert hit.provenance.cached is True  # a call right after the answer is a hit
        await h.supervisor.wait_idle()
        assert trio.current_time() == pytest.approx(10)
        assert h.store.strategies() == ["multimodal", "premium"]
        best = await analyze(h)
        assert (best.provenance.strategy, best.provenance.cached) == ("premium", True)
        stored = h.store.events[1]
        assert msgspec.json.decode(stored.payload)["_model"] == SLOW
        assert stored.provenance is not None
        assert stored.provenance.usage is not None
        assert stored.provenance.usage.total_tokens == 110
        assert stored.provenance.requested_model == SLOW
        assert stored.provenance.served_by == "Scripted"
    lines = messages(log)
    expected = [
        f"[conv-1] merge_step [multimodal|{FAST}] Participants: User='Zhang', Target='徐康'",
        f"[conv-1] FINAL [multimodal|{FAST}] Layout: left=talker, right=user",
        f"[conv-1] FINAL [multimodal|{FAST}] Extracted 2 bubbles (sorted top->bottom):",
        "[conv-1]   [1] talker(left) OK bbox=[100,200,350,250]: 真的假的",
        "[conv-1]   [2] user(right) OK bbox=[400,300,700,350]: 真的",
        "[conv-1] Premium task still running, will cache in background",
        "[conv-1] Background: Waiting for premium task to complete...",
        f"[conv-1] merge_step [multimodal|{FAST}] Conversation: 2 messages",
        f"[conv-1] merge_step [CACHED|multimodal|{FAST}] Conversation: 2 messages",
        "[conv-1] Background: Premium task completed, processing result",
        "[conv-1] Background: Premium result is valid",
        "[conv-1] Background: Logging premium extraction details",
        f"[conv-1] merge_step [premium|{SLOW}] Participants: User='Zhang', Target='徐康'",
        f"[conv-1] FINAL [premium|{SLOW}] Layout: left=talker, right=user",
        f"[conv-1] FINAL [premium|{SLOW}] Extracted 2 bubbles (sorted top->bottom):",
        "[conv-1]   [1] talker(left) OK bbox=[100,200,350,250]: 真的假的",
        "[conv-1]   [2] user(right) OK bbox=[400,300,700,350]: 真的",
        "[conv-1] Background: Premium result cached successfully",
        f"[conv-1] merge_step [CACHED|premium|{SLOW}] Conversation: 2 messages",
    ]
    assert [line for line in lines if "INFO" not in line] == expected


async def test_invalid_fast_result_lets_the_premium_answer(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(
        config, {FAST: Behaviour(1, text="sorry, no JSON"), SLOW: Behaviour(10)}
    ) as h:
        answer = await analyze(h)
        assert trio.current_time() == pytest.approx(10)
        assert answer.provenance.strategy == "premium"
        assert answer.pending == []
        assert h.races.stats.strategies["multimodal"].invalid == 1
        assert h.store.strategies() == ["premium"]


async def test_premium_first_answers_and_cancels_the_multimodal(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(config, {FAST: Behaviour(5), SLOW: Behaviour(1)}) as h:
        answer = await analyze(h)
        assert trio.current_time() == pytest.approx(1)
        assert answer.provenance.strategy == "premium"
        assert answer.pending == []
        await h.supervisor.wait_idle()
        assert trio.current_time() == pytest.approx(1)  # cancelled, not awaited
        stats = h.races.stats.strategies
        assert (stats["multimodal"].cancelled, stats["premium"].wins) == (1, 1)
        assert h.store.strategies() == ["premium"]


async def test_lower_ranked_result_never_replaces_a_higher_one(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(2)}) as h:
        await analyze(h, wait="best")
        h.models.behaviours[SLOW] = Behaviour(1, status=503)
        fresh = await analyze(h, refresh=True)  # only the multimodal can answer now
        assert fresh.provenance.strategy == "multimodal"
        await h.supervisor.wait_idle()
        assert h.store.strategies() == ["multimodal", "premium", "multimodal"]
        served = await analyze(h)
        assert (served.provenance.strategy, served.provenance.cached) == ("premium", True)


async def test_premium_is_cancelled_premium_cache_timeout_after_the_answer(
    config: Config, autojump_clock: trio.testing.MockClock, log: io.StringIO
) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(100)}) as h:
        await analyze(h)
        await h.supervisor.wait_idle()
        assert trio.current_time() == pytest.approx(31)
        assert h.store.strategies() == ["multimodal"]
        assert h.races.stats.strategies["premium"].timeouts == 1
    assert "[conv-1] Premium task timeout after 30s" in messages(log)


async def test_background_cap_cancels_instead_of_handing_off(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock, log: io.StringIO
) -> None:
    config = make_config(llm={"max_background_tasks": 1, "premium_cache_timeout": 30})
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(10)}) as h:
        await analyze(h, key=CacheKey("a", "c", "r1"))
        await analyze(h, key=CacheKey("b", "c", "r2"))
        assert h.supervisor.count == 1
        await h.supervisor.wait_idle()
        assert [e.session_id for e in h.store.events if e.strategy == "premium"] == ["a"]
        assert h.races.stats.strategies["premium"].cancelled == 1
    assert any("Background task premium refused: 1 of 1" in m for m in messages(log))


async def test_a_client_that_disconnects_cancels_nothing(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(config, {FAST: Behaviour(3), SLOW: Behaviour(10)}) as h:
        with trio.move_on_after(1):  # the client goes away after 1 s
            await analyze(h)
        await h.supervisor.wait_idle()
        assert trio.current_time() == pytest.approx(10)
        assert h.store.strategies() == ["multimodal", "premium"]


async def test_all_strategies_failing(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(
        config, {FAST: Behaviour(1, status=400), SLOW: Behaviour(2, text="{}")}
    ) as h:
        with pytest.raises(AllStrategiesFailed) as info:
            await analyze(h)
        failures = info.value.data["strategies"]  # type: ignore[index]
        assert failures["multimodal"]["error"] == "http_status"
        assert "HTTP 400" in failures["multimodal"]["detail"]
        assert failures["premium"]["error"] == "invalid_output"
        assert info.value.code == -32001
        assert h.races.races == {}


async def test_request_deadline_while_the_race_goes_on(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(config, {FAST: Behaviour(5), SLOW: Behaviour(8)}) as h:
        with pytest.raises(DeadlineExceeded) as info:
            await analyze(h, within=2)
        assert trio.current_time() == pytest.approx(2)
        assert info.value.data == {"pending": ["premium", "multimodal"]}
        await h.supervisor.wait_idle()
        assert h.store.strategies() == ["multimodal", "premium"]  # still cached


async def test_wait_best(config: Config, autojump_clock: trio.testing.MockClock) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(10)}) as h:
        answer = await analyze(h, wait="best")
        assert trio.current_time() == pytest.approx(10)
        assert answer.provenance.strategy == "premium"
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(10)}) as h:
        await analyze(h)  # caches the multimodal result
        h.models.behaviours[SLOW] = Behaviour(5)
        start = trio.current_time()
        best = await analyze(h, wait="best")  # a lower-ranked event does not count as found
        assert best.provenance.strategy == "premium"
        assert best.provenance.cached is False
        assert trio.current_time() - start == pytest.approx(9)  # joined the running race
        assert h.models.calls[SLOW] == 1


async def test_wait_best_when_the_premium_fails_answers_the_best_there_is(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(3, status=500)}) as h:
        answer = await analyze(h, wait="best")
        assert answer.provenance.strategy == "multimodal"


async def test_refresh_skips_the_cache_read(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(2)}) as h:
        await analyze(h, wait="best")
        again = await analyze(h, refresh=True)
        assert again.provenance.cached is False
        assert h.models.calls[FAST] == 2


async def test_single_flight(config: Config, autojump_clock: trio.testing.MockClock) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(10)}) as h:
        answers: list[AnalyzeResult] = []

        async def one() -> None:
            answers.append(await analyze(h))

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(one)
        assert len(answers) == 50
        assert {a.provenance.strategy for a in answers} == {"multimodal"}
        await h.supervisor.wait_idle()
        assert h.models.calls == {FAST: 1, SLOW: 1}
        assert (h.races.stats.misses, h.races.stats.coalesced) == (1, 49)


async def test_upgrade_on_hit(config: Config, autojump_clock: trio.testing.MockClock) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(100, status=503)}) as h:
        await analyze(h)
        await h.supervisor.wait_idle()  # the premium failed (503s, then the timeout)
        h.models.behaviours[SLOW] = Behaviour(5)
        hit = await analyze(h)
        assert hit.provenance.cached is True
        assert hit.pending == []  # failed within upgrade_retry_after: no retry yet
        await trio.sleep(600)
        start = trio.current_time()
        hit = await analyze(h)
        assert trio.current_time() == start  # the answer is not delayed
        assert (hit.provenance.strategy, hit.pending) == ("multimodal", ["premium"])
        again = await analyze(h)  # one upgrade at a time
        assert again.pending == ["premium"]
        assert h.races.stats.upgrades == 1
        await h.supervisor.wait_idle()
        upgraded = await analyze(h)
        assert (upgraded.provenance.strategy, upgraded.pending) == ("premium", [])
        assert h.models.calls[SLOW] == 2


async def test_no_image_and_not_cached(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(2)}) as h:
        with pytest.raises(MissingInput):
            await analyze(h, image=None)
        await analyze(h, wait="best")
        cached = await analyze(h, image=None)
        assert cached.provenance.cached is True


async def test_a_strategy_without_api_key_is_not_configured(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(2)}) as h:
        provider = h.races.providers["fake"]
        assert isinstance(provider, Provider)
        provider._api_key = None
        with pytest.raises(AllStrategiesFailed) as info:
            await analyze(h)
        kinds = {k: v["error"] for k, v in info.value.data["strategies"].items()}  # type: ignore[index]
        assert kinds == {"multimodal": "not_configured", "premium": "not_configured"}
        assert trio.current_time() == 0


async def test_store_failure_still_answers(
    config: Config, autojump_clock: trio.testing.MockClock, log: io.StringIO
) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(10)}) as h:
        h.store.fail = True
        answer = await analyze(h)
        assert answer.provenance.event_id is None
    assert any("Failed to cache premium result: disk on fire" in m for m in messages(log))


async def test_drain_deadline_cancels_background_premium(
    config: Config, autojump_clock: trio.testing.MockClock, log: io.StringIO
) -> None:
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(25)}) as h:
        await analyze(h)
        h.supervisor.set_drain_deadline(trio.current_time() + 5)
        await h.supervisor.wait_idle()
        assert trio.current_time() == pytest.approx(6)
        assert h.races.stats.strategies["premium"].cancelled == 1
    assert "[conv-1] Premium caching cancelled" in messages(log)


def test_percentiles_of_the_window() -> None:
    from daemon.stats import StrategyCounters

    counters = StrategyCounters("m", 1)
    assert counters.status().latency_ms.p50 is None
    counters.latencies_ms.extend(float(i) for i in range(1, 101))
    status = counters.status()
    assert (status.latency_ms.p50, status.latency_ms.p95, status.latency_ms.p99) == (
        51.0,
        96.0,
        100.0,
    )
    assert not math.isnan(status.latency_ms.p50 or 0)
    json.dumps(status.__struct_fields__)


async def test_a_cached_payload_is_converted_once_per_event(
    config: Config, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import daemon.analysis

    monkeypatch.setattr(daemon.analysis, "STEP_MEMO", 2)
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(2)}) as h:
        await analyze(h, wait="best")
        first = await analyze(h)
        second = await analyze(h)
        assert first.provenance.cached is True
        assert second.result is first.result  # served from the memo, not converted again
        for n in range(3):  # more keys than the memo holds
            key = CacheKey("conv-1", "context_analysis", f"sha256:{n}", "")
            await analyze(h, key=key, wait="best")
            await analyze(h, key=key)
        assert len(h.races._steps) == 2
        # a payload that is not a MergeStep is never memoized: the race runs
        odd = CacheKey("conv-1", "context_analysis", "sha256:odd", "")
        payload = {"note": "not a MergeStep", "_strategy": "premium"}
        await h.store.append(odd.session_id, odd.category, odd.resource, odd.scene, payload)
        answer = await analyze(h, key=odd)
        assert answer.provenance.cached is False
        assert all(isinstance(s, MergeStep) for s, _ in h.races._steps.values())


async def test_the_step_memo_is_bounded_by_bytes(
    config: Config, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 hits on large events used to keep every converted step (660 MiB
    for 4 MiB events): now the memo holds at most STEP_MEMO_BYTES of them and
    never one larger than STEP_MEMO_LARGEST."""
    import daemon.analysis

    monkeypatch.setattr(daemon.analysis, "STEP_MEMO_BYTES", 200_000)
    monkeypatch.setattr(daemon.analysis, "STEP_MEMO_LARGEST", 150_000)
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(2)}) as h:
        for n in range(100):
            size = 160_000 if n % 10 == 0 else 40_000  # every tenth is too large to keep
            step = json.loads(json.dumps(ANSWER))
            step["bubbles"][0]["text"] = "字" * (size // 3)
            step["conversation"] = [
                {"speaker": b["speaker"], "text": b["text"]} for b in step["bubbles"]
            ]
            step["_strategy"] = "premium"
            key = CacheKey("conv-1", "context_analysis", f"sha256:big{n}", "")
            await h.store.append(key.session_id, key.category, key.resource, key.scene, step)
            for _ in range(2):
                hit = await analyze(h, key=key)
                assert hit.provenance.cached is True
            memo = h.races._steps
            assert h.races._step_bytes == sum(size for _, size in memo.values()) <= 200_000
            assert all(size <= 150_000 for _, size in memo.values())
        assert len(h.races._steps) == 2  # ~80 KB each (bubble and conversation): the newest two


class _Broken:
    async def complete(self, strategy: StrategyConfig, image: ImageInput) -> Completion:
        raise RuntimeError("a bug in a backend")


async def test_a_backend_bug_fails_its_leg_and_never_holds_the_key(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make_config(
        strategies=[
            {"name": "local", "kind": "local_ocr", "rank": 0},
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1},
        ]
    )
    async with harness(config, {FAST: Behaviour(1)}, local={"local": _Broken()}) as h:
        answer = await analyze(h)
        assert answer.provenance.strategy == "multimodal"
        assert h.races.ctx.stats.strategies["local"].invalid == 1
        assert h.races.races == {}  # the race ended: single flight is free
    async with harness(config, {FAST: Behaviour(1, status=500)}, local={"local": _Broken()}) as h:
        with pytest.raises(AllStrategiesFailed) as info:
            await analyze(h)
        failures = info.value.data["strategies"]  # type: ignore[index]
        assert failures["local"] == {
            "error": "invalid_output",
            "detail": "internal error: RuntimeError",
        }
        assert h.races.races == {}


async def test_the_lowest_ranked_leg_sends_its_request_first(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    """trio runs a batch of tasks in either order; the fast model's request
    must not wait behind the premium's. The premium is listed first on purpose."""
    config = make_config(
        strategies=[
            {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2},
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1},
        ]
    )
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(10)}) as h:
        for i in range(30):
            key = msgspec.structs.replace(KEY, resource=f"shot-{i}")
            answer = await analyze(h, key=key)
            assert answer.provenance.strategy == "multimodal"
        assert h.models.order[0::2] == [FAST] * 30, h.models.order


# ------------------------------------------------- a store that takes its time --
# The findings of issue 12: each happened between "accepted" and "stored",
# which a store that appends in one checkpoint never shows.


async def test_wait_best_when_the_top_rank_answers_first(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    """Premium first: the multimodal was cancelled while the premium was
    still being stored, and the race looked finished with nothing accepted
    (-32002 {"pending": ["premium"]} after 0.21 s, 5 of 5)."""
    async with harness(config, {FAST: Behaviour(3), SLOW: Behaviour(0.2)}, linger=0.002) as h:
        answer = await analyze(h, wait="best", within=20)
        assert answer.provenance.strategy == "premium"
        assert answer.pending == []
        assert trio.current_time() == pytest.approx(0.202)
        assert h.store.strategies() == ["premium"]


async def test_a_lower_rank_stored_in_the_same_commit_never_replaces_a_higher_one(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    """Both results end storing in one group commit: whichever task resumed
    last used to become the race's answer, so wait=best could get the
    multimodal although the premium was stored."""
    for n in range(12):  # trio resumes a commit's writers in either order
        key = CacheKey("conv-1", "context_analysis", f"sha256:{n}", "")
        async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(1.5)}, linger=1) as h:
            answers: dict[str, AnalyzeResult] = {}

            async def call(
                wait: Wait,
                key: CacheKey = key,
                h: Harness = h,
                answers: dict[str, AnalyzeResult] = answers,
            ) -> None:
                answers[wait] = await analyze(h, wait=wait, key=key)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, "best")
                nursery.start_soon(call, "first")
            assert isinstance(h.store, GatedStore)
            assert h.store.commits == [[1, 2]]  # one group commit stored both
            assert answers["best"].provenance.strategy == "premium"
            assert answers["best"].provenance.event_id == 2
            # the first answer is either result (both became stored at once),
            # but never a lower rank with a higher one pending behind it
            first = answers["first"]
            assert first.pending == []
            again = await analyze(h, wait="best", key=key)
            assert (again.provenance.strategy, again.provenance.cached) == ("premium", True)


class SlowToStop:
    """A local backend whose cancellation takes a while (an OCR worker is
    killed and reaped): its leg used to stay 'running' meanwhile."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, strategy: StrategyConfig, image: ImageInput) -> Completion:
        self.calls += 1
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.5)
        raise AssertionError("unreachable")


async def test_pending_and_the_hand_off_never_hold_a_cancelled_leg(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock, log: io.StringIO
) -> None:
    """With a local OCR strategy, an answer said pending ["premium", "local"],
    local took a background slot, and "Premium task still running" was
    logged for the OCR leg."""
    config = make_config(
        llm={"premium_cache_timeout": 30, "max_background_tasks": 8},
        strategies=[
            {"name": "local", "kind": "local_ocr", "rank": 0, "timeout": 60},
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1, "timeout": 60},
            {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2, "timeout": 120},
        ],
    )
    local = SlowToStop()
    behaviours = {FAST: Behaviour(1), SLOW: Behaviour(10)}
    async with harness(config, behaviours, local={"local": local}, linger=0.001) as h:
        answer = await analyze(h)
        assert answer.provenance.strategy == "multimodal"
        assert answer.pending == ["premium"]
        assert h.supervisor.by_name == {"premium": 1}
        assert h.races.stats.strategies["local"].cancelled == 1
        await h.supervisor.wait_idle()
        assert h.store.strategies() == ["multimodal", "premium"]
    handed_off = [m for m in messages(log) if "Premium task still running" in m]
    assert len(handed_off) == 1


async def test_wait_best_joining_a_failing_upgrade_answers_the_cached_event(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    """docs/protocol.md promises the best result there is; the cached
    multimodal event is one, but the failed upgrade answered -32001."""
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(100, status=503)}) as h:
        first = await analyze(h, within=2)
        assert first.provenance.strategy == "multimodal"
        await h.supervisor.wait_idle()
        await trio.sleep(600)  # past upgrade_retry_after
        h.models.behaviours[SLOW] = Behaviour(5, status=401)
        hit = await analyze(h)
        assert (hit.provenance.cached, hit.pending) == (True, ["premium"])
        best = await analyze(h, wait="best")  # joins the upgrade, which fails
        assert (best.provenance.strategy, best.provenance.cached) == ("multimodal", True)
        assert best.provenance.event_id == first.provenance.event_id


async def test_a_race_nobody_waits_for_is_background_work(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    """150 calls with timeout 0.01 against slow models kept every leg running
    until its own timeout, counted nowhere (status.background.count 0), and
    a legitimate request after them queued behind ~280 provider requests.
    Now an abandoned race is handed to the background under the cap, and
    past it its legs are cancelled."""
    config = make_config(
        llm={"premium_cache_timeout": 30, "max_background_tasks": 4},
        strategies=[
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1, "timeout": 60},
            {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2, "timeout": 120},
        ],
    )
    async with harness(config, {FAST: Behaviour(50), SLOW: Behaviour(100)}) as h:
        for n in range(20):
            key = CacheKey("conv-1", "context_analysis", f"sha256:{n}", "")
            with pytest.raises(DeadlineExceeded) as info:
                await analyze(h, key=key, within=0.01)
            pending = ["premium", "multimodal"] if n < 2 else []  # past the cap: cancelled
            assert info.value.data == {"pending": pending}
        await trio.testing.wait_all_tasks_blocked()  # the cancelled legs unwind
        assert h.supervisor.count == 4  # the first two races, both legs each
        assert len(h.supervisor._tasks) == 4  # nothing else runs
        assert len(h.races.races) == 2
        assert h.races.stats.strategies["premium"].cancelled == 18
        await h.supervisor.wait_idle()
        # each ends premium_cache_timeout after its request left
        assert trio.current_time() == pytest.approx(30.02)  # the second left at 0.02
        assert h.races.races == {}
        assert h.races.stats.strategies["premium"].timeouts == 2


async def test_a_race_whose_client_left_is_background_work(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(config, {FAST: Behaviour(5), SLOW: Behaviour(10)}) as h:
        with trio.move_on_after(1):  # the client goes away
            await analyze(h)
        assert h.supervisor.by_name == {"multimodal": 1, "premium": 1}
        await h.supervisor.wait_idle()
        assert h.store.strategies() == ["multimodal", "premium"]


async def test_live_races_and_their_image_bytes_are_bounded(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    config = make_config(
        llm={"max_races": 3, "max_race_image_mb": 14},
        strategies=[
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1, "timeout": 60},
            {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2, "timeout": 120},
        ],
    )
    async with harness(config, {FAST: Behaviour(5), SLOW: Behaviour(10)}) as h:
        for n in range(3):
            key = CacheKey("conv-1", "context_analysis", f"sha256:{n}", "")
            with pytest.raises(DeadlineExceeded):
                await analyze(h, key=key, within=0.01)
        with pytest.raises(Overloaded) as info:
            await analyze(h, key=CacheKey("conv-1", "context_analysis", "sha256:x", ""))
        assert info.value.code == -32005
        assert info.value.data["races"] == 3  # type: ignore[index]
        joined = await analyze(h, key=CacheKey("conv-1", "context_analysis", "sha256:0", ""))
        assert joined.provenance.strategy == "multimodal"  # a join is never refused
        await h.supervisor.wait_idle()
        big = ImageInput.from_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (8 * 1024 * 1024), "image/png")
        key = CacheKey("conv-1", "context_analysis", "sha256:big", "")
        with pytest.raises(DeadlineExceeded):
            await analyze(h, key=key, image=big, within=0.01)
        assert h.races.image_bytes == len(big.url)
        with pytest.raises(Overloaded) as info:  # two would pass 14 MiB
            await analyze(h, key=CacheKey("conv-1", "c", "sha256:big2", ""), image=big)
        assert info.value.data["max_race_image_bytes"] == 14 * 1024 * 1024  # type: ignore[index]
        await h.supervisor.wait_idle()
        assert h.races.image_bytes == 0


async def test_boxes_come_back_in_the_screenshots_pixels(config: Config) -> None:
    """A 3136x2000 screenshot goes to the model as 1568x1000; the boxes the
    model gives in those pixels are stored in the screenshot's own. (Real
    clock: the image is scaled in a thread, which autojump would skip past.)"""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (3136, 2000), "white").save(out, format="PNG")
    big = ImageInput.from_bytes(out.getvalue(), "image/png")
    async with harness(config, {FAST: Behaviour(0.01), SLOW: Behaviour(0.02)}) as h:
        answer = await analyze(h, image=big, wait="best")
        assert [b.bbox for b in answer.result.bubbles] == [
            (200, 400, 700, 500),
            (800, 600, 1400, 700),
        ]
        stored = msgspec.json.decode(h.store.events[-1].payload)
        assert stored["bubbles"][0]["bbox"] == [200, 400, 700, 500]


# ----------------------------------------------- found by a cold review --


@pytest.fixture
def three(make_config: ConfigFactory) -> Callable[..., Config]:
    """local (0), multimodal (1), premium (2), all scripted models."""

    def make(cap: int = 8) -> Config:
        return make_config(
            llm={"premium_cache_timeout": 30, "max_background_tasks": cap},
            strategies=[
                {"name": "local", "provider": "fake", "model": "m0", "rank": 0, "timeout": 60},
                {"name": "multimodal", "provider": "fake", "model": "m1", "rank": 1, "timeout": 60},
                {"name": "premium", "provider": "fake", "model": "m2", "rank": 2, "timeout": 120},
            ],
        )

    return make


async def test_wait_best_never_answers_below_the_cached_event(
    three: Callable[..., Config], autojump_clock: trio.testing.MockClock
) -> None:
    """A multimodal event is cached; wait=best raced every strategy again and
    answered the local one (rank 0) when the others failed."""
    behaviours = {
        "m0": Behaviour(5, status=500),
        "m1": Behaviour(1),
        "m2": Behaviour(10, status=500),
    }
    async with harness(three(), behaviours) as h:
        assert (await analyze(h)).provenance.strategy == "multimodal"
        await h.supervisor.wait_idle()
        await trio.sleep(700)  # past upgrade_retry_after
        h.models.behaviours.update(
            {"m0": Behaviour(1), "m1": Behaviour(5, status=500), "m2": Behaviour(10, status=500)}
        )
        calls = dict(h.models.calls)
        best = await analyze(h, wait="best")
        assert (best.provenance.strategy, best.provenance.cached) == ("multimodal", True)
        assert h.models.calls["m0"] == calls["m0"]  # only what outranks the cache was asked
        assert h.models.calls["m1"] == calls["m1"]
        assert h.models.calls["m2"] > calls["m2"]  # premium tried (with its retries)


async def test_a_leg_a_best_request_waits_for_is_never_cancelled_at_the_cap(
    three: Callable[..., Config], autojump_clock: trio.testing.MockClock
) -> None:
    """The one background slot is taken; a wait=first answer handed off the
    premium that a wait=best request of the same race still waited for, and
    the cap cancelled it."""
    behaviours = {"m0": Behaviour(1, status=500), "m1": Behaviour(1), "m2": Behaviour(5)}
    async with harness(three(cap=1), behaviours) as h:
        other = CacheKey("conv-1", "context_analysis", "sha256:other", "")
        with pytest.raises(DeadlineExceeded):
            await analyze(h, key=other, within=0.01)
        assert h.supervisor.count == 1  # the slot is taken
        answers: dict[str, AnalyzeResult] = {}

        async def call(wait: Wait) -> None:
            answers[wait] = await analyze(h, wait=wait, within=20)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "first")
            nursery.start_soon(call, "best")
        assert answers["first"].provenance.strategy == "multimodal"
        assert answers["best"].provenance.strategy == "premium"
        assert trio.current_time() == pytest.approx(5.01)


async def test_a_refresh_joining_an_upgrade_races_the_strategies_it_lacks(
    three: Callable[..., Config], autojump_clock: trio.testing.MockClock
) -> None:
    """A refresh joined the upgrade of a cached local result, which races only
    multimodal and premium: local (1 s) never ran, and the call got -32002."""
    behaviours = {
        "m0": Behaviour(1),
        "m1": Behaviour(5, status=500),
        "m2": Behaviour(10, status=500),
    }
    async with harness(three(), behaviours) as h:
        assert (await analyze(h)).provenance.strategy == "local"
        await h.supervisor.wait_idle()
        await trio.sleep(700)
        h.models.behaviours.update({"m1": Behaviour(30), "m2": Behaviour(40, status=500)})
        hit = await analyze(h)
        assert hit.pending == ["premium", "multimodal"]  # the upgrade runs
        await trio.sleep(0.1)  # its requests are out
        calls = dict(h.models.calls)
        fresh = await analyze(h, refresh=True, within=10)
        assert (fresh.provenance.strategy, fresh.provenance.cached) == ("local", False)
        assert h.models.calls["m1"] == calls["m1"]  # joined the upgrade, not raced again
        assert h.models.calls["m0"] == calls["m0"] + 1


async def test_pending_on_a_hit_names_only_what_outranks_the_cached_answer(
    three: Callable[..., Config], autojump_clock: trio.testing.MockClock
) -> None:
    behaviours = {
        "m0": Behaviour(1, status=500),
        "m1": Behaviour(1),
        "m2": Behaviour(3, status=500),
    }
    async with harness(three(), behaviours) as h:
        await analyze(h)
        await h.supervisor.wait_idle()
        h.models.behaviours.update({"m0": Behaviour(5), "m1": Behaviour(5), "m2": Behaviour(10)})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(analyze, h, refresh=True))
            await trio.sleep(0.5)
            hit = await analyze(h)
            assert (hit.provenance.strategy, hit.pending) == ("multimodal", ["premium"])


async def test_no_strategy_at_all_leaves_no_race_behind(
    make_config: ConfigFactory, autojump_clock: trio.testing.MockClock
) -> None:
    async with harness(make_config(strategies=[]), {}) as h:
        for _ in range(3):
            with pytest.raises(AllStrategiesFailed):
                await analyze(h)
        assert h.races.races == {}
        assert h.races.image_bytes == 0


class _BrokenStore(MemoryStore):
    async def append(self, *args: Any, **kwargs: Any) -> int:
        await trio.lowlevel.checkpoint()
        raise UnicodeEncodeError("utf-8", "\ud83d", 0, 1, "surrogates not allowed")


async def test_a_store_that_raises_anything_never_leaves_a_leg_storing(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    """The real store raised UnicodeEncodeError for a lone surrogate in a
    bubble: the leg stayed 'storing' and its key answered -32002 until restart."""
    async with harness(config, {FAST: Behaviour(1), SLOW: Behaviour(2)}) as h:
        h.races.store = h.races.ctx.store = _BrokenStore(config.rank_of())
        answer = await analyze(h, wait="best")
        assert (answer.provenance.strategy, answer.provenance.event_id) == ("premium", None)
        await h.supervisor.wait_idle()
        assert h.races.races == {}
