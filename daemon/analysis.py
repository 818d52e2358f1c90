"""``analyze`` in front of the race: cache read, single flight, upgrade on hit.

``RaceManager.analyze`` is SPEC §4 steps 1, 2, 3 and 9: answer from the best
cached event when it counts (``wait: "best"`` wants the top rank), else join
the race already running for the key, else start one; a hit below the top
rank, with the input at hand, starts the better strategies in the background
(``_upgrade``), once per ``llm.upgrade_retry_after`` after a failure. The
request waits on the race's events under its own deadline; the race's legs
never belong to it.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import time
from typing import TYPE_CHECKING, Final

import msgspec
import trio

from daemon.config import MIB
from daemon.errors import AllStrategiesFailed, DeadlineExceeded, Overloaded
from daemon.logs import conversation, conversation_id, fast_info
from daemon.models import AnalyzeResult, AnswerProvenance, CacheKey, Event, MergeStep
from daemon.race import Accepted, Backend, EventStore, Race, RaceContext, failure_message
from daemon.race import Wait as Wait
from daemon.store.fleet_spend import FleetBudget

if TYPE_CHECKING:
    from daemon.config import Config
    from daemon.providers import ImageInput
    from daemon.stats import Stats
    from daemon.store.fleet import Fleet, FleetEvent
    from daemon.supervisor import Supervisor

logger = logging.getLogger(__name__)

STEP_MEMO: Final = 4096  # converted payloads kept, as many as the store's best-event memo
STEP_MEMO_BYTES: Final = 32 * MIB  # ... and at most this much of their JSON
STEP_MEMO_LARGEST: Final = 1 * MIB  # a larger payload is converted on every hit instead


class RaceManager:
    """The races in flight, by key, and what every race needs."""

    def __init__(
        self,
        config: Config,
        store: EventStore,
        supervisor: Supervisor,
        providers: dict[str, Backend],
        stats: Stats,
        local: dict[str, Backend] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.supervisor = supervisor
        self.providers = providers
        self.stats = stats
        self.races: dict[CacheKey, Race] = {}
        self.ctx = RaceContext(
            config, store, supervisor, providers, stats, self.finished, local=local
        )
        stats.spend.warn_unenforceable(config)  # a usd_per_day no known cost reaches
        self._ids = itertools.count(1)
        # event id -> (its payload converted, the size of that step's JSON)
        self._steps: dict[int, tuple[MergeStep, int]] = {}
        self._step_bytes = 0
        self._rank_of = config.rank_of()
        self.top_rank = max((s.rank for s in config.strategies), default=0)
        self.image_bytes = 0  # held by the races in ``races``
        # The fleet's read-through (docs/fleet.md), set by the app; None: alone.
        self._fleet: Fleet | None = None
        self.strategies = list(config.strategies)  # those races and upgrades start
        self.not_configured: dict[str, str] = {}  # left out (``leave_out``): name -> why

    @property
    def fleet(self) -> Fleet | None:
        return self._fleet

    @fleet.setter
    def fleet(self, fleet: Fleet | None) -> None:
        """Fleet mode: also the server the budgets count on (daemon/store/fleet_spend.py)."""
        self._fleet = fleet
        spend = self.stats.spend
        spend.fleet = FleetBudget(fleet, spend.now) if fleet is not None else None

    def leave_out(self, not_configured: dict[str, str]) -> None:
        """Strategies that can never run as configured (no API key, no ocr
        extra), known at start: no race or upgrade starts them, and the top
        rank is the best of those that can run. -32001 still lists them."""
        self.not_configured = dict(not_configured)
        self.strategies = [s for s in self.config.strategies if s.name not in not_configured]
        self.top_rank = max((s.rank for s in self.strategies), default=0)
        self.stats.not_configured = self.not_configured

    def finished(self, race: Race) -> None:
        if self.races.get(race.key) is race:
            del self.races[race.key]
            self.image_bytes -= len(race.image.url)
        if self.fleet is not None:  # the fleet lease goes once its results are published
            answer = race.outcome().answer
            self.fleet.leases.finished(race.key, answer.event_id if answer is not None else None)
            failed = [  # what counts in the upgrade retry window, for every host
                name
                for name, why in race.failures().items()
                if why["error"] not in ("cancelled", "budget_exhausted")
            ]
            self.fleet.share_failures(race.key, failed, self.config.llm.upgrade_retry_after)
        failed_at = self.ctx.failed_at
        if len(failed_at) > 10_000:  # forget failures older than the retry window
            horizon = trio.current_time() - self.config.llm.upgrade_retry_after
            for key in [k for k, t in failed_at.items() if t < horizon]:
                del failed_at[key]

    def _cached_step(self, event: Event) -> MergeStep | None:
        """The event's payload as a MergeStep, converted once per event: an
        event never changes, and the conversion is most of a hit's cost."""
        memo = self._steps.get(event.id)
        if memo is not None:
            return memo[0]
        try:
            step = _DECODE_STEP.decode(event.payload)
        except msgspec.DecodeError:  # and ValidationError, its subclass
            logger.warning("cached event %d is not a MergeStep; racing instead", event.id)
            return None
        size = len(event.payload)  # the JSON text the step came from
        if size > STEP_MEMO_LARGEST:
            return step
        self._steps[event.id] = (step, size)
        self._step_bytes += size
        while len(self._steps) > STEP_MEMO or self._step_bytes > STEP_MEMO_BYTES:
            oldest = next(iter(self._steps))  # the oldest converted
            self._step_bytes -= self._steps.pop(oldest)[1]
        return step

    def _room_for(self, image: ImageInput) -> dict[str, int] | None:
        """None when one more race on ``image`` fits ``llm.max_races`` and
        ``llm.max_race_image_mb``; else the figures for the refusal."""
        llm = self.config.llm
        size = len(image.url)
        if len(self.races) < llm.max_races and (
            self.image_bytes + size <= llm.max_race_image_mb * MIB
        ):
            return None
        return {
            "races": len(self.races),
            "max_races": llm.max_races,
            "image_bytes": self.image_bytes,
            "max_race_image_bytes": llm.max_race_image_mb * MIB,
        }

    def _new_race(self, key: CacheKey, image: ImageInput, floor: float = -math.inf) -> Race:
        race_id = f"{int(time.time())}-{next(self._ids)}"
        race = Race(self.ctx, key, image, race_id, floor=floor)
        self.races[key] = race
        self.image_bytes += len(image.url)
        return race

    async def analyze(
        self,
        key: CacheKey,
        image: ImageInput | None,
        *,
        wait: Wait,
        refresh: bool,
        deadline: float,
    ) -> AnalyzeResult:
        """Answer from the cache, or from a race (joined or started).

        Raises DeadlineExceeded (the race goes on), AllStrategiesFailed, or
        MissingInput when the key is not cached and no image was given."""
        with conversation(key.session_id):
            return await self._analyze(key, image, wait, refresh, deadline)

    def cached_answer(
        self, key: CacheKey, image: ImageInput | None, wait: Wait
    ) -> AnalyzeResult | None:
        """Step 1 of SPEC §4: the answer from the cache, if it counts; synchronous."""
        # conversation_id set and reset by hand: this runs for every hit, and
        # the context manager costs three times as much.
        token = conversation_id.set(key.session_id)
        try:
            started = trio.current_time()
            event = self.store.best(key.session_id, key.category, key.resource, key.scene)
            if event is None:
                return None
            step = self._cached_step(event)
            if step is None:
                return None
            rank = self._rank_of(event.strategy)
            if wait == "best" and rank < self.top_rank:
                return None
            return self._from_cache(key, event, step, image, rank, started)
        finally:
            conversation_id.reset(token)

    async def _analyze(
        self, key: CacheKey, image: ImageInput | None, wait: Wait, refresh: bool, deadline: float
    ) -> AnalyzeResult:
        started = trio.current_time()
        floor = -math.inf  # what a result must outrank to be worth more than the cache
        if not refresh:
            may_upgrade = True  # with a fleet: while holding the key's lease
            took = False  # this request took that lease (only it gives it back here)
            if self.fleet is not None and key not in self.races:  # once, before racing
                rank = functools.partial(self._cached_rank, key)
                may_upgrade, record, took = await self.fleet.before_hit(
                    key, rank, self.top_rank, self.ctx.failed_at
                )
                fleet_hit = self._fleet_answer(record, wait, started) if record else None
                if fleet_hit is not None:
                    return fleet_hit
            cached = self.cached_answer(key, image if may_upgrade else None, wait)
            no_race = cached is not None or image is None  # nothing will race it here
            if self.fleet is not None and took and no_race and key not in self.races:
                self.fleet.leases.finished(key, None)  # taken for an upgrade that did not start
            if cached is not None:
                return cached
            floor = self._cached_rank(key)  # wait=best, and the cache holds less than the top
        strategies = self.strategies
        race = self.races.get(key)
        if race is None and self.fleet is not None and image is not None and not refresh:
            leased = await self._fleet_lease(key, image, wait, deadline, started, took)
            if isinstance(leased, AnalyzeResult):
                return leased  # another host's result, now in the local store
            race = leased
            floor = max(floor, self._cached_rank(key))  # what the wait brought in
        if race is not None:
            self.stats.coalesced += 1
            race.widen(strategies, floor)  # an upgrade joined by a refresh starts the rest
        else:
            if image is None:
                raise MissingInput()
            refused = self._room_for(image)
            if refused is not None:
                raise Overloaded("too many screenshots are being raced; retry shortly", refused)
            self.stats.misses += 1
            race = self._new_race(key, image, floor)
            race.start([s for s in strategies if s.rank > floor], background=False)
        outcome = await race.answer(wait, deadline)
        if outcome is None:
            raise DeadlineExceeded(data={"pending": race.outcome().pending})
        accepted = outcome.answer
        if accepted is None or self._rank_of(accepted.strategy) < floor:
            # The race found nothing better than the cached event: that is
            # the best there is (an upgrade that failed, or a race started
            # by a refresh that only a lower strategy won).
            cached = None if refresh else self.cached_answer(key, image, "first")
            if cached is not None:
                return cached
        if accepted is None:
            never = {
                n: {"error": "not_configured", "detail": why}
                for n, why in self.not_configured.items()
            }
            failures = {**never, **race.failures()}
            raise AllStrategiesFailed(failure_message(failures), {"strategies": failures})
        logger.info(
            "merge_step [%s|%s] Conversation: %d messages",
            accepted.strategy,
            accepted.model,
            len(accepted.step.conversation),
        )
        return _answer(accepted, False, started, outcome.pending)

    async def _fleet_lease(
        self,
        key: CacheKey,
        image: ImageInput,
        wait: Wait,
        deadline: float,
        started: float,
        took: bool = False,
    ) -> Race | AnalyzeResult | None:
        """One race per key fleet-wide (daemon/store/fleet_lease.py): None when
        this host is to race (it holds the lease, or races alone), another
        host's result answered from the local store, or the race this host
        started meanwhile. Raises DeadlineExceeded while another host races."""
        assert self.fleet is not None
        needed = self.top_rank if wait == "best" else -math.inf
        taken, record = await self.fleet.leases.take(
            key, deadline, lambda: self._cached_rank(key), needed, self.top_rank
        )
        if taken == "deadline":
            raise DeadlineExceeded(data={"pending": []})
        if taken == "hit":  # no upgrade here: the holder's better legs may still run
            if record is not None:
                cached = self._fleet_answer(record, wait, started)
            else:
                cached = self.cached_answer(key, None, wait)
            if cached is not None:
                return cached
        if taken == "won" and (key in self.races or self._room_for(image) is not None):
            self.fleet.leases.finished(key, None)  # not racing after all
        elif (
            taken == "held" and took and key not in self.races and self._room_for(image) is not None
        ):
            self.fleet.leases.finished(key, None)  # this request's upgrade lease, no race
        return self.races.get(key)

    def _fleet_answer(self, record: FleetEvent, wait: Wait, started: float) -> AnalyzeResult | None:
        """Another host's result, answered as cached while it is being stored
        here (not yet committed: ``event_id`` null, ``origin`` its maker)."""
        if wait == "best" and self._rank_of(record.strategy) < self.top_rank:
            return None
        try:
            step = _DECODE_STEP.decode(record.payload)
        except msgspec.DecodeError:
            logger.warning("Fleet record from %s is not a MergeStep", record.origin.host)
            return None
        self.stats.hits += 1
        logger.info(
            "merge_step [CACHED|%s|%s] Conversation: %d messages",
            record.strategy,
            record.model,
            len(step.conversation),
        )
        accepted = Accepted(
            step=step,
            strategy=record.strategy,
            model=record.model,
            event_id=None,
            created_at=record.ts,
        )
        answer = _answer(accepted, True, started, [])
        provenance = msgspec.structs.replace(answer.provenance, origin=record.origin)
        return msgspec.structs.replace(answer, provenance=provenance)

    def _cached_rank(self, key: CacheKey) -> float:
        """The rank of the event the cache would serve for ``key`` (-inf: none)."""
        event = self.store.best(key.session_id, key.category, key.resource, key.scene)
        if event is None or self._cached_step(event) is None:
            return -math.inf
        return self._rank_of(event.strategy)

    def _from_cache(
        self,
        key: CacheKey,
        event: Event,
        step: MergeStep,
        image: ImageInput | None,
        rank: int,
        started: float,
    ) -> AnalyzeResult:
        self.stats.hits += 1
        fast_info(  # logger.info at half the cost: a line per hit (daemon/logs.py)
            logger,
            "merge_step [CACHED|%s|%s] Conversation: %d messages",
            event.strategy,
            event.model,
            len(step.conversation),
        )
        pending: list[str] = []
        if rank < self.top_rank and image is not None:
            pending = self._upgrade(key, image, rank)
        cached = Accepted(
            step=step,
            strategy=event.strategy,
            model=event.model,
            event_id=event.id,
            created_at=event.ts,
        )
        answer = _answer(cached, True, started, pending)
        origin = event.provenance.origin if event.provenance is not None else None
        if origin is None:
            return answer
        provenance = msgspec.structs.replace(answer.provenance, origin=origin)  # another host's
        return msgspec.structs.replace(answer, provenance=provenance)

    def _upgrade(self, key: CacheKey, image: ImageInput, rank: int) -> list[str]:
        """Start the strategies that outrank a cached event, in the background,
        unless one is running or failed within ``llm.upgrade_retry_after``."""
        if key in self.races:  # of what runs, only what outranks the cached event
            pending = self.races[key].outcome().pending
            return [name for name in pending if self._rank_of(name) > rank]
        now = trio.current_time()
        window = self.config.llm.upgrade_retry_after
        better = [s for s in self.strategies if s.rank > rank]
        if not better or any(
            now - self.ctx.failed_at.get((key, s.name), -math.inf) < window for s in better
        ):
            return []
        if self._room_for(image) is not None:
            logger.warning("No room for an upgrade race now (llm.max_races, max_race_image_mb)")
            return []
        self.stats.upgrades += 1
        race = self._new_race(key, image, floor=rank)  # only a better result is worth storing
        logger.info(
            "Cached result is below the top rank: starting %s in the background",
            ", ".join(s.name for s in better),
        )
        race.start(better, background=True)
        return race.outcome().pending


def _answer(result: Accepted, cached: bool, started: float, pending: list[str]) -> AnalyzeResult:
    return AnalyzeResult(
        result=result.step,
        provenance=AnswerProvenance(
            strategy=result.strategy,
            model=result.model,
            cached=cached,
            event_id=result.event_id,
            created_at=result.created_at,
            latency_ms=round((trio.current_time() - started) * 1000, 1),
        ),
        pending=pending,
    )


_DECODE_STEP: Final = msgspec.json.Decoder(MergeStep)


class MissingInput(Exception):
    """Not in the cache, and no image to race on."""
