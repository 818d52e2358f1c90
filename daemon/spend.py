"""What each strategy spends, and its budget; no I/O but through ``SpendStore``.

Every provider answer's ``usage`` is recorded here (``record``, through the
provider's ``CallLedger``), valid or not: a provider bills an invalid answer
like a valid one. Its cost in USD is the provider's own figure when it gives
one (OpenRouter's ``usage.cost``, in credits of one USD), else the config
``price`` times the tokens, else unknown: counted in ``cost_unknown``, never
guessed. A call cancelled once its request was on its way
(``record_cancelled``) may still be billed: it is counted in
``cancelled_after_send`` and in ``cost_unknown``.

Calls: ``calls`` counts the requests that went out (``record_sent``, from
the provider when its transport says the request is being sent: a leg that
rests, is not configured, or is cancelled while it waits for a connection
made no call), each retry too; a local OCR strategy's call is its job.

Budgets (config ``budget``): ``admit`` is asked before a leg starts. A
strategy whose known spend today (UTC) reached ``usd_per_day``, or that has
``calls_per_minute`` calls in this UTC minute, is refused with
``StrategyError("budget_exhausted")``; the refusal is counted and logged once
per period (a warning naming the key, the figures and when it resets), and
the period's end resets it. Admission reserves one of the minute's calls
for the leg (a ``Ticket``, so legs released together never overshoot); the
leg's first request takes it, and a leg that ends without sending any gives
it back (``release``). A leg's retries are calls of the minute too (they
are not refused: the request is already under way). Calls already running
when the budget is reached finish: a day's spend may pass ``usd_per_day`` by
what the calls in flight cost.

``usd_per_day`` counts known costs only: a strategy with no ``price`` on a
provider that does not report ``usage.cost`` (OpenRouter does) would never
reach it. That is accepted, with a WARNING at the start naming the key
(``unenforceable_budgets``, logged by ``warn_unenforceable``) and one more
the first time such a call's cost turns out unknown.

Fleet mode (``fleet``; ``daemon/store/fleet_spend.py``): the budgets are
the fleet's. A leg admitted here is also admitted on the fleet's server
(``admit_fleet``, in its task, before its request: one atomic script per
leg), and the costs, retries and calls given back are counted there too;
the server lost, the host counts alone (as above).

Persistence: the figures are kept per (UTC day, strategy). What changed is
added to the store (``SpendStore.save_spend``, a sub-database of the LMDB
store, as deltas merged in the write transaction, so two daemons on one store
during a restart both count) at most ``FLUSH_INTERVAL`` seconds later, and at
the end of ``run`` (the drain): a ``kill -9`` loses at most that second of
figures. The minute's call count is not kept (a restart starts a new minute's
count). Months are the sum of their days.
"""

from __future__ import annotations

import calendar
import contextvars
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal, Protocol
from urllib.parse import urlsplit

import msgspec
import trio

from daemon.errors import StrategyError
from daemon.models import BudgetLeft, SpendFigures, SpendResult, StrategySpend, Usage

if TYPE_CHECKING:
    from collections.abc import Iterable

    from daemon.config import Config, StrategyConfig
    from daemon.store.fleet_spend import FleetBudget

logger = logging.getLogger(__name__)

FLUSH_INTERVAL: Final = 1.0  # seconds between a change and its write to the store
FLUSH_GRACE: Final = 5.0  # seconds the last write may take at the end, shielded


class SpendStore(Protocol):
    """What ``Spend`` needs of the store (``daemon.store.Store``)."""

    def load_spend(self) -> tuple[tuple[bytes, bytes], ...]: ...

    async def save_spend(
        self,
        deltas: tuple[tuple[bytes, bytes], ...],
        merge: Callable[[bytes | None, bytes], bytes],
    ) -> None: ...


