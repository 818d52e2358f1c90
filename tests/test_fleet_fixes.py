"""The fleet after its cold review (docs/reliability.md): each test here
failed before its fix, against a real redis-server. Every test that takes
``server`` runs on one server and on a 3-master Cluster (issue 14, point 6)."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import trio

from daemon.config import Config
from daemon.models import CacheKey
from daemon.store.fleet import PING_EVERY, Fleet, describe
from daemon.store.fleet_keys import key_tag, lease_key
from tests.fake_provider import ANSWER
from tests.race_fakes import IMAGE, Behaviour, harness
from tests.redis_servers import Shared, fleet_fixtures
from tests.test_fleet import KEY, HostFactory, decoded_history, hosts, run_writer, store_result

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function MemoryObject:pytest.PytestUnraisableExceptionWarning"
)


backend, server = fleet_fixtures()


@pytest.fixture
def host(make_config: Any, short_tmp: Any) -> Iterator[HostFactory]:
    yield from hosts(make_config, short_tmp)


LEASE = lease_key(key_tag(KEY.session_id, KEY.category, KEY.resource, KEY.scene))


@pytest.mark.parametrize("after", [0.0, 0.2, 0.5])
async def test_cancelling_a_running_fleet_ends_it_cleanly(
    server: Shared, host: HostFactory, after: float
) -> None:
    """SIGTERM cancels Fleet.run: coredis's pub/sub cleanup raised
    ClosedResourceError inside a group next to Cancelled, which escaped the
    nursery (the daemon exited 1 after "ctxd stopped")."""
    a = host("host-a", server.fleet)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.store.run_writer)
        await nursery.start(a.run)
        await trio.sleep(after)
        nursery.cancel_scope.cancel()


def test_the_warning_says_what_failed_not_that_a_nursery_raised() -> None:
    group = ExceptionGroup(
        "Exceptions from Trio nursery", [ConnectionError("Connection refused"), trio.TooSlowError()]
    )
    text = describe(group)
    assert text == "ConnectionError: Connection refused; no answer within the timeout"
    assert "nursery" not in text


FAST, SLOW = "fast-model", "slow-model"


async def test_a_concurrent_hit_does_not_release_the_upgrade_lease_another_request_took(
    make_config: Any, server: Shared, open_store: Any
) -> None:
    """R1 takes the key's lease to upgrade and awaits the shared failures; R2,
    a hit on the same host meanwhile, is refused the lease (held here), is
    answered from the cache, and released R1's lease: a second host then ran
    the same premium (cold review 14.2)."""
    config: Config = make_config(
        fleet={**server.fleet, "timeout": 0.5, "host_id": "host-a"},
        strategies=[
            {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1, "timeout": 60},
            {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2, "timeout": 120},
        ],
    )
    assert config.fleet is not None
    behaviours = {FAST: Behaviour(0.01), SLOW: Behaviour(1.5)}
    async with harness(config, behaviours) as h, trio.open_nursery() as nursery:
        fleet = Fleet(config.fleet, open_store(config), config.rank_of())
        async with fleet.client:
            fleet.nursery, fleet.leases.listening, fleet.state = nursery, True, "connected"
            h.races.fleet = fleet
            await h.store.append(
                KEY.session_id, KEY.category, KEY.resource, KEY.scene,
                {**ANSWER, "conversation": [], "_strategy": "multimodal", "_model": FAST},
            )  # fmt: skip
            learn = fleet._learn_failures

            async def slow_learn(*args: Any) -> None:  # the HGETALL, slow for once
                await trio.sleep(0.2)
                await learn(*args)

            fleet._learn_failures = slow_learn  # type: ignore[method-assign,assignment]
            deadline = trio.current_time() + 5

            async def hit(image: Any) -> None:
                await h.races.analyze(KEY, image, wait="first", refresh=False, deadline=deadline)

            async with trio.open_nursery() as requests:
                requests.start_soon(hit, IMAGE)  # R1: takes the lease, upgrades
                await trio.sleep(0.05)
                requests.start_soon(hit, IMAGE)  # R2: a hit while R1 decides
            await trio.sleep(0.3)  # R2's release (if any) reaches the server
            holder = server.cli("get", LEASE).strip()
            assert h.races.races, "R1's upgrade is not running"
            assert h.models.calls == {SLOW: 1}
            assert holder.startswith("host-a"), "the upgrade runs, its lease is gone"
            nursery.cancel_scope.cancel()


async def test_a_request_cancelled_after_taking_the_upgrade_lease_does_not_keep_it(
    server: Shared, host: HostFactory
) -> None:
    """before_hit took the key's lease for an upgrade and then awaited the
    shared failures; cancelled there (client gone), nobody called finished
    and the renewal kept the lease for ever (cold review 14.4)."""
    a = host("host-a", {**server.fleet, "lease_ttl": 1.0, "timeout": 0.5})
    async with a.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a)
        a.nursery, a.leases.listening = nursery, True
        await a.probe()

        async def slow(*args: Any) -> None:  # the HGETALL, slow for once
            await trio.sleep(1)

        a._learn_failures = slow  # type: ignore[method-assign,assignment]
        with trio.move_on_after(0.15):
            await a.before_hit(KEY, lambda: 1, 2, {})
        await trio.sleep(0.2)
        held = KEY in a.leases._held
        alive = int(server.cli("pttl", LEASE).strip())
        nursery.cancel_scope.cancel()
    assert not held
    assert alive < 0, alive


async def test_a_lease_that_expires_between_set_nx_and_pttl_is_taken_over(
    server: Shared, host: HostFactory
) -> None:
    """The holder died; its lease expired between the waiter's refused SET NX
    and its PTTL (-2: no key). An expiry publishes nothing, so the waiter
    slept until its deadline instead of taking over (cold review 14.7)."""
    b = host("host-b", server.fleet)
    async with b.client, trio.open_nursery() as nursery:
        await run_writer(nursery, b)
        b.nursery, b.leases.listening = nursery, True
        await b.probe()
        server.cli("set", LEASE, "dead-host:1:1", "px", "30")
        original = b.read_through

        async def slow_read(*args: Any) -> Any:  # the HGET, slow on a loaded host
            await trio.sleep(0.06)
            return await original(*args)

        b.read_through = slow_read  # type: ignore[method-assign,assignment]
        deadline = trio.current_time() + 3
        taken, _ = await b.leases.take(KEY, deadline, lambda: -math.inf, -math.inf, 2)
        woke = trio.current_time()
        nursery.cancel_scope.cancel()
    assert taken == "won"
    assert woke < deadline, "slept until its deadline, then took the lease"
    assert (b.leases.waited, b.leases.taken_over) == (1, 1)


async def test_a_holder_whose_lease_expired_is_told(
    server: Shared, host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A holder paused past lease_ttl: the lease expires, another host takes
    it and races too; the first holder's renewal found the lease gone and
    nothing said so (cold review 14.8)."""
    a = host("host-a", {**server.fleet, "lease_ttl": 1.0})
    b = host("host-b", {**server.fleet, "lease_ttl": 1.0})
    rank = lambda: -math.inf  # noqa: E731
    async with a.client, b.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a, b)
        for f in (a, b):  # as Fleet.run does, without its pub/sub
            f.nursery, f.leases.listening = nursery, True
        deadline = trio.current_time() + 5
        assert (await a.leases.take(KEY, deadline, rank, -math.inf, 2))[0] == "won"
        server.cli("pexpire", LEASE, "1")  # what a pause longer than lease_ttl does
        await trio.sleep(0.05)
        assert (await b.leases.take(KEY, deadline, rank, -math.inf, 2))[0] == "won"
        with caplog.at_level(logging.WARNING):
            await trio.sleep(0.45)  # A's renewal runs at ttl/3 and finds B's token
        holder = server.cli("get", LEASE).strip()
        a.leases.finished(KEY, None)  # compare-and-delete: B's lease stays
        await trio.sleep(0.1)
        still = server.cli("get", LEASE).strip()
        status = a.status()
        nursery.cancel_scope.cancel()
    assert holder.startswith("host-b")
    assert still == holder
    assert status.leases_lost == 1
    lost = [r for r in caplog.records if "expired before its race ended" in r.getMessage()]
    assert len(lost) == 1


