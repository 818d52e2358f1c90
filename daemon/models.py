"""Frozen msgspec Structs of the domain and of method results; no I/O."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

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
    # appends whose caller stopped waiting before the commit (a result the
    # race gave up storing, a cancelled request): possibly stored, never
    # acknowledged; each is also an ERROR line in the log
    abandoned: int = 0


class CacheStatus(_Result, frozen=True):
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    upgrades: int = 0


class LatencyStatus(_Result, frozen=True):
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class SpendFigures(_Result, frozen=True):
    """What a strategy spent over a period (daemon/spend.py)."""

    calls: int = 0  # attempts started (admitted by the budget); an OCR run is one
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    usd: float = 0.0  # the calls whose cost is known: the provider's, else the config price
    cost_unknown: int = 0  # answers with no cost and no price, and cancelled_after_send
    cancelled_after_send: int = 0  # cancelled once the request was out: may still be billed
    budget_exhausted: int = 0  # legs not started: the strategy was at its budget


class BudgetLeft(_Result, frozen=True):
    usd_per_day: float | None = None
    usd_left_today: float | None = None
    calls_per_minute: int | None = None
    calls_left_this_minute: int | None = None
    exhausted: str | None = None  # the budget key at its limit now, if any


class StrategySpend(_Result, frozen=True):
    today: SpendFigures
    month: SpendFigures
    budget: BudgetLeft | None


class SpendResult(_Result, frozen=True):
    """What the ``spend`` method answers: UTC day and month, by strategy."""

    day: str  # 2026-12-06 (UTC)
    month: str  # 2026-12
    strategies: dict[str, StrategySpend]


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
    # "resting": the provider said something that will not change by itself
    # soon (bad key, no credits, unknown model, daily cap); calls fail at
    # once until ``rest_s`` seconds from now, with ``rest_reason``.
    state: Literal["ready", "resting"] = "ready"
    rest_reason: str | None = None
    rest_s: float | None = None
    # What the provider billed for every call of this strategy (usage.cost,
    # USD), valid or not, and which upstream providers served the calls.
    cost_usd: float = 0.0
    served_by: dict[str, int] = msgspec.field(default_factory=dict)
    # Since the start: tokens and cost of every call (valid or not; cost from
    # the provider, else the config price, else counted as unknown), legs not
    # started by their start policy, legs refused at the budget.
    usage: SpendFigures = msgspec.field(default_factory=SpendFigures)
    skipped: int = 0
    budget_exhausted: int = 0


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


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None  # what the provider billed (OpenRouter: credits, USD)


class Provenance(msgspec.Struct, frozen=True, kw_only=True):
    """Where a stored result came from (written by the race; null for app events)."""

    latency_ms: float | None = None
    provider: str | None = None
    requested_model: str | None = None
    served_model: str | None = None
    usage: Usage | None = None
    race_id: str | None = None
    served_by: str | None = None  # the upstream provider that ran the model (OpenRouter)
    # What this call cost in USD and who said so; null when nobody did.
    cost_usd: float | None = None
    cost_source: Literal["provider", "price"] | None = None


class CacheKey(msgspec.Struct, frozen=True):
    session_id: str
    category: str
    resource: str
    scene: str = ""


UNKNOWN = "unknown"


class Event(_Result, frozen=True):
    id: int
    ts: float
    session_id: str
    category: str
    resource: str
    scene: str
    strategy: str
    model: str
    payload: dict[str, Any]
    provenance: Provenance | None


def payload_tag(payload: dict[str, Any], name: str) -> str:
    """``payload[name]`` when it is a non-empty string, else ``"unknown"``
    (events written before provenance existed have no ``_model``/``_strategy``)."""
    value = payload.get(name)
    return value if isinstance(value, str) and value else UNKNOWN


class AppendResult(_Result, frozen=True):
    id: int


class EventsResult(_Result, frozen=True):
    events: list[Event]
    # Where the next page starts (pass it as ``before_id``); null once the
    # session has no older event. A page ends at ``limit`` events or before
    # the answer would exceed ``socket.max_message_bytes``.
    next_before_id: int | None = None


class EncodedEvents(_Result, frozen=True):
    """What ``events.list`` sends: an ``EventsResult`` whose events are already
    JSON text (each is encoded once, to bound the answer by its size)."""

    events: list[msgspec.Raw]
    next_before_id: int | None = None


class BestResult(_Result, frozen=True):
    event: Event | None


# ------------------------------------------------------------- MergeStep ---

Speaker = Literal["talker", "user"]
Side = Literal["left", "right"]


Kind = Literal["text", "photo", "voice", "sticker", "file"]

# The fields SPEC §3 made optional later (kind, sender, time, quote, group)
# are UNSET when absent: omitted on the wire and in the store, so events
# written before them read back the same, and a model that does not give them
# is still valid. A null from a model means the same as absent.


class Participants(msgspec.Struct, frozen=True, kw_only=True):
    user: str | None = None
    talker: str | None = None
    group: str | UnsetType = UNSET  # a group's title, when the chat is a group


class Layout(msgspec.Struct, frozen=True, kw_only=True):
    left: Speaker
    right: Speaker

    def side_of(self, speaker: Speaker) -> Side:
        return "left" if self.left == speaker else "right"


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """A quoted (replied-to) message shown inside a bubble."""

    sender: str | None = None
    text: str


class Bubble(msgspec.Struct, frozen=True, kw_only=True):
    speaker: Speaker
    side: Side
    bbox: tuple[int, int, int, int]
    text: str  # may be empty when ``kind`` is not "text"
    kind: Kind | UnsetType = UNSET  # absent means "text"
    sender: str | UnsetType = UNSET  # the name shown with the bubble (groups)
    time: str | UnsetType = UNSET  # the time as shown in or near the bubble
    quote: Quote | UnsetType = UNSET


class Message(msgspec.Struct, frozen=True, kw_only=True):
    speaker: Speaker
    text: str
    sender: str | UnsetType = UNSET
    kind: Kind | UnsetType = UNSET


class MergeStep(msgspec.Struct, frozen=True, kw_only=True):
    participants: Participants
    layout: Layout
    bubbles: list[Bubble]
    conversation: list[Message]
    summary: str | None = None


class AnswerProvenance(msgspec.Struct, frozen=True, kw_only=True):
    strategy: str
    model: str
    cached: bool
    event_id: int | None
    created_at: float
    latency_ms: float


class AnalyzeResult(msgspec.Struct, frozen=True, kw_only=True):
    result: MergeStep
    provenance: AnswerProvenance
    pending: list[str]
