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

A holding ends with a tombstone (``ctxd:{tag}:ended:<token>``, 3 x lease_ttl),
so that a command of that holding reaching the server after its end (a
renewal sent before the release, a SET NX that timed out and was abandoned)
does nothing. A holder whose lease another host took while its race ran
waits for it in ``ctxd:{tag}:lease:next``; that host's release hands the
lease over atomically.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal

import trio
from coredis.retry import NoRetryPolicy

from daemon.store.fleet_keys import CHANNEL, ended_key, key_tag, lease_key, lease_next_key

if TYPE_CHECKING:
    from daemon.models import CacheKey
    from daemon.store.fleet import Fleet, FleetEvent

logger = logging.getLogger(__name__)

PUBLISH_WAIT_MIN: Final = 1.0  # seconds a background command may take, at least (as fleet.py)
LISTEN_RETRY: Final = 1.0  # seconds between two attempts to subscribe
EXPIRY_SLACK: Final = 0.05  # seconds past the lease's expiry before trying it again

# The keys of one holding: the lease, the token of a holder waiting to have
# it handed back, and the holding's tombstone (set when it ended).
# KEYS: lease, next, ended. ARGV: token, ttl ms. Returns 1: taken, 0: held
# by another host, or this holding was given up already (a SET NX that timed
# out, abandoned, reaching the server late).
TAKE_LUA: Final = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# KEYS: lease, next, ended. ARGV: token, ttl ms. Returns 1: renewed (or
# handed back by the release of the host that had taken it), 2: it had
# expired and nobody held it: taken back (the holder's race still runs),
# 0: another host's lease (this token waits in ``next`` to have it handed
# back), 3: this holding has ended (a late renewal): nothing done.
RENEW_LUA: Final = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('EXISTS', KEYS[3]) == 1 then return 3 end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
local waiting = redis.call('GET', KEYS[2])
if not waiting or waiting == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
end
return 0
"""
# KEYS: lease, next, ended. ARGV: token, channel, tag, ttl ms, tombstone ms.
# Ends the holding ``token`` (its tombstone); when it held the lease, hands it
# to the holder waiting in ``next`` (its race still runs: waiters go on
# waiting, nothing is announced) or deletes it and announces it.
RELEASE_LUA: Final = """
redis.call('SET', KEYS[3], '1', 'PX', ARGV[5])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local waiting = redis.call('GET', KEYS[2])
if waiting then
  redis.call('SET', KEYS[1], waiting, 'PX', ARGV[4])
  redis.call('DEL', KEYS[2])
  return 2
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
TOMBSTONE_TTLS: Final = 3  # a holding's tombstone lasts this many lease_ttl

Taken = Literal["won", "held", "hit", "alone", "deadline"]


def _lease(key: CacheKey) -> tuple[str, str]:
    tag = key_tag(key.session_id, key.category, key.resource, key.scene)
    return lease_key(tag), tag


def _keys(tag: str, token: str) -> list[str]:
    """The keys of the holding ``token`` of ``tag``'s lease (one hash tag)."""
    return [lease_key(tag), lease_next_key(tag), ended_key(tag, token)]


