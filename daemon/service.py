"""The methods of ctxd and the state they report; knows nothing about sockets.

``Service.methods`` is the table the RPC layer dispatches on and that
``rpc.discover`` describes, so the schema a client reads is generated from the
very Structs that validate its params. Request accounting (``in_flight``, the
global in-flight cap, draining) lives here because it spans connections.
"""

from __future__ import annotations

import collections
import os
import time
from typing import TYPE_CHECKING

import msgspec
import trio

from daemon import __version__
from daemon.analysis import MissingInput
from daemon.errors import InvalidParams, Overloaded, UnstorablePayload
from daemon.inputs import load_image, url_ok
from daemon.logs import conversation
from daemon.models import (
    AnalyzeResult,
    AppendResult,
    BackgroundStatus,
    BestResult,
    CacheKey,
    DrainStatus,
    EncodedEvents,
    Event,
    EventsResult,
    HealthResult,
    SpendResult,
    State,
    StatusResult,
)
from daemon.openrpc import encoded_document
from daemon.protocol import (
    AnalyzeParams,
    AppendParams,
    BestParams,
    ListParams,
    Method,
    NoParams,
)
from daemon.providers import ImageInput

# Room an events.list answer keeps, under socket.max_message_bytes, for the
# JSON-RPC envelope, the request's id and ``next_before_id``.
EVENTS_ENVELOPE = 64 * 1024

if TYPE_CHECKING:
    from daemon.analysis import RaceManager
    from daemon.config import Config
    from daemon.store import Store
    from daemon.supervisor import Supervisor


