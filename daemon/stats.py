"""Per-strategy counters and latency percentiles over a recent window; no I/O.

Two sources: ``StrategyCounters`` (calls, wins, failures, latencies; kept
by the race) and each provider's ``CallLedger`` (what every call cost, who
served it, rests; kept by ``Provider``), merged by ``Stats.by_strategy``.
"""

from __future__ import annotations

import collections
import math
from typing import TYPE_CHECKING, Final

import msgspec
import trio

from daemon.models import CacheStatus, LatencyStatus, StrategyStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.config import StrategyConfig

WINDOW: Final = 1000  # latencies kept per strategy
PROVIDER_WIDE: Final = "*"  # a ledger key: the rest applies to every strategy of the provider


class RestState(msgspec.Struct, frozen=True, kw_only=True):
    reason: str  # "auth", "credits", "unknown model", "quota"
    until: float  # trio time
    detail: str  # the failure that started the rest, as the leg reported it
    status: int


class CallLedger:
    """What one provider learned from its calls, by strategy name."""

    def __init__(self) -> None:
        self.cost_usd: dict[str, float] = collections.defaultdict(float)
        self.served_by: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.rests: dict[str, RestState] = {}  # strategy name, or PROVIDER_WIDE

    def record(self, strategy: str, cost: float | None, served_by: str | None) -> None:
        if cost is not None and math.isfinite(cost) and cost > 0:
            self.cost_usd[strategy] += cost
        if served_by:
            self.served_by[strategy][served_by] += 1

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
        self.tokens = 0
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=WINDOW)

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
    ) -> None:
        """``ledgers``: each provider's ``CallLedger`` by provider name
        (``Provider.ledger``), for cost, serving providers and rests."""
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

    def cache(self) -> CacheStatus:
        return CacheStatus(
            hits=self.hits, misses=self.misses, coalesced=self.coalesced, upgrades=self.upgrades
        )

    def by_strategy(self) -> dict[str, StrategyStatus]:
        return {
            name: c.status(self._ledger_of.get(name), name) for name, c in self.strategies.items()
        }