async def test_a_lease_that_expired_under_a_running_race_is_taken_back(
    server: Shared, host: HostFactory
) -> None:
    """A's race runs; its lease expires (A paused past lease_ttl) and nobody
    took it meanwhile: A's next renewal takes it back, so B, arriving after,
    waits for A's race instead of starting a second one (before: the
    renewal only said the lease was lost, and B won it and raced)."""
    a = host("host-a", {**server.fleet, "lease_ttl": 1.0})
    b = host("host-b", {**server.fleet, "lease_ttl": 1.0})
    rank = lambda: -math.inf  # noqa: E731
    async with a.client, b.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a, b)
        for f in (a, b):  # as Fleet.run does, without its pub/sub
            f.nursery, f.leases.listening = nursery, True
        assert (await a.leases.take(KEY, trio.current_time() + 5, rank, -math.inf, 2))[0] == "won"
        server.cli("pexpire", LEASE, "1")  # what a pause longer than lease_ttl does
        await trio.sleep(0.45)  # A's renewal (every ttl/3) finds it gone
        holder = server.cli("get", LEASE).strip()
        taken, _ = await b.leases.take(KEY, trio.current_time() + 0.3, rank, -math.inf, 2)
        status = a.status()
        a.leases.finished(KEY, None)
        nursery.cancel_scope.cancel()
    assert holder.startswith("host-a:"), holder
    assert taken == "deadline"  # B waited for A's race
    assert (status.leases_retaken, status.leases_lost) == (1, 0)


