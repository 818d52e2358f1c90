"""daemon/store.py against real LMDB (real clock: the writer runs in a thread)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest
import trio
import trio.testing

from daemon.__main__ import main
from daemon.config import Config
from daemon.errors import SchemaError, UnstorablePayload
from daemon.models import Event, Provenance, Usage
from daemon.store import ListPage, Store
from daemon.store import lmdb as store_module
from daemon.store.format import SCHEMA_VERSION, key_digest, session_digest
from tests.conftest import ConfigFactory, write_config
from tests.helpers import LoopHold
from tests.process import ROOT

KEY = ("conv-1", "context_analysis", "sha256:abc", "")


@asynccontextmanager
async def writing(store: Store) -> AsyncIterator[Store]:
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run_writer)
        yield store
        nursery.cancel_scope.cancel()


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config()


def result(strategy: str | None, model: str | None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"participants": {"user": "u", "talker": "t"}, **extra}
    if strategy is not None:
        payload["_strategy"] = strategy
    if model is not None:
        payload["_model"] = model
    return payload


async def test_append_list_best_and_provenance(config: Config) -> None:
    store = Store.open(config.store, config.rank_of())
    provenance = Provenance(
        latency_ms=812.5,
        provider="fake",
        requested_model="slow-model",
        served_model="slow-model-2025",
        usage=Usage(prompt_tokens=1000, completion_tokens=200, total_tokens=1200),
        race_id="r1",
    )
    try:
        async with writing(store):
            first = await store.append(*KEY, result("premium", "slow-model"), provenance)
            second = await store.append(*KEY, result("multimodal", "fast-model"))
            other = await store.append("conv-1", "other", "sha256:abc", "", {"x": 1})
            assert (first, second, other) == (1, 2, 3)
            best = store.best(*KEY)
            assert best is not None
            # premium (rank 2) beats the newer multimodal (rank 1)
            assert (best.id, best.strategy, best.model) == (1, "premium", "slow-model")
            assert best.provenance == provenance
            assert msgspec.json.decode(best.payload)["_model"] == "slow-model"
            listed = (await store.list("conv-1")).events
            assert [e.id for e in listed] == [3, 2, 1]
            assert [
                e.id for e in (await store.list("conv-1", category="context_analysis")).events
            ] == [2, 1]
            assert [e.id for e in (await store.list("conv-1", limit=1)).events] == [3]
            assert [e.id for e in (await store.list("conv-1", resource="nope")).events] == []
            assert (await store.list("conv-2")).events == []
            assert store.best("conv-1", "context_analysis", "sha256:abc", "other-scene") is None
            status = store.status()
            assert status.events == 3
            assert status.map_size == config.store.map_size_mb * 1024 * 1024
            assert 0 < status.used_bytes < status.map_size
    finally:
        store.close()


async def test_unknown_strategy_and_model_read_as_unknown_and_rank_lowest(config: Config) -> None:
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            legacy = await store.append(*KEY, {"participants": {}})  # before provenance existed
            retired = await store.append(*KEY, result("retired-strategy", "old-model"))
            event = store.best(*KEY)
            assert event is not None
            assert event.id == retired  # both rank below configured ones: newest wins
            await store.append(*KEY, result("multimodal", "fast-model"))
            best = store.best(*KEY)
            assert best is not None
            assert best.strategy == "multimodal"
            (oldest,) = [e for e in (await store.list("conv-1")).events if e.id == legacy]
            assert (oldest.strategy, oldest.model, oldest.provenance) == (
                "unknown",
                "unknown",
                None,
            )
    finally:
        store.close()


async def test_same_rank_newest_wins(config: Config) -> None:
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            for i in range(3):
                await store.append(*KEY, result("premium", f"m{i}"))
            best = store.best(*KEY)
            assert best is not None
            assert best.model == "m2"
    finally:
        store.close()


class WriteThreads:
    """The store's LMDB environment seen from outside: the thread that begins
    and the thread that commits each write transaction, as LMDB sees them."""

    def __init__(self, env: lmdb.Environment) -> None:
        self._env = env
        self.seen: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def begin(self, *, write: bool = False, **kwargs: Any) -> Any:
        txn = self._env.begin(write=write, **kwargs)
        return SpiedTransaction(txn, self.seen) if write else txn


class SpiedTransaction:
    def __init__(self, txn: lmdb.Transaction, seen: list[tuple[int, int]]) -> None:
        self._txn = txn
        self._seen = seen
        self._begun_in = threading.get_ident()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    def commit(self) -> None:
        self._seen.append((self._begun_in, threading.get_ident()))
        self._txn.commit()


async def test_concurrent_appends_are_grouped_and_never_cross_threads(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(config.store, config.rank_of())
    spy = WriteThreads(store._env)
    monkeypatch.setattr(store, "_env", spy)
    ids: list[int] = []
    try:
        async with writing(store):

            async def one(i: int) -> None:
                ids.append(await store.append(f"s{i % 4}", "c", f"r{i}", "", {"i": i}))

            async with trio.open_nursery() as nursery:
                for i in range(64):
                    nursery.start_soon(one, i)
    finally:
        store.close()
    assert sorted(ids) == list(range(1, 65))
    assert store.committed == 64
    assert store.commits <= 4, f"64 appends took {store.commits} transactions"
    assert len(spy.seen) == store.commits
    assert all(begun == committed for begun, committed in spy.seen)
    assert all(begun != threading.get_ident() for begun, _ in spy.seen)


async def test_retention_drops_oldest_but_keeps_the_best(make_config: ConfigFactory) -> None:
    config = make_config(store={"max_events_per_key": 3})
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            premium = await store.append(*KEY, result("premium", "slow"))
            fast = [await store.append(*KEY, result("multimodal", f"f{i}")) for i in range(5)]
            kept = [e.id for e in (await store.list("conv-1")).events]
            assert kept == [fast[4], fast[3], premium]
            best = store.best(*KEY)
            assert best is not None
            assert best.id == premium
            other = await store.append("conv-1", "c2", "r", "", {"x": 1})
            assert ((await store.list("conv-1")).events)[0].id == other  # other keys untouched
            assert store.status().events == 4
    finally:
        store.close()


async def test_full_map_grows_without_losing_or_duplicating(make_config: ConfigFactory) -> None:
    config = make_config(store={"map_size_mb": 1, "max_events_per_key": 1000})
    store = Store.open(config.store, config.rank_of())
    blob = "x" * 60_000
    try:
        async with writing(store):
            ids: list[int] = []

            async def one(i: int) -> None:
                ids.append(await store.append("s", "c", f"r{i % 7}", "", {"i": i, "blob": blob}))

            async with trio.open_nursery() as nursery:
                for i in range(120):  # ~7 MB into a 1 MB map
                    nursery.start_soon(one, i)
            assert sorted(ids) == list(range(1, 121))
            assert store.map_grown >= 3
            listed = (await store.list("s", limit=1000)).events
            assert sorted(msgspec.json.decode(e.payload)["i"] for e in listed) == list(range(120))
            assert store.status().map_size >= 8 * 1024 * 1024
    finally:
        store.close()
    reopened = Store.open(config.store, config.rank_of())  # the grown map opens again
    try:
        assert reopened.status().events == 120
    finally:
        reopened.close()


async def test_list_walks_many_chunks_with_filters(config: Config) -> None:
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            async with trio.open_nursery() as nursery:
                for i in range(450):
                    category = "even" if i % 2 else "odd"
                    nursery.start_soon(store.append, "s", category, f"r{i}", "", {})
            evens = (await store.list("s", category="even", limit=1000)).events
            assert len(evens) == 225
            assert [e.id for e in evens] == sorted((e.id for e in evens), reverse=True)
            everything = (await store.list("s", limit=1000)).events
            assert [e.id for e in everything] == list(range(450, 0, -1))
            assert len((await store.list("s", limit=120)).events) == 120
    finally:
        store.close()


async def test_digest_collision_never_serves_another_keys_event(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "key_digest", lambda *fields: b"\x00" * 16)
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            mine = await store.append(*KEY, result("multimodal", "m"))
            await store.append(
                "conv-1", "context_analysis", "sha256:other", "", result("premium", "p")
            )
            best = store.best(*KEY)
            assert best is not None
            assert best.id == mine
            assert store.best("conv-9", "x", "y", "") is None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"x": object()}, "cannot be stored"),
        ({"t": "\ud83d"}, "cannot be stored"),  # half an emoji
        (msgspec.Raw(b"[1, 2]"), "must be a JSON object"),
        (msgspec.Raw(b' "text"'), "must be a JSON object"),
        (msgspec.Raw(b'{"a": "\xff"}'), "not UTF-8"),
    ],
)
async def test_unstorable_payload_is_refused(config: Config, payload: Any, why: str) -> None:
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            with pytest.raises(UnstorablePayload, match=why):
                await store.append(*KEY, payload)
            assert await store.append(*KEY, {"n": 2**70}) == 1  # JSON holds any integer
            assert msgspec.json.decode(store.best(*KEY).payload) == {"n": 2**70}  # type: ignore[union-attr]
    finally:
        store.close()


async def test_a_clients_payload_is_kept_byte_for_byte_and_tagged(config: Config) -> None:
    """An app's payload is stored as the JSON text it sent and listed as it is;
    its ``_strategy``/``_model`` are read even when spelled with escapes."""
    sent = [
        rb'{ "_strategy" : "premium", "_model": "m1", "x": [1, 2.50, "\u00e9"] }',
        rb'{"\u005fstrategy": "multimodal", "n": {"_model": "nested, not a tag"}}',
        b'{"note": "no tags"}',
    ]
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            for text in sent:
                await store.append("s", "c", "r", "", msgspec.Raw(text))
            listed = (await store.list("s")).events
            assert [bytes(e.payload) for e in reversed(listed)] == sent
            assert [(e.strategy, e.model) for e in reversed(listed)] == [
                ("premium", "m1"),
                ("multimodal", "unknown"),
                ("unknown", "unknown"),
            ]
            best = store.best("s", "c", "r")
            assert best is not None
            assert best.strategy == "premium"  # ranked by the tag read from the text
    finally:
        store.close()


def write_v1_store(path: Path, events: list[V2Event]) -> None:
    """A schema-1 store as an importer writes it: meta and events, no index."""
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), max_dbs=8, map_size=1 << 24)
    meta, data = env.open_db(b"meta"), env.open_db(b"events")
    with env.begin(write=True) as txn:
        txn.put(b"schema_version", (1).to_bytes(4, "big"), db=meta)
        for i, event in enumerate(events, start=1):
            txn.put(i.to_bytes(8, "big"), msgspec.msgpack.encode(event), db=data)
    env.close()


class V2Event(msgspec.Struct, array_like=True):
    """A record as schemas 1 and 2 wrote it: seven fields, the payload a map."""

    ts: float
    session_id: str
    category: str
    resource: str
    scene: str
    payload: msgspec.Raw
    provenance: Any = None


def stored(session: str, strategy: str | None, model: str | None, **extra: Any) -> V2Event:
    payload = msgspec.msgpack.encode(result(strategy, model, **extra))
    return V2Event(1.0, session, "context_analysis", "sha256:abc", "", msgspec.Raw(payload))


async def test_schema_1_store_is_migrated(config: Config, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="daemon")
    write_v1_store(
        Path(config.store.path),
        [
            stored("conv-1", "multimodal", "fast"),
            stored("conv-1", "premium", "slow"),
            stored("conv-1", None, None),
            stored("conv-2", "multimodal", "fast"),
        ],
    )
    store = Store.open(config.store, config.rank_of())
    try:
        assert f"from schema 1 to {SCHEMA_VERSION} (4 events indexed, 4 payloads" in caplog.text
        best = store.best(*KEY)
        assert best is not None
        assert (best.id, best.strategy) == (2, "premium")
        assert [e.id for e in (await store.list("conv-1")).events] == [3, 2, 1]
        async with writing(store):
            assert await store.append(*KEY, {}) == 5  # ids continue, no gap
    finally:
        store.close()
    env = lmdb.open(config.store.path, max_dbs=8)
    with env.begin() as txn:
        version = txn.get(b"schema_version", db=env.open_db(b"meta", txn=txn))
    env.close()
    assert version == SCHEMA_VERSION.to_bytes(4, "big")


def write_v2_store(path: Path, old: list[V2Event]) -> None:
    write_v1_store(path, old)
    env = lmdb.open(str(path), max_dbs=8, map_size=1 << 24)
    meta, by_key = env.open_db(b"meta"), env.open_db(b"by_key")
    by_session = env.open_db(b"by_session")
    with env.begin(write=True) as txn:  # the indexes schema 2 had
        for i, event in enumerate(old, start=1):
            id_key = i.to_bytes(8, "big")
            strategy = msgspec.msgpack.decode(event.payload)["_strategy"].encode()
            txn.put(key_digest(*KEY) + id_key, strategy, db=by_key)
            txn.put(session_digest("conv-1") + id_key, b"", db=by_session)
        txn.put(b"schema_version", (2).to_bytes(4, "big"), db=meta)
    env.close()


async def test_a_schema_2_store_is_rewritten_as_json_and_reads_the_same(config: Config) -> None:
    """Schema 2 kept payloads as msgpack maps; 3 keeps the JSON text. Opening
    a schema 2 store writes its records again (ids and indexes unchanged)."""
    old = [stored("conv-1", "premium", "slow"), stored("conv-1", "multimodal", "fast")]
    write_v2_store(Path(config.store.path), old)
    store = Store.open(config.store, config.rank_of())
    try:
        best = store.best(*KEY)
        assert best is not None
        assert (best.id, best.strategy, best.model) == (1, "premium", "slow")
        assert msgspec.json.decode(best.payload) == result("premium", "slow")
        async with writing(store):
            assert await store.append(*KEY, result("local", "ocr")) == 3
        listed = (await store.list("conv-1")).events
        assert [(e.id, e.strategy, e.model) for e in listed] == [
            (3, "local", "ocr"),
            (2, "multimodal", "fast"),
            (1, "premium", "slow"),
        ]
        assert msgspec.json.decode(listed[1].payload) == result("multimodal", "fast")
    finally:
        store.close()
    env = lmdb.open(config.store.path, max_dbs=8)
    with env.begin() as txn:
        values = list(txn.cursor(db=env.open_db(b"events", txn=txn)).iternext(keys=False))
    env.close()
    records = [msgspec.msgpack.decode(v) for v in values]
    assert all(isinstance(r[5], bytes) and len(r) == 9 for r in records)  # all schema 3


async def test_a_record_in_the_old_form_is_still_read(config: Config) -> None:
    """A schema 2 daemon draining during a restart on a held socket may write a
    record in the old form after the new daemon migrated the store."""
    store = Store.open(config.store, config.rank_of())
    store.close()
    env = lmdb.open(config.store.path, max_dbs=8)
    with env.begin(write=True) as txn:
        id_key = (7).to_bytes(8, "big")
        txn.put(
            id_key,
            msgspec.msgpack.encode(stored("conv-1", "premium", "slow")),
            db=env.open_db(b"events", txn=txn),
        )
        txn.put(key_digest(*KEY) + id_key, b"premium", db=env.open_db(b"by_key", txn=txn))
        txn.put(session_digest("conv-1") + id_key, b"", db=env.open_db(b"by_session", txn=txn))
    env.close()
    store = Store.open(config.store, config.rank_of())
    try:
        best = store.best(*KEY)
        assert best is not None
        assert (best.id, best.strategy, best.model) == (7, "premium", "slow")
        assert msgspec.json.decode(best.payload) == result("premium", "slow")
    finally:
        store.close()


async def test_listing_a_big_event_of_an_old_store_does_not_hold_the_loop(config: Config) -> None:
    """The cold review of the schema 3 change: records left in the old form
    were still decoded and encoded when listed (354 ms for one of 12 MiB)."""
    messages = [{"t": "hi", "k": 1}] * 500_000  # ~5 MiB of small objects
    write_v2_store(Path(config.store.path), [stored("conv-1", "premium", "slow", n=messages)])
    store = Store.open(config.store, config.rank_of())
    hold = LoopHold()
    try:
        trio.lowlevel.add_instrument(hold)
        await trio.lowlevel.checkpoint()  # the hold is timed from the next batch
        try:
            (event,) = (await store.list("conv-1")).events
        finally:
            trio.lowlevel.remove_instrument(hold)
        assert len(msgspec.json.decode(event.payload)["n"]) == len(messages)
        assert hold.longest < 0.05, f"the loop was held for {hold.longest * 1000:.0f} ms of CPU"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        (b'{"_strategy": "premium", "_model": 1e999}', ("premium", "unknown")),
        (b'{"_strategy": "", "_model": ["a", {"b": 1}]}', ("unknown", "unknown")),
        (b'{"_model": "m1", "\\u005fmodel": "m2"}', ("unknown", "m2")),  # the last one wins
        (b'{"x": {"_strategy": "nested"}, "_strategy": 3}', ("unknown", "unknown")),
    ],
)
async def test_tags_are_read_like_payload_tag_and_never_built(
    config: Config, text: bytes, tags: tuple[str, str]
) -> None:
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            await store.append("s", "c", "r", "", msgspec.Raw(text))
        (event,) = (await store.list("s")).events
        assert (event.strategy, event.model) == tags
    finally:
        store.close()


async def test_a_raw_cr_between_tokens_never_reaches_a_reader(config: Config) -> None:
    """JSON allows CR as whitespace; a reader splitting lines on CR would cut
    every reply that carries the payload."""
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            await store.append("s", "c", "r", "", msgspec.Raw(b'{"a": 1,\r\n"b": "x\\r"}'))
        (event,) = (await store.list("s")).events
        assert b"\r" not in bytes(event.payload)
        assert msgspec.json.decode(event.payload) == {"a": 1, "b": "x\r"}
    finally:
        store.close()


def write_newer_store(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), max_dbs=8, map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(
            b"schema_version",
            (SCHEMA_VERSION + 1).to_bytes(4, "big"),
            db=env.open_db(b"meta", txn=txn),
        )
    env.close()


def test_newer_schema_is_refused(config: Config) -> None:
    write_newer_store(Path(config.store.path))
    with pytest.raises(SchemaError, match=r"schema version 4, newer than this ctxd \(3\)"):
        Store.open(config.store, config.rank_of())


def test_newer_schema_stops_the_daemon_with_78(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(short_tmp)
    write_newer_store(short_tmp / "store")
    code = main(["--config", str(path)])
    assert code == 78
    assert "newer than this ctxd" in capsys.readouterr().err


def rank_lookup(config: Config) -> Callable[[str], int]:
    return config.rank_of()


def test_rank_of_config(config: Config) -> None:
    rank = rank_lookup(config)
    assert (rank("premium"), rank("multimodal"), rank("gone"), rank("unknown")) == (2, 1, -1, -1)


async def test_writer_lingers_only_under_load(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    # No thread involved: _gather only looks at the queue and the clock.
    store = Store.open(config.store, config.rank_of())
    try:
        item = store_module._Append(b"v", b"k" * 16, b"s" * 16, b"x")
        store._queue = [item]
        await store._gather()  # light load (last batch of one): no wait at all
        assert trio.current_time() == 0
        store._expected = 10
        store._queue = [item] * 3
        await store._gather()  # under load: wait for the crowd, at most `linger`
        assert trio.current_time() == pytest.approx(store.linger)
        store._queue = [item] * 10
        await store._gather()  # already as big as the last batch: no wait
        assert trio.current_time() == pytest.approx(store.linger)
    finally:
        store._queue = []
        store.close()


async def test_best_memo_never_serves_a_stale_answer(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BEST_MEMO", 2)
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            assert store.best(*KEY) is None  # a miss is remembered too...
            first = await store.append(*KEY, result("multimodal", "m1"))
            best = store.best(*KEY)  # ...and forgotten when the key is written
            assert best is not None
            assert best.id == first
            better = await store.append(*KEY, result("premium", "p1"))
            best = store.best(*KEY)
            assert best is not None
            assert best.id == better
            await store.append(*KEY, result("multimodal", "m2"))  # lower rank, newer
            best = store.best(*KEY)
            assert best is not None
            assert best.id == better
            for i in range(5):  # more keys than the memo holds: it stays bounded
                store.best("other", "c", f"r{i}", "")
            assert len(store._best_memo) == 2
            best = store.best(*KEY)
            assert best is not None
            assert best.id == better
    finally:
        store.close()


def write_from_another_process(path: str, count: int, size: int, strategy: str) -> list[int]:
    """Append ``count`` events from a separate process (``tests/store_writer.py``)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.store_writer", path, str(count), str(size), strategy],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ids: list[int] = json.loads(done.stdout)["ids"]
    return ids


