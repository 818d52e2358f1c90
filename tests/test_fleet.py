"""The fleet backend (daemon/store/fleet.py) against a real redis-server:
publish after the local commit through a durable outbox, the best record
only raised, idempotent by origin, read-through, bounded waits. Every test
that takes ``server`` runs twice: on one server and on a 3-master Cluster
(``server`` / ``cluster`` in its id; issue 14, point 6)."""

from __future__ import annotations

import functools
import gc
import logging
import math
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import coredis
import msgspec
import pytest
import trio

from daemon.config import Config
from daemon.models import CacheKey, Provenance
from daemon.store import Store
from daemon.store.fleet import Fleet, FleetEvent
from daemon.store.fleet_keys import key_tag, record_keys
from tests.redis_servers import RedisCluster, RedisServer, Shared, fleet_fixtures, free_port

# coredis 6.9 leaves a dead connection's anyio memory streams to the garbage
# collector, which warns (ResourceWarning); the objects are freed. Only that
# warning is let through here, and gc runs after each test so it lands here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function MemoryObject:pytest.PytestUnraisableExceptionWarning"
)

KEY = CacheKey("conv-1", "context_analysis", "sha256:aa", "")
RANKS = {"local": 0, "multimodal": 1, "premium": 2}


def rank_of(name: str) -> int:
    return RANKS.get(name, -1)


backend, server = fleet_fixtures()


HostFactory = Callable[..., Fleet]


@pytest.fixture
def host(make_config: Any, short_tmp: Any) -> Iterator[HostFactory]:
    """A host: its own LMDB store and a Fleet on the given server."""
    yield from hosts(make_config, short_tmp)


def hosts(make_config: Any, short_tmp: Any) -> Iterator[HostFactory]:
    """The ``host`` fixture's body (other fleet test files use it)."""
    stores: list[Store] = []

    def make(name: str, fleet: dict[str, Any], **extra: Any) -> Fleet:
        (short_tmp / name).mkdir()
        config: Config = make_config(
            store={"path": str(short_tmp / name / "store")},
            fleet={"host_id": name, "timeout": 0.5, **fleet, **extra},
        )
        assert config.fleet is not None
        store = Store.open(config.store, rank_of)
        stores.append(store)
        return Fleet(config.fleet, store, rank_of)

    yield make
    for store in stores:
        store.close()
    gc.collect()


async def store_result(fleet: Fleet, strategy: str, key: CacheKey = KEY, text: str = "hi") -> int:
    """What the race does with an accepted result: one local append."""
    payload = {"_strategy": strategy, "_model": f"{strategy}-model", "text": text}
    return await fleet.store.append(
        key.session_id, key.category, key.resource, key.scene, payload, Provenance(race_id="r1")
    )


async def run_writer(nursery: trio.Nursery, *fleets: Fleet) -> None:
    for fleet in fleets:
        await nursery.start(fleet.store.run_writer)


def server_records(server: Shared, key: CacheKey = KEY) -> tuple[dict[str, str], list[str]]:
    best, hist, _ = record_keys(key_tag(key.session_id, key.category, key.resource, key.scene))
    fields = server.cli("--no-raw", "hgetall", best).splitlines()
    lines = server.cli("lrange", hist, "0", "-1").splitlines()
    pairs = dict(zip(fields[::2], fields[1::2], strict=True))
    return {k.split(") ", 1)[1].strip('"'): v.split(") ", 1)[1] for k, v in pairs.items()}, lines


def decoded_history(server: Shared, key: CacheKey = KEY) -> list[FleetEvent]:
    _, lines = server_records(server, key)
    return [msgspec.json.decode(line, type=FleetEvent) for line in lines]


