"""Prometheus metrics at ``GET /metrics`` on ``metrics.listen`` (SPEC §7).

Every figure is read at scrape time: one ``status`` snapshot (the same
function the ``status`` method answers with, so the two agree), plus the
two things ``status`` does not carry: requests by method and outcome
(``Service.requests``, one dict increment per answer) and each strategy's
latency histogram since the start (``stats.Latencies``). Nothing is kept
twice and the hit path pays no metrics library call. The text is
``prometheus_client``'s own exposition (``generate_latest``), from a
registry built per scrape around a custom collector.

The listener speaks just enough HTTP/1.1 through ``h11`` (already the
providers' parser): one request per connection, ``GET`` or ``HEAD``
``/metrics``, 10 s to send it. It binds loopback TCP or a Unix socket; a
listener that cannot bind stops the start like the main socket does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

import h11
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from daemon.errors import ServerError
from daemon.protocol import NoParams
from daemon.stats import LATENCY_BUCKETS_S

if TYPE_CHECKING:
    from daemon.config import MetricsConfig
    from daemon.models import StatusResult
    from daemon.service import Service

logger = logging.getLogger(__name__)

OUTCOMES: Final = {  # error code -> the outcome label (SPEC §2 names)
    0: "ok",
    -32700: "parse_error",
    -32600: "invalid_request",
    -32601: "method_not_found",
    -32602: "invalid_params",
    -32603: "internal_error",
    -32000: "shutting_down",
    -32001: "all_strategies_failed",
    -32002: "deadline_exceeded",
    -32003: "bad_input",
    -32004: "forbidden",
    -32005: "overloaded",
}
REASONS: Final = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed"}
REQUEST_TIMEOUT: Final = 10.0  # seconds a scraper has to send its request


class Snapshot:
    """A prometheus_client collector over one ``status`` and the figures
    ``status`` lacks, all taken when the scrape came in."""

    def __init__(self, status: StatusResult, service: Service) -> None:
        self.status = status
        self.requests = dict(service.requests)
        self.latencies = {
            name: counters.latencies_ms for name, counters in service.stats.strategies.items()
        }

    def collect(self) -> Iterator[Metric]:
        s = self.status
        requests = CounterMetricFamily(
            "ctxd_requests",
            "JSON-RPC requests answered, by method ('-': not a method served) and outcome",
            labels=["method", "outcome"],
        )
        for (method, code), count in sorted(self.requests.items()):
            requests.add_metric([method, OUTCOMES.get(code, str(code))], count)
        yield requests
        yield from self._cache()
        yield from self._strategies()
        background = GaugeMetricFamily(
            "ctxd_background_tasks", "background tasks running, by strategy", labels=["strategy"]
        )
        for name, count in sorted(s.background.by_strategy.items()):
            background.add_metric([name], count)
        yield background
        yield GaugeMetricFamily(
            "ctxd_background_tasks_max", "llm.max_background_tasks", value=s.background.max
        )
        yield GaugeMetricFamily("ctxd_connections", "open client connections", value=s.connections)
        yield GaugeMetricFamily(
            "ctxd_requests_in_flight", "requests being served that wait", value=s.in_flight
        )
        yield from self._store()
        state = GaugeMetricFamily("ctxd_state", "1 for the lifecycle state", labels=["state"])
        for name in ("starting", "serving", "draining"):
            state.add_metric([name], 1 if s.state == name else 0)
        yield state
        if s.drain.deadline_s is not None:
            yield GaugeMetricFamily(
                "ctxd_drain_deadline_seconds",
                "seconds until what still runs is cancelled (draining only)",
                value=s.drain.deadline_s,
            )
        yield GaugeMetricFamily(
            "ctxd_uptime_seconds", "seconds since the daemon started", value=s.uptime_s
        )
        yield from self._fleet()

    def _cache(self) -> Iterator[Metric]:
        c = self.status.cache
        for name, value, what in (
            ("hits", c.hits, "analyze answered from the cache"),
            ("misses", c.misses, "analyze that started a race"),
            ("coalesced", c.coalesced, "analyze that joined a race already running"),
            ("upgrades", c.upgrades, "hits that started better strategies in the background"),
        ):
            yield CounterMetricFamily(f"ctxd_cache_{name}", what, value=value)

    def _strategies(self) -> Iterator[Metric]:
        labels = ["strategy", "model"]
        families = {
            name: CounterMetricFamily(f"ctxd_strategy_{name}", what, labels=labels)
            for name, what in (
                ("calls", "calls started"),
                ("wins", "results accepted (stored)"),
                ("invalid", "results that failed validation"),
                ("errors", "calls that failed (HTTP, connection, not configured, ...)"),
                ("timeouts", "calls past the strategy's timeout"),
                ("cancelled", "calls cancelled (outranked, premium_cache_timeout, drain)"),
                ("tokens", "tokens the provider reported"),
            )
        }
        spend = CounterMetricFamily(
            "ctxd_strategy_spend_usd", "USD of the calls whose cost is known", labels=labels
        )
        resting = GaugeMetricFamily(
            "ctxd_strategy_resting",
            "1 while the strategy rests or is not configured",
            labels=["strategy"],
        )
        latency = HistogramMetricFamily(
            "ctxd_strategy_latency_seconds",
            "latency of the calls that returned a result",
            labels=["strategy"],
        )
        for name, st in sorted(self.status.strategies.items()):
            for key, family in families.items():
                family.add_metric([name, st.model], getattr(st, key))
            spend.add_metric([name, st.model], st.usage.usd)
            resting.add_metric([name], 0 if st.state == "ready" else 1)
            window = self.latencies.get(name)
            if window is not None:
                cumulative, buckets = 0, []
                for bound, count in zip(
                    (*LATENCY_BUCKETS_S, float("inf")), window.buckets, strict=True
                ):
                    cumulative += count
                    buckets.append((_le(bound), cumulative))
                latency.add_metric([name], buckets, window.sum_s)
        yield from families.values()
        yield spend
        yield resting
        yield latency

    def _store(self) -> Iterator[Metric]:
        store = self.status.store
        yield GaugeMetricFamily("ctxd_store_events", "events in the store", value=store.events)
        yield GaugeMetricFamily(
            "ctxd_store_used_bytes", "bytes the store's pages use", value=store.used_bytes
        )
        yield GaugeMetricFamily(
            "ctxd_store_map_size_bytes", "the store's current map size", value=store.map_size
        )
        yield CounterMetricFamily(
            "ctxd_store_abandoned",
            "appends whose caller stopped waiting before the commit",
            value=store.abandoned,
        )

    def _fleet(self) -> Iterator[Metric]:
        fleet = self.status.fleet
        if fleet is None:
            return
        connected = GaugeMetricFamily("ctxd_fleet_connected", "1 while the fleet server answers")
        connected.add_metric([], 1 if fleet.state == "connected" else 0)
        yield connected
        yield GaugeMetricFamily(
            "ctxd_fleet_outbox_events", "events not yet on the fleet server", value=fleet.outbox
        )
        for name, value, what in (
            ("published", fleet.published, "events the fleet server accepted"),
            ("duplicates", fleet.duplicates, "events the fleet server already had"),
            ("publish_errors", fleet.publish_errors, "publish rounds that failed"),
            ("hits", fleet.hits, "requests answered from another host's result"),
            ("lookups", fleet.lookups, "read-throughs asked of the fleet server"),
            ("lookup_errors", fleet.lookup_errors, "read-throughs that failed"),
        ):
            yield CounterMetricFamily(f"ctxd_fleet_{name}", what, value=value)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


async def exposition(service: Service) -> bytes:
    """The Prometheus text of the daemon now."""
    status = await service.status(NoParams())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(status, service))
    return generate_latest(registry)


class MetricsServer:
    """The ``metrics.listen`` listener; ``serve`` is startable."""

    def __init__(self, config: MetricsConfig, service: Service) -> None:
        self.config = config
        self.service = service

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the address (``task_status.started``), then serve
        scrapes until cancelled; a Unix socket file is removed at the end.
        Raises ServerError if the address cannot be bound."""
        kind, where = self.config.address
        try:
            if kind == "unix":
                _claim(where)
                sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
                await sock.bind(where)
                sock.listen(16)
                listeners = [trio.SocketListener(sock)]
            else:
                host, port = where.rsplit(":", 1)
                listeners = await trio.open_tcp_listeners(int(port), host=host.strip("[]"))
        except OSError as exc:
            raise ServerError(f"metrics.listen {self.config.listen}: {exc.strerror}") from None
        logger.info("Prometheus metrics on %s/metrics", self.config.listen)
        try:
            task_status.started(self.config.listen)
            await trio.serve_listeners(self._one, listeners)
        finally:
            if kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(where)

    async def _one(self, stream: trio.abc.Stream) -> None:
        """One scrape: read the request, answer it, close."""
        async with stream:
            connection = h11.Connection(h11.SERVER)
            request = None
            with trio.move_on_after(REQUEST_TIMEOUT):
                request = await _read_request(stream, connection)
            if request is None:
                return
            if request.target.split(b"?")[0] != b"/metrics":
                status, body, kind = 404, b"not found: try /metrics\n", b"text/plain"
            elif request.method not in (b"GET", b"HEAD"):
                status, body, kind = 405, b"GET or HEAD\n", b"text/plain"
            else:
                status, body, kind = (
                    200,
                    await exposition(self.service),
                    CONTENT_TYPE_LATEST.encode(),
                )
            headers = [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            try:
                await stream.send_all(
                    connection.send(
                        h11.Response(status_code=status, headers=headers, reason=REASONS[status])
                    )
                    + (connection.send(h11.Data(data=body)) if request.method != b"HEAD" else b"")
                    + connection.send(h11.EndOfMessage())
                )
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return


async def _read_request(stream: trio.abc.Stream, connection: h11.Connection) -> h11.Request | None:
    """The request's head, or None if the peer closed or sent no HTTP."""
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError:
            return None
        if isinstance(event, h11.Request):
            return event
        if event is not h11.NEED_DATA:
            return None
        try:
            data = await stream.receive_some(16384)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        try:
            connection.receive_data(bytes(data))
        except h11.RemoteProtocolError:
            return None


def _claim(path: str) -> None:
    """Remove a socket file left at ``path`` (a daemon that was killed);
    anything else there stops the start."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ServerError(f"metrics.listen: {path} exists and is not a socket")
    os.unlink(path)
