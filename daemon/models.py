"""Frozen msgspec Structs of the domain and of method results; no I/O."""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

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

    calls: typing.Annotated[
        int, msgspec.Meta(description="requests sent (each retry one; local OCR: jobs run)")
    ] = 0
    prompt_tokens: typing.Annotated[
        int, msgspec.Meta(description="prompt tokens the provider reported")
    ] = 0
    completion_tokens: typing.Annotated[
        int, msgspec.Meta(description="completion tokens the provider reported")
    ] = 0
    total_tokens: typing.Annotated[
        int, msgspec.Meta(description="total tokens the provider reported")
    ] = 0
    usd: typing.Annotated[
        float,
        msgspec.Meta(
            description="USD of the calls whose cost is known (usage.cost, else the price); "
            "with cost_known 0 and cost_unknown > 0 the spend is unknown, not 0"
        ),
    ] = 0.0
    cost_known: typing.Annotated[
        int, msgspec.Meta(description="answers whose cost is known: the calls usd covers")
    ] = 0
    cost_unknown: typing.Annotated[
        int,
        msgspec.Meta(
            description="calls of unknown cost (no usage.cost, no price; cancelled_after_send)"
        ),
    ] = 0
    cancelled_after_send: typing.Annotated[
        int, msgspec.Meta(description="calls cancelled once their request was out: maybe billed")
    ] = 0
    budget_exhausted: typing.Annotated[
        int, msgspec.Meta(description="legs not started: the strategy was at its budget")
    ] = 0


class BudgetLeft(_Result, frozen=True):
    """A strategy's budget (config ``budget``) and what is left of it now."""

    usd_per_day: typing.Annotated[
        float | None, msgspec.Meta(description="budget.usd_per_day (null: none)")
    ] = None
    usd_left_today: typing.Annotated[
        float | None, msgspec.Meta(description="USD left today, UTC (null: no limit)")
    ] = None
    calls_per_minute: typing.Annotated[
        int | None, msgspec.Meta(description="budget.calls_per_minute (null: none)")
    ] = None
    calls_left_this_minute: typing.Annotated[
        int | None, msgspec.Meta(description="starts left this UTC minute (null: no limit)")
    ] = None
    exhausted: typing.Annotated[
        str | None, msgspec.Meta(description="the budget key at its limit now, or null")
    ] = None


class StrategySpend(_Result, frozen=True):
    today: typing.Annotated[SpendFigures, msgspec.Meta(description="the current UTC day")]
    month: typing.Annotated[SpendFigures, msgspec.Meta(description="the current UTC month")]
    budget: typing.Annotated[
        BudgetLeft | None, msgspec.Meta(description="the budget and what is left; null: none")
    ]


class SpendResult(_Result, frozen=True):
    """What the ``spend`` method answers: UTC day and month, by strategy."""

    day: typing.Annotated[str, msgspec.Meta(description="the current UTC day, YYYY-MM-DD")]
    month: typing.Annotated[str, msgspec.Meta(description="the current UTC month, YYYY-MM")]
    strategies: typing.Annotated[
        dict[str, StrategySpend], msgspec.Meta(description="spend per strategy, by name")
    ]


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
    # "not_configured": it can never run as configured (no API key, no ocr
    # extra; ``rest_reason`` says which): left out of races until a start
    # that has it.
    state: Literal["ready", "resting", "not_configured"] = "ready"
    rest_reason: str | None = None
    rest_s: float | None = None
    # What the provider billed for every call of this strategy (usage.cost,
    # USD), valid or not, and which upstream providers served the calls.
    cost_usd: float = 0.0
    served_by: dict[str, int] = msgspec.field(default_factory=dict)
    # Since the start: tokens and cost of every call (valid or not; cost from
    # the provider, else the config price, else counted as unknown), legs not
    # started by their start policy, legs refused at the budget.
    usage: typing.Annotated[
        SpendFigures, msgspec.Meta(description="usage and cost of its calls since the start")
    ] = msgspec.field(default_factory=SpendFigures)
    skipped: typing.Annotated[
        int, msgspec.Meta(description="legs not started: their start policy did not call for it")
    ] = 0
    budget_exhausted: typing.Annotated[
        int, msgspec.Meta(description="legs not started: the strategy was at its budget")
    ] = 0


class DrainStatus(_Result, frozen=True):
    # Seconds left until whatever still runs is cancelled; null unless draining.
    deadline_s: float | None


