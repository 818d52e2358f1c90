"""The strategy race: one state per leg, everything else computed from them.

A ``Race`` exists per cache key while any of its legs is live (``analysis.py``
finds it for single flight). Every leg is a task of the supervisor's nursery
from the start, so nothing a request does (answering, timing out,
disconnecting) cancels it; a request only waits on the race (``Race.answer``)
under its own deadline.

Each leg has exactly one state::

    held ──released──▶ running ──valid, outranks every result accepted──▶ storing ──▶ stored
      │                   │                                                (shielded append)
      │                   ├──error, timeout, invalid output, budget──▶ failed
      │                   └──outranked, cap, deadline, drain──▶ cancelled
      └──a result accepted, no cap slot, deadline, drain──▶ skipped

A leg is ``held`` when its strategy's ``start`` (SPEC §7) says not yet, in a
race that answers a request (an upgrade on hit starts every leg at once):

* ``always``: never held;
* ``{after: s}`` (a hedged request): released ``s`` seconds after the leg was
  added, or at once when no other started leg can still answer (they all
  failed, or ended without an answer: then nothing is left to wait for and
  the leg would start at its delay anyway, at the same cost);
* ``on_failure``: released when every lower-ranked leg has failed (an
  error, an invalid answer, its budget); skipped when they have all ended
  but one was cancelled (nothing it guards against failed);
* ``upgrade_only``: never in such a race, only in upgrades.

A ``wait: "best"`` request releases every held leg (it asks for the best).
A held leg is ``skipped`` (never started, never a call) as soon as any
result is accepted: a lower one is the answer it was held back for, a
higher one outranks it; and when it is cancelled before it started (no
slot at the background cap, ``premium_cache_timeout``, the drain): that is
no failure of the strategy (no ``timeouts``, no upgrade retry window).
``Spend.admit`` is asked before a leg's task is spawned (a held leg's: when
it is released): at its budget the leg fails at once, without a task, with
``budget_exhausted``, and the race goes on (a refusal is no failure of the
key either: an upgrade is tried again on the next hit). Admission reserves
a call of the minute (a ``Ticket``); the leg's task gives it back if it
ends without a request sent (daemon/spend.py).
Held legs are live: they are in ``pending``, keep ``wait: "best"`` waiting
and the race unfinished, and are handed to the background after the
running ones when nobody waits any more (a running leg's call is paid for
already: it gets a slot at the cap first, a held leg without one is skipped).

What a waiter sees (the answer so far, whether ``wait: "best"`` may answer,
``pending``, whether the race is finished) is computed by one function,
``outcome``, from those states alone, so no two fields can disagree however
the store groups its commits. Rules (SPEC §4):

* a result is stored before anyone is answered with it: only a ``stored`` leg
  is an answer, and the answer is the highest-ranked stored leg;
* a valid result is accepted (``storing``) only if it outranks every result
  accepted so far (and, for an upgrade, the cached event); accepting one
  cancels the lower-ranked legs still running, in the same step;
* when a request is answered, the legs still running that outrank the answer
  become background tasks (``llm.max_background_tasks``, else cancelled with a
  warning), cancelled ``llm.premium_cache_timeout`` after that answer;
* when the last waiting request leaves without an answer (its deadline, its
  client gone), every running leg becomes a background task the same way:
  work nobody waits for is counted and bounded like any background work;
* a leg's failure never touches another leg; when every leg has ended
  without a stored result, waiters get -32001.

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

from daemon.config import StartAfter
from daemon.errors import StoreError, StrategyError, StrategyErrorKind
from daemon.extract import parse_completion
from daemon.logs import conversation
from daemon.models import CacheKey, Event, MergeStep, Provenance
from daemon.spend import CURRENT_TICKET, Ticket, cost_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from daemon.config import Config, StartPolicy, StrategyConfig
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

LegState = Literal["held", "running", "storing", "stored", "failed", "cancelled", "skipped"]
Wait = Literal["first", "best"]


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """A valid result, stored (``event_id``) unless the store failed (logged)."""

    step: MergeStep
    strategy: str
    model: str
    event_id: int | None
    created_at: float


class Leg:
    """One strategy's attempt in one race."""

    __slots__ = (
        "added",
        "background",
        "deadline",
        "error",
        "handle",
        "release",
        "result",
        "state",
        "strategy",
        "ticket",
    )

    def __init__(self, strategy: StrategyConfig, *, held: bool = False) -> None:
        self.strategy = strategy
        self.state: LegState = "held" if held else "running"
        self.release = trio.Event()  # set: a held leg may start
        self.ticket: Ticket | None = None  # admitted by Spend: a call reserved
        self.added = trio.current_time()
        self.error: StrategyError | None = None  # failed or cancelled: why
        self.result: Accepted | None = None  # stored: what
        self.handle: TaskHandle | None = None
        self.background = False  # counted by the supervisor as background work
        self.deadline = math.inf  # premium_cache_timeout, once in the background

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def rank(self) -> int:
        return self.strategy.rank

    @property
    def live(self) -> bool:
        return self.state == "running" or self.state == "storing" or self.state == "held"