async def test_best_memo_and_the_map_follow_another_process(make_config: ConfigFactory) -> None:
    """Another process committing (the old daemon, draining during a restart
    on a held socket) must not leave this one serving a stale best, and when
    it grows the map past this one's, this one adopts the new size for reads
    and writes instead of failing with MDB_MAP_RESIZED."""
    config = make_config(store={"map_size_mb": 1, "max_events_per_key": 1000})
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            await store.append(*KEY, result("multimodal", "m"))
            first = store.best(*KEY)
            assert first is not None
            assert first.strategy == "multimodal"
            map_size = store.status().map_size
            # ~3 MiB from the other process: its map grows past this one's 1 MiB.
            foreign = await trio.to_thread.run_sync(
                write_from_another_process, config.store.path, 6, 500_000, "premium"
            )
            best = store.best(*KEY)
            assert best is not None
            assert (best.id, best.strategy) == (foreign[-1], "premium")
            assert store.status().map_size > map_size
            assert store.map_adopted >= 1
            mine = await store.append(*KEY, result("multimodal", "m2"))
            assert mine == foreign[-1] + 1
            assert len((await store.list("conv-1", limit=100)).events) == 8
    finally:
        store.close()


async def test_the_map_size_chosen_is_kept_for_the_next_open(make_config: ConfigFactory) -> None:
    config = make_config(store={"map_size_mb": 1, "max_events_per_key": 1000})
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            for i in range(3):  # 1.2 MB into a 1 MiB map: grown to 2 MiB, then 4
                await store.append("s", "c", f"r{i}", "", {"blob": "x" * 400_000})
            grown = store.status().map_size
            assert grown >= 2 * 1024 * 1024
    finally:
        store.close()
    reopened = Store.open(config.store, config.rank_of())  # below it the data file is smaller
    try:
        assert reopened.status().map_size == grown
    finally:
        reopened.close()