async def test_an_event_is_published_after_its_commit_with_its_origin(
    server: Shared, host: HostFactory
) -> None:
    a = host("host-a", server.fleet)
    async with a.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a)
        event_id = await store_result(a, "premium")
        assert a.store.outbox_peek(10)[1] == 1  # in the outbox with the event's own commit
        assert await a.publish_round() == 1
        assert a.store.outbox_peek(10) == ([], 0)
        nursery.cancel_scope.cancel()
    (record,) = decoded_history(server)
    assert (record.origin.host, record.origin.event_id) == ("host-a", event_id)
    assert (record.strategy, record.model) == ("premium", "premium-model")
    assert record.provenance is not None
    assert record.provenance.race_id == "r1"
    assert msgspec.json.decode(record.payload)["text"] == "hi"
    best, _ = server_records(server)
    assert best["rank"] == '"2"'
    assert a.published == 1


async def test_the_best_record_is_only_ever_raised(server: Shared, host: HostFactory) -> None:
    a = host("host-a", server.fleet)
    b = host("host-b", server.fleet)
    async with a.client, b.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a, b)
        await store_result(a, "premium", text="premium answer")
        await a.publish_round()
        # A later, lower-ranked result from another host: history only.
        await store_result(b, "local", text="ocr answer")
        await b.publish_round()
        best = await a.fetch_best(KEY)
        assert best is not None
        assert best.strategy == "premium"
        # The same rank, later: it replaces the record (rank, then time).
        later = await store_result(b, "premium", text="newer premium")
        await b.publish_round()
        best = await a.fetch_best(KEY)
        assert best is not None
        assert (best.origin.host, best.origin.event_id) == ("host-b", later)
        nursery.cancel_scope.cancel()
    assert [e.strategy for e in decoded_history(server)] == ["premium", "local", "premium"]


async def test_a_resend_is_applied_once(server: Shared, host: HostFactory) -> None:
    """The server applied a batch but the host never heard (crash, lost
    reply): the ids are still in the outbox, and sending them again is a
    no-op on the server."""
    a = host("host-a", server.fleet)
    async with a.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a)
        await store_result(a, "local")
        await store_result(a, "premium")
        real_done = a.store.outbox_done

        async def lost(ids: list[int]) -> None:
            raise OSError("crashed before dropping the ids")

        a.store.outbox_done = lost  # type: ignore[method-assign]
        with pytest.raises(OSError, match="crashed"):
            await a.publish_round()
        a.store.outbox_done = real_done  # type: ignore[method-assign]
        assert a.store.outbox_peek(10)[1] == 2
        assert await a.publish_round() == 2
        nursery.cancel_scope.cancel()
    assert [e.strategy for e in decoded_history(server)] == ["premium", "local"]
    assert (a.published, a.duplicates) == (2, 2)


async def test_server_down_the_outbox_keeps_the_events_in_order_until_it_is_back(
    server: Shared, host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The server (on a cluster: every seed) refuses connections when the
    host starts: it serves alone (disconnected, one WARNING), the events it
    stores wait in the outbox in order, it enters the client again with a
    backoff, and once the server is back it is connected (one INFO) and
    publishes them, each once, in order. On a cluster, seeds down at the
    start made the daemon exit 1 (its client learns the slots as it is
    entered); the fake-seed test below has a seed that answers badly, not
    one that is down, and does not see it come back (second cold review,
    8). A single server connects lazily: its PING fails. (A host losing the
    server while it runs: tests/test_fleet_e2e.py's server-down test.)"""
    await trio.to_thread.run_sync(server.stop)
    b = host("host-b", {**server.fleet, "timeout": 0.2})
    async with trio.open_nursery() as nursery:
        await run_writer(nursery, b)
        with caplog.at_level(logging.INFO, logger="daemon.store.fleet"):
            with trio.fail_after(5):
                await nursery.start(b.run)
            ids = [await store_result(b, s) for s in ("local", "multimodal", "premium")]
            await trio.sleep(0.3)  # a few of its backoffs
            down, waiting = b.state, [i for i, _ in b.store.outbox_peek(10)[0]]
            await trio.to_thread.run_sync(server.start)  # (a cluster: ~2 s; the loop goes on)
            with trio.fail_after(15):  # a safety bound
                await b.published_through(ids[-1])
        state = b.state
        nursery.cancel_scope.cancel()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "daemon.store.fleet"]
    assert down == "disconnected"
    assert waiting == ids
    assert state == "connected"
    assert [level for level, m in said if "unreachable" in m] == [logging.WARNING], said
    assert [level for level, m in said if "reachable again" in m] == [logging.INFO], said
    history = decoded_history(server)
    assert [e.origin.event_id for e in history] == ids[::-1]  # newest first, each once


async def test_the_outbox_survives_a_restart(
    server: Shared, host: HostFactory, make_config: Any, short_tmp: Any
) -> None:
    a = host("host-a", server.fleet)
    async with trio.open_nursery() as nursery:
        await run_writer(nursery, a)
        event_id = await store_result(a, "premium")
        nursery.cancel_scope.cancel()
    a.store.close()  # the daemon stops (or dies) before publishing
    config = make_config(
        store={"path": str(short_tmp / "host-a" / "store")},
        fleet={"host_id": "host-a", **server.fleet},
    )
    store = Store.open(config.store, rank_of)
    try:
        again = Fleet(config.fleet, store, rank_of)
        async with again.client:
            assert await again.publish_round() == 1
    finally:
        store.close()
    assert [e.origin.event_id for e in decoded_history(server)] == [event_id]


async def test_without_a_fleet_nothing_goes_to_the_outbox(
    make_config: Any, open_store: Any
) -> None:
    """No fleet section: no server of either kind is involved."""
    store = open_store(make_config())
    assert not store.outbox_on
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run_writer)
        await store.append("s", "c", "r", "", {})
        nursery.cancel_scope.cancel()
    assert store.outbox_peek(10) == ([], 0)