class Leases:
    """The leases this host holds or waits on, and the subscription that wakes
    its waiters."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.ttl = fleet.config.lease_ttl
        self._take = fleet.client.register_script(TAKE_LUA)
        self._renew = fleet.client.register_script(RENEW_LUA)
        self._release = fleet.client.register_script(RELEASE_LUA)
        self._tokens = (f"{fleet.host}:{os.getpid()}:{n}" for n in itertools.count(1))
        # tag -> the waiters woken at its next message (each take's own)
        self._watchers: dict[str, set[trio.Event]] = {}
        self._held: dict[CacheKey, tuple[str, trio.CancelScope]] = {}
        self.listening = False
        self.ready = trio.Event()  # the first subscription is up, or has failed
        self.won = 0
        self.waited = 0
        self.taken_over = 0
        self.lost = 0  # times a holding's lease was found another host's while its race ran
        self.retaken = 0  # times a holding got its lease back (found missing, or handed back)

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
                        for woken in self._watchers.pop(tag, ()):
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
                for waiters in self._watchers.values():
                    for woken in waiters:
                        woken.set()
                self._watchers.clear()
            await trio.sleep(LISTEN_RETRY)

    def _watch(self, tag: str) -> trio.Event:
        event = trio.Event()
        self._watchers.setdefault(tag, set()).add(event)
        return event

    def _unwatch(self, tag: str, event: trio.Event) -> None:
        """``take`` is done with ``event`` (woken or not): every return drops
        it, so a key that never gets a message leaves nothing behind."""
        waiters = self._watchers.get(tag)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._watchers[tag]

    async def _set_nx(self, tag: str, token: str) -> bool:
        """``SET NX PX`` of the lease for ``token``, under ``fleet.timeout``.
        A command that timed out (or whose request was cancelled) may still
        run on the server later, and would leave a lease nobody holds that
        every host waits on up to ``lease_ttl``: it is abandoned (the
        release's tombstone, in the background), so whichever reaches the
        server first, no lease of that token stays."""
        try:
            with trio.fail_after(self.fleet.config.timeout):
                won: int = await self._take(
                    keys=_keys(tag, token), args=[token, int(self.ttl * 1000)]
                )
        except BaseException:
            if self.fleet.nursery is not None:
                with contextlib.suppress(RuntimeError):  # (closed: the fleet has stopped)
                    self.fleet.nursery.start_soon(self._end, tag, token)
            raise
        return won == 1

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
            try:
                token = next(self._tokens)
                try:
                    won = await self._set_nx(tag, token)
                    if won:
                        self._hold(key, tag, token)
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
                until = deadline
                if left_ms >= 0:
                    until = min(deadline, now + left_ms / 1000 + EXPIRY_SLACK)
                with trio.move_on_at(until):
                    await changed.wait()
                if not self.listening:
                    return "alone", None
            finally:
                self._unwatch(tag, changed)

    async def try_take(self, key: CacheKey) -> bool:
        """Take the key's lease if it is free, without waiting: True when this
        host holds it now (or cannot know: no subscription, server failing),
        False when another host does."""
        if key in self._held:
            return False  # this host's own race or upgrade holds it
        if not self.listening or self.fleet.state == "disconnected":
            return True
        _, tag = _lease(key)
        token = next(self._tokens)
        try:
            won = await self._set_nx(tag, token)
        except Exception as exc:
            self.fleet.failed(exc)
            return True
        if won:
            self._hold(key, tag, token)
            self.won += 1
        return bool(won)

    def _hold(self, key: CacheKey, tag: str, token: str) -> None:
        scope = trio.CancelScope()
        self._held[key] = (token, scope)
        assert self.fleet.nursery is not None
        self.fleet.nursery.start_soon(self._keep, tag, token, scope)

    async def renew(self, tag: str, token: str) -> int:
        """One renewal of the holding ``token`` (RENEW_LUA's answer)."""
        kept: int = await self._renew(keys=_keys(tag, token), args=[token, int(self.ttl * 1000)])
        return kept

    async def _keep(self, tag: str, token: str, scope: trio.CancelScope) -> None:
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
        to take it back: this host's token waits on the server, and when the
        other host's race ends its release hands the lease to this one at
        once (atomically: a host already waiting on the key, woken by
        nothing, goes on waiting for this race instead of starting a third).
        A holding that ended leaves a tombstone, so a renewal that reaches
        the server after the release (sent before it, or timed out) does
        nothing. A slow renewal is one slow reply (``Fleet.failed``), not a
        lost server; it is retried at the next third."""
        lease = lease_key(tag)
        lost = False
        with scope:
            while True:
                await trio.sleep(self.ttl / 3)
                try:
                    with trio.fail_after(max(self.fleet.config.timeout * 4, PUBLISH_WAIT_MIN)):
                        kept = await self.renew(tag, token)
                except Exception as exc:
                    self.fleet.failed(exc)
                    continue
                if kept == 2 or (kept == 1 and lost):
                    lost = False  # a later loss is a loss again (WARNING, leases_lost)
                    self.retaken += 1
                    logger.info(
                        "Fleet lease %s was %s before its race ended; it is this host's "
                        "again, the race goes on here",
                        lease,
                        "found missing" if kept == 2 else "handed back by the host that took it",
                    )
                elif kept == 0 and not lost:
                    lost = True
                    self.lost += 1
                    logger.warning(
                        "Fleet lease %s was found another host's before its race ended (this "
                        "host held it past lease_ttl %ss, or the server lost it): that host "
                        "races the same key too; this race goes on, and gets the lease back "
                        "when that host's race ends",
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
        _, tag = _lease(key)
        if last_event_id is not None:
            await self.fleet.published_through(last_event_id)
        await self._end(tag, token)

    async def _end(self, tag: str, token: str) -> None:
        """End the holding ``token``: its tombstone, and its lease released
        (handed to a holder waiting for it, or deleted and announced). On
        failure the lease expires by itself within lease_ttl; waiters then
        take over."""
        try:
            with trio.fail_after(max(self.fleet.config.timeout * 4, PUBLISH_WAIT_MIN)):
                await self._release(
                    keys=_keys(tag, token),
                    args=[
                        token,
                        CHANNEL,
                        tag,
                        int(self.ttl * 1000),
                        int(self.ttl * 1000 * TOMBSTONE_TTLS),
                    ],
                )
        except Exception as exc:
            self.fleet.failed(exc)

    def counts(self) -> tuple[int, int, int]:
        return self.won, self.waited, self.taken_over
