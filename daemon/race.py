"""The strategy race: rank rules and hand-off to the supervisor.

A ``Race`` exists per cache key while any of its legs runs (``analysis.py``
finds it for single flight). Every leg is
a task of the supervisor's nursery from the start, so nothing a request does
(answering, timing out, disconnecting) cancels it; a request only waits on
the race's events under its own deadline. Legs are started before any
per-leg work, so none gets a head start.

Rules (SPEC §4):

* a valid result is appended to the store before anyone is answered with it;
* a result is accepted only if it outranks every result accepted so far; once
  one is accepted, lower-ranked legs still running are cancelled;
* the first accepted result answers ``wait: "first"``; legs of a higher rank
  still running are then handed off as background tasks (within
  ``llm.max_background_tasks``, else cancelled with a warning) and cancelled
  ``llm.premium_cache_timeout`` after that answer;
* ``wait: "best"`` is answered when no running leg can beat what is accepted;
* a leg's failure (error, timeout, invalid output) is recorded and never
  touches another leg; when every leg has failed, waiters get -32001.

The log lines are the ones the operators know from the old orchestrator
(SPEC §6), each tagged with the conversation id.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import msgspec
import trio

from daemon.errors import StoreError, StrategyError, StrategyErrorKind
from daemon.extract import parse_merge_step
from daemon.logs import conversation
from daemon.models import CacheKey, Event, MergeStep, Provenance

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.config import Config, StrategyConfig
    from daemon.providers import Completion, ImageInput
    from daemon.stats import Stats
    from daemon.supervisor import Supervisor, TaskHandle


class Backend(Protocol):
    """What runs one strategy: a ``Provider`` (openai_chat) or ``LocalOcr``."""

    async def complete(self, strategy: StrategyConfig, image: ImageInput) -> Completion: ...


class EventStore(Protocol):
    """What the race needs of the store (``daemon.store.Store`` in the daemon)."""

    def best(
        self, session_id: str, category: str, resource: str, scene: str = ""
    ) -> Event | None: ...

    async def append(
        self,
        session_id: str,
        category: str,
        resource: str,
        scene: str,
        payload: dict[str, Any],
        provenance: Provenance | None = None,
    ) -> int: ...


logger = logging.getLogger(__name__)

STORE_GRACE: Final = 10.0  # seconds a result in hand may take to be stored, shielded


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """A valid result, stored (``event_id``) unless the store failed."""

    step: MergeStep
    strategy: str
    model: str
    event_id: int | None
    created_at: float


class Leg:
    __slots__ = ("background", "cancel_reason", "deadline", "error", "handle", "state", "strategy")

    def __init__(self, strategy: StrategyConfig) -> None:
        self.strategy = strategy
        self.state: Literal["running", "done", "failed"] = "running"
        self.error: StrategyError | None = None
        self.handle: TaskHandle | None = None
        self.background = False
        self.cancel_reason: str | None = None
        self.deadline = math.inf

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def rank(self) -> int:
        return self.strategy.rank


class RaceContext:
    """What every race needs, shared by all of them (built by ``RaceManager``)."""

    def __init__(
        self,
        config: Config,
        store: EventStore,
        supervisor: Supervisor,
        providers: dict[str, Backend],
        stats: Stats,
        finished: Callable[[Race], None],
        local: dict[str, Backend] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.supervisor = supervisor
        self.providers = providers  # by provider name
        self.local = local or {}  # local_ocr strategies, by strategy name
        self.stats = stats
        self.finished = finished
        # (key, strategy) -> trio time of the last failed attempt
        self.failed_at: dict[tuple[CacheKey, str], float] = {}


class Race:
    def __init__(self, ctx: RaceContext, key: CacheKey, image: ImageInput, race_id: str):
        self.ctx = ctx
        self.key = key
        self.image = image
        self.race_id = race_id
        self.legs: dict[str, Leg] = {}
        self.first = trio.Event()  # an answer exists, or every leg has ended
        self.best = trio.Event()  # nothing running can beat the accepted answer
        self.accepted: Accepted | None = None
        self.best_rank = -math.inf
        self.answered_at: float | None = None
        self.started_at = trio.current_time()

    def running(self) -> list[Leg]:
        return [leg for leg in self.legs.values() if leg.state == "running"]

    def pending(self) -> list[str]:
        return [leg.name for leg in sorted(self.running(), key=lambda leg: -leg.rank)]

    def failures(self) -> dict[str, dict[str, str]]:
        return {
            leg.name: {"error": leg.error.kind, "detail": leg.error.detail}
            for leg in self.legs.values()
            if leg.error is not None
        }

    def start(self, strategies: list[StrategyConfig], *, background: bool) -> None:
        """Start one leg per strategy, all before any of them runs.

        The lowest-ranked leg (the fastest model, as a rule) sends its request
        first: the others pass one checkpoint before theirs. trio runs the
        tasks of a batch in either order, so otherwise half the time the
        premium's request (~0.2 ms of CPU to build and send) would go out
        before the one whose answer is awaited."""
        for strategy in sorted(strategies, key=lambda s: s.rank):
            self.legs[strategy.name] = Leg(strategy)
        supervisor = self.ctx.supervisor
        deadline = math.inf
        if background:  # an upgrade: nobody waits, the premium timeout runs now
            deadline = trio.current_time() + self.ctx.config.llm.premium_cache_timeout
        for index, leg in enumerate(list(self.legs.values())):
            leg.background = background
            leg.deadline = deadline
            leg.handle = supervisor.spawn(
                leg.name, self._run_leg, leg, index > 0, deadline=deadline, background=background
            )
            if leg.handle is None:  # the background cap
                self._end(leg, StrategyError("cancelled", "background task cap reached"))

    # ------------------------------------------------------------ one leg --

    async def _run_leg(self, leg: Leg, after_the_first: bool = False) -> None:
        with conversation(self.key.session_id):
            started = trio.current_time()
            counters = self.ctx.stats.strategies.get(leg.name)
            if counters is not None:
                counters.calls += 1
            try:
                if after_the_first:
                    await trio.lowlevel.checkpoint()  # see ``start``
                completion = await self._call(leg)
                if leg.background:
                    logger.info("Background: Premium task completed, processing result")
                step = parse_merge_step(completion.text)
            except StrategyError as error:
                if leg.background and error.kind == "timeout":
                    logger.warning("Premium task timeout after %gs", leg.strategy.timeout)
                self._end(leg, error)
                return
            except Exception as exc:
                # A bug in a backend: this leg fails, the race goes on (a leg
                # left "running" would hold the key's single flight forever).
                logger.exception("%s failed with an internal error", leg.name)
                detail = f"internal error: {type(exc).__name__}"
                self._end(leg, StrategyError("invalid_output", detail))
                return
            finally:
                # Cancelled (Cancelled is on its way up): say why, once.
                if leg.state == "running" and self._cancelled_now(leg):
                    self._end(leg, self._cancellation(leg))
            ms = (trio.current_time() - started) * 1000
            if counters is not None:
                counters.latencies_ms.append(ms)
            await self._accept(leg, step, completion, ms)

    def _cancelled_now(self, leg: Leg) -> bool:
        assert leg.handle is not None
        return leg.handle.scope.cancel_called or trio.current_time() >= leg.deadline

    def _cancellation(self, leg: Leg) -> StrategyError:
        if leg.cancel_reason is not None:
            return StrategyError("cancelled", leg.cancel_reason)
        if trio.current_time() >= leg.deadline:
            timeout = self.ctx.config.llm.premium_cache_timeout
            logger.warning("Premium task timeout after %gs", timeout)
            return StrategyError("timeout", f"premium_cache_timeout ({timeout:g}s) passed")
        logger.info("Premium caching cancelled")
        return StrategyError("cancelled", "cancelled (daemon stopping)")

    async def _call(self, leg: Leg) -> Completion:
        strategy = leg.strategy
        if strategy.kind == "local_ocr":
            backend = self.ctx.local.get(strategy.name)
        else:
            backend = self.ctx.providers.get(strategy.provider or "")
        if backend is None:
            raise StrategyError("not_configured", f"no runnable {strategy.kind} strategy here")
        try:
            with trio.fail_after(strategy.timeout):
                return await backend.complete(strategy, self.image)
        except trio.TooSlowError:
            raise StrategyError("timeout", f"no answer within {strategy.timeout:g}s") from None

    async def _accept(self, leg: Leg, step: MergeStep, completion: Completion, ms: float) -> None:
        if leg.rank <= self.best_rank:  # something at least as good is accepted
            self._end(leg, None)
            return
        self.best_rank = leg.rank
        for other in self.running():
            if other is not leg and other.rank < leg.rank:
                other.cancel_reason = "higher-ranked result accepted"
                if other.handle is not None:
                    other.handle.scope.cancel(reason="higher-ranked result accepted")
        model = completion.served_model or leg.strategy.model
        if leg.background:
            logger.info("Background: Premium result is valid")
            logger.info("Background: Logging premium extraction details")
        log_extraction(leg.name, model, step)
        payload: dict[str, Any] = msgspec.to_builtins(step)
        payload["_model"] = model
        payload["_strategy"] = leg.name
        provenance = Provenance(
            latency_ms=round(ms, 1),
            provider=leg.strategy.provider,
            requested_model=leg.strategy.model,
            served_model=completion.served_model,
            usage=completion.usage,
            race_id=self.race_id,
        )
        event_id = None
        key = self.key
        # A valid result in hand is stored even if its leg is cancelled now.
        with trio.CancelScope(shield=True), trio.move_on_after(STORE_GRACE):
            try:
                event_id = await self.ctx.store.append(
                    key.session_id, key.category, key.resource, key.scene, payload, provenance
                )
            except StoreError as exc:
                logger.error("Failed to cache premium result: %s", exc)
        if event_id is not None and leg.background:
            logger.info("Background: Premium result cached successfully")
        counters = self.ctx.stats.strategies.get(leg.name)
        if counters is not None:
            counters.wins += 1
            if completion.usage is not None and completion.usage.total_tokens:
                counters.tokens += completion.usage.total_tokens
        self.accepted = Accepted(
            step=step, strategy=leg.name, model=model, event_id=event_id, created_at=time.time()
        )
        self._end(leg, None)
        if not self.first.is_set():
            self.answered_at = trio.current_time()
            self.first.set()
            self._hand_off()

    def _hand_off(self) -> None:
        """The answer is out: higher-ranked legs go on in the background."""
        supervisor = self.ctx.supervisor
        timeout = self.ctx.config.llm.premium_cache_timeout
        assert self.answered_at is not None
        for leg in self.running():
            if leg.background or leg.handle is None:
                continue
            if supervisor.adopt(leg.handle):
                leg.background = True
                leg.deadline = self.answered_at + timeout
                supervisor.set_deadline(leg.handle, leg.deadline)
                logger.info("Premium task still running, will cache in background")
                logger.info("Background: Waiting for premium task to complete...")
            else:
                leg.cancel_reason = "background task cap reached"
                leg.handle.scope.cancel(reason="background task cap reached")

    def _end(self, leg: Leg, error: StrategyError | None) -> None:
        if leg.state != "running":
            return
        leg.state = "failed" if error is not None else "done"
        leg.error = error
        if error is not None:
            self._count_failure(leg, error)
            if leg.background and error.kind not in ("timeout", "cancelled"):
                logger.warning("Failed to cache premium result: %s", error)
            elif not leg.background:
                logger.info("%s failed: %s", leg.name, error)
            self.ctx.failed_at[(self.key, leg.name)] = trio.current_time()
        running = self.running()
        if not running or all(other.rank <= self.best_rank for other in running):
            self.best.set()
        if not running:
            self.first.set()
            self.ctx.finished(self)

    def _count_failure(self, leg: Leg, error: StrategyError) -> None:
        counters = self.ctx.stats.strategies.get(leg.name)
        if counters is None:
            return
        field: dict[StrategyErrorKind, str] = {
            "invalid_output": "invalid",
            "timeout": "timeouts",
            "cancelled": "cancelled",
        }
        name = field.get(error.kind, "errors")
        setattr(counters, name, getattr(counters, name) + 1)


def log_extraction(strategy: str, model: str, step: MergeStep) -> None:
    """The extraction detail lines of SPEC §6."""
    tag = f"{strategy}|{model}"
    p = step.participants
    logger.info("merge_step [%s] Participants: User='%s', Target='%s'", tag, p.user, p.talker)
    logger.info("FINAL [%s] Layout: left=%s, right=%s", tag, step.layout.left, step.layout.right)
    logger.info("FINAL [%s] Extracted %d bubbles (sorted top->bottom):", tag, len(step.bubbles))
    for i, b in enumerate(step.bubbles, start=1):
        box = ",".join(str(v) for v in b.bbox)
        logger.info("  [%d] %s(%s) OK bbox=[%s]: %s", i, b.speaker, b.side, box, b.text)
