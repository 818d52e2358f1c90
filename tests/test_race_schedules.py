"""The race under schedules drawn by hypothesis, with invariants checked after every step.

Three strategies (ranks 0, 1, 2) whose calls end when the schedule says, with
a valid answer, an invalid one or an error (or never: their timeout); a store
whose appends end only when the schedule commits them, several at once or
failing; requests that arrive with either ``wait``, with or without
``refresh``, short or long deadlines, and clients that go away; the clock
moved by hand (virtual time). After each step and at the end:

* an answer is stored before it is sent, and is the best result its race
  has stored at that moment (a lower rank never replaces a higher one);
* a ``wait: "best"`` answer has the highest rank that succeeded: nothing
  above it is still running, storing or stored;
* ``pending`` holds exactly the legs above the answer still running or storing;
* a race's answer never goes down in rank, and its stored events go up;
* single flight: one live race per key, one call per strategy per race;
* work nobody waits for is background work: never past the cap, and every
  running leg of a race without waiters is counted;
* ``start`` policies (drawn per strategy): a held leg is never left held
  once a result is accepted, a ``wait: "best"`` request waits, or its
  condition holds (its delay passed and others still run, its lower ranks
  all failed); an ``upgrade_only`` leg only ever runs in the background; a
  strategy with a budget never starts more than it allows;
* in the end every leg has ended, nothing is left in the supervisor, and
  the races' image bytes are back to zero.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import msgspec
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from daemon.analysis import RaceManager
from daemon.config import Config, StartAfter, StrategyConfig
from daemon.errors import AllStrategiesFailed, DeadlineExceeded, Overloaded, StrategyError
from daemon.models import AnalyzeResult, CacheKey
from daemon.providers import Completion, ImageInput
from daemon.race import Race
from daemon.spend import Spend
from daemon.stats import Stats
from daemon.supervisor import Supervisor
from tests.conftest import config_data
from tests.fake_provider import ANSWER
from tests.race_fakes import IMAGE, GatedStore

KEYS = (  # two screenshots: races for both at once share the cap and max_races
    CacheKey("conv-1", "context_analysis", "sha256:abc", ""),
    CacheKey("conv-1", "context_analysis", "sha256:def", ""),
)
VALID = "```json\n" + json.dumps(ANSWER, ensure_ascii=False) + "\n```"
NAMES = ("local", "multimodal", "premium")  # ranks 0, 1, 2
End = Literal["valid", "invalid", "error"]
STARTS: tuple[Any, ...] = ("always", "always", {"after": 0.5}, {"after": 5.0}, "on_failure")
NOON = 1_796_558_400.0  # the wall clock Spend sees: one UTC minute for the whole schedule


@dataclass
class Call:
    gate: trio.Event = field(default_factory=trio.Event)
    end: End = "error"


class GateBackend:
    """Every strategy's calls, each waiting until the schedule ends it."""

    def __init__(self, spend: Spend, slow_to_stop: frozenset[str] = frozenset()) -> None:
        self.waiting: dict[str, list[Call]] = {name: [] for name in NAMES}
        self.calls: Counter[str] = Counter()
        self.spend = spend  # told of each request sent, as a Provider tells it
        self.slow_to_stop = slow_to_stop  # cancelled, they take 50 ms (an OCR worker's kill)

    async def complete(self, strategy: StrategyConfig, image: ImageInput) -> Completion:
        call = Call()
        self.calls[strategy.name] += 1
        self.spend.record_sent(strategy.name)
        self.waiting[strategy.name].append(call)
        try:
            await call.gate.wait()
        finally:
            if call in self.waiting[strategy.name]:
                self.waiting[strategy.name].remove(call)
                if strategy.name in self.slow_to_stop:
                    with trio.CancelScope(shield=True):
                        await trio.sleep(0.05)
        if call.end == "error":
            raise StrategyError("http_status", "HTTP 500 (scripted)")
        text = VALID if call.end == "valid" else "sorry, no JSON"
        return Completion(text=text, served_model=strategy.model, usage=None, attempts=1)

    def finish(self, name: str, end: End) -> None:
        if self.waiting[name]:
            call = self.waiting[name].pop(0)
            call.end = end
            call.gate.set()