async def test_read_through_stores_a_better_record_locally_with_its_origin(
    server: Shared, host: HostFactory
) -> None:
    a = host("host-a", server.fleet)
    b = host("host-b", server.fleet)
    async with a.client, b.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a, b)
        made = await store_result(a, "premium", text="from A")
        await a.publish_round()
        assert await b.read_through(KEY, -math.inf, top_rank=2)
        local = b.store.best(KEY.session_id, KEY.category, KEY.resource, KEY.scene)
        assert local is not None
        assert local.strategy == "premium"
        assert local.provenance is not None
        assert local.provenance.origin is not None
        assert (local.provenance.origin.host, local.provenance.origin.event_id) == ("host-a", made)
        assert msgspec.json.decode(local.payload)["text"] == "from A"
        # The next request finds it locally: the server is not asked again.
        assert not await b.read_through(KEY, rank_of(local.strategy), top_rank=2)
        assert (b.lookups, b.hits) == (1, 1)
        # B stored it, but never publishes what came from the fleet.
        assert b.store.outbox_peek(10)[1] == 1
        assert await b.publish_round() == 1
        assert b.published == 0
        nursery.cancel_scope.cancel()
    assert len(decoded_history(server)) == 1


async def test_read_through_ignores_a_record_no_better_than_the_local_one(
    server: Shared, host: HostFactory
) -> None:
    a = host("host-a", server.fleet)
    b = host("host-b", server.fleet)
    async with a.client, b.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a, b)
        await store_result(a, "multimodal")
        await a.publish_round()
        await store_result(b, "multimodal")
        assert not await b.read_through(KEY, rank_of("multimodal"), top_rank=2)
        assert not await b.read_through(CacheKey("other", "c", "r"), -math.inf, top_rank=2)
        assert b.hits == 0
        nursery.cancel_scope.cancel()


