"""Frozen msgspec Structs of the domain and of method results; no I/O."""

from __future__ import annotations

from typing import Literal

import msgspec

State = Literal["starting", "serving", "draining"]


class _Result(msgspec.Struct, frozen=True, kw_only=True):
    pass


class HealthResult(_Result, frozen=True):
    ok: bool
    state: State


class BackgroundStatus(_Result, frozen=True):
    count: int
    max: int
    by_strategy: dict[str, int]


class StoreStatus(_Result, frozen=True):
    path: str
    events: int
    map_size: int
    used_bytes: int


class CacheStatus(_Result, frozen=True):
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    upgrades: int = 0


class LatencyStatus(_Result, frozen=True):
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class StrategyStatus(_Result, frozen=True):
    model: str
    rank: int
    calls: int = 0
    wins: int = 0
    invalid: int = 0
    errors: int = 0
    timeouts: int = 0
    cancelled: int = 0
    tokens: int = 0
    latency_ms: LatencyStatus = msgspec.field(default_factory=LatencyStatus)


class DrainStatus(_Result, frozen=True):
    # Seconds left until whatever still runs is cancelled; null unless draining.
    deadline_s: float | None


class StatusResult(_Result, frozen=True):
    version: str
    pid: int
    uptime_s: float
    state: State
    connections: int
    in_flight: int
    background: BackgroundStatus
    store: StoreStatus
    cache: CacheStatus
    strategies: dict[str, StrategyStatus]
    drain: DrainStatus
