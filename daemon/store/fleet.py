"""The fleet: hosts share one cache on a Redis-protocol server (docs/fleet.md).

LMDB stays each host's durable store; the fleet is a second copy that every
host reads through. Per cache key the server holds, under one hash tag (so a
Cluster keeps them on one shard):

    ctxd:{<tag>}:best     hash: rank, ts, event  -- only ever raised (rank, then ts)
    ctxd:{<tag>}:hist     list: the key's events, newest first, at most
                          ``fleet.max_events_per_key``
    ctxd:{<tag>}:origins  hash: host -> highest event id of that host applied,
                          '<host> ts' -> the latest time among them

Publish: the store puts every event's id in its ``outbox`` sub-database in
the event's own transaction; ``Fleet.run`` sends the outbox in id order, a
batch per round trip, through one Lua script that applies an event only if
its id is above its host's mark for the key (so a resend after a crash or a
lost reply is a no-op: idempotent by origin) and raises the best record only
for a higher rank, or the same rank and a later time. An id leaves the outbox
only once the server answered for it. A request never waits for any of this.

Read through: ``read_through`` asks for the key's best record once, under
``fleet.timeout``; a record better than the local best is stored locally with
``provenance.origin`` and served from there. An event that came from the fleet
is never published again.

coredis's costs (measured, docs/fleet.md): a command is ~0.2 ms over a Unix
socket on trio, four times redis-py's sync client, because each one crosses
three tasks (caller, the connection's writer, its reader); a pipeline of 100
costs ~18 µs a command. So the outbox goes out in pipelines, and the hot path
(a read-through) is one command.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote, urlsplit

import coredis
import msgspec
import trio
from coredis.connection import TCPLocation
from coredis.retry import NoRetryPolicy

from daemon.models import CacheKey, Event, FleetStatus, JsonObject, Origin, Provenance
from daemon.store.fleet_keys import CHANNEL, failed_key, key_tag, record_keys
from daemon.store.fleet_lease import Leases

if TYPE_CHECKING:
    from daemon.config import FleetConfig
    from daemon.store.lmdb import RankOf, Store

logger = logging.getLogger(__name__)

PING_EVERY: Final = 5.0  # seconds between two round-trip probes
BACKOFF_FIRST: Final = 0.05  # seconds before the first retry of a failed publish
BACKOFF_MAX: Final = 2.0
PUBLISH_WAIT_MIN: Final = 1.0  # seconds a publish round may take, at least
PROBE_KEY: Final = "ctxd:probe"  # read (never written) by a cluster's probe
STALE_MAX: Final = 100_000  # tags remembered as raised elsewhere (a top-rank hit re-asks)

# KEYS: best, hist, origins. ARGV: host, event id, rank, ts, event, max events,
# channel, tag. Returns 0: already applied (a resend), 1: kept in the history,
# 2: also the new best record (announced on the channel).
# A resend is an id at or below the host's mark *and* a time at or before the
# latest applied: a store that starts again at id 1 under the same host id (a
# replaced disk, a restored backup) makes events of later times, which are
# applied (its ids were taken for resends and dropped). A mark without its
# time (written before it was kept) compares by id alone.
PUBLISH_LUA: Final = """
local mark = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local seen = redis.call('HGET', KEYS[3], ARGV[1] .. ' ts')
if seen then seen = tonumber(seen) elseif mark > 0 then seen = math.huge else seen = -math.huge end
local id, at = tonumber(ARGV[2]), tonumber(ARGV[4])
if id <= mark and at <= seen then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
if at > seen then redis.call('HSET', KEYS[3], ARGV[1] .. ' ts', ARGV[4]) end
redis.call('LPUSH', KEYS[2], ARGV[5])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[6]) - 1)
local cur = redis.call('HMGET', KEYS[1], 'rank', 'ts')
local rank, ts = tonumber(ARGV[3]), tonumber(ARGV[4])
if cur[1] then
  local r, t = tonumber(cur[1]), tonumber(cur[2])
  if rank < r or (rank == r and ts <= t) then return 1 end