class Tally(msgspec.Struct, array_like=True):
    """The figures of one strategy over one period; mutable, msgpack on disk."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    usd: float = 0.0
    cost_unknown: int = 0
    cancelled_after_send: int = 0
    budget_exhausted: int = 0
    cost_known: int = 0  # last: a record written before it existed still reads

    def add(self, other: Tally) -> None:
        for field in self.__struct_fields__:
            setattr(self, field, getattr(self, field) + getattr(other, field))

    def figures(self) -> SpendFigures:
        return SpendFigures(
            calls=self.calls,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.total_tokens,
            usd=round(self.usd, 6),
            cost_known=self.cost_known,
            cost_unknown=self.cost_unknown,
            cancelled_after_send=self.cancelled_after_send,
            budget_exhausted=self.budget_exhausted,
        )


_ENCODE: Final = msgspec.msgpack.Encoder()
_DECODE: Final = msgspec.msgpack.Decoder(Tally)


def merge_tally(old: bytes | None, delta: bytes) -> bytes:
    """The stored figures ``old`` plus ``delta`` (both msgpack ``Tally``)."""
    total = _DECODE.decode(delta)
    if old is not None:
        try:
            total.add(_DECODE.decode(old))
        except msgspec.DecodeError:
            logger.warning("A spend record in the store is unreadable; counting from zero")
    return _ENCODE.encode(total)


class Ticket:
    """One admitted leg's reservation of a call in its UTC minute (``admit``)."""

    __slots__ = ("day", "fleet", "minute", "name", "sent")

    def __init__(self, name: str, day: str, minute: int) -> None:
        self.name = name
        self.day = day
        self.minute = minute
        self.sent = False  # a request of the leg went out: the reservation is used
        self.fleet = False  # the fleet's server counted its call too


# The ticket of the leg whose task is running (set by the race before it
# calls its backend): ``record_sent`` marks it, so the provider need not know.
CURRENT_TICKET: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar(
    "ctxd_spend_ticket", default=None
)


def utc_day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def _next_day(day: str) -> str:
    start = calendar.timegm(time.strptime(day, "%Y-%m-%d")) + 86400
    return time.strftime("%Y-%m-%d 00:00 UTC", time.gmtime(start))


CostSource = Literal["provider", "price"]


def cost_of(
    strategy: StrategyConfig, usage: Usage | None
) -> tuple[float | None, CostSource | None]:
    """A call's cost in USD and who said so: ``"provider"``, ``"price"``, or
    (None, None) when nobody did."""
    if usage is None:
        return None, None
    if usage.cost is not None and math.isfinite(usage.cost) and usage.cost >= 0:
        return usage.cost, "provider"
    price = strategy.price
    if price is None or usage.prompt_tokens is None or usage.completion_tokens is None:
        return None, None
    usd = (
        usage.prompt_tokens * price.prompt_per_mtok
        + usage.completion_tokens * price.completion_per_mtok
    ) / 1e6
    return usd, "price"


REPORTS_COST: Final = ("openrouter.ai",)  # hosts whose answers carry usage.cost


def unenforceable_budgets(config: Config) -> list[str]:
    """One line per ``usd_per_day`` that may never be reached: the strategy
    has no ``price`` and its provider is not known to report ``usage.cost``."""
    lines = []
    for i, strategy in enumerate(config.strategies):
        budget = strategy.budget
        if budget is None or budget.usd_per_day is None or strategy.price is not None:
            continue
        provider = config.providers.get(strategy.provider or "")
        host = (urlsplit(provider.base_url).hostname or "") if provider is not None else ""
        if any(host == known or host.endswith("." + known) for known in REPORTS_COST):
            continue
        lines.append(
            f"strategies[{i}].budget.usd_per_day ({budget.usd_per_day:g} USD) of "
            f"{strategy.name} may never be reached: strategies[{i}].price is not set and "
            f"provider {strategy.provider} ({host or '?'}) is not known to report usage.cost; "
            "calls of unknown cost do not count against it (set a price)"
        )
    return lines