async def test_a_holder_whose_lease_another_host_took_takes_it_back_once_free(
    server: Shared, host: HostFactory
) -> None:
    """A's lease expired and B took it (both race the key, each paid for):
    A's race goes on and its renewal keeps trying; once B's race ends and
    B gives the lease up, A takes it back, so the next host waits for A's
    race, the one still running (before: A stopped renewing for good and a
    third host could start a third race)."""
    a = host("host-a", {**server.fleet, "lease_ttl": 1.0})
    b = host("host-b", {**server.fleet, "lease_ttl": 1.0})
    c = host("host-c", {**server.fleet, "lease_ttl": 1.0})
    rank = lambda: -math.inf  # noqa: E731
    async with a.client, b.client, c.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a, b, c)
        for f in (a, b, c):
            f.nursery, f.leases.listening = nursery, True
        deadline = trio.current_time() + 5
        assert (await a.leases.take(KEY, deadline, rank, -math.inf, 2))[0] == "won"
        server.cli("pexpire", LEASE, "1")
        await trio.sleep(0.05)
        assert (await b.leases.take(KEY, deadline, rank, -math.inf, 2))[0] == "won"
        await trio.sleep(0.4)  # A's renewal finds B's lease: lost
        lost = a.status().leases_lost
        b.leases.finished(KEY, None)  # B's race is over
        await trio.sleep(0.45)  # A's next renewal finds the lease free
        holder = server.cli("get", LEASE).strip()
        taken, _ = await c.leases.take(KEY, trio.current_time() + 0.3, rank, -math.inf, 2)
        status = a.status()
        a.leases.finished(KEY, None)
        nursery.cancel_scope.cancel()
    assert lost == 1
    assert holder.startswith("host-a:"), holder
    assert taken == "deadline"  # C waited for A's race
    assert (status.leases_lost, status.leases_retaken) == (1, 1)


@pytest.mark.parametrize("backend", ["server"], indirect=True)
async def test_a_host_is_connected_again_soon_after_a_blip_not_at_its_next_ping(
    server: Shared, host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The server drops the host's connections (a failover, a proxy restart)
    and is fine at once: the subscription's loss marked the host
    disconnected, and a host with nothing to publish came back only at its
    next PING, up to 5 s later, racing every key alone meanwhile (found by
    the Sentinel failover test). Now the pinger probes at once, then with a
    backoff. One server only: on a Cluster the host does not probe at once
    (with one node gone the others answer, and it would log lost / back /
    lost for a partial outage), so there it is still its next PING."""
    a = host("host-a", server.fleet)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.store.run_writer)
        await nursery.start(a.run)
        assert a.state == "connected"
        with caplog.at_level(logging.INFO):
            server.each("client", "kill", "type", "pubsub")

            def said(text: str) -> list[logging.LogRecord]:
                return [
                    r
                    for r in caplog.records
                    if r.name == "daemon.store.fleet" and text in r.getMessage()
                ]

            with trio.fail_after(10):  # a safety bound
                while not said("reachable again"):  # noqa: ASYNC110 (log records)
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    (lost,), (back,) = said("unreachable"), said("reachable again")
    # ~10 ms here; the next PING was ~5 s away
    assert back.created - lost.created < PING_EVERY / 2, back.created - lost.created


async def test_one_slow_reply_does_not_make_the_host_race_alone_for_seconds(
    server: Shared, host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """One reply slower than fleet.timeout (a 400 ms stall of the server)
    marked the host disconnected until its next PING (up to 5 s): every
    request in between raced without a lease while another host held the
    key's, and each stall logged a WARNING and an INFO (cold review 14.5)."""
    a = host("host-a", {**server.fleet, "timeout": 0.25})
    b = host("host-b", {**server.fleet, "timeout": 0.25})
    rank = lambda: -math.inf  # noqa: E731
    other = CacheKey("conv-2", "context_analysis", "sha256:bb", "")
    async with a.client, b.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a, b)
        for f in (a, b):
            f.nursery, f.leases.listening = nursery, True
        assert (await a.leases.take(KEY, trio.current_time() + 3, rank, -math.inf, 2))[0] == "won"
        assert await b.probe()
        server.each("client", "pause", "400", "all")
        with caplog.at_level(logging.INFO):
            assert await b.read_through(other, -math.inf, top_rank=2) is None  # times out
            await trio.sleep(0.5)  # the server answers again
            taken, _ = await b.leases.take(KEY, trio.current_time() + 0.3, rank, -math.inf, 2)
        nursery.cancel_scope.cancel()
    assert taken == "deadline"  # it waited for A's race, as it should
    assert b.state == "connected"
    assert b.lookup_errors == 1
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_host_whose_store_was_replaced_still_publishes(
    server: Shared, host: HostFactory
) -> None:
    """The same host_id (default: the hostname) on a fresh LMDB (a replaced
    disk, an ephemeral volume): event ids start again at 1, below the
    host's mark on the server, and were dropped as resends (cold review 14.1)."""
    old = host("old", {**server.fleet, "host_id": "web-1"})
    async with old.client, trio.open_nursery() as nursery:
        await run_writer(nursery, old)
        for strategy in ("local", "multimodal", "premium"):
            await store_result(old, strategy, text=f"old {strategy}")
        assert await old.publish_round() == 3
        nursery.cancel_scope.cancel()
    new = host("new", {**server.fleet, "host_id": "web-1"})
    async with new.client, trio.open_nursery() as nursery:
        await run_writer(nursery, new)
        await store_result(new, "premium", text="new premium")
        await new.publish_round()
        nursery.cancel_scope.cancel()
    assert (new.published, new.duplicates) == (1, 0)
    texts = [msgspec.json.decode(e.payload)["text"] for e in decoded_history(server)]
    assert texts.count("new premium") == 1