async def test_ids_are_never_reused_when_retention_drops_the_newest(
    make_config: ConfigFactory,
) -> None:
    """With one event per key, a lower-ranked append to a key that has a
    better event is dropped in its own transaction; its id must not come back."""
    config = make_config(store={"max_events_per_key": 1})
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            premium = await store.append(*KEY, result("premium", "p"))
            dropped = await store.append(*KEY, result("multimodal", "m"))
            other = await store.append("conv-2", "c", "r", "", {"x": 1})
            assert premium < dropped < other
            assert [e.id for e in (await store.list("conv-1")).events] == [premium]
    finally:
        store.close()
    reopened = Store.open(config.store, config.rank_of())
    try:
        async with writing(reopened):
            again = await reopened.append("conv-3", "c", "r", "", {"x": 1})
            assert again > other
    finally:
        reopened.close()


async def test_an_append_does_not_wait_for_trios_default_thread_tokens(config: Config) -> None:
    """40 slow blocking calls (file reads, DNS lookups) hold every token of
    trio's default thread limiter: the writer must not queue behind them."""
    store = Store.open(config.store, config.rank_of())
    release = threading.Event()
    try:
        async with trio.open_nursery() as blocked, writing(store):
            limiter = trio.to_thread.current_default_thread_limiter()
            tokens = int(limiter.total_tokens)

            async def hold_a_token() -> None:
                await trio.to_thread.run_sync(release.wait)

            for _ in range(tokens):
                blocked.start_soon(hold_a_token)
            while limiter.borrowed_tokens < tokens:  # noqa: ASYNC110 - threads
                await trio.sleep(0.01)
            try:
                with trio.fail_after(10):
                    assert await store.append(*KEY, {"n": 1}) == 1
            finally:
                release.set()
    finally:
        store.close()