class Spend:
    """Per-strategy usage, cost and budgets, by UTC day; ``now`` is the wall clock."""

    def __init__(
        self, strategies: Iterable[StrategyConfig], now: Callable[[], float] = time.time
    ) -> None:
        self.strategies = {s.name: s for s in strategies}
        self.now = now
        self.since_start = {name: Tally() for name in self.strategies}
        self._days: dict[tuple[str, str], Tally] = {}  # (day, strategy) -> figures
        self._unsaved: dict[tuple[str, str], Tally] = {}  # what the store has not got yet
        self._minute: dict[str, tuple[int, int]] = {}  # strategy -> (UTC minute, calls)
        self._logged: set[tuple[str, str, str]] = set()  # (strategy, key, period) warned
        self._unknown_warned: set[str] = set()  # usd_per_day strategies warned of unknown cost
        self.fleet: FleetBudget | None = None  # fleet mode: the budgets are the fleet's
        self._fleet_usd: dict[str, tuple[str, float]] = {}  # strategy -> (day, USD) last seen
        self._dirty = trio.Event()

    def warn_unenforceable(self, config: Config) -> None:
        """At the start: a WARNING per ``usd_per_day`` that may never be reached."""
        for line in unenforceable_budgets(config):
            logger.warning("%s", line)

    # -------------------------------------------------------------- figures --

    def _tallies(self, name: str) -> tuple[Tally, Tally, Tally]:
        """Since the start, today, and today's not yet saved (created on first use)."""
        key = (utc_day(self.now()), name)
        today = self._days.get(key)
        if today is None:
            today = self._days[key] = Tally()
        unsaved = self._unsaved.get(key)
        if unsaved is None:
            unsaved = self._unsaved[key] = Tally()
        self._dirty.set()
        return self.since_start.setdefault(name, Tally()), today, unsaved

    def record(self, name: str, usage: Usage | None) -> None:
        """A provider answered a call of ``name`` (``usage`` None: it said nothing)."""
        strategy = self.strategies.get(name)
        if strategy is None:
            return
        cost, _ = cost_of(strategy, usage)
        budget = strategy.budget
        limit = budget.usd_per_day if budget is not None else None
        if cost is None and limit is not None and name not in self._unknown_warned:
            self._unknown_warned.add(name)
            logger.warning(
                "%s: a call's cost is unknown (no usage.cost, no price): "
                "budget.usd_per_day %g does not count it",
                name,
                limit,
            )
        prompt = completion = total = 0
        if usage is not None:
            prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
            total = usage.total_tokens if usage.total_tokens is not None else prompt + completion
        for tally in self._tallies(name):
            tally.prompt_tokens += prompt
            tally.completion_tokens += completion
            tally.total_tokens += total
            if cost is None:
                tally.cost_unknown += 1
            else:
                tally.usd += cost
                tally.cost_known += 1
        if cost and limit is not None and self.fleet is not None:
            now = self.now()
            self.fleet.add(name, utc_day(now), int(now // 60), usd=cost)

    def record_sent(self, name: str) -> None:
        """A request of ``name`` went out: one call (the current leg's
        reserved one, else one more of the minute: a retry)."""
        if name not in self.strategies:
            return
        ticket = CURRENT_TICKET.get()
        if ticket is not None and ticket.name == name and not ticket.sent:
            ticket.sent = True
        else:
            self._count_minute(name, +1)
            budget = self.strategies[name].budget
            if self.fleet is not None and budget is not None and budget.calls_per_minute:
                now = self.now()
                self.fleet.add(name, utc_day(now), int(now // 60), calls=1)
        for tally in self._tallies(name):
            tally.calls += 1

    def release(self, ticket: Ticket) -> None:
        """The admitted leg has ended: without a call, its minute's reservation is given back."""
        if not ticket.sent:
            ticket.sent = True  # once
            counted_minute, calls = self._minute.get(ticket.name, (ticket.minute, 0))
            if counted_minute == ticket.minute and calls > 0:
                self._minute[ticket.name] = (counted_minute, calls - 1)
            if ticket.fleet and self.fleet is not None:
                self.fleet.add(ticket.name, ticket.day, ticket.minute, calls=-1)

    def _count_minute(self, name: str, delta: int) -> None:
        minute = int(self.now() // 60)
        counted_minute, calls = self._minute.get(name, (minute, 0))
        if counted_minute != minute:
            calls = 0
        self._minute[name] = (minute, max(0, calls + delta))

    def record_cancelled(self, name: str) -> None:
        """A call of ``name`` was cancelled after its request went out."""
        if name not in self.strategies:
            return
        for tally in self._tallies(name):
            tally.cancelled_after_send += 1
            tally.cost_unknown += 1

    # -------------------------------------------------------------- budgets --

    def admit(self, strategy: StrategyConfig) -> Ticket | StrategyError:
        """A ``Ticket`` reserving one call of this minute for a leg of
        ``strategy``; or, at its budget, the ``budget_exhausted`` error its
        leg ends with (counted, not a call)."""
        name = strategy.name
        now = self.now()
        minute = int(now // 60)
        counted_minute, calls = self._minute.get(name, (minute, 0))
        if counted_minute != minute:
            calls = 0
        budget = strategy.budget
        if budget is not None:
            refusal = self._over(strategy, now, minute, calls)
            if refusal is not None:
                for tally in self._tallies(name):
                    tally.budget_exhausted += 1
                return refusal
        self._minute[name] = (minute, calls + 1)
        return Ticket(name, utc_day(now), minute)

    async def admit_fleet(self, strategy: StrategyConfig, ticket: Ticket) -> StrategyError | None:
        """Fleet mode: the admission of ``ticket``'s leg on the fleet's
        server too (module docstring); None: admitted, or no fleet, no
        budget, or the server lost (counted here alone)."""
        fleet = self.fleet
        if fleet is None or strategy.budget is None or ticket.fleet:
            return None
        answer = await fleet.admit(strategy, ticket.day, ticket.minute)
        if answer is None:
            return None
        verdict, figure = answer
        name = strategy.name
        if verdict == "admitted":
            ticket.fleet = True
            self._fleet_usd[name] = (ticket.day, figure)
            return None
        for tally in self._tallies(name):
            tally.budget_exhausted += 1
        self.release(ticket)  # the local reservation: this leg makes no call
        budget = strategy.budget
        if verdict == "usd_per_day":
            self._fleet_usd[name] = (ticket.day, figure)
            detail = (
                f"budget.usd_per_day {budget.usd_per_day:g} reached fleet-wide: {figure:.4f} USD "
                f"spent today (UTC) by the fleet; resets at {_next_day(ticket.day)}"
            )
            return self._refuse(name, "usd_per_day", ticket.day, detail)
        detail = (
            f"budget.calls_per_minute {budget.calls_per_minute} reached fleet-wide: "
            f"{figure:.0f} calls this minute by the fleet"
        )
        return self._refuse(name, "calls_per_minute", str(ticket.minute), detail)

    def _over(
        self, strategy: StrategyConfig, now: float, minute: int, calls: int
    ) -> StrategyError | None:
        budget = strategy.budget
        assert budget is not None
        name = strategy.name
        if budget.usd_per_day is not None:
            day = utc_day(now)
            spent = self._spent_today(name, day)
            if spent >= budget.usd_per_day:
                resets = time.strftime(
                    "%Y-%m-%d 00:00 UTC", time.gmtime((now // 86400 + 1) * 86400)
                )
                detail = (
                    f"budget.usd_per_day {budget.usd_per_day:g} reached: {spent:.4f} USD "
                    f"spent today (UTC); resets at {resets}"
                )
                return self._refuse(name, "usd_per_day", day, detail)
        if budget.calls_per_minute is not None and calls >= budget.calls_per_minute:
            detail = (
                f"budget.calls_per_minute {budget.calls_per_minute} reached: {calls} calls "
                f"this minute; resets in {60 - now % 60:.0f}s"
            )
            return self._refuse(name, "calls_per_minute", str(minute), detail)
        return None

    def _spent_today(self, name: str, day: str) -> float:
        """The day's known USD: this host's, or the fleet's as last seen (the larger)."""
        spent = self._days.get((day, name), Tally()).usd
        seen_day, fleet = self._fleet_usd.get(name, (day, 0.0))
        return max(spent, fleet) if seen_day == day else spent

    def _refuse(self, name: str, key: str, period: str, detail: str) -> StrategyError:
        if (name, key, period) not in self._logged:
            self._logged = {entry for entry in self._logged if entry[:2] != (name, key)}
            self._logged.add((name, key, period))
            logger.warning(
                "%s is at its budget, not started until the period ends: %s", name, detail
            )
        return StrategyError("budget_exhausted", f"{name}: {detail}")

    def budget_left(self, strategy: StrategyConfig) -> BudgetLeft | None:
        budget = strategy.budget
        if budget is None:
            return None
        now = self.now()
        name = strategy.name
        usd_left = calls_left = None
        exhausted = None
        if budget.usd_per_day is not None:
            spent = self._spent_today(name, utc_day(now))
            usd_left = round(max(0.0, budget.usd_per_day - spent), 6)
            if usd_left <= 0:
                exhausted = "usd_per_day"
        if budget.calls_per_minute is not None:
            minute, calls = self._minute.get(name, (int(now // 60), 0))
            if minute != int(now // 60):
                calls = 0
            calls_left = max(0, budget.calls_per_minute - calls)
            if calls_left == 0 and exhausted is None:
                exhausted = "calls_per_minute"
        return BudgetLeft(
            usd_per_day=budget.usd_per_day,
            usd_left_today=usd_left,
            calls_per_minute=budget.calls_per_minute,
            calls_left_this_minute=calls_left,
            exhausted=exhausted,
        )

    # ------------------------------------------------------------- reports --

    def report(self) -> SpendResult:
        """Today and this month (UTC) by strategy, with what the budget leaves."""
        now = self.now()
        day = utc_day(now)
        month = day[:7]
        strategies = {}
        for name, strategy in self.strategies.items():
            this_month = Tally()
            for (when, who), tally in self._days.items():
                if who == name and when.startswith(month):
                    this_month.add(tally)
            strategies[name] = StrategySpend(
                today=self._days.get((day, name), Tally()).figures(),
                month=this_month.figures(),
                budget=self.budget_left(strategy),
            )
        return SpendResult(day=day, month=month, strategies=strategies)

    # --------------------------------------------------------- persistence --

    def load(self, store: SpendStore) -> None:
        """Take the figures kept in ``store`` (at the start, before any call)."""
        for key, value in store.load_spend():
            try:
                day, name = key.decode().split("\0", 1)
                tally = _DECODE.decode(value)
            except (UnicodeDecodeError, ValueError, msgspec.DecodeError):
                logger.warning("Skipping an unreadable spend record %r", key[:80])
                continue
            self._days.setdefault((day, name), Tally()).add(tally)

    def _take_unsaved(self) -> tuple[tuple[bytes, bytes], ...]:
        unsaved, self._unsaved = self._unsaved, {}
        return tuple(
            (f"{day}\0{name}".encode(), _ENCODE.encode(tally))
            for (day, name), tally in unsaved.items()
        )

    async def _flush(self, store: SpendStore) -> None:
        deltas = self._take_unsaved()
        if not deltas:
            return
        try:
            await store.save_spend(deltas, merge_tally)
        except BaseException as exc:
            # Not saved: keep the deltas for the next flush (cancelled too).
            for key, value in deltas:
                day, name = key.decode().split("\0", 1)
                self._unsaved.setdefault((day, name), Tally()).add(_DECODE.decode(value))
            if isinstance(exc, Exception):
                logger.error("Could not save the spend figures (will retry): %s", exc)
                return
            raise

    async def run(
        self,
        store: SpendStore,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Save what changed, ``FLUSH_INTERVAL`` after a change, until
        cancelled; then once more (shielded, ``FLUSH_GRACE`` at most)."""
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                if self.fleet is not None:
                    nursery.start_soon(self.fleet.run)
                while True:
                    await self._dirty.wait()
                    await trio.sleep(FLUSH_INTERVAL)
                    self._dirty = trio.Event()
                    await self._flush(store)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(FLUSH_GRACE):
                await self._flush(store)