class Outcome(msgspec.Struct, frozen=True):
    """What the waiters of a race see, derived from its legs' states alone."""

    answer: Accepted | None  # the highest-ranked stored result
    pending: list[str]  # live legs that outrank the answer (all live legs without one)
    settled: bool  # nothing live can beat the answer: ``wait: "best"`` may answer
    finished: bool  # no leg is live

    def ready(self, wait: Wait) -> bool:
        if wait == "first":
            return self.answer is not None or self.finished
        return self.settled


def outcome(legs: Iterable[Leg]) -> Outcome:
    """The one function from leg states to what a waiter sees."""
    best: Leg | None = None
    live: list[Leg] = []
    for leg in legs:
        if leg.state == "stored" and (best is None or leg.rank > best.rank):
            best = leg
        elif leg.live:
            live.append(leg)
    floor = best.rank if best is not None else -math.inf
    above = sorted((leg for leg in live if leg.rank > floor), key=lambda leg: -leg.rank)
    return Outcome(
        answer=best.result if best is not None else None,
        pending=[leg.name for leg in above],
        settled=not above,
        finished=not live,
    )


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
    """The legs racing for one key, and the requests waiting on them.

    ``floor`` is the rank a result must beat to be worth storing: the cached
    event's rank for an upgrade, nothing for a miss."""

    def __init__(
        self,
        ctx: RaceContext,
        key: CacheKey,
        image: ImageInput,
        race_id: str,
        *,
        floor: float = -math.inf,
    ) -> None:
        self.ctx = ctx
        self.key = key
        self.image = image
        self.race_id = race_id
        self.floor = floor
        self.legs: list[Leg] = []
        self.waiters = 0
        self.best_waiters = 0  # of ``waiters``, those with ``wait: "best"``
        self.ended = False
        self._changed = trio.Event()

    def outcome(self) -> Outcome:
        return outcome(self.legs)

    def failures(self) -> dict[str, dict[str, Any]]:
        """Each failed leg's kind and detail, and the figures its error has
        (``figures``: a local_ocr queue's position, expected wait...)."""
        return {
            leg.name: {
                "error": leg.error.kind,
                "detail": leg.error.detail,
                **getattr(leg.error, "figures", {}),
            }
            for leg in self.legs
            if leg.error is not None
        }

    def start(self, strategies: Iterable[StrategyConfig], *, background: bool) -> None:
        """Start one leg per strategy not already in the race, all before any
        of them runs.

        ``background``: an upgrade, which nobody waits for; its legs count as
        background work from the start and end ``premium_cache_timeout``
        from now, and start whatever their ``start`` policy. Otherwise an
        ``upgrade_only`` strategy is left out and the other policies may hold
        their leg (module docstring). The lowest-ranked leg (the fastest
        model, as a rule) sends its request first: the others pass one
        checkpoint before theirs. trio runs the tasks of a batch in either
        order, so otherwise half the time the premium's request (~0.2 ms of
        CPU to build and send) would go out before the one whose answer is
        awaited."""
        present = {leg.name for leg in self.legs}
        new = [
            Leg(s, held=not background and s.start != "always")
            for s in sorted(strategies, key=lambda s: s.rank)
            if s.name not in present and (background or s.start != "upgrade_only")
        ]
        self.legs += new
        supervisor = self.ctx.supervisor
        deadline = math.inf
        if background:
            deadline = trio.current_time() + self.ctx.config.llm.premium_cache_timeout
        refused: dict[int, StrategyError] = {}  # id(leg) -> at its budget: never spawned
        spawned = 0
        for leg in new:
            leg.background = background
            leg.deadline = deadline
            if leg.state == "running":  # a held leg asks when it is released
                admitted = self.ctx.stats.spend.admit(leg.strategy)
                if isinstance(admitted, StrategyError):
                    refused[id(leg)] = admitted
                    continue
                leg.ticket = admitted
            leg.handle = supervisor.spawn(
                leg.name, self._run_leg, leg, spawned > 0, deadline=deadline, background=background
            )
            if leg.handle is None and leg.ticket is not None:
                self.ctx.stats.spend.release(leg.ticket)  # no task: no call
            spawned += 1
        for leg in new:
            if id(leg) in refused:
                self._end(leg, refused[id(leg)])
            elif leg.handle is None:  # refused at the background cap
                self._end(leg, StrategyError("cancelled", "background task cap reached"))
        self._release_held()  # e.g. on_failure with nothing below it
        self._finish_if_done()  # no strategy at all

    def widen(self, strategies: Iterable[StrategyConfig], floor: float) -> None:
        """A request that counts results down to ``floor`` joins this race
        (an upgrade, which only races above the cached event's rank): the
        strategies above ``floor`` it lacks start now, attached."""
        if floor >= self.floor:
            return
        self.floor = floor
        above = self._accepted_rank()  # a strategy below an accepted result would lose anyway
        self.start([s for s in strategies if s.rank > above], background=False)

    # ------------------------------------------------------------ waiting --

    async def answer(self, wait: Wait, deadline: float) -> Outcome | None:
        """Wait until the outcome is ready for ``wait``, or until ``deadline``
        (None then). Cancelled (the client is gone): nothing but this wait
        ends. A request that leaves without an answer, as the last one
        waiting, hands every running leg to the background; one that gets an
        answer hands off the running legs that outrank it, unless a
        ``wait: "best"`` request still waits for them (then they stay its
        legs, never cancelled at the background cap, until it leaves)."""
        self.waiters += 1
        if wait == "best":
            self.best_waiters += 1
            self._release_held()  # the best is asked for: no hedging
        result: Outcome | None = None
        try:
            with trio.move_on_at(deadline):
                while not (now := self.outcome()).ready(wait):
                    await self._changed.wait()
                result = now
        finally:
            self.waiters -= 1
            if wait == "best":
                self.best_waiters -= 1
            answer = self.outcome().answer
            if not self.waiters:
                self._hand_off(answer.strategy if answer is not None else None)
            elif answer is not None and not self.best_waiters:
                self._hand_off(answer.strategy)
        if result is not None:
            return self.outcome()  # the hand-off may have cancelled legs at the cap
        return None

    def _hand_off(self, answered_by: str | None) -> None:
        """Running legs that outrank the answer (every running leg when
        nobody waits any more: ``answered_by`` None) go on as background
        tasks for at most ``premium_cache_timeout``; past the cap they are
        cancelled."""
        floor = -math.inf
        if answered_by is not None:
            floor = next(leg.rank for leg in self.legs if leg.name == answered_by)
        supervisor = self.ctx.supervisor
        deadline = trio.current_time() + self.ctx.config.llm.premium_cache_timeout
        # The running legs get the slots first (their calls are paid for
        # already), the best of them first; then the held ones, which cost
        # nothing yet: one without a slot is skipped, never a running leg
        # cancelled for it.
        legs = [
            leg
            for leg in self.legs
            if leg.state in ("running", "held") and not leg.background and leg.rank > floor
        ]
        for leg in sorted(legs, key=lambda leg: (leg.state == "held", -leg.rank)):
            if not leg.live:
                continue  # skipped meanwhile (a held leg released early, then a result)
            assert leg.handle is not None
            if not supervisor.adopt(leg.handle):
                if leg.state == "held":
                    self._skip(leg, "background task cap reached")
                    self._notify()
                else:
                    self._cancel(leg, "background task cap reached")
                continue
            leg.background = True
            leg.deadline = deadline
            supervisor.set_deadline(leg.handle, deadline)
            if answered_by is not None:
                logger.info("Premium task still running, will cache in background")
            else:
                logger.info(
                    "No request waits for %s any more: it goes on in the background", leg.name
                )
            logger.info("Background: Waiting for premium task to complete...")

    # ------------------------------------------------------------ one leg --

    async def _run_leg(self, leg: Leg, after_the_first: bool = False) -> None:
        with conversation(self.key.session_id):
            counters = self.ctx.stats.strategies.get(leg.name)
            try:
                if leg.state == "held" and not await self._hold(leg):
                    return  # skipped: never started
                if leg.ticket is None:  # a held leg, released: its budget now
                    admitted = self.ctx.stats.spend.admit(leg.strategy)
                    if isinstance(admitted, StrategyError):
                        self._end(leg, admitted)
                        return
                    leg.ticket = admitted
                refused_here = await self.ctx.stats.spend.admit_fleet(leg.strategy, leg.ticket)
                if refused_here is not None:  # at the fleet's budget (fleet mode)
                    self._end(leg, refused_here)
                    return
                CURRENT_TICKET.set(leg.ticket)  # the provider's request takes it (Spend)
                started = trio.current_time()
                if counters is not None:
                    counters.calls += 1
                if after_the_first:
                    await trio.lowlevel.checkpoint()  # see ``start``
                completion = await self._call(leg)
                if leg.background and leg.state == "running":
                    logger.info("Background: Premium task completed, processing result")
                step = parse_completion(
                    completion.text, completion.image_size, completion.original_size
                )
            except StrategyError as error:
                if leg.background and error.kind == "timeout" and leg.state == "running":
                    logger.warning("Premium task timeout after %gs", leg.strategy.timeout)
                self._end(leg, error)
                return
            except Exception as exc:
                # A bug in a backend: this leg fails, the race goes on (a leg
                # left "running" would hold the key's single flight forever).
                logger.exception("%s failed with an internal error", leg.name)
                self._end(
                    leg, StrategyError("invalid_output", f"internal error: {type(exc).__name__}")
                )
                return
            except BaseException:
                # Cancelled by its deadline, the drain or the whole nursery
                # (Cancelled is on its way up): say why, once. Cancelled by
                # the race itself, the state already says so. A held leg
                # never started: skipped, no failure of its strategy.
                if leg.state == "held":
                    past = trio.current_time() >= leg.deadline
                    self._skip(leg, "premium_cache_timeout passed" if past else "cancelled")
                    self._notify()
                elif leg.state == "running":
                    self._end(leg, self._cancellation(leg))
                raise
            finally:
                if leg.ticket is not None:
                    self.ctx.stats.spend.release(leg.ticket)  # no request went out: given back
            if leg.state != "running" or self._cancelled_now(leg):
                return  # cancelled while its answer came in
            ms = (trio.current_time() - started) * 1000
            if counters is not None:
                counters.latencies_ms.append(ms)
            await self._store(leg, step, completion, ms)

    async def _hold(self, leg: Leg) -> bool:
        """Wait until the held leg may start (its ``after`` delay, or
        ``_release_held``); False when it was skipped meanwhile."""
        policy = leg.strategy.start
        after = policy.after if isinstance(policy, StartAfter) else math.inf
        with trio.move_on_at(leg.added + after):
            await leg.release.wait()
        if leg.state != "held":
            return False
        accepted = self._accepted_rank()
        if accepted >= leg.rank or (accepted > self.floor and not self.best_waiters):
            # Released, but a result came in before this task ran.
            self._skip(leg, "a result was accepted")
            self._notify()
            return False
        leg.state = "running"
        why = "its delay passed" if not leg.release.is_set() else "the others failed"
        if self.best_waiters:
            why = 'a wait: "best" request asks for it'
        logger.info("%s starts (start: %s): %s", leg.name, _policy_text(policy), why)
        return True

    def _release_held(self) -> None:
        """Release the held legs whose condition holds now (module docstring);
        skip an ``on_failure`` leg whose condition can no longer come."""
        for leg in self.legs:
            if leg.state != "held" or leg.release.is_set():
                continue
            if self.best_waiters:
                leg.release.set()
                continue
            if leg.strategy.start == "on_failure":
                others = [other for other in self.legs if other.rank < leg.rank]
            else:  # after: early only when no other started leg can still answer
                others = [o for o in self.legs if o is not leg and o.state != "held"]
            if any(other.live for other in others):
                continue
            if leg.strategy.start != "on_failure" or all(o.state == "failed" for o in others):
                # An ``after`` leg with nothing left to wait for would start at
                # its delay anyway (no valid answer can come): start it now.
                leg.release.set()
            else:
                self._skip(leg, "a lower-ranked strategy was cancelled, none failed")

    def _skip_held(self) -> None:
        """A result was accepted: the held legs not yet released will never
        be needed (a released one checks again when its task runs)."""
        for leg in self.legs:
            if leg.state == "held" and not leg.release.is_set():
                self._skip(leg, "a result was accepted")

    def _skip(self, leg: Leg, why: str) -> None:
        """A held leg will never start: it ends without a call (the caller notifies)."""
        leg.state = "skipped"
        leg.release.set()  # its task wakes and returns
        counters = self.ctx.stats.strategies.get(leg.name)
        if counters is not None:
            counters.skipped += 1
        logger.info(
            "%s not started (start: %s): %s", leg.name, _policy_text(leg.strategy.start), why
        )
        self._release_held()  # a leg held above it may now wait for nothing

    def _cancelled_now(self, leg: Leg) -> bool:
        """The leg's own scope was cancelled (or its deadline passed) but its
        call returned without a checkpoint: the answer came too late."""
        assert leg.handle is not None
        if leg.state == "running" and (
            leg.handle.scope.cancel_called or trio.current_time() >= leg.deadline
        ):
            self._end(leg, self._cancellation(leg))
            return True
        return False

    def _cancellation(self, leg: Leg) -> StrategyError:
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
        if strategy.kind == "local_ocr":
            self.ctx.stats.spend.record_sent(strategy.name)  # its call is the OCR job
        try:
            with trio.fail_after(strategy.timeout):
                return await backend.complete(strategy, self.image)
        except trio.TooSlowError:
            raise StrategyError("timeout", f"no answer within {strategy.timeout:g}s") from None

    def _accepted_rank(self) -> float:
        ranks = (leg.rank for leg in self.legs if leg.state in ("storing", "stored"))
        return max(ranks, default=self.floor)

    async def _store(self, leg: Leg, step: MergeStep, completion: Completion, ms: float) -> None:
        """Accept a valid result if it outranks every accepted one, and store
        it (shielded: a result in hand is kept even if its leg is cancelled
        now); then it is an answer."""
        if leg.rank <= max(self.floor, self._accepted_rank()):
            self._end(leg, StrategyError("cancelled", "a higher-ranked result was accepted"))
            return
        leg.state = "storing"
        for other in self.legs:
            if other.state == "running" and other.rank < leg.rank:
                self._cancel(other, "higher-ranked result accepted")
        self._skip_held()
        model = completion.served_model or leg.strategy.model
        if leg.background:
            logger.info("Background: Premium result is valid")
            logger.info("Background: Logging premium extraction details")
        log_extraction(leg.name, model, step)
        payload: dict[str, Any] = msgspec.to_builtins(step)
        payload["_model"] = model
        payload["_strategy"] = leg.name
        cost, source = cost_of(leg.strategy, completion.usage)
        provenance = Provenance(
            cost_usd=None if cost is None else round(cost, 8),
            cost_source=source,
            latency_ms=round(ms, 1),
            provider=leg.strategy.provider,
            requested_model=leg.strategy.model,
            served_model=completion.served_model,
            served_by=completion.served_by,
            usage=completion.usage,
            race_id=self.race_id,
            dropped_lines=completion.dropped_lines,
        )
        event_id = None
        key = self.key
        with trio.CancelScope(shield=True):
            with trio.move_on_after(STORE_GRACE) as grace:
                try:
                    event_id = await self.ctx.store.append(
                        key.session_id, key.category, key.resource, key.scene, payload, provenance
                    )
                except StoreError as exc:
                    logger.error("Failed to cache premium result: %s", exc)
                except Exception as exc:  # a store bug must not leave the leg storing
                    logger.exception("Failed to cache premium result: %s", type(exc).__name__)
            if grace.cancelled_caught:
                logger.error(
                    "Failed to cache premium result: the store did not answer within %gs",
                    STORE_GRACE,
                )
        if event_id is not None and leg.background:
            logger.info("Background: Premium result cached successfully")
        counters = self.ctx.stats.strategies.get(leg.name)
        if counters is not None:
            counters.wins += 1
            if completion.usage is not None and completion.usage.total_tokens:
                counters.tokens += completion.usage.total_tokens
        leg.result = Accepted(
            step=step, strategy=leg.name, model=model, event_id=event_id, created_at=time.time()
        )
        self._end(leg, None)

    # ------------------------------------------------------ state changes --

    def _cancel(self, leg: Leg, reason: str) -> None:
        """End a running leg now, and cancel its task with the same reason."""
        self._end(leg, StrategyError("cancelled", reason))
        if leg.handle is not None:
            leg.handle.scope.cancel(reason=reason)

    def _end(self, leg: Leg, error: StrategyError | None) -> None:
        """A leg's last state change: stored (no error), failed or cancelled."""
        if not leg.live:
            return
        if error is None:
            leg.state = "stored"
        else:
            leg.state = "cancelled" if error.kind == "cancelled" else "failed"
            leg.error = error
            self._count_failure(leg, error)
            if error.kind == "budget_exhausted":
                pass  # Spend logs it once per period, not per request
            elif leg.background and error.kind not in ("timeout", "cancelled"):
                logger.warning("Failed to cache premium result: %s", error)
            elif not leg.background:
                logger.info("%s failed: %s", leg.name, error)
            if leg.state == "failed" and error.kind != "budget_exhausted":
                # The upgrade retry window; a budget refusal is no failure of
                # the key: the next hit after the budget's reset upgrades it.
                self.ctx.failed_at[(self.key, leg.name)] = trio.current_time()
            self._release_held()
        self._notify()

    def _notify(self) -> None:
        """Wake the waiters: a state changed."""
        self._changed.set()
        self._changed = trio.Event()
        self._finish_if_done()

    def _finish_if_done(self) -> None:
        if not self.ended and not any(leg.live for leg in self.legs):
            self.ended = True
            self.ctx.finished(self)

    def _count_failure(self, leg: Leg, error: StrategyError) -> None:
        counters = self.ctx.stats.strategies.get(leg.name)
        if counters is None:
            return
        field: dict[StrategyErrorKind, str] = {
            "invalid_output": "invalid",
            "timeout": "timeouts",
            "cancelled": "cancelled",
            "budget_exhausted": "budget_exhausted",
        }
        name = field.get(error.kind, "errors")
        setattr(counters, name, getattr(counters, name) + 1)


def _policy_text(policy: StartPolicy) -> str:
    return f"after {policy.after:g}s" if isinstance(policy, StartAfter) else policy


def failure_message(failures: dict[str, dict[str, Any]]) -> str | None:
    """The -32001 message when every strategy was at its budget (else None:
    the default message)."""
    if failures and all(f["error"] == "budget_exhausted" for f in failures.values()):
        names = ", ".join(sorted(failures))
        return f"every strategy is at its budget (budget_exhausted): {names}"
    return None


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
