"""One race per screenshot, fleet-wide: a lease per cache key (docs/fleet.md).

Before a host races a key it takes ``ctxd:{tag}:lease`` with ``SET NX PX
fleet.lease_ttl``; the holder renews it every third of that while its race
runs, and gives it up once the race has finished *and* its results left the
outbox, so a waiter woken by the release finds them on the server. A host
that finds the lease held waits, notified, never polling: every raise of a
best record and every release is published on the channel ``ctxd:fleet``
(the key's tag as the message), and one subscription per host wakes the
waiters of that tag. Each wake-up reads the best record once; a waiter also
wakes when the lease's remaining time is up, so when the holder dies (no
renewal, no release) the lease expires and a waiter takes it over and races.
Without the subscription (server down, not yet connected) a host races alone.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal

import trio
from coredis.retry import NoRetryPolicy
from coredis.tokens import PureToken

from daemon.store.fleet_keys import CHANNEL, key_tag, lease_key

if TYPE_CHECKING:
    from daemon.models import CacheKey
    from daemon.store.fleet import Fleet, FleetEvent

logger = logging.getLogger(__name__)

LISTEN_RETRY: Final = 1.0  # seconds between two attempts to subscribe
EXPIRY_SLACK: Final = 0.05  # seconds past the lease's expiry before trying it again

# KEYS: lease. ARGV: token, ttl ms. Returns 1: renewed, 2: it had expired and
# nobody held it: taken back (the holder's race still runs), 0: another
# host's lease.
RENEW_LUA: Final = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
# KEYS: lease. ARGV: token, channel, tag.
RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""

Taken = Literal["won", "held", "hit", "alone", "deadline"]


def _lease(key: CacheKey) -> tuple[str, str]:
    tag = key_tag(key.session_id, key.category, key.resource, key.scene)
    return lease_key(tag), tag


class Leases:
    """The leases this host holds or waits on, and the subscription that wakes
    its waiters."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.ttl = fleet.config.lease_ttl
        self._renew = fleet.client.register_script(RENEW_LUA)
        self._release = fleet.client.register_script(RELEASE_LUA)
        self._tokens = (f"{fleet.host}:{os.getpid()}:{n}" for n in itertools.count(1))
        self._watchers: dict[str, trio.Event] = {}  # tag -> woken at its next message
        self._held: dict[CacheKey, tuple[str, trio.CancelScope]] = {}
        self.listening = False
        self.ready = trio.Event()  # the first subscription is up, or has failed
        self.won = 0
        self.waited = 0
        self.taken_over = 0
        self.lost = 0  # holdings whose lease another host took while this race ran
        self.retaken = 0  # leases found expired (nobody else's) and taken back

    # ------------------------------------------------------------ listening --

    async def listen(self) -> None:
        """Keep one subscription to ``ctxd:fleet`` and wake the waiters of each
        tag it names; runs until cancelled. While it is down, every waiter is
        woken (to re-check) and new requests race alone."""
        while True:
            try:
                pubsub = self.fleet.client.pubsub(
                    channels=[CHANNEL], ignore_subscribe_messages=True, retry_policy=NoRetryPolicy()
                )
                async with pubsub:
                    self.listening = True
                    self.ready.set()
                    async for message in pubsub:
                        data = message["data"]
                        text = data.decode() if isinstance(data, bytes) else str(data)
                        tag, _, maker = text.partition(" ")
                        if maker and maker != self.fleet.host:  # a best record rose
                            self.fleet.mark_stale(tag)
                        woken = self._watchers.pop(tag, None)
                        if woken is not None:
                            woken.set()
            except BaseExceptionGroup as group:
                # coredis's pub/sub ends its own tasks on the way out: a
                # cancel (SIGTERM) comes back as Cancelled grouped with their
                # ClosedResourceError. Only the cancel goes on; the rest is a
                # failure of the server, unless this task is being cancelled.
                cancelled, rest = group.split(trio.Cancelled)
                if cancelled is not None:
                    raise cancelled from None
                if trio.current_effective_deadline() == -math.inf:
                    await trio.lowlevel.checkpoint()  # raises the cancel
                if rest is not None:
                    self.fleet._down(rest)
            except Exception as exc:
                if trio.current_effective_deadline() == -math.inf:
                    await trio.lowlevel.checkpoint()
                self.fleet._down(exc)
            finally:
                self.ready.set()  # subscribed once, or failed: the start waits no more
                self.listening = False
                self.fleet.stale.clear()  # messages may be lost: top-rank hits trust
                # their local copy again only once the subscription is back
                for woken in self._watchers.values():
                    woken.set()
                self._watchers.clear()
            await trio.sleep(LISTEN_RETRY)

    def _watch(self, tag: str) -> trio.Event:
        event = self._watchers.get(tag)
        if event is None:
            event = self._watchers[tag] = trio.Event()
        return event

    # ---------------------------------------------------------------- taking --

    async def take(
        self,
        key: CacheKey,
        deadline: float,
        local_rank: Callable[[], float],
        needed: float,
        top_rank: int,
    ) -> tuple[Taken, FleetEvent | None]:
        """Before racing ``key``: ``won`` (this call took the lease: race, then
        ``finished``), ``held`` (this host held it already: its race, or
        another request deciding an upgrade; race or join, and leave the
        lease to whoever took it), ``hit`` (a result of rank ``needed`` or more is in the
        local store, or is the record returned with it: another host's, being
        stored here), ``deadline`` (still held by another
        host at ``deadline``, trio time), or ``alone`` (no subscription or the
        server failed: race without a lease). Never raises but Cancelled."""
        if key in self._held:
            return "held", None  # this host's race, or an upgrade decided here
        if not self.listening or self.fleet.state == "disconnected":
            return "alone", None
        lease, tag = _lease(key)
        config = self.fleet.config
        waited = False
        while True:
            changed = self._watch(tag)  # before looking: no message can slip between
            token = next(self._tokens)
            try:
                with trio.fail_after(config.timeout):
                    won = await self.fleet.client.set(
                        lease, token, condition=PureToken.NX, px=int(self.ttl * 1000)
                    )
                if won:
                    self._hold(key, lease, token)
                    self.won += 1
                    if waited:
                        self.taken_over += 1
                    return "won", None
                record = await self.fleet.read_through(key, local_rank(), top_rank)
                rank = local_rank()
                if record is not None:
                    rank = max(rank, self.fleet.rank_of(record.strategy))
                if rank >= needed and rank > -math.inf:
                    return "hit", record
                with trio.fail_after(config.timeout):
                    left_ms = await self.fleet.client.pttl(lease)
            except Exception as exc:
                self.fleet.lookup_errors += 1
                self.fleet.failed(exc)
                return "alone", None
            if not waited:
                self.waited += 1
                waited = True
            now = trio.current_time()
            if now >= deadline:
                return "deadline", None
            if left_ms == -2:  # expired since the SET NX: an expiry announces nothing
                continue
            until = deadline if left_ms < 0 else min(deadline, now + left_ms / 1000 + EXPIRY_SLACK)
            with trio.move_on_at(until):
                await changed.wait()
            if not self.listening:
                return "alone", None

    async def try_take(self, key: CacheKey) -> bool:
        """Take the key's lease if it is free, without waiting: True when this
        host holds it now (or cannot know: no subscription, server failing),
        False when another host does."""
        if key in self._held:
            return False  # this host's own race or upgrade holds it
        if not self.listening or self.fleet.state == "disconnected":
            return True
        lease, _ = _lease(key)
        token = next(self._tokens)
        try:
            with trio.fail_after(self.fleet.config.timeout):
                won = await self.fleet.client.set(
                    lease, token, condition=PureToken.NX, px=int(self.ttl * 1000)
                )
        except Exception as exc:
            self.fleet.failed(exc)
            return True
        if won:
            self._hold(key, lease, token)
            self.won += 1
        return bool(won)

    def _hold(self, key: CacheKey, lease: str, token: str) -> None:
        scope = trio.CancelScope()
        self._held[key] = (token, scope)
        assert self.fleet.nursery is not None
        self.fleet.nursery.start_soon(self._keep, lease, token, scope)

    async def _keep(self, lease: str, token: str, scope: trio.CancelScope) -> None:
        """Renew the lease every third of its time until ``finished`` cancels
        this; a failed renewal is retried at the next third. The race itself
        is never stopped for its lease: its calls are paid for, and what it
        stores is published like any result (the best record is only
        raised). A lease that expired under a race still running (this host
        paused past ``lease_ttl``, or cut off from the server that long) is
        taken back at the next renewal when nobody took it meanwhile, so the
        hosts waiting on the key go on waiting for this one race
        (``leases_retaken``). When another host took it, that host races the
        key too: one WARNING, ``leases_lost``, and the renewal keeps trying
        to take it back (the other may finish first; then new requests wait
        for this race instead of starting a third)."""
        lost = False
        with scope:
            while True:
                await trio.sleep(self.ttl / 3)
                try:
                    with trio.fail_after(self.fleet.config.timeout * 4):
                        kept: int = await self._renew(
                            keys=[lease], args=[token, int(self.ttl * 1000)]
                        )
                except Exception as exc:
                    self.fleet._down(exc)
                    continue
                if kept == 2:
                    self.retaken += 1
                    logger.info(
                        "Fleet lease %s had expired before its race ended (this host held it "
                        "past lease_ttl %ss); taken back, the race goes on here",
                        lease,
                        self.ttl,
                    )
                elif kept == 0 and not lost:
                    lost = True
                    self.lost += 1
                    logger.warning(
                        "Fleet lease %s expired before its race ended (this host held it "
                        "past lease_ttl %ss): another host races the same key; this race "
                        "goes on, and takes the lease back if it is free again",
                        lease,
                        self.ttl,
                    )

    def finished(self, key: CacheKey, last_event_id: int | None) -> None:
        """The race for ``key`` ended here: give the lease up once every event
        up to ``last_event_id`` has been published (at once with none)."""
        held = self._held.pop(key, None)
        if held is None:
            return
        token, renewal = held
        renewal.cancel(reason="the race has finished")
        assert self.fleet.nursery is not None
        self.fleet.nursery.start_soon(self._give_up, key, token, last_event_id)

    async def _give_up(self, key: CacheKey, token: str, last_event_id: int | None) -> None:
        lease, tag = _lease(key)
        if last_event_id is not None:
            await self.fleet.published_through(last_event_id)
        try:
            with trio.fail_after(max(self.fleet.config.timeout * 4, 1.0)):
                await self._release(keys=[lease], args=[token, CHANNEL, tag])
        except Exception as exc:
            # It expires by itself within lease_ttl; waiters then take over.
            self.fleet._down(exc)

    def counts(self) -> tuple[int, int, int]:
        return self.won, self.waited, self.taken_over