async def test_a_resend_of_a_new_stores_event_is_still_applied_once(
    server: Shared, host: HostFactory
) -> None:
    """Idempotence holds for the new store: its event sent twice is one."""
    old = host("old", {**server.fleet, "host_id": "web-1"})
    async with old.client, trio.open_nursery() as nursery:
        await run_writer(nursery, old)
        await store_result(old, "local", text="old")
        await store_result(old, "multimodal", text="old 2")
        await old.publish_round()
        nursery.cancel_scope.cancel()
    new = host("new", {**server.fleet, "host_id": "web-1"})
    async with new.client, trio.open_nursery() as nursery:
        await run_writer(nursery, new)
        await store_result(new, "premium", text="new")
        ((event_id, event),), _ = new.store.outbox_peek(1)
        assert event is not None
        assert await new._send([(event_id, event)]) == [2]
        assert await new._send([(event_id, event)]) == [0]  # a resend (lost reply)
        nursery.cancel_scope.cancel()
    texts = [msgspec.json.decode(e.payload)["text"] for e in decoded_history(server)]
    assert texts.count("new") == 1


async def test_a_host_whose_store_was_replaced_reads_its_old_results_back(
    server: Shared, host: HostFactory
) -> None:
    """The host ignored records on the server made under its own host id, so
    a fresh store raced (and paid) again for what it had bought (14.1)."""
    old = host("old", {**server.fleet, "host_id": "web-1"})
    async with old.client, trio.open_nursery() as nursery:
        await run_writer(nursery, old)
        await store_result(old, "premium", text="bought once")
        await old.publish_round()
        nursery.cancel_scope.cancel()
    new = host("new", {**server.fleet, "host_id": "web-1"})
    async with new.client, trio.open_nursery() as nursery:
        await run_writer(nursery, new)
        record = await new.read_through(KEY, -math.inf, top_rank=2)
        nursery.cancel_scope.cancel()
    assert record is not None
    assert msgspec.json.decode(record.payload)["text"] == "bought once"


async def test_a_stale_mark_compares_the_makers_time_not_the_copy_time(
    server: Shared, host: HostFactory
) -> None:
    """A's premium (t0) copied by B at t2; C's premium made at t1 (between)
    reaches the server after B's copy. The server's best is C's and B is
    told, yet B kept A's: it compared C's time with its copy's local commit
    time (cold review 14.6)."""
    a = host("host-a", server.fleet)
    b = host("host-b", server.fleet)
    c = host("host-c", server.fleet)
    async with a.client, b.client, c.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a, b, c)
        await store_result(a, "premium", text="A")
        await a.publish_round()
        await store_result(c, "premium", text="C")  # made after A's
        await trio.sleep(0.01)
        assert await b.read_through(KEY, -math.inf, top_rank=2) is not None  # B copies A's
        await c.publish_round()  # C's reaches the server: the best is raised
        b.mark_stale(key_tag(KEY.session_id, KEY.category, KEY.resource, KEY.scene))
        _, newer, _ = await b.before_hit(KEY, lambda: 2, 2)
        nursery.cancel_scope.cancel()
    assert newer is not None
    assert msgspec.json.decode(newer.payload)["text"] == "C"


def test_a_daemon_without_a_fleet_does_not_import_the_client_library() -> None:
    """coredis took ~0.4 s of the daemon's ~0.9 s of imports even with no
    fleet section (cold review of issue 14)."""
    code = "import sys, daemon.__main__, daemon.app; print('coredis' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