async def test_an_append_whose_caller_stops_waiting_is_logged_and_counted(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(config.store, config.rank_of())
    try:
        with trio.move_on_after(0.05):  # no writer runs: the commit never comes
            await store.append(*KEY, result("premium", "p"))
        assert store.abandoned == 1
        assert store.status().abandoned == 1  # reported in status.store
        (record,) = [r for r in caplog.records if r.name == "daemon.store.lmdb"]
        assert record.levelno == logging.ERROR
        assert "premium event was not acknowledged" in record.getMessage()
        async with writing(store):
            pass  # the writer stops: what is still queued fails, nobody waits on it
        assert store._queue == []
    finally:
        store.close()


async def test_best_memo_is_bounded_by_bytes(make_config: ConfigFactory) -> None:
    """Issue 12: 100 hits on 4 MiB events grew the daemon by 660 MiB."""
    config = make_config(store={"map_size_mb": 64})
    store = Store.open(config.store, config.rank_of())
    blob = "x" * (4 * 1024 * 1024)
    keys = [("conv-1", "c", f"r{i}", "") for i in range(12)]
    try:
        async with writing(store):
            for key in keys:
                await store.append(*key, {"_strategy": "premium", "blob": blob})
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for _ in range(2):
                    for key in keys:
                        event = store.best(*key)
                        assert event is not None
                        assert len(msgspec.json.decode(event.payload)["blob"]) == len(blob)
                del event
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            assert grown < 16 * 1024 * 1024, f"the memo kept {grown / 2**20:.0f} MiB"
            small = store.best("conv-1", "c", "small", "")  # small answers are still kept
            assert small is None
            assert ("conv-1", "c", "small", "") in store._best_memo
    finally:
        store.close()


async def test_list_pages_with_before_id_and_ends_a_page_where_accept_says(
    config: Config,
) -> None:
    store = Store.open(config.store, config.rank_of())
    try:
        async with writing(store):
            async with trio.open_nursery() as nursery:
                for i in range(250):
                    nursery.start_soon(store.append, "s", "c", f"r{i}", "", {"i": i})
            seen: list[int] = []
            before: int | None = None
            while True:
                page = await store.list("s", limit=40, before_id=before)
                seen += [e.id for e in page.events]
                if page.next_before_id is None:
                    break
                before = page.next_before_id
            assert seen == list(range(250, 0, -1))
            assert (await store.list("s", limit=250)).next_before_id is None
            assert (await store.list("s", limit=249)).next_before_id == 2

            taken: list[int] = []

            def three(event: Event) -> bool:
                taken.append(event.id)
                return len(taken) <= 3

            page = await store.list("s", limit=100, before_id=101, accept=three)
            assert [e.id for e in page.events] == [100, 99, 98]
            assert page.next_before_id == 98
            page = await store.list("s", limit=100, before_id=98, category="other")
            assert page == ListPage([], None)
    finally:
        store.close()


async def test_listing_big_events_lets_the_loop_run_between_them(config: Config) -> None:
    """Issue 18: 100 events decoded with no checkpoint held the loop for
    seconds. Each of these events is above one slice of decoding, so the
    listing must yield to the scheduler after each: another task that only
    checkpoints gets one turn per yield."""
    store = Store.open(config.store, config.rank_of())
    numbers = list(range(100_000))  # ~370 KiB of small objects per event
    ticks = 0
    try:
        async with writing(store):
            for i in range(12):
                await store.append("s", "c", f"r{i}", "", {"n": numbers})

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await trio.lowlevel.checkpoint()
                    ticks += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker)
                await trio.lowlevel.checkpoint()  # the ticker is running
                before = ticks
                page = await store.list("s", limit=100)
                turns = ticks - before
                nursery.cancel_scope.cancel()
            assert len(page.events) == 12
            assert turns >= 11, f"the loop was held across {12 - turns} events"
    finally:
        store.close()
