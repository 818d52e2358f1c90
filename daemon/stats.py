"""Per-strategy counters and latency percentiles over a recent window; no I/O."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Final

from daemon.models import CacheStatus, LatencyStatus, StrategyStatus

if TYPE_CHECKING:
    from daemon.config import StrategyConfig

WINDOW: Final = 1000  # latencies kept per strategy


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

    def status(self) -> StrategyStatus:
        ordered = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

        return StrategyStatus(
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


class Stats:
    def __init__(self, strategies: list[StrategyConfig]) -> None:
        self.strategies = {s.name: StrategyCounters(s.model or s.kind, s.rank) for s in strategies}
        self.hits = 0
        self.misses = 0
        self.coalesced = 0
        self.upgrades = 0

    def cache(self) -> CacheStatus:
        return CacheStatus(
            hits=self.hits, misses=self.misses, coalesced=self.coalesced, upgrades=self.upgrades
        )

    def by_strategy(self) -> dict[str, StrategyStatus]:
        return {name: c.status() for name, c in self.strategies.items()}
