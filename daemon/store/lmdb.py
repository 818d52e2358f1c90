"""The event store: one LMDB environment, append-only events, durable group commit.

The layout (named databases, key and value encoding, schema versions and
migrations) is ``format.py``. Ids come from a counter kept in the
``meta`` database and moved in the same write transaction as the events, so
they increase and are never reused, crash or not, even when retention has
dropped the newest event in the transaction that wrote it.

Writes: ``append`` encodes on the trio side and queues; one writer task takes
everything queued and commits it in one synced transaction from one
``trio.to_thread.run_sync`` call on a limiter of its own (begin and commit in
the same thread), so N concurrent appends cost one fsync, not N, and no
file read, DNS lookup or process spawn holding trio's default thread tokens
can delay a commit. ``append`` returns only after the commit: an acknowledged
event survives ``kill -9``. A caller that stops waiting first is logged as an
error and counted (``abandoned``): its event may be stored, unacknowledged.

Reads run on the event loop: a read transaction plus a lookup costs ~1.2 µs
here, a thread hop ~130 µs (``bench/store_bench.py`` prints both), and LMDB
readers never wait for the writer. ``list`` reads in chunks bounded by count
and bytes, and decodes with a checkpoint every ``LIST_SLICE_BYTES``, so a
long listing or a listing of huge events never holds the loop for more than
one event's decoding.

The map: every read transaction lives on the loop thread and never spans an
await, and the writer thread holds ``_txn_lock`` for the whole of its write
transaction; so the loop can resize the map (``set_mapsize`` needs no live
transaction in the process) after taking that lock. It grows it (doubling)
when the writer reports it full, and adopts the size another process chose
(``set_mapsize(0)``) when LMDB answers ``MDB_MAP_RESIZED``: during a restart
on a held socket the draining daemon still commits, and its map may be larger
than the one this process opened. The largest size chosen is kept in
``meta`` so that a later open never starts below it.

Retention: past ``max_events_per_key`` events of one key the oldest are
dropped, except the one ``best`` would serve, so a premium result is never
pushed out by a stream of lower-ranked ones.

The best-event memo serves cache hits without a read; it is bounded by
entries and by the stored bytes of the events it holds, and an event above
``MEMO_EVENT_MAX`` is never kept (it is read again on each hit).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

import lmdb
import msgspec
import trio

from daemon.errors import StoreError
from daemon.models import Event, Provenance, StoreStatus
from daemon.store.format import (
    DECODE_EVENT,
    DIGEST_BYTES,
    ID_BYTES,
    LAST_ID_KEY,
    MAP_SIZE_KEY,
    Databases,
    StoredEvent,
    best_entry,
    encode_payload,
    id_bytes,
    key_digest,
    key_entries,
    payload_json,
    session_digest,
    stored_value,
    upgrade_schema,
)

if TYPE_CHECKING:
    from daemon.config import StoreConfig

logger = logging.getLogger(__name__)

MIB: Final = 1024 * 1024
LIST_CHUNK: Final = 100  # index entries read per read transaction in ``list``
LIST_CHUNK_BYTES: Final = MIB  # event bytes copied per read transaction (one event at least)
LIST_SLICE_BYTES: Final = 256 * 1024  # event bytes decoded between two checkpoints
LINGER: Final = 0.001  # seconds the writer may wait to fill a batch under load
BEST_MEMO: Final = 4096  # keys whose best event is kept in memory
MEMO_BYTES: Final = 8 * MIB  # stored bytes of the events the best memo holds, at most
MEMO_EVENT_MAX: Final = 64 * 1024  # an event stored larger than this is never memoised

_T = TypeVar("_T")
RankOf = Callable[[str], int]
Accept = Callable[[Event], bool]

Fields = tuple[str, str, str, str]  # session_id, category, resource, scene
Chunk = list[tuple[bytes, bytes]]  # (id, stored value), newest first
OutboxPage = list[tuple[int, Event | None]]  # (id, the event or None), oldest first
Ids = list[int]


class ListPage(NamedTuple):
    """Events of a listing, newest first, and where the next page starts:
    ``next_before_id`` is None once the session has no older event."""

    events: list[Event]
    next_before_id: int | None


class _Append:
    __slots__ = ("done", "error", "id", "key", "session", "strategy", "value")

    def __init__(self, value: bytes, key: bytes, session: bytes, strategy: bytes) -> None:
        self.value = value
        self.key = key
        self.session = session
        self.strategy = strategy
        self.done = trio.Event()
        self.id: int | None = None
        self.error: BaseException | None = None


class _MapFull(Exception):
    pass


class _MapResized(Exception):
    pass


def _accept_all(event: Event) -> bool:
    return True


class Store:
    def __init__(self, env: lmdb.Environment, config: StoreConfig, rank_of: RankOf) -> None:
        self._env = env
        self.path = config.path
        self._max_per_key = config.max_events_per_key
        self.max_batch = config.max_batch_events
        self._rank_of = rank_of
        self._meta = env.open_db(b"meta")
        self._events = env.open_db(b"events")
        self._by_key = env.open_db(b"by_key")
        self._by_session = env.open_db(b"by_session")
        # UTC day + strategy -> what it spent (daemon/spend.py owns the bytes);
        # no schema change: an older ctxd never opens it.
        self._spend = env.open_db(b"spend")
        # Ids of events the fleet has not acknowledged (daemon/store/fleet.py),
        # put in the events' own transaction once ``outbox_on``: a stored
        # event is never lost to the fleet, crash or not. No schema change.
        self._outbox = env.open_db(b"outbox")
        self.outbox_on = False
        self.outbox_wake = trio.Event()  # set after each commit that fed the outbox
        self._queue: list[_Append] = []
        # The answer of ``best`` per key, for the cache-hit path, with the
        # stored size of each event; bounded by entries and bytes, and
        # forgotten whenever any process commits to the environment (its last
        # transaction id moves): during a restart on a held socket the old
        # daemon still commits while the new one serves.
        self._best_memo: collections.OrderedDict[Fields, tuple[Event | None, int]] = (
            collections.OrderedDict()
        )
        self._memo_bytes = 0
        self._memo_txnid = -1
        self._wake = trio.Event()
        self._expected = 1  # size of the last batch
        self.linger = LINGER
        # The writer's own thread token: trio's default limiter (40 tokens) is
        # shared with file reads, DNS lookups and process spawns.
        self._thread = trio.CapacityLimiter(1)
        # Held by the writer thread for the whole of a write transaction; the
        # loop takes it to resize the map (no transaction may be live).
        self._txn_lock = threading.Lock()
        self._map_to_persist: int | None = None
        self.commits = 0
        self.committed = 0
        self.map_grown = 0
        self.map_adopted = 0
        self.abandoned = 0  # appends whose caller stopped waiting before the commit

    # ------------------------------------------------------------- opening --

    @classmethod
    def open(cls, config: StoreConfig, rank_of: RankOf) -> Store:
        """Open (creating, migrating) the store; blocking: call it from a thread.

        Raises SchemaError for a store written by a newer ctxd, StoreError when
        the environment cannot be opened."""
        try:
            os.makedirs(config.path, exist_ok=True)
            # A map grown at run time is larger than the config says; never
            # open below the size of the data file (nor, below, below the
            # size kept in ``meta``).
            try:
                on_disk = os.stat(os.path.join(config.path, "data.mdb")).st_size
            except FileNotFoundError:
                on_disk = 0
            env = lmdb.open(
                config.path,
                map_size=max(config.map_size_mb * MIB, on_disk),
                max_dbs=8,
                subdir=True,
                sync=True,
                metasync=True,
                readahead=False,
                lock=True,
            )
        except (OSError, lmdb.Error) as exc:
            raise StoreError(f"cannot open the store at {config.path}: {exc}") from None
        try:
            stale = env.reader_check()
            if stale:
                logger.info("Cleared %d stale LMDB reader slots", stale)
            store = cls(env, config, rank_of)
            store._check_schema()
        except BaseException:
            env.close()
            raise
        return store

    def _check_schema(self) -> None:
        while True:
            try:
                kept = self._check_schema_once()
            except lmdb.MapFullError:  # a migration that needs more room
                self._grow_map()
            except lmdb.MapResizedError:  # another process grew it meanwhile
                self._adopt_map_size()
            else:
                break
        if kept > self._env.info()["map_size"]:
            self._env.set_mapsize(kept)

    def _check_schema_once(self) -> int:
        """Check (migrate) the schema; returns the map size kept in ``meta``."""
        with self._env.begin(write=True) as txn:
            upgrade_schema(
                txn, Databases(self._meta, self._events, self._by_key, self._by_session), self.path
            )
            raw = txn.get(MAP_SIZE_KEY, db=self._meta)
        return int.from_bytes(raw, "big") if raw else 0

    def close(self) -> None:
        """Close the environment. The writer must have stopped (it has, once the
        task running ``run_writer`` has returned)."""
        self._env.close()

    # -------------------------------------------------------------- writing --

    async def append(
        self,
        session_id: str,
        category: str,
        resource: str,
        scene: str,
        payload: dict[str, Any] | msgspec.Raw,
        provenance: Provenance | None = None,
    ) -> int:
        """Store one event; returns its id once it is committed with sync.

        ``payload`` is an object, or the JSON text of one as a client sent it
        (kept byte for byte). Raises UnstorablePayload for a payload that is
        not a JSON object, StoreError if the write fails or the writer
        stopped first. Cancelled while waiting: the event may or may not be
        stored, nothing was acknowledged, and the drop is logged as an error
        and counted in ``abandoned``."""
        # A big payload costs a few scans and copies (~3 ms per MiB each at
        # worst): the loop breathes between them.
        big = isinstance(payload, msgspec.Raw) and len(payload) > LIST_SLICE_BYTES
        if big:  # after the request's own decode
            await trio.lowlevel.checkpoint()
        text, tags = encode_payload(payload)
        if big or len(text) > LIST_SLICE_BYTES:
            await trio.lowlevel.checkpoint()
        fields = (session_id, category, resource, scene)
        item = _Append(
            stored_value(time.time(), fields, text, provenance, tags),
            key_digest(*fields),
            session_digest(session_id),
            tags[0].encode(),
        )
        self._queue.append(item)
        self._wake.set()
        try:
            await item.done.wait()
        except trio.Cancelled:
            if not item.done.is_set():
                self.abandoned += 1
                logger.error(
                    "A %s event was not acknowledged: its caller stopped waiting before "
                    "the commit (%d so far); it may still be stored",
                    tags[0],
                    self.abandoned,
                )
            raise
        if item.error is not None:
            raise StoreError(f"the event could not be stored: {item.error}") from item.error
        assert item.id is not None
        return item.id

    async def run_writer(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The one writer: commit whatever is queued, one transaction per round.

        Runs until cancelled. A commit in progress always completes (the thread
        is not abandoned), so cancellation never leaves half a batch; appends
        still queued when it stops fail with StoreError at once."""
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._queue:
                    await self._gather()
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                    self._expected = len(batch)
                    await self._commit_batch(batch)
        finally:
            queued, self._queue = self._queue, []
            for item in queued:
                item.error = StoreError("the store's writer has stopped")
                item.done.set()

    async def _gather(self) -> None:
        """Under load, wait up to ``linger`` for as many appends as the last
        batch held: its writers were answered one commit ago and are sending
        their next event right now. Without this, the first few of them would
        start a commit and the rest would wait a whole fsync for the next.
        At light load (last batch of one) it never waits."""
        target = min(self._expected, self.max_batch)
        if len(self._queue) >= target:
            return
        deadline = trio.current_time() + self.linger
        while len(self._queue) < target:
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()
            if trio.current_time() >= deadline:
                return

    async def _in_writer_thread(self, write: Callable[..., _T], *args: Any) -> _T:
        """``write(*args)`` (one ``_write_txn``) in a thread on the writer's own
        token, so never at the same time as another write of this process;
        again after growing the map when it was full, or adopting the size
        another process chose."""
        while True:
            try:
                return await trio.to_thread.run_sync(write, *args, limiter=self._thread)
            except _MapFull:
                self._grow_map()
            except _MapResized:
                self._adopt_map_size()

    @contextlib.contextmanager
    def _write_txn(self) -> Iterator[lmdb.Transaction]:
        """A write transaction of this (worker) thread under ``_txn_lock``,
        committed when the block ends, aborted if it raises; LMDB's map
        errors come out as ``_MapFull`` / ``_MapResized``."""
        with self._txn_lock:
            try:
                txn = self._env.begin(write=True)
            except lmdb.MapResizedError:
                raise _MapResized from None
            try:
                yield txn
                txn.commit()
            except lmdb.MapFullError:
                txn.abort()
                raise _MapFull from None
            except BaseException:
                txn.abort()
                raise

    async def _commit_batch(self, batch: list[_Append]) -> None:
        try:
            ids = await self._in_writer_thread(self._write, batch)
        except Exception as exc:
            logger.exception("Store write of %d events failed", len(batch))
            for item in batch:
                item.error = exc
                item.done.set()
            return
        self.commits += 1
        self.committed += len(batch)
        if self.outbox_on:
            self.outbox_wake.set()
        for item, event_id in zip(batch, ids, strict=True):
            item.id = event_id
            item.done.set()

    def _grow_map(self) -> None:
        """Double the map; on the loop thread, no read transaction is open and
        the writer thread holds no transaction, so resizing is safe. The new
        size is kept in ``meta`` by the next commit."""
        with self._txn_lock:
            old = self._env.info()["map_size"]
            self._env.set_mapsize(old * 2)
        self._map_to_persist = old * 2
        self.map_grown += 1
        logger.warning("Store map full: grown from %d to %d MiB", old // MIB, old * 2 // MIB)

    def _adopt_map_size(self) -> None:
        """Another process grew the map past this one's (``MDB_MAP_RESIZED``):
        take its size. On the loop thread (no read transaction open); waits for
        the writer thread's transaction, if one is live, to end (one commit)."""
        with self._txn_lock:
            old = self._env.info()["map_size"]
            self._env.set_mapsize(0)
            new = self._env.info()["map_size"]
        self.map_adopted += 1
        logger.info(
            "Store map grown by another process: adopted %d MiB (was %d MiB)",
            new // MIB,
            old // MIB,
        )

    def _write(self, batch: list[_Append]) -> list[int]:
        """One write transaction, begun and committed in this (worker) thread.

        Few Python steps on purpose: this thread shares the GIL with the event
        loop, so each database gets one ``putmulti`` (index keys sorted, for
        page locality) and retention runs once per distinct key."""
        with self._write_txn() as txn:
            first = self._last_id(txn) + 1
            last = first + len(batch) - 1
            id_keys = [id_bytes(i) for i in range(first, last + 1)]
            txn.cursor(db=self._events).putmulti(
                [(k, item.value) for k, item in zip(id_keys, batch, strict=True)], append=True
            )
            txn.cursor(db=self._by_key).putmulti(
                sorted(
                    (item.key + k, item.strategy) for k, item in zip(id_keys, batch, strict=True)
                )
            )
            txn.cursor(db=self._by_session).putmulti(
                sorted((item.session + k, b"") for k, item in zip(id_keys, batch, strict=True))
            )
            for key, session in {(item.key, item.session) for item in batch}:
                self._retain(txn, key, session)
            txn.put(LAST_ID_KEY, id_bytes(last), db=self._meta)
            if self.outbox_on:
                txn.cursor(db=self._outbox).putmulti([(k, b"") for k in id_keys])
            persist = self._map_to_persist
            if persist is not None:
                kept = txn.get(MAP_SIZE_KEY, db=self._meta)
                if kept is None or int.from_bytes(kept, "big") < persist:
                    txn.put(MAP_SIZE_KEY, persist.to_bytes(8, "big"), db=self._meta)
        self._map_to_persist = None
        return list(range(first, last + 1))

    def _last_id(self, txn: lmdb.Transaction) -> int:
        """The highest id ever given: the counter in ``meta``, or the last event
        (a store written before the counter existed, or by an older ctxd)."""
        raw = txn.get(LAST_ID_KEY, db=self._meta)
        counted = int.from_bytes(raw, "big") if raw else 0
        cursor = txn.cursor(db=self._events)
        present = int.from_bytes(cursor.key(), "big") if cursor.last() else 0
        return max(counted, present)

    def _retain(self, txn: lmdb.Transaction, key: bytes, session: bytes) -> None:
        entries = key_entries(txn, self._by_key, key)
        excess = len(entries) - self._max_per_key
        if excess <= 0:
            return
        keep = best_entry(entries, self._rank_of)
        for id_key, _ in entries:  # oldest first
            if excess == 0:
                break
            if id_key == keep:
                continue
            txn.delete(id_key, db=self._events)
            txn.delete(key + id_key, db=self._by_key)
            txn.delete(session + id_key, db=self._by_session)
            excess -= 1

    # -------------------------------------------------------------- reading --

    def _begin_read(self) -> lmdb.Transaction:
        """A read transaction, after adopting the map size if another process
        grew it. On the loop thread, never across an await."""
        try:
            return self._env.begin()
        except lmdb.MapResizedError:
            self._adopt_map_size()
            return self._env.begin()

    def best(self, session_id: str, category: str, resource: str, scene: str = "") -> Event | None:
        """The event ``analyze`` serves for this key: highest strategy rank,
        then newest. Runs on the loop: a memo hit is a dict lookup, a miss a
        read transaction of a few µs (see the module docstring)."""
        fields = (session_id, category, resource, scene)
        memo = self._best_memo
        txnid = self._env.info()["last_txnid"]  # ~0.7 µs
        if txnid != self._memo_txnid:
            memo.clear()
            self._memo_bytes = 0
            self._memo_txnid = txnid
        found = memo.get(fields)
        if found is not None:
            memo.move_to_end(fields)
            return found[0]
        event, size = self._best_from_disk(fields)
        if size <= MEMO_EVENT_MAX:
            memo[fields] = (event, size)
            self._memo_bytes += size
            while len(memo) > BEST_MEMO or self._memo_bytes > MEMO_BYTES:
                self._memo_bytes -= memo.popitem(last=False)[1][1]
        return event

    def _best_from_disk(self, fields: Fields) -> tuple[Event | None, int]:
        """The best event of a key and its stored size (0 for none)."""
        session_id, category, resource, scene = fields
        key = key_digest(*fields)
        with self._begin_read() as txn:
            entries = key_entries(txn, self._by_key, key)
            while entries:
                best = best_entry(entries, self._rank_of)
                value = txn.get(best, db=self._events)
                if value is not None:
                    event = _decode(best, value)
                    if (
                        event.session_id,
                        event.category,
                        event.resource,
                        event.scene,
                    ) == (session_id, category, resource, scene):
                        return event, len(value)
                entries = [e for e in entries if e[0] != best]  # a digest collision
        return None, 0

    async def list(
        self,
        session_id: str,
        category: str | None = None,
        resource: str | None = None,
        limit: int = 50,
        *,
        before_id: int | None = None,
        accept: Accept = _accept_all,
    ) -> ListPage:
        """Events of a session with an id below ``before_id``, newest first,
        filtered, at most ``limit``. ``accept`` sees each matching event in
        turn and may refuse it (a page bounded by bytes is full): the page
        ends before it.

        The loop is never held for more than one chunk read (``LIST_CHUNK``
        entries or ``LIST_CHUNK_BYTES``) or one slice of decoding
        (``LIST_SLICE_BYTES``, or one event larger than that)."""
        prefix = session_digest(session_id)
        found: list[Event] = []
        # Ids are < 2**63: ``\xff``*8 is above every id.
        below = id_bytes(before_id) if before_id is not None else b"\xff" * ID_BYTES
        decoded = 0
        while True:
            chunk, more = self._read_chunk(prefix, below)
            for id_key, value in chunk:
                stored = DECODE_EVENT.decode(value)  # the payload is not decoded here
                if (
                    stored.session_id != session_id
                    or (category is not None and stored.category != category)
                    or (resource is not None and stored.resource != resource)
                ):
                    continue
                event = _from_stored(id_key, stored)
                if not accept(event):  # the page is full: the next one starts here
                    return ListPage(found, found[-1].id if found else event.id + 1)
                found.append(event)
                decoded += len(value)
                if len(found) == limit:
                    more = more or id_key != chunk[-1][0]
                    return ListPage(found, int.from_bytes(id_key, "big") if more else None)
                if decoded >= LIST_SLICE_BYTES:
                    decoded = 0
                    await trio.lowlevel.checkpoint()
            if not more:
                return ListPage(found, None)
            below = chunk[-1][0]
            await trio.lowlevel.checkpoint()  # let the loop breathe between chunks

    def _read_chunk(self, prefix: bytes, below: bytes) -> tuple[Chunk, bool]:
        """The (id, stored value) of a session's events just below ``below``,
        newest first, in one read transaction, bounded by ``LIST_CHUNK`` and
        ``LIST_CHUNK_BYTES`` (one event at least); and whether older ones are
        left."""
        chunk: Chunk = []
        size = 0
        with self._begin_read() as txn:
            cursor = txn.cursor(db=self._by_session)
            # The last index key below ``prefix + below``.
            ok = cursor.prev() if cursor.set_range(prefix + below) else cursor.last()
            while ok and (index_key := bytes(cursor.key())).startswith(prefix):
                if len(chunk) == LIST_CHUNK or size >= LIST_CHUNK_BYTES:
                    return chunk, True
                id_key = index_key[DIGEST_BYTES:]
                value = txn.get(id_key, db=self._events)
                if value is not None:
                    chunk.append((id_key, bytes(value)))  # the same object: no copy
                    size += len(value)
                ok = cursor.prev()
        return chunk, False

    # ---------------------------------------------------------------- spend --

    def load_spend(self) -> tuple[tuple[bytes, bytes], ...]:
        """Every (key, value) of the ``spend`` database; on the loop, at the start."""
        with self._begin_read() as txn:
            return tuple((bytes(k), bytes(v)) for k, v in txn.cursor(db=self._spend))

    async def save_spend(
        self,
        deltas: tuple[tuple[bytes, bytes], ...],
        merge: Callable[[bytes | None, bytes], bytes],
    ) -> None:
        """Add ``deltas`` to the ``spend`` database in one synced transaction
        (``merge(old, delta)`` is the new value), on the writer's own thread
        token, so never at the same time as a commit of events."""
        await self._in_writer_thread(self._write_spend, deltas, merge)

    def _write_spend(
        self,
        deltas: tuple[tuple[bytes, bytes], ...],
        merge: Callable[[bytes | None, bytes], bytes],
    ) -> None:
        with self._write_txn() as txn:
            for key, delta in deltas:
                old = txn.get(key, db=self._spend)
                txn.put(key, merge(None if old is None else bytes(old), delta), db=self._spend)

    # --------------------------------------------------------------- outbox --

    def outbox_peek(self, limit: int) -> tuple[OutboxPage, int]:
        """The oldest ``limit`` outbox entries, in id order, each with its event
        (None: retention dropped it since), and how many entries there are.
        On the loop: one read transaction."""
        found: OutboxPage = []
        with self._begin_read() as txn:
            length: int = txn.stat(self._outbox)["entries"]
            for id_key in txn.cursor(db=self._outbox).iternext(keys=True, values=False):
                if len(found) == limit:
                    break
                value = txn.get(id_key, db=self._events)
                event = None if value is None else _decode(bytes(id_key), value)
                found.append((int.from_bytes(id_key, "big"), event))
        return found, length

    async def outbox_done(self, ids: Ids) -> None:
        """Remove acknowledged ids from the outbox in one synced transaction, on
        the writer's thread token (never at the same time as a commit)."""
        await self._in_writer_thread(self._outbox_delete, ids)

    def _outbox_delete(self, ids: Ids) -> None:
        with self._write_txn() as txn:
            for event_id in ids:
                txn.delete(id_bytes(event_id), db=self._outbox)

    def status(self) -> StoreStatus:
        """Path, event count, map size and bytes used, from LMDB's own
        counters, and the appends abandoned before their commit."""
        with self._begin_read() as txn:
            events = txn.stat(self._events)["entries"]
        info = self._env.info()
        stat = self._env.stat()
        return StoreStatus(
            path=self.path,
            events=events,
            map_size=info["map_size"],
            used_bytes=(info["last_pgno"] + 1) * stat["psize"],
            abandoned=self.abandoned,
        )


def _decode(id_key: bytes, value: bytes | memoryview) -> Event:
    return _from_stored(id_key, DECODE_EVENT.decode(value))


def _from_stored(id_key: bytes, stored: StoredEvent) -> Event:
    payload, strategy, model = payload_json(stored)
    return Event(
        id=int.from_bytes(id_key, "big"),
        ts=stored.ts,
        session_id=stored.session_id,
        category=stored.category,
        resource=stored.resource,
        scene=stored.scene,
        strategy=strategy,
        model=model,
        payload=payload,
        provenance=stored.provenance,
    )
