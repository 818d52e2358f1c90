"""Budgets counted fleet-wide on the fleet's server (docs/fleet.md, "Budgets").

In fleet mode a strategy's ``budget`` (SPEC §7) is the fleet's, not each
host's. Every host counts on the fleet's server, through the ``Fleet``'s
client, per strategy with a budget:

    ctxd:spend:{<strategy>}:usd:<YYYY-MM-DD>  float: the UTC day's known USD
                                              (INCRBYFLOAT), gone a day after the day
    ctxd:spend:{<strategy>}:calls:<minute>    integer: the UTC minute's calls
                                              (INCRBY), gone two minutes after it

Both keys of a strategy share one hash tag, so a Cluster keeps them on one
shard and one script sees both. ``admit`` (in a leg's task, before its
request) runs ``ADMIT_LUA``, atomically on the server: refused when the
day's USD reached ``usd_per_day``; else the minute's calls go up by one,
and past ``calls_per_minute`` that one is taken back and the leg refused.
So hosts admitted at the same instant never overshoot the minute. The rest
goes through ``ADJUST_LUA``, sent by ``run`` (the host's ``Spend`` task)
from a queue, never on a request's path: a known cost (INCRBYFLOAT), a
retry (one call more), a leg that ended without a request (its call given
back; never below 0, nor into an expired minute).

The server lost (an error, or no answer within ``fleet.timeout``; or the
fleet's own probe says disconnected): the host counts alone with its local
figures (``daemon/spend.py``: per host, as without a fleet), says so once
(WARNING) and once when the server answers again (INFO); it asks the
server again at most every ``RETRY_EVERY`` seconds meanwhile. Costs and
calls counted while it was lost are sent when it is back (their day's and
minute's keys); what a host counted alone is not checked against the
others' afterwards.
"""

from __future__ import annotations

import calendar
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Literal

import trio

if TYPE_CHECKING:
    from daemon.config import StrategyConfig
    from daemon.store.fleet import Fleet

logger = logging.getLogger(__name__)

RETRY_EVERY: Final = 5.0  # seconds between two tries of a lost server on a leg's path
MINUTE_TTL_MS: Final = 120_000
DAY_KEEP: Final = 86400  # seconds a day's key outlives the day
MAX_QUEUED: Final = 10_000  # adjustments kept while the server is lost (coalesced per key)

# KEYS: usd, calls. ARGV: usd_per_day ('' none), calls_per_minute ('' none),
# the minute key's TTL (ms). Returns {0, usd spent}: refused at usd_per_day;
# {1, calls}: refused at calls_per_minute; {2, usd spent}: admitted, one call
# of the minute counted.
ADMIT_LUA: Final = """
if ARGV[1] ~= '' then
  local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
  if spent >= tonumber(ARGV[1]) then return {0, tostring(spent)} end
end
local n = redis.call('INCR', KEYS[2])
if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
if ARGV[2] ~= '' and n > tonumber(ARGV[2]) then
  redis.call('DECR', KEYS[2])
  return {1, tostring(n - 1)}
end
return {2, redis.call('GET', KEYS[1]) or '0'}
"""

# KEYS: usd, calls. ARGV: USD to add ('' none), calls to add (may be < 0),
# the day key's EXPIREAT (s), the minute key's TTL (ms).
ADJUST_LUA: Final = """
if ARGV[1] ~= '' then
  redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
  redis.call('EXPIREAT', KEYS[1], ARGV[3])
end
local d = tonumber(ARGV[2])
if d > 0 then
  redis.call('INCRBY', KEYS[2], d)
  if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
elseif d < 0 then
  local n = tonumber(redis.call('GET', KEYS[2]) or '0')
  if n > 0 then redis.call('DECRBY', KEYS[2], math.min(n, -d)) end
end
return 1
"""

Verdict = Literal["admitted", "usd_per_day", "calls_per_minute"]


def spend_keys(strategy: str, day: str, minute: int) -> tuple[str, str]:
    """The (usd, calls) keys of ``strategy`` for a UTC day and minute."""
    tag = "{" + strategy + "}"
    return f"ctxd:spend:{tag}:usd:{day}", f"ctxd:spend:{tag}:calls:{minute}"


def _day_end(day: str) -> int:
    """The Unix time at which the UTC ``day`` ends."""
    return calendar.timegm(time.strptime(day, "%Y-%m-%d")) + 86400