class Service:
    def __init__(
        self,
        config: Config,
        supervisor: Supervisor,
        store: Store,
        races: RaceManager,
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.store = store
        self.races = races
        self.stats = races.stats
        self.state: State = "starting"
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = config.socket.max_in_flight
        self._started = time.monotonic()
        self._unanswered = 0
        self._all_answered = trio.Event()
        self._answers_awaited = False  # a drain waits on _all_answered
        self.methods: dict[str, Method] = {}
        self._discover: msgspec.Raw | None = None
        # Answers by (method, error code; 0 for a result), for daemon/metrics.py.
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        analyze = Method(
            "analyze",
            AnalyzeParams,
            AnalyzeResult,
            self.analyze,
            "The conversation in a chat screenshot: from the cache, or the race.",
            fast=self.analyze_cached,
        )
        merge_step = msgspec.structs.replace(analyze, name="merge_step", alias_of="analyze")
        for method in (
            analyze,
            merge_step,
            Method(
                "status",
                NoParams,
                StatusResult,
                self.status,
                "State, load, store, cache and per-strategy figures of the daemon.",
                while_draining=True,
                inline=True,
            ),
            Method(
                "spend",
                NoParams,
                SpendResult,
                self.spend,
                "Usage, USD and budget left by strategy: today and this month (UTC).",
                while_draining=True,
                inline=True,
            ),
            Method(
                "health",
                NoParams,
                HealthResult,
                self.health,
                "Liveness: ok and the lifecycle state.",
                while_draining=True,
                inline=True,
            ),
            Method(
                "events.append",
                AppendParams,
                AppendResult,
                self.events_append,
                "Store an event as given; returns its id once it is durable.",
            ),
            Method(
                "events.list",
                ListParams,
                EventsResult,
                self.events_list,
                "Events of a session, newest first.",
            ),
            Method(
                "events.best",
                BestParams,
                BestResult,
                self.events_best,
                "The event analyze would serve from the cache for this key.",
                inline=True,
            ),
            Method(
                "rpc.discover",
                NoParams,
                msgspec.Raw,
                self.discover,
                "This OpenRPC document.",
                while_draining=True,
                inline=True,
            ),
        ):
            self.register(method)

    def register(self, method: Method) -> None:
        """Add a method (and invalidate the cached OpenRPC document)."""
        self.methods[method.name] = method
        self._discover = None

    @property
    def draining(self) -> bool:
        return self.state == "draining"

    # ------------------------------------------------------------ accounting

    def begin_request(self) -> None:
        """Count one request in flight while its handler runs (``end_request``
        after it, in a ``finally``); Overloaded past the cap. Only for methods
        that may wait: ``rpc`` runs those marked ``inline`` (and cache hits)
        uncounted, since they bound nothing and must answer when busy."""
        if self.in_flight >= self.max_in_flight:
            raise Overloaded(
                "too many requests in flight; retry shortly",
                {"in_flight": self.in_flight, "max_in_flight": self.max_in_flight},
            )
        self.in_flight += 1

    def end_request(self) -> None:
        self.in_flight -= 1

    def answered(self, method: str, code: int) -> None:
        """Count one answer (``code`` 0: a result) for the metrics; a name
        that is not a method counts as ``-`` (peers choose names)."""
        self.requests[method if method in self.methods else "-", code] += 1

    def begin_answer(self) -> None:
        """Hold the drain for one received message until ``end_answer``: a
        request whose handler has returned is not done until its response is
        written (or given up). Plain calls, not a context manager: this runs
        for every request, and ``rpc`` pairs them in ``try``/``finally``."""
        self._unanswered += 1

    def end_answer(self) -> None:
        self._unanswered -= 1
        if not self._unanswered and self._answers_awaited:  # a new Event only when used
            self._answers_awaited = False
            self._all_answered.set()
            self._all_answered = trio.Event()

    async def wait_all_answered(self) -> None:
        """Return once every message received so far has been answered."""
        while self._unanswered:
            self._answers_awaited = True
            await self._all_answered.wait()

    # --------------------------------------------------------------- methods

    async def health(self, params: NoParams) -> HealthResult:
        return HealthResult(ok=True, state=self.state)

    async def spend(self, params: NoParams) -> SpendResult:
        return self.stats.spend.report()

    async def status(self, params: NoParams) -> StatusResult:
        deadline = self.supervisor.drain_deadline
        return StatusResult(
            version=__version__,
            pid=os.getpid(),
            uptime_s=round(time.monotonic() - self._started, 3),
            state=self.state,
            connections=self.connections,
            in_flight=self.in_flight,
            background=BackgroundStatus(
                count=self.supervisor.count,
                max=self.supervisor.max_tasks,
                by_strategy=dict(self.supervisor.by_name),
            ),
            store=self.store.status(),
            cache=self.stats.cache(),
            strategies=self.stats.by_strategy(),
            drain=DrainStatus(
                deadline_s=None
                if deadline is None
                else round(max(0.0, deadline - trio.current_time()), 3)
            ),
            fleet=self.races.fleet.status() if self.races.fleet is not None else None,
        )

    def analyze_cached(self, params: AnalyzeParams) -> AnalyzeResult | None:
        """The cache hit of ``analyze`` when it needs no I/O (no image, or an
        image URL), answered without a task; None otherwise."""
        image = params.image
        if params.refresh or (
            image is not None and (image.url is None or image.path or image.data)
        ):
            return None
        resource = params.resource or (image.url if image is not None else None)
        if resource is None:
            return None
        key = CacheKey(params.conversation_id, params.category, resource, params.scene)
        input_ = ImageInput(image.url) if image is not None and image.url is not None else None
        if input_ is not None and not url_ok(input_.url):
            return None
        return self.races.cached_answer(key, input_, params.wait)

    async def analyze(self, params: AnalyzeParams) -> AnalyzeResult:
        with conversation(params.conversation_id):
            image, resource = None, params.resource
            if params.image is not None:
                image, default_resource = await load_image(params.image, self.config.inputs)
                resource = resource or default_resource
            if resource is None:
                raise InvalidParams(
                    "invalid params: give image, or resource of a cached result",
                    reason="no_image",
                    field="image",
                )
            key = CacheKey(params.conversation_id, params.category, resource, params.scene)
            timeout = params.timeout or self.config.llm.request_timeout
            try:
                return await self.races.analyze(
                    key,
                    image,
                    wait=params.wait,
                    refresh=params.refresh,
                    deadline=trio.current_time() + timeout,
                )
            except MissingInput:
                raise InvalidParams(
                    f"invalid params: resource {resource[:100]!r} is not cached; send the image",
                    {"resource": resource[:100]},
                    reason="not_cached",
                    field="resource",
                ) from None

    async def events_append(self, params: AppendParams) -> AppendResult:
        if bytes(memoryview(params.payload)[:1]) != b"{":  # a Raw starts at its value
            raise InvalidParams(
                "invalid params: Expected `object` - at `$.payload`",
                reason="invalid_value",
                field="payload",
            )
        try:
            event_id = await self.store.append(
                params.session_id, params.category, params.resource, params.scene, params.payload
            )
        except UnstorablePayload as exc:
            raise InvalidParams(
                f"invalid params: {exc}",
                {"detail": str(exc)},
                reason="unstorable_payload",
                field="payload",
            ) from None
        return AppendResult(id=event_id)

    async def events_list(self, params: ListParams) -> EncodedEvents:
        """A page of events, newest first: at most ``limit``, and never more
        than fits in one answer of ``socket.max_message_bytes`` (less room
        for the envelope and the request's id). The first event always goes
        in, so a client paging with ``before_id`` moves on whatever the sizes."""
        budget = self.config.socket.max_message_bytes - EVENTS_ENVELOPE
        encoded: list[msgspec.Raw] = []
        used = 0

        def accept(event: Event) -> bool:
            nonlocal used
            text = msgspec.json.encode(event)
            if encoded and used + len(text) + 1 > budget:
                return False
            encoded.append(msgspec.Raw(text))
            used += len(text) + 1  # and a comma
            return True

        page = await self.store.list(
            params.session_id,
            params.category,
            params.resource,
            params.limit,
            before_id=params.before_id,
            accept=accept,
        )
        return EncodedEvents(events=encoded, next_before_id=page.next_before_id)

    async def events_best(self, params: BestParams) -> BestResult:
        event = self.store.best(params.session_id, params.category, params.resource, params.scene)
        return BestResult(event=event)

    async def discover(self, params: NoParams) -> msgspec.Raw:
        if self._discover is None:
            methods = sorted(self.methods.values(), key=lambda m: m.name)
            self._discover = msgspec.Raw(encoded_document(methods, __version__))
        return self._discover