def make_config(
    cap: int,
    max_races: int = 4,
    starts: dict[str, Any] | None = None,
    calls_per_minute: int | None = None,
) -> Config:
    strategies: Any = [
        {
            "name": name,
            "provider": "fake",
            "model": f"model-{rank}",
            "rank": rank,
            "timeout": 40 + 10 * rank,
            "start": (starts or {}).get(name, "always"),
        }
        for rank, name in enumerate(NAMES)
    ]
    if calls_per_minute is not None:
        strategies[-1]["budget"] = {"calls_per_minute": calls_per_minute}
    data = config_data(
        Path("/nonexistent"),
        llm={"premium_cache_timeout": 30, "max_background_tasks": cap, "max_races": max_races},
        strategies=strategies,
    )
    return msgspec.convert(data, Config, strict=True)


def next_step(world: World, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    """A step drawn among those that do something now: a call that is
    running ends, appends waiting for the store commit (some, or fail),
    a request arrives or leaves, the clock moves."""
    running = [name for name in NAMES if world.backend.waiting[name]]
    options: list[st.SearchStrategy[Any]] = [
        st.tuples(
            st.just("request"),
            st.sampled_from(["first", "best"]),
            st.sampled_from([0.5, 3.0, 100.0]),
            st.sampled_from([False, False, True]),
            st.sampled_from([0, 0, 1]),  # which screenshot
        ),
        st.tuples(st.just("tick"), st.sampled_from([0.01, 0.1, 1.0, 10.0, 31.0])),
    ]
    if running:
        finish = st.tuples(
            st.just("finish"),
            st.sampled_from(running),
            st.sampled_from(["valid", "valid", "invalid", "error"]),
        )
        options += [finish, finish, finish]
    if world.store.waiting:
        commit = st.tuples(
            st.just("commit"),
            st.sampled_from([1, 2, None, None]),
            st.sampled_from([False, False, False, True]),
        )
        options += [commit, commit]
    if any(not scope.cancel_called for scope in world.requests):
        options.append(st.tuples(st.just("leave"), st.integers(0, len(world.requests) - 1)))
    return draw(st.one_of(options))


class World:
    def __init__(
        self,
        cap: int,
        slow_to_stop: frozenset[str],
        max_races: int = 4,
        starts: dict[str, Any] | None = None,
        calls_per_minute: int | None = None,
    ) -> None:
        self.config = make_config(cap, max_races, starts, calls_per_minute)
        self.rank_of = self.config.rank_of()
        self.spend = Spend(self.config.strategies, now=lambda: NOON)
        self.backend = GateBackend(self.spend, slow_to_stop)
        self.store = GatedStore(self.rank_of)
        self.supervisor = Supervisor(cap)
        self.races = RaceManager(
            self.config,
            self.store,
            self.supervisor,
            {"fake": self.backend},
            Stats(self.config.strategies, spend=self.spend),
        )
        self.seen: list[Race] = []  # every race ever started, in order
        self.answer_rank: dict[int, float] = {}  # id(race) -> rank of its answer so far
        self.requests: list[trio.CancelScope] = []
        self.answers: list[tuple[str, str, bool]] = []  # (wait, strategy, cached)
        self.reached: set[str] = set()  # labels of the windows this schedule went through
        self.aborted: BaseException | None = None
        self.was: dict[int, tuple[bool, bool]] = {}  # id(leg) -> (live, counted as background)
        new_race = self.races._new_race

        def recording(key: CacheKey, image: ImageInput, floor: float = -math.inf) -> Race:
            race = new_race(key, image, floor)
            self.seen.append(race)
            self.watch_releases(race)
            return race

        self.races._new_race = recording  # type: ignore[method-assign]

    # --------------------------------------------------------- requests --

    async def request(
        self, wait: Literal["first", "best"], within: float, refresh: bool, key: CacheKey
    ) -> None:
        scope = trio.CancelScope()
        self.requests.append(scope)
        with scope:
            deadline = trio.current_time() + within
            try:
                result = await self.races.analyze(
                    key, IMAGE, wait=wait, refresh=refresh, deadline=deadline
                )
            except DeadlineExceeded as exc:
                self.reached.add("deadline exceeded")
                self.check_pending_after_deadline(exc)
                return
            except AllStrategiesFailed:
                # -32001 only when nothing at all can answer: no cached event
                # to fall back on (unless the caller skipped the cache)
                self.reached.add("all strategies failed")
                assert refresh or self.store.best(*_key_tuple(key)) is None
                return
            except Overloaded:
                self.reached.add("overloaded")
                assert len(self.races.races) >= self.config.llm.max_races
                return
            # No checkpoint since the answer was chosen: check it as it was sent.
            self.check_answer(result, wait, key)
            self.answers.append((wait, result.provenance.strategy, result.provenance.cached))
            self.reached.add(
                f"answered {wait} from {'cache' if result.provenance.cached else 'race'}"
            )
            if result.pending:
                self.reached.add("answered with pending")

    def check_answer(self, result: AnalyzeResult, wait: str, key: CacheKey) -> None:
        prov = result.provenance
        rank = self.rank_of(prov.strategy)
        if prov.cached:
            best = self.store.best(*_key_tuple(key))
            assert best is not None
            assert best.id == prov.event_id  # the best stored event
            return
        race = next(
            r
            for r in self.seen
            if any(leg.result is not None and leg.result.step is result.result for leg in r.legs)
        )
        mine = next(leg for leg in race.legs if leg.name == prov.strategy)
        assert mine.state == "stored"  # stored before it is sent
        if prov.event_id is not None:
            event = self.store.events[prov.event_id - 1]
            assert (event.strategy, event.provenance and event.provenance.race_id) == (
                prov.strategy,
                race.race_id,
            )
        above = [leg for leg in race.legs if leg.rank > rank]
        assert not any(leg.state == "stored" for leg in above)  # never a lower one over a higher
        if wait == "best":
            assert not any(leg.live for leg in above)  # the highest rank that succeeded
        live_above = sorted((leg for leg in above if leg.live), key=lambda leg: -leg.rank)
        assert result.pending == [leg.name for leg in live_above]

    def watch_releases(self, race: Race) -> None:
        """A held leg is released only for a reason that holds at that
        moment: a ``wait: "best"`` request, or (``on_failure``) every
        lower-ranked leg failed (a cancelled one is no failure: the premium
        would be bought for nothing), or (``after``, before its delay) no other
        started leg can still answer (it would start at its delay anyway, at
        the same cost)."""
        release_held = race._release_held

        def checked() -> None:
            before = {id(leg) for leg in race.legs if leg.release.is_set()}
            release_held()
            for leg in race.legs:
                if leg.state != "held" or not leg.release.is_set() or id(leg) in before:
                    continue
                self.reached.add("a held leg was released")
                if race.best_waiters:
                    continue
                if leg.strategy.start == "on_failure":
                    others = [o for o in race.legs if o.rank < leg.rank]
                    why = [(o.name, o.state) for o in others]
                    assert all(o.state == "failed" for o in others), why
                else:
                    others = [o for o in race.legs if o is not leg and o.state != "held"]
                    assert not any(o.live for o in others), [(o.name, o.state) for o in others]

        race._release_held = checked  # type: ignore[method-assign]

    def check_held(self, race: Race) -> None:
        """A held leg not yet released is held for a reason that still holds."""
        now = trio.current_time()
        accepted = any(leg.state in ("storing", "stored") for leg in race.legs)
        for leg in race.legs:
            if leg.state != "held" or leg.release.is_set():
                continue
            assert not accepted  # a result accepted skips it
            assert not race.best_waiters  # wait: "best" releases it
            others = [other for other in race.legs if other is not leg]
            policy = leg.strategy.start
            if isinstance(policy, StartAfter):
                assert now < leg.added + policy.after  # its delay has not passed
                assert any(o.live and o.state != "held" for o in others)  # others still run
            else:
                assert policy == "on_failure"
                assert any(o.live for o in others if o.rank < leg.rank)  # a lower one may win

    def check_pending_after_deadline(self, exc: DeadlineExceeded) -> None:
        assert isinstance(exc.data, dict)
        pending = exc.data["pending"]
        live = {leg.name for race in self.seen if not race.ended for leg in race.legs if leg.live}
        assert set(pending) <= live

    # ------------------------------------------------------- invariants --

    def check(self) -> None:
        live_races = [race for race in self.seen if any(leg.live for leg in race.legs)]
        assert len({race.key for race in live_races}) == len(live_races)  # single flight
        for race in live_races:
            assert self.races.races.get(race.key) is race
            if any(leg.state == "storing" for leg in race.legs) and race.waiters:
                self.reached.add("a request waited while a result was storing")
            if race.waiters == 0 and any(leg.state == "running" for leg in race.legs):
                self.reached.add("a race ran with nobody waiting")
            if any(leg.state == "cancelled" for leg in race.legs) and any(
                leg.name in self.backend.slow_to_stop and leg.state == "cancelled"
                for leg in race.legs
            ):
                self.reached.add("a cancelled leg was slow to stop")
            if race.waiters == 0:  # nobody waits: all of it is background work
                assert all(leg.background for leg in race.legs if leg.state in ("running", "held"))
            self.check_held(race)
        for race in self.seen:
            for leg in race.legs:
                if leg.strategy.start == "upgrade_only":
                    assert leg.background  # never in the answer path
                if leg.state == "skipped":
                    self.reached.add("a held leg was skipped")
                elif leg.strategy.start != "always" and leg.state in ("running", "storing"):
                    self.reached.add("a held leg started")
                if leg.error is not None and leg.error.kind == "budget_exhausted":
                    self.reached.add("a leg was refused at its budget")
        budget = self.config.strategies[-1].budget
        if budget is not None and budget.calls_per_minute is not None:
            assert self.backend.calls["premium"] <= budget.calls_per_minute
        for name in NAMES:  # Spend counts the calls that were made, not the admissions
            assert self.spend.since_start[name].calls == self.backend.calls[name]
        assert self.supervisor.count <= self.supervisor.max_tasks
        for race in self.seen:
            for leg in race.legs:
                counted = leg.handle is not None and leg.handle.background
                before = self.was.get(id(leg))
                if before is not None and not before[0] and not before[1]:
                    assert not counted  # an ended leg never takes a background slot
                self.was[id(leg)] = (leg.live, counted)
        for race in self.seen:
            answer = race.outcome().answer
            rank = self.rank_of(answer.strategy) if answer is not None else -math.inf
            assert rank >= self.answer_rank.get(id(race), -math.inf)  # never goes down
            self.answer_rank[id(race)] = rank
        started = Counter(leg.name for race in self.seen for leg in race.legs if leg.handle)
        for name in NAMES:
            assert self.backend.calls[name] <= started[name]  # one call per leg at most
        ranks = [self.rank_of(e.strategy) for e in self.store.events]
        by_race: dict[str, list[int]] = {}
        for stored, rank in zip(self.store.events, ranks, strict=True):
            assert stored.provenance is not None
            assert stored.provenance.race_id is not None
            by_race.setdefault(stored.provenance.race_id, []).append(rank)
        for ranks_of_race in by_race.values():
            assert ranks_of_race == sorted(set(ranks_of_race))  # strictly rising per race

    async def play(self, step: Any, clients: trio.Nursery) -> None:
        clock = trio.lowlevel.current_clock()
        assert isinstance(clock, trio.testing.MockClock)
        match step:
            case ("finish", name, end):
                self.backend.finish(name, end)
            case ("commit", count, fail):
                if len(self.store.commit(count, fail=fail)) > 1:
                    self.reached.add("a commit stored two results")
            case ("request", wait, within, refresh, *which):
                key = KEYS[which[0] if which else 0]
                clients.start_soon(self.request, wait, within, refresh, key)
            case ("leave", index):
                self.requests[index].cancel()
            case ("tick", seconds):
                clock.jump(seconds)
        await trio.testing.wait_all_tasks_blocked()
        self.check()

    async def run_out(self, clock: trio.testing.MockClock) -> None:
        """The end: every call ends, every append commits, time runs out."""
        for _ in range(12):
            for name in NAMES:
                while self.backend.waiting[name]:
                    self.backend.finish(name, "error")
            self.store.commit()
            clock.jump(40)
            await trio.testing.wait_all_tasks_blocked()
            self.check()

    def check_the_end(self) -> None:
        for race in self.seen:
            assert all(not leg.live for leg in race.legs)
            assert race.ended
        assert self.races.races == {}
        assert not self.supervisor._tasks
        assert self.supervisor.count == 0
        assert self.races.image_bytes == 0
        assert self.store.waiting == []


def _key_tuple(key: CacheKey) -> tuple[str, str, str, str]:
    return (key.session_id, key.category, key.resource, key.scene)


async def play(
    cap: int,
    steps: list[Any] | Callable[[World], Any],
    slow_to_stop: frozenset[str] = frozenset(),
    length: int = 40,
    max_races: int = 4,
    starts: dict[str, Any] | None = None,
    calls_per_minute: int | None = None,
) -> World:
    """Run a schedule: the given steps, or ``length`` steps drawn by ``steps``."""
    world = World(cap, slow_to_stop, max_races, starts, calls_per_minute)
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    script = iter(steps) if isinstance(steps, list) else (steps(world) for _ in range(length))
    async with trio.open_nursery() as nursery:
        await nursery.start(world.supervisor.serve)
        try:
            async with trio.open_nursery() as clients:
                for step in _until_aborted(world, script):
                    await world.play(step, clients)
                if world.aborted is None:
                    await world.run_out(clock)
                else:
                    clients.cancel_scope.cancel()
            if world.aborted is None:
                world.check_the_end()
        finally:
            # Whatever ends the run (a failed check, hypothesis stopping the
            # draws), let shielded waits end in virtual time rather than hang.
            clock.autojump_threshold = 0
            nursery.cancel_scope.cancel()
    return world


def _until_aborted(world: World, script: Iterator[Any]) -> Iterator[Any]:
    """The steps of ``script``; a draw that raises (hypothesis has no more
    data: StopTest) ends the run cleanly and is raised again after it,
    outside trio, where hypothesis expects it."""
    while True:
        try:
            step = next(script)
        except StopIteration:
            return
        except BaseException as exc:
            world.aborted = exc
            return
        yield step


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    cap=st.integers(1, 6),
    first=st.sampled_from(["first", "best"]),
    length=st.integers(1, 40),
    slow_to_stop=st.frozensets(st.sampled_from(NAMES)),
    max_races=st.sampled_from([1, 4]),
    starts=st.fixed_dictionaries(
        {
            "local": st.sampled_from(STARTS),
            "multimodal": st.sampled_from(STARTS),
            "premium": st.sampled_from((*STARTS, "upgrade_only")),
        }
    ),
    calls_per_minute=st.sampled_from([None, None, 1, 2]),
)
def test_the_race_holds_its_invariants_under_any_schedule(
    data: st.DataObject,
    cap: int,
    first: str,
    length: int,
    slow_to_stop: frozenset[str],
    max_races: int,
    starts: dict[str, Any],
    calls_per_minute: int | None,
) -> None:
    started = False

    def draw(world: World) -> Any:
        nonlocal started
        if not started:
            started = True
            return ("request", first, 100.0, False)
        return next_step(world, data.draw)

    world = trio.run(
        play,
        cap,
        draw,
        slow_to_stop,
        length,
        max_races,
        starts,
        calls_per_minute,
        clock=trio.testing.MockClock(),
    )
    if world.aborted is not None:
        raise world.aborted
    for label in sorted(world.reached):
        event(label)


