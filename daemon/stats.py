"""Per-strategy counters and latency percentiles over a recent window; no I/O.

Three sources: ``StrategyCounters`` (calls, wins, failures, latencies; kept
by the race), each provider's ``CallLedger`` (what every call cost, who
served it, rests; kept by ``Provider``, which passes each call's usage on to
``Spend``) and ``Spend`` (usage, cost and budgets: ``daemon/spend.py``),
merged by ``Stats.by_strategy``.
"""

from __future__ import annotations

import bisect
import collections
import math
from typing import TYPE_CHECKING, Final, Protocol

import msgspec
import trio

from daemon.models import CacheStatus, LatencyStatus, StrategyStatus, Usage
from daemon.spend import Spend, Tally

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from daemon.config import StrategyConfig

WINDOW: Final = 1000  # latencies kept per strategy
PROVIDER_WIDE: Final = "*"  # a ledger key: the rest applies to every strategy of the provider


class RestState(msgspec.Struct, frozen=True, kw_only=True):
    reason: str  # "auth", "credits", "unknown model", "quota"
    until: float  # trio time
    detail: str  # the failure that started the rest, as the leg reported it
    status: int


class UsageSink(Protocol):
    """Where a ledger passes each call's usage (``Spend``)."""

    def record(self, name: str, usage: Usage | None) -> None: ...

    def record_sent(self, name: str) -> None: ...

    def record_cancelled(self, name: str) -> None: ...


class CallLedger:
    """What one provider learned from its calls, by strategy name."""

    def __init__(self) -> None:
        self.usage_sink: UsageSink | None = None  # set by ``Stats``
        self.cost_usd: dict[str, float] = collections.defaultdict(float)
        self.served_by: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.rests: dict[str, RestState] = {}  # strategy name, or PROVIDER_WIDE

    def record(
        self, strategy: str, cost: float | None, served_by: str | None, usage: Usage | None = None
    ) -> None:
        """One answer of the provider (a 200, valid or not) and its ``usage``."""
        if cost is not None and math.isfinite(cost) and cost > 0:
            self.cost_usd[strategy] += cost
        if served_by:
            self.served_by[strategy][served_by] += 1
        if self.usage_sink is not None:
            self.usage_sink.record(strategy, usage)

    def sent(self, strategy: str) -> None:
        """A request of ``strategy`` went out (or may have: the transport could not say)."""
        if self.usage_sink is not None:
            self.usage_sink.record_sent(strategy)

    def cancelled_after_send(self, strategy: str) -> None:
        """A call cancelled once its request was going out: the provider may bill it."""
        if self.usage_sink is not None:
            self.usage_sink.record_cancelled(strategy)

    def rest(self, key: str, state: RestState) -> None:
        current = self.rests.get(key)
        if current is None or current.until < state.until:
            self.rests[key] = state

    def resting(self, strategy: str) -> RestState | None:
        """The rest that applies to ``strategy`` now (the longer one), if any."""
        now = trio.current_time()
        found = None
        for key in (strategy, PROVIDER_WIDE):
            state = self.rests.get(key)
            if state is None:
                continue
            if state.until <= now:
                del self.rests[key]
            elif found is None or state.until > found.until:
                found = state
        return found


# Upper bounds (seconds) of the latency histogram's buckets (daemon/metrics.py).
LATENCY_BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


class Latencies:
    """A strategy's latencies (ms): the last ``WINDOW`` for status's
    percentiles, and since the start a count per bucket of
    ``LATENCY_BUCKETS_S`` (the last: above them all) and their sum, for
    the Prometheus histogram."""

    def __init__(self) -> None:
        self.recent: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.sum_s = 0.0

    def append(self, ms: float) -> None:
        self.recent.append(ms)
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_S, ms / 1000)] += 1
        self.sum_s += ms / 1000

    def extend(self, values: Iterable[float]) -> None:
        for ms in values:
            self.append(ms)

    def __iter__(self) -> Iterator[float]:
        return iter(self.recent)

    def __len__(self) -> int:
        return len(self.recent)


class StrategyCounters:
    def __init__(self, model: str, rank: int) -> None:
        self.model = model
        self.rank = rank
        self.calls = 0
        self.wins = 0
        self.invalid = 0
        self.errors = 0
        self.timeouts = 0
        self.cancelled = 0
        self.skipped = 0  # not started: its start policy did not call for it
        self.budget_exhausted = 0
        self.tokens = 0
        self.latencies_ms = Latencies()

    def status(self, ledger: CallLedger | None = None, name: str = "") -> StrategyStatus:
        ordered = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

        status = StrategyStatus(
            model=self.model,
            rank=self.rank,
            calls=self.calls,
            wins=self.wins,
            invalid=self.invalid,
            errors=self.errors,
            timeouts=self.timeouts,
            cancelled=self.cancelled,
            skipped=self.skipped,
            budget_exhausted=self.budget_exhausted,
            tokens=self.tokens,
            latency_ms=LatencyStatus(p50=pct(0.50), p95=pct(0.95), p99=pct(0.99)),
        )
        return status if ledger is None else _with_ledger(status, ledger, name)


def _with_ledger(status: StrategyStatus, ledger: CallLedger, name: str) -> StrategyStatus:
    status = msgspec.structs.replace(
        status,
        cost_usd=round(ledger.cost_usd.get(name, 0.0), 6),
        served_by=dict(ledger.served_by.get(name, {})),
    )
    rest = ledger.resting(name)
    if rest is None:
        return status
    return msgspec.structs.replace(
        status,
        state="resting",
        rest_reason=f"{rest.reason}: {rest.detail}"[:300],
        rest_s=round(rest.until - trio.current_time(), 1),
    )


class Stats:
    def __init__(
        self,
        strategies: list[StrategyConfig],
        ledgers: Mapping[str, CallLedger] | None = None,
        spend: Spend | None = None,
    ) -> None:
        """``ledgers``: each provider's ``CallLedger`` by provider name
        (``Provider.ledger``), for cost, serving providers and rests; each
        passes its calls' usage to ``spend`` (a new one by default)."""
        self.spend = spend if spend is not None else Spend(strategies)
        for ledger in (ledgers or {}).values():
            ledger.usage_sink = self.spend
        self.strategies = {s.name: StrategyCounters(s.model or s.kind, s.rank) for s in strategies}
        self._ledger_of = {
            s.name: ledgers[s.provider]
            for s in strategies
            if ledgers is not None and s.provider is not None and s.provider in ledgers
        }
        self.hits = 0
        self.misses = 0
        self.coalesced = 0
        self.upgrades = 0
        self.not_configured: dict[str, str] = {}  # name -> why (RaceManager.leave_out)

    def cache(self) -> CacheStatus:
        return CacheStatus(
            hits=self.hits, misses=self.misses, coalesced=self.coalesced, upgrades=self.upgrades
        )

    def by_strategy(self) -> dict[str, StrategyStatus]:
        since_start = self.spend.since_start
        figures = {
            name: msgspec.structs.replace(
                c.status(self._ledger_of.get(name), name),
                usage=since_start.get(name, Tally()).figures(),
            )
            for name, c in self.strategies.items()
        }
        for name, why in self.not_configured.items():
            if name in figures:
                figures[name] = msgspec.structs.replace(
                    figures[name], state="not_configured", rest_reason=why
                )
        return figures