class FleetStatus(_Result, frozen=True):
    """``status.fleet``: the shared server as this host sees it; never a secret."""

    host_id: typing.Annotated[str, msgspec.Meta(description="this host's name in the fleet")]
    server: typing.Annotated[
        str, msgspec.Meta(description="the server URL or cluster seeds, without credentials")
    ]
    state: typing.Annotated[
        Literal["connecting", "connected", "disconnected"],
        msgspec.Meta(description="the connection as last seen"),
    ]
    rtt_ms: typing.Annotated[
        float | None, msgspec.Meta(description="the last PING round trip, ms; null: none yet")
    ]
    outbox: typing.Annotated[
        int, msgspec.Meta(description="events stored here and not yet on the server")
    ]
    outbox_age_s: typing.Annotated[
        float | None, msgspec.Meta(description="age of the oldest of them; null: empty")
    ]
    published: typing.Annotated[
        int, msgspec.Meta(description="events the server accepted since the start")
    ]
    duplicates: typing.Annotated[
        int, msgspec.Meta(description="events the server already had (idempotent resend)")
    ]
    publish_errors: typing.Annotated[
        int, msgspec.Meta(description="publish rounds that failed (the outbox kept them)")
    ]
    hits: typing.Annotated[
        int, msgspec.Meta(description="requests answered from another host's result")
    ]
    lookups: typing.Annotated[int, msgspec.Meta(description="read-throughs asked of the server")]
    lookup_errors: typing.Annotated[
        int, msgspec.Meta(description="read-throughs that failed or timed out")
    ]
    leases_won: typing.Annotated[
        int, msgspec.Meta(description="races this host ran holding the key's fleet lease")
    ] = 0
    leases_waited: typing.Annotated[
        int, msgspec.Meta(description="requests that waited for another host's race")
    ] = 0
    leases_taken_over: typing.Annotated[
        int, msgspec.Meta(description="leases taken after waiting (the holder ended or died)")
    ] = 0
    leases_lost: typing.Annotated[
        int, msgspec.Meta(description="leases another host took while this host's race ran")
    ] = 0
    leases_retaken: typing.Annotated[
        int,
        msgspec.Meta(description="leases found expired under a running race and taken back"),
    ] = 0


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
    fleet: typing.Annotated[
        FleetStatus | None, msgspec.Meta(description="the fleet (docs/fleet.md); null: no fleet")
    ] = None


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None  # what the provider billed (OpenRouter: credits, USD)


class Origin(msgspec.Struct, frozen=True, kw_only=True):
    """The fleet host that made an event, and its id there (docs/fleet.md)."""

    host: typing.Annotated[str, msgspec.Meta(description="fleet.host_id of the host")]
    event_id: typing.Annotated[int, msgspec.Meta(description="the event's id on that host")]


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
    cost_usd: typing.Annotated[
        float | None, msgspec.Meta(description="what this call cost, USD; null: unknown")
    ] = None
    cost_source: typing.Annotated[
        Literal["provider", "price"] | None,
        msgspec.Meta(description="provider: its usage.cost; price: the config price; null"),
    ] = None
    origin: typing.Annotated[
        Origin | None,
        msgspec.Meta(description="the fleet host that made it; null: this host (or no fleet)"),
    ] = None
    dropped_lines: typing.Annotated[
        int | None,
        msgspec.Meta(
            description="local OCR: text lines left out as not surely chrome nor surely a "
            "message (so an app can tell 'nothing there' from 'not sure'); null: not local OCR"
        ),
    ] = None


class CacheKey(msgspec.Struct, frozen=True):
    session_id: str
    category: str
    resource: str
    scene: str = ""


UNKNOWN = "unknown"


# A JSON object kept as its text: an event's payload is stored and sent as the
# client gave it, never decoded on the way (see daemon/store/format.py).
JsonObject = Annotated[
    msgspec.Raw,
    msgspec.Meta(
        extra_json_schema={"type": "object"},
        description="a JSON object, stored and returned as given",
    ),
]


class Event(_Result, frozen=True):
    id: int
    ts: float
    session_id: str
    category: str
    resource: str
    scene: str
    strategy: str
    model: str
    payload: JsonObject
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
    origin: typing.Annotated[
        Origin | None,
        msgspec.Meta(description="the fleet host that made the result; null: this host"),
    ] = None


class AnalyzeResult(msgspec.Struct, frozen=True, kw_only=True):
    result: MergeStep
    provenance: AnswerProvenance
    pending: list[str]