def test_the_schedules_reach_the_interesting_states() -> None:
    """The drawn schedules are worth something only if they reach the
    windows the issue names; one hand-written schedule per window shows the
    harness can express them (the property test then draws around them)."""
    premium_first_best = [
        ("request", "best", 100.0, False),
        ("finish", "premium", "valid"),
        ("finish", "multimodal", "valid"),  # arrives while the premium is storing
        ("commit", 3, False),
    ]
    world = trio.run(play, 4, premium_first_best, clock=trio.testing.MockClock())
    assert world.answers == [("best", "premium", False)]
    one_commit = [
        ("request", "best", 100.0, False),
        ("finish", "multimodal", "valid"),
        ("finish", "premium", "valid"),
        ("commit", 3, False),
    ]
    world = trio.run(play, 4, one_commit, clock=trio.testing.MockClock())
    assert [e.strategy for e in world.store.events] == ["multimodal", "premium"]
    assert world.store.commits[0] == [1, 2]
    assert world.answers == [("best", "premium", False)]
    abandoned = [("request", "first", 100.0, False), ("leave", 0), ("tick", 31.0)]
    world = trio.run(play, 1, abandoned, clock=trio.testing.MockClock())
    assert world.races.stats.strategies["premium"].timeouts == 1  # handed off, then timed out
    stats = world.races.stats.strategies  # the best leg gets the one slot
    assert (stats["multimodal"].cancelled, stats["local"].cancelled) == (1, 1)