end
redis.call('HSET', KEYS[1], 'rank', ARGV[3], 'ts', ARGV[4], 'event', ARGV[5])
redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' ' .. ARGV[1])
return 2
"""

State = Literal["connecting", "connected", "disconnected"]


def describe(exc: BaseException) -> str:
    """What failed, for a log line: the leaves of an exception group (a
    nursery's "Exceptions from Trio nursery" says nothing), each as
    ``Type: message``, a timeout named as such."""
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[str] = []
        for inner in exc.exceptions:
            text = describe(inner)
            if text not in leaves:
                leaves.append(text)
        return "; ".join(leaves)
    if isinstance(exc, trio.TooSlowError):
        return "no answer within the timeout"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_only(exc: BaseException) -> bool:
    """Whether ``exc`` (or a leaf of it) is a write refused by a replica."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_read_only(inner) for inner in exc.exceptions)
    return isinstance(exc, coredis.exceptions.ReadOnlyError) or (
        exc.__cause__ is not None and _read_only(exc.__cause__)
    )


class FleetEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the server holds it: the local schema plus its origin."""

    session_id: str
    category: str
    resource: str
    scene: str
    ts: float
    strategy: str
    model: str
    payload: JsonObject
    provenance: Provenance | None
    origin: Origin


_ENCODE: Final = msgspec.json.Encoder()
_DECODE: Final = msgspec.json.Decoder(FleetEvent)


def make_sentinel(config: FleetConfig) -> coredis.Sentinel[bytes] | None:
    """The Sentinels ``config`` names (None: no ``sentinel_nodes``). They
    are asked where the primary is; the client is ``primary_for`` it."""
    if config.sentinel_nodes is None:
        return None
    nodes = []
    for node in config.sentinel_nodes:
        host, _, port = node.rpartition(":")
        nodes.append(TCPLocation(host, int(port)))
    wait = max(config.timeout * 4, PUBLISH_WAIT_MIN)
    return coredis.Sentinel(
        nodes,
        sentinel_kwargs={"stream_timeout": wait, "connect_timeout": wait},
        retry_policy=NoRetryPolicy(),
    )


def make_client(
    config: FleetConfig, sentinel: coredis.Sentinel[bytes] | None = None
) -> coredis.Redis[bytes] | coredis.RedisCluster[bytes]:
    """The coredis client ``config`` names. No retries of its own: the
    outbox retries publishing, and a read-through is asked once."""
    common: dict[str, Any] = {
        "password": config.password(),
        "stream_timeout": max(config.timeout * 4, PUBLISH_WAIT_MIN),
        "connect_timeout": max(config.timeout * 4, PUBLISH_WAIT_MIN),
        "retry_policy": NoRetryPolicy(),
    }
    if config.cluster_nodes is not None:
        nodes = []
        for node in config.cluster_nodes:
            host, _, port = node.rpartition(":")
            nodes.append(coredis.typing.Node(host=host, port=int(port)))
        return coredis.RedisCluster(startup_nodes=nodes, **common)
    if sentinel is not None:
        assert config.sentinel_service is not None
        common.pop("retry_policy")  # the Sentinel's own (none) is the primary's
        return sentinel.primary_for(
            config.sentinel_service, client_name=f"ctxd:{config.host_id}", **common
        )
    assert config.url is not None
    url = urlsplit(config.url)
    if url.scheme == "unix":
        name = f"ctxd:{config.host_id}"
        return coredis.Redis(unix_socket_path=unquote(url.path), client_name=name, **common)
    db = int(url.path.strip("/") or "0")
    tls: dict[str, Any] = {}
    if url.scheme == "rediss":
        tls = {"ssl": True, "ssl_cert_reqs": "required", "ssl_ca_certs": config.ca_file}
    return coredis.Redis(
        host=url.hostname,
        port=url.port or 6379,
        db=db,
        client_name=f"ctxd:{config.host_id}",
        **common,
        **tls,
    )


class Fleet:
    """One host's side of the fleet: the publisher of the store's outbox, the
    read-through, the connection's health, and ``status.fleet``."""

    def __init__(self, config: FleetConfig, store: Store, rank_of: RankOf) -> None:
        self.config = config
        self.host = config.host_id
        self.store = store
        self._rank_of = rank_of
        self.rank_of = rank_of
        self.sentinel = make_sentinel(config)  # entered before the client (_connected)
        self.client = make_client(config, self.sentinel)
        self._publish = self.client.register_script(PUBLISH_LUA)
        store.outbox_on = True  # from the first commit on, before anything is served
        self.state: State = "connecting"
        self.rtt_ms: float | None = None
        self.published = 0
        self.duplicates = 0
        self.publish_errors = 0
        self.hits = 0
        self.lookups = 0
        self.lookup_errors = 0
        self.running = False
        self.nursery: trio.Nursery | None = None  # for the leases' renewals and releases
        self._published = trio.Event()  # set after each publish round
        self._probe_now = trio.Event()  # a slow reply: probe before PING_EVERY
        self.leases = Leases(self)
        # Other hosts' records being stored here, by key (read_through).
        self._storing: dict[CacheKey, FleetEvent] = {}
        # Tags whose best record another host raised since this host last
        # looked (the leases' subscription fills it): a top-rank local hit
        # asks the server again only for these. Bounded, oldest dropped.
        self.stale: collections.OrderedDict[str, bool] = collections.OrderedDict()

    @property
    def server(self) -> str:
        """Where the server is, without credentials (the config refuses them)."""
        if self.config.cluster_nodes is not None:
            return "cluster " + ",".join(self.config.cluster_nodes)
        if self.config.sentinel_nodes is not None:
            nodes = ",".join(self.config.sentinel_nodes)
            return f"sentinel {self.config.sentinel_service} via {nodes}"
        assert self.config.url is not None
        return self.config.url

    # ------------------------------------------------------------ lifecycle --

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish the outbox and watch the connection until cancelled. The
        client's connections live in this task; a server that is down or slow
        never ends it (each failure is counted and retried). Serve with the
        subscription up when the server answers, so the first requests
        already share races; never wait long for it."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._connected)
            with trio.move_on_after(max(self.config.timeout * 4, PUBLISH_WAIT_MIN)):
                await self.leases.ready.wait()
            task_status.started()

    async def _connected(self) -> None:
        """Enter the client and run the publisher, the pinger and the
        subscription in it. A cluster client learns the slots as it is
        entered, so with no seed answering entering fails: the host serves
        alone (disconnected) and enters again after a backoff, as the
        publisher retries (that failure used to end the daemon, exit 1)."""
        backoff = BACKOFF_FIRST
        while True:
            entered = False
            try:
                async with contextlib.AsyncExitStack() as stack:
                    if self.sentinel is not None:  # asked for the primary's address
                        await stack.enter_async_context(self.sentinel)
                    await stack.enter_async_context(self.client)
                    entered = True
                    self.running = True
                    try:
                        async with trio.open_nursery() as nursery:
                            self.nursery = nursery
                            nursery.start_soon(self._publisher)
                            nursery.start_soon(self._pinger)
                            nursery.start_soon(self.leases.listen)
                    finally:
                        self.running = False
                        self.nursery = None
                return  # (its tasks run until cancelled)
            except Exception as exc:
                if entered:
                    raise  # a bug: the tasks above handle the server's failures
                self._down(exc)
                self.leases.ready.set()  # the start waits no more
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _up(self) -> None:
        if self.state != "connected":
            if self.state == "disconnected":
                logger.info("Fleet server %s is reachable again", self.server)
            self.state = "connected"

    def failed(self, exc: BaseException) -> None:
        """A command on a request's path failed. A reply slower than
        ``fleet.timeout`` is not a lost server (one stall of the server, one
        slow round trip): it costs that request alone, and the pinger probes
        at once (its PING, with a longer timeout, decides). Anything else
        (refused, reset, closed) marks the server lost."""
        if isinstance(exc, trio.TooSlowError):
            self._probe_now.set()
        else:
            self._down(exc)

    def _down(self, exc: BaseException) -> None:
        if self.sentinel is not None and _read_only(exc):
            # A primary demoted to a replica without dropping its clients
            # (a Sentinel kills them; a partition healing, an operator's
            # REPLICAOF may not): the pool's connections point at a replica
            # for good. Drop them: new ones ask the Sentinels again.
            self.client.connection_pool.disconnect()
        if self.state != "disconnected":
            logger.warning(
                "Fleet server %s unreachable (%s); serving from this host alone, "
                "events wait in the outbox",
                self.server,
                describe(exc),
            )
            self.state = "disconnected"
            if not isinstance(self.client, coredis.RedisCluster):
                # A blip: probe now, not at the next PING_EVERY. (Not on a
                # Cluster: with one node gone the others answer, and the
                # host would log lost/back/lost for a partial outage.)
                self._probe_now.set()

    async def _pinger(self) -> None:
        """A PING every ``PING_EVERY`` s: the round trip in ``status``, and the
        connection's state (one WARNING when lost, one INFO when back). Once
        lost, probed at once (one server or Sentinel) and then with a backoff
        (from ``BACKOFF_FIRST`` to ``PING_EVERY``): a host that had nothing
        to publish came back only at its next PING, racing alone up to 5 s
        after a blip of the server (a dropped connection, a failover)."""
        backoff = BACKOFF_FIRST
        while True:
            self._probe_now = trio.Event()
            if await self.probe():
                wait, backoff = PING_EVERY, BACKOFF_FIRST
            else:
                wait, backoff = backoff, min(backoff * 2, PING_EVERY)
            with trio.move_on_after(wait):
                await self._probe_now.wait()  # or a slow reply asks for one now

    async def probe(self) -> bool:
        """One PING: the round trip and the connection's state; never raises
        but Cancelled. A server back wakes the publisher. On a Cluster a node
        answers PING while the cluster refuses every key (CLUSTERDOWN, the
        first 2 s after its masters start again), so there the probe reads a
        key: "reachable again" is said once the cluster serves, not twice."""
        started = time.perf_counter()
        try:
            with trio.fail_after(max(self.config.timeout * 4, PUBLISH_WAIT_MIN)):
                if isinstance(self.client, coredis.RedisCluster):
                    await self.client.exists([PROBE_KEY])
                else:
                    await self.client.ping()
        except Exception as exc:
            self._down(exc)
            return False
        self.rtt_ms = round((time.perf_counter() - started) * 1000, 3)
        self._up()
        self.store.outbox_wake.set()  # a reconnect may have outbox to send
        return True

    # ------------------------------------------------------------ publishing --

    async def _publisher(self) -> None:
        """Send the outbox, oldest first, until cancelled; after a failure,
        retry with a capped exponential backoff (the events stay put)."""
        backoff = BACKOFF_FIRST
        while True:
            self.store.outbox_wake = trio.Event()
            try:
                sent = await self.publish_round()
            except Exception as exc:
                self.publish_errors += 1
                self._down(exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_FIRST
            self._published.set()
            self._published = trio.Event()
            if not sent:
                await self.store.outbox_wake.wait()

    async def published_through(self, event_id: int) -> None:
        """Return once no id up to ``event_id`` is left in the outbox."""
        while True:
            page, _ = self.store.outbox_peek(1)
            if not page or page[0][0] > event_id:
                return
            await self._published.wait()

    async def publish_round(self) -> int:
        """Send one batch of the outbox and drop it from there once the server
        answered; returns how many ids it took (0: the outbox is empty).
        Raises whatever the server or the client raised (nothing dropped)."""
        page, _ = self.store.outbox_peek(self.config.publish_batch)
        if not page:
            return 0
        sends: list[tuple[int, Event]] = []
        for event_id, event in page:
            # Gone (retention dropped it before it went out), or it came from
            # the fleet: nothing to send.
            if event is not None and (event.provenance is None or event.provenance.origin is None):
                sends.append((event_id, event))
        if sends:
            with trio.fail_after(max(self.config.timeout * 4, PUBLISH_WAIT_MIN)):
                results = await self._send(sends)
            self._up()
            for result in results:
                if result == 0:
                    self.duplicates += 1
                else:
                    self.published += 1
        await self.store.outbox_done([event_id for event_id, _ in page])
        return len(page)

    async def _send(self, sends: list[tuple[int, Event]]) -> list[int]:
        calls: list[Awaitable[Any]] = []
        async with self.client.pipeline(transaction=False) as pipe:
            for event_id, event in sends:
                record = FleetEvent(
                    session_id=event.session_id,
                    category=event.category,
                    resource=event.resource,
                    scene=event.scene,
                    ts=event.ts,
                    strategy=event.strategy,
                    model=event.model,
                    payload=event.payload,
                    provenance=event.provenance,
                    origin=Origin(host=self.host, event_id=event_id),
                )
                tag = key_tag(event.session_id, event.category, event.resource, event.scene)
                calls.append(
                    self._publish(
                        keys=record_keys(tag),
                        args=(
                            self.host,
                            event_id,
                            self._rank_of(event.strategy),
                            repr(event.ts),
                            _ENCODE.encode(record),
                            self.config.max_events_per_key,
                            CHANNEL,
                            tag,
                        ),
                        client=pipe,
                    )
                )
        return [int(await call) for call in calls]

    # ---------------------------------------------------------- read-through --

    async def fetch_best(self, key: CacheKey) -> FleetEvent | None:
        """The key's best record on the server; raises on any failure."""
        best, _, _ = record_keys(key_tag(key.session_id, key.category, key.resource, key.scene))
        raw = await self.client.hget(best, "event")
        if raw is None:
            return None
        record = _DECODE.decode(raw)
        if (record.session_id, record.category, record.resource, record.scene) != (
            key.session_id,
            key.category,
            key.resource,
            key.scene,
        ):
            return None  # a tag collision: not this key's record
        return record

    async def before_hit(
        self,
        key: CacheKey,
        local_rank: Callable[[], float],
        top_rank: int,
        failed_at: dict[tuple[CacheKey, str], float] | None = None,
    ) -> tuple[bool, FleetEvent | None, bool]:
        """Once per request, before the cache read: another host's better
        record (answer from it), or whether this host may upgrade its local
        best when that is below the top rank: only while holding the key's
        lease, so that one host in the fleet runs the better strategies (the
        caller gives the lease back with ``leases.finished`` if no upgrade
        starts, and only when the third value, "this call took it", is True:
        a concurrent hit on this host must not release the lease another
        request took for its upgrade)."""
        tag = key_tag(key.session_id, key.category, key.resource, key.scene)
        if self.stale.pop(tag, False):  # another host raised this key's best since
            local = self.store.best(key.session_id, key.category, key.resource, key.scene)
            if local is not None and self._rank_of(local.strategy) >= top_rank:
                # A copy's ``ts`` is its commit here, not its maker's time:
                # a copy is compared by which record it is.
                copy = local.provenance.origin if local.provenance is not None else None
                newer = await self.read_through(
                    key, local_rank(), top_rank, newer_than=local.ts, copy_of=copy
                )
                return False, newer, False
        record = await self.read_through(key, local_rank(), top_rank)
        if record is not None:
            return False, record, False  # the maker upgrades it, if anyone
        rank = local_rank()
        if rank >= top_rank or rank == -math.inf:
            return True, None, False
        may = await self.leases.try_take(key)  # False when held here already
        took = may and key in self.leases._held
        if may and failed_at is not None:
            try:
                await self._learn_failures(key, failed_at)
            except BaseException:
                if took:  # cancelled here: nobody else would give it back
                    self.leases.finished(key, None)
                raise
        return may, None, took

    def mark_stale(self, tag: str) -> None:
        """Another host raised the best record of ``tag``'s key."""
        self.stale[tag] = True
        self.stale.move_to_end(tag)
        while len(self.stale) > STALE_MAX:
            self.stale.popitem(last=False)

    async def _learn_failures(
        self, key: CacheKey, failed_at: dict[tuple[CacheKey, str], float]
    ) -> None:
        """The upgrade retry window, shared: failures other hosts recorded for
        ``key`` (``share_failures``) enter ``failed_at`` (trio time) as if
        they had happened here. A failure to ask leaves it as it is."""
        tag = key_tag(key.session_id, key.category, key.resource, key.scene)
        try:
            with trio.fail_after(self.config.timeout):
                found = await self.client.hgetall(failed_key(tag))
        except Exception as exc:
            self.failed(exc)
            return
        now, wall = trio.current_time(), time.time()
        for name, when in found.items():
            strategy = name.decode() if isinstance(name, bytes) else str(name)
            at = now - max(0.0, wall - float(when))
            if at > failed_at.get((key, strategy), -math.inf):
                failed_at[(key, strategy)] = at

    def share_failures(self, key: CacheKey, strategies: list[str], window: float) -> None:
        """Record on the server that ``strategies`` failed on ``key`` now, for
        ``window`` seconds (``llm.upgrade_retry_after``); in the background."""
        if strategies and self.nursery is not None and window > 0:
            self.nursery.start_soon(self._share_failures, key, strategies, window)

    async def _share_failures(self, key: CacheKey, strategies: list[str], window: float) -> None:
        tag = key_tag(key.session_id, key.category, key.resource, key.scene)
        when = repr(time.time())
        try:
            with trio.fail_after(max(self.config.timeout * 4, PUBLISH_WAIT_MIN)):
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.hset(failed_key(tag), {name: when for name in strategies})
                    pipe.pexpire(failed_key(tag), int(window * 1000))
        except Exception as exc:
            self.publish_errors += 1
            self._down(exc)

    async def read_through(
        self,
        key: CacheKey,
        local_rank: float,
        top_rank: int,
        newer_than: float | None = None,
        copy_of: Origin | None = None,
    ) -> FleetEvent | None:
        """Before racing: when the local best (``local_rank``, -inf for none)
        is below ``top_rank``, ask the server once, under ``fleet.timeout``,
        for a better record and return it. It is stored locally (with its
        origin) by a task of the fleet's own, so the answer does not wait for
        a durable commit; until that commit, the same key is answered from
        the record in hand without asking again. (With the fleet not running,
        in unit tests, it is stored before this returns.) Any failure or
        timeout returns None (the host races alone) and is counted; it never
        raises but Cancelled."""
        if (local_rank >= top_rank and newer_than is None) or self.state == "disconnected":
            return None
        storing = self._storing.get(key)
        if storing is not None:
            return storing
        self.lookups += 1
        try:
            with trio.fail_after(self.config.timeout):
                record = await self.fetch_best(key)
        except Exception as exc:
            self.lookup_errors += 1
            if isinstance(exc, msgspec.DecodeError):
                logger.warning("Fleet record of this key is not an event: %s", exc)
            else:
                self.failed(exc)
            return None
        if record is None:
            return None  # (this host's own record is taken too: its store may be new)
        rank = self._rank_of(record.strategy)
        newer = False
        if newer_than is not None and rank == local_rank:
            if copy_of is None:  # this host's own result: its time is the maker's
                newer = record.ts > newer_than
            else:  # the server's best moved past the record this host copied
                newer = (record.origin.host, record.origin.event_id) != (
                    copy_of.host,
                    copy_of.event_id,
                )
        if (rank <= local_rank and not newer) or math.isinf(rank) or key in self._storing:
            return self._storing.get(key)
        self.hits += 1
        self._storing[key] = record
        if self.nursery is None:
            await self._store_locally(key, record)
        else:
            self.nursery.start_soon(self._store_locally, key, record)
        return record

    async def _store_locally(self, key: CacheKey, record: FleetEvent) -> None:
        provenance = record.provenance or Provenance()
        try:
            await self.store.append(
                key.session_id,
                key.category,
                key.resource,
                key.scene,
                record.payload,
                msgspec.structs.replace(provenance, origin=record.origin),
            )
        except Exception:
            logger.exception("Could not store another host's result here")
        finally:
            self._storing.pop(key, None)

    # ---------------------------------------------------------------- status --

    def status(self) -> FleetStatus:
        page, length = self.store.outbox_peek(1)
        age = None
        if page and page[0][1] is not None:
            age = round(max(0.0, time.time() - page[0][1].ts), 3)
        return FleetStatus(
            host_id=self.host,
            server=self.server,
            state=self.state,
            rtt_ms=self.rtt_ms,
            outbox=length,
            outbox_age_s=age,
            published=self.published,
            duplicates=self.duplicates,
            publish_errors=self.publish_errors,
            hits=self.hits,
            lookups=self.lookups,
            lookup_errors=self.lookup_errors,
            leases_won=self.leases.won,
            leases_waited=self.leases.waited,
            leases_taken_over=self.leases.taken_over,
            leases_lost=self.leases.lost,
            leases_retaken=self.leases.retaken,
        )