class FleetBudget:
    """One host's side of the fleet-wide budgets (module docstring)."""

    def __init__(self, fleet: Fleet, now: Callable[[], float] = time.time) -> None:
        self.fleet = fleet
        self.now = now  # the wall clock the host's ``Spend`` counts minutes by
        self.timeout = fleet.config.timeout
        self._admit = fleet.client.register_script(ADMIT_LUA)
        self._adjust = fleet.client.register_script(ADJUST_LUA)
        self.lost = False
        self._retry_at = -math.inf  # trio time: when a lost server is asked again
        # (strategy, day, minute) -> [usd, calls] not yet on the server
        self._queued: dict[tuple[str, str, int], list[float]] = {}
        self._wake = trio.Event()
        self._flushing = trio.Lock()  # one batch in flight: a second flush waits for it
        self.errors = 0

    # --------------------------------------------------------------- admit --

    def reachable(self) -> bool:
        """Whether a leg should ask the server now (not while it is known lost)."""
        if not self.fleet.running or self.fleet.state == "disconnected":
            return False  # not started yet, stopped, or its probe found it down
        return not self.lost or trio.current_time() >= self._retry_at

    async def admit(
        self, strategy: StrategyConfig, day: str, minute: int
    ) -> tuple[Verdict, float] | None:
        """Ask the server to count one call of ``strategy`` in ``minute``
        within its budget: the verdict and the figure it went by (USD spent
        today, or calls this minute); None when the server could not say
        (the caller counts alone). Shielded for at most ``fleet.timeout``,
        so a call counted on the server is never lost to a cancel."""
        budget = strategy.budget
        assert budget is not None
        if not self.reachable():
            return None
        usd, calls = spend_keys(strategy.name, day, minute)
        args = (
            "" if budget.usd_per_day is None else repr(budget.usd_per_day),
            "" if budget.calls_per_minute is None else str(budget.calls_per_minute),
            MINUTE_TTL_MS,
        )
        try:
            with trio.CancelScope(shield=True), trio.fail_after(self.timeout):
                reply: Any = await self._admit(keys=(usd, calls), args=args)
            code, figure = int(reply[0]), float(reply[1])
        except Exception as exc:
            self._lost(exc)
            return None
        self._back()
        verdict: Verdict = ("usd_per_day", "calls_per_minute", "admitted")[code]
        return verdict, figure

    # --------------------------------------------------------- adjustments --

    def add(self, strategy: str, day: str, minute: int, usd: float = 0.0, calls: int = 0) -> None:
        """Queue a change for ``run`` to send (a cost, a retry, a call given back)."""
        entry = self._queued.get((strategy, day, minute))
        if entry is None:
            if len(self._queued) >= MAX_QUEUED:
                return  # lost for long: the local figures still count
            entry = self._queued[(strategy, day, minute)] = [0.0, 0.0]
        entry[0] += usd
        entry[1] += calls
        self._wake.set()

    async def run(self) -> None:
        """Send the queued changes, a pipeline per batch, until cancelled;
        kept for the next try while the server is lost."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if not self.reachable():
                await trio.sleep(RETRY_EVERY if self.lost else 0.5)
                self._wake.set()
                continue
            await self.flush()

    async def flush(self) -> bool:
        """Send what is queued now; False (and kept) when the server is lost.
        A flush while another is in flight (``run``'s, and a drain's or a
        test's) waits for it, then sends what is left: once it returns True,
        everything queued before the call is on the server (it returned at
        once with the other batch still in flight: second cold review, 7).
        A flush cancelled mid-pipeline keeps its batch queued (it was lost)."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        batch, self._queued = self._queued, {}
        if not batch:
            return True
        now_minute = int(self.now() // 60)
        try:
            with trio.fail_after(max(self.timeout * 4, 1.0)):
                replies: list[Awaitable[Any]] = []
                async with self.fleet.client.pipeline(transaction=False) as pipe:
                    for (name, day, minute), (usd, calls) in batch.items():
                        if calls < 0 and minute < now_minute - 1:
                            calls = 0  # its minute is gone: nothing to give back
                        if not usd and not calls:
                            continue
                        replies.append(
                            self._adjust(
                                keys=spend_keys(name, day, minute),
                                args=(repr(usd) if usd else "", int(calls), _day_end(day)
                                      + DAY_KEEP, MINUTE_TTL_MS),
                                client=pipe,
                            )
                        )  # fmt: skip
                for reply in replies:
                    await reply
        except BaseException as exc:
            if isinstance(exc, Exception):
                self._lost(exc)
            for key, (usd, calls) in batch.items():  # kept for the next try
                entry = self._queued.setdefault(key, [0.0, 0.0])
                entry[0] += usd
                entry[1] += calls
            if isinstance(exc, Exception):
                return False
            raise
        self._back()
        return True

    # ------------------------------------------------------------- health --

    def _lost(self, exc: BaseException) -> None:
        self.errors += 1
        self._retry_at = trio.current_time() + RETRY_EVERY
        if not self.lost:
            self.lost = True
            logger.warning(
                "Fleet budgets: server %s unreachable (%s: %s); budgets count on this host "
                "alone until it is back",
                self.fleet.server,
                type(exc).__name__,
                exc,
            )

    def _back(self) -> None:
        if self.lost:
            self.lost = False
            logger.info(
                "Fleet budgets: server %s is back; budgets count fleet-wide", self.fleet.server
            )