def test_the_schedules_reach_the_start_policies() -> None:
    """One hand-written schedule per policy window: a hedge started at its
    delay, a hedge skipped by an answer, on_failure started by a failure,
    upgrade_only kept for the upgrade, a budget refusing a leg."""
    hedge = [("request", "first", 100.0, False), ("tick", 1.0)]
    starts: dict[str, Any] = {"premium": {"after": 0.5}}
    world = trio.run(partial(play, 4, hedge, starts=starts), clock=trio.testing.MockClock())
    assert world.backend.calls["premium"] == 1  # started at 0.5 s, nobody answered
    skipped = [
        ("request", "first", 100.0, False),
        ("finish", "local", "valid"),
        ("commit", 1, False),
    ]
    starts = {"multimodal": {"after": 5.0}, "premium": "on_failure"}
    world = trio.run(partial(play, 4, skipped, starts=starts), clock=trio.testing.MockClock())
    assert world.answers == [("first", "local", False)]
    assert (world.backend.calls["multimodal"], world.backend.calls["premium"]) == (0, 0)
    assert world.races.stats.strategies["premium"].skipped == 1
    failing = [
        ("request", "first", 100.0, False),
        ("finish", "local", "error"),
        ("finish", "multimodal", "invalid"),
    ]
    starts = {"premium": "on_failure"}
    world = trio.run(partial(play, 4, failing, starts=starts), clock=trio.testing.MockClock())
    assert world.backend.calls["premium"] == 1  # after both lower ranks failed
    upgrade = [
        ("request", "first", 100.0, False),
        ("finish", "multimodal", "valid"),
        ("commit", 1, False),
        ("request", "first", 100.0, False),  # a hit: the upgrade starts the premium
    ]
    starts = {"premium": "upgrade_only"}
    world = trio.run(partial(play, 4, upgrade, starts=starts), clock=trio.testing.MockClock())
    assert world.backend.calls["premium"] == 1
    assert [a[1:] for a in world.answers] == [("multimodal", False), ("multimodal", True)]
    budget = [("request", "first", 100.0, False), ("request", "first", 100.0, True, 1)]
    world = trio.run(partial(play, 4, budget, calls_per_minute=1), clock=trio.testing.MockClock())
    assert world.backend.calls["premium"] == 1
    assert "a leg was refused at its budget" in world.reached