async def fake_server(
    nursery: trio.Nursery, reply: bytes | None
) -> tuple[int, list[trio.SocketStream]]:
    """A TCP server on 127.0.0.1 that reads and then says ``reply`` to
    everything (None: never answers)."""
    accepted: list[trio.SocketStream] = []

    async def handle(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        while await stream.receive_some(65536):
            if reply is not None:
                await stream.send_all(reply)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port, accepted


@pytest.mark.parametrize("kind", ["server", "cluster"])
@pytest.mark.parametrize("reply", [None, b"%%%garbage\r\n"], ids=["silent", "garbage"])
async def test_a_silent_or_garbage_server_costs_a_bounded_wait(
    host: HostFactory, reply: bytes | None, kind: str
) -> None:
    """A fake on 127.0.0.1, not a real server: as ``url``, or as the one seed
    of ``cluster_nodes`` (there the client's first command, which learns the
    slots as the client is entered, gets the silence or the garbage; there
    is no cluster to flush or stop, so this is not the ``server`` fixture).
    The fleet runs as in the daemon (``Fleet.run``): on a cluster, that
    entry failing ended ``run``, and with it the daemon (exit 1)."""
    async with trio.open_nursery() as outer:
        port, accepted = await fake_server(outer, reply)
        where: dict[str, Any] = (
            {"url": f"redis://127.0.0.1:{port}"}
            if kind == "server"
            else {"cluster_nodes": [f"127.0.0.1:{port}"]}
        )
        b = host("host-b", {**where, "timeout": 0.2})
        async with trio.open_nursery() as nursery:
            await run_writer(nursery, b)
            with trio.fail_after(10):  # safety bounds: the waits are fleet.timeout's
                await nursery.start(b.run)
                assert not await b.read_through(KEY, -math.inf, top_rank=2)
                while b.state != "disconnected":  # noqa: ASYNC110 (a plain attribute)
                    await trio.sleep(0.01)
            assert b.lookups == b.lookup_errors <= 1
            # Known down: the next requests do not wait at all.
            lookups = b.lookups
            assert not await b.read_through(KEY, -math.inf, top_rank=2)
            assert (await b.leases.take(KEY, trio.current_time() + 5, lambda: -1, 2, 2))[0] == (
                "alone"
            )
            assert b.lookups == lookups
            await store_result(b, "local")  # the host serves from its own store
            # the silence: a timeout; garbage: coredis's error for it; a cluster
            # never entered: its error (coredis 6.9 may trip into a TypeError)
            failures = (trio.TooSlowError, coredis.exceptions.RedisError, TypeError)
            with trio.fail_after(10), pytest.raises(failures):
                await b.publish_round()
            assert b.store.outbox_peek(10)[1] == 1
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    assert accepted  # it did talk to the fake


async def test_status_reports_the_fleet_without_secrets(
    server: Shared, host: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.each("config", "set", "requirepass", "fleet-pass-123")
    monkeypatch.setenv("CTXD_TEST_FLEET_PW", "fleet-pass-123")
    a = host("host-a", {**server.fleet, "password_env": "CTXD_TEST_FLEET_PW"})
    try:
        async with a.client, trio.open_nursery() as nursery:
            await run_writer(nursery, a)
            await store_result(a, "premium")
            assert a.status().outbox == 1
            await a.publish_round()
            assert await a.probe()
            status = a.status()
            nursery.cancel_scope.cancel()
    finally:  # the server is the module's: the next test connects without one
        server.each("-a", "fleet-pass-123", "--no-auth-warning", "config", "set", "requirepass", "")
    assert (status.state, status.host_id, status.outbox, status.published) == (
        "connected",
        "host-a",
        0,
        1,
    )
    assert status.rtt_ms is not None
    assert status.rtt_ms > 0
    assert "fleet-pass-123" not in msgspec.json.encode(status).decode()


async def test_many_keys_are_published_and_read_through_each_on_one_shard(
    server: Shared, host: HostFactory
) -> None:
    """On a cluster, the keys spread over the shards and each key's records
    (best, history, marks: one hash tag) live on exactly one of them; on one
    server they are all on it."""
    a = host("host-a", server.fleet)
    b = host("host-b", server.fleet)
    keys = [CacheKey(f"conv-{i}", "context_analysis", f"sha256:{i:02x}") for i in range(12)]
    async with a.client, b.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a, b)
        for key in keys:
            await store_result(a, "premium", key, text=key.session_id)
        assert await a.publish_round() == len(keys)
        for key in keys:
            assert await b.read_through(key, -math.inf, top_rank=2)
            local = b.store.best(key.session_id, key.category, key.resource, key.scene)
            assert local is not None
            assert msgspec.json.decode(local.payload)["text"] == key.session_id
        nursery.cancel_scope.cancel()
    nodes = server.nodes if isinstance(server, RedisCluster) else [server]
    holders = set()
    for key in keys:
        best, hist, origins = record_keys(
            key_tag(key.session_id, key.category, key.resource, key.scene)
        )
        where = {
            i
            for i, n in enumerate(nodes)
            for k in (best, hist, origins)
            if n.cli("exists", k).strip() == "1"
        }
        assert len(where) == 1
        holders |= where
    assert len(holders) == len(nodes)  # every shard holds some of the 12


async def test_a_fleet_hit_is_answered_before_its_local_commit_and_asked_once(
    server: Shared, host: HostFactory
) -> None:
    a = host("host-a", server.fleet)
    b = host("host-b", server.fleet)
    async with a.client, b.client, trio.open_nursery() as nursery:
        await run_writer(nursery, a)
        made = await store_result(a, "premium")
        await a.publish_round()
        b.nursery = nursery  # as when running: local copies are stored by a task
        first = await b.read_through(KEY, -math.inf, top_rank=2)
        again = await b.read_through(KEY, -math.inf, top_rank=2)  # before B's commit
        assert first is not None
        assert again is first
        assert (b.lookups, b.hits) == (1, 1)
        assert b.store.best(KEY.session_id, KEY.category, KEY.resource, KEY.scene) is None
        await run_writer(nursery, b)  # B's writer starts: the copy is committed first
        await b.store.append("other", "c", "r", "", {})
        local = b.store.best(KEY.session_id, KEY.category, KEY.resource, KEY.scene)
        assert local is not None
        assert local.provenance is not None
        assert local.provenance.origin == first.origin
        assert first.origin.event_id == made
        nursery.cancel_scope.cancel()


def _tls_files(root: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True, timeout=60)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")  # RSA: ~1 s a key
    openssl("req", "-x509", *ec, "-nodes", "-days", "1",
            "-subj", "/CN=ctxd test CA", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    openssl("req", *ec, "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "san.ext",
            "-out", "server.crt")  # fmt: skip
    return root / "ca.crt", root / "server.crt", root / "server.key"


async def test_publish_and_read_through_over_tls_with_a_ca_file(
    host: HostFactory, short_tmp: Path
) -> None:
    """``rediss://`` with ``ca_file`` against a real TLS server (redis-server's
    own TLS port, a certificate signed by a CA made here); a host given
    another CA does not trust it and serves alone. One server only: the
    config offers TLS for ``url``; ``cluster_nodes`` has no ``rediss``."""
    root = short_tmp / "tls"
    root.mkdir()
    ca, cert, key = _tls_files(root)
    port = free_port()
    tls = RedisServer(root, 0, "--tls-port", str(port), "--tls-cert-file", str(cert),
                      "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                      "--tls-auth-clients", "no")  # fmt: skip
    tls.start()
    try:
        url = f"rediss://127.0.0.1:{port}/0"
        a = host("host-a", {"url": url, "ca_file": str(ca)})
        b = host("host-b", {"url": url, "ca_file": str(ca)})
        other = short_tmp / "other"
        other.mkdir()
        stranger = host("host-c", {"url": url, "ca_file": str(_tls_files(other)[0])})
        async with a.client, b.client, stranger.client, trio.open_nursery() as nursery:
            await run_writer(nursery, a, b, stranger)
            await store_result(a, "premium", text="over tls")
            assert await a.publish_round() == 1
            assert await b.read_through(KEY, -math.inf, top_rank=2)
            local = b.store.best(KEY.session_id, KEY.category, KEY.resource, KEY.scene)
            assert local is not None
            assert msgspec.json.decode(local.payload)["text"] == "over tls"
            # The wrong CA: the certificate is refused, the host goes on alone.
            assert not await stranger.read_through(KEY, -math.inf, top_rank=2)
            assert stranger.lookup_errors == 1
            assert b.lookup_errors == 0
            assert stranger.store.best(KEY.session_id, KEY.category, KEY.resource) is None
            nursery.cancel_scope.cancel()
        _, history = server_records(tls)
        assert len(history) == 1
        assert "over tls" in history[0]
    finally:
        tls.stop()
