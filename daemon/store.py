"""The event store: one LMDB environment, append-only events, durable group commit.

The layout (named databases, key and value encoding, schema versions and
migrations) is ``store_format.py``; ids are assigned inside the write
transaction as last id + 1, so they increase with no gaps, crash or not.

Writes: ``append`` encodes on the trio side and queues; one writer task takes
everything queued and commits it in one synced transaction from one
``trio.to_thread.run_sync`` call (begin and commit in the same thread, checked
at run time), so N concurrent appends cost one fsync, not N. ``append``
returns only after the commit: an acknowledged event survives ``kill -9``.

Reads run on the event loop: a read transaction plus a lookup costs ~1.2 µs
here, a thread hop ~130 µs (``bench/store_bench.py`` prints both), and LMDB
readers never wait for the writer. ``list`` reads in chunks with a checkpoint
between them, so a long listing cannot hold the loop. Because every read
transaction lives on the loop thread and never spans an await, the loop can
grow the map (``set_mapsize`` needs no live transaction in the process) when
the writer reports it full; the batch is then retried.

Retention: past ``max_events_per_key`` events of one key the oldest are
dropped, except the one ``best`` would serve, so a premium result is never
pushed out by a stream of lower-ranked ones.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import lmdb
import msgspec
import trio

from daemon.errors import StoreError, UnstorablePayload
from daemon.models import Event, Provenance, StoreStatus, payload_tag
from daemon.store_format import (
    DECODE_EVENT,
    DECODE_PAYLOAD,
    DIGEST_BYTES,
    ENCODE,
    ID_BYTES,
    Databases,
    StoredEvent,
    best_entry,
    id_bytes,
    key_digest,
    key_entries,
    session_digest,
    upgrade_schema,
)

if TYPE_CHECKING:
    from daemon.config import StoreConfig

logger = logging.getLogger(__name__)

MIB: Final = 1024 * 1024
LIST_CHUNK: Final = 100  # events read per read transaction in ``list``
LINGER: Final = 0.001  # seconds the writer may wait to fill a batch under load
BEST_MEMO: Final = 4096  # keys whose best event is kept in memory

RankOf = Callable[[str], int]


Fields = tuple[str, str, str, str]  # session_id, category, resource, scene


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
        self._queue: list[_Append] = []
        # The answer of ``best`` per key, for the cache-hit path; bounded, and
        # forgotten whenever any process commits to the environment (its last
        # transaction id moves): during a restart on a held socket the old
        # daemon still commits while the new one serves.
        self._best_memo: collections.OrderedDict[Fields, Event | None] = collections.OrderedDict()
        self._memo_txnid = -1
        self._wake = trio.Event()
        self._expected = 1  # size of the last batch
        self.linger = LINGER
        # (thread id at begin, thread id at commit) of recent write transactions.
        self.txn_threads: collections.deque[tuple[int, int]] = collections.deque(maxlen=1000)
        self.commits = 0
        self.committed = 0
        self.map_grown = 0

    # ------------------------------------------------------------- opening --

    @classmethod
    def open(cls, config: StoreConfig, rank_of: RankOf) -> Store:
        """Open (creating, migrating) the store; blocking: call it from a thread.

        Raises SchemaError for a store written by a newer ctxd, StoreError when
        the environment cannot be opened."""
        try:
            os.makedirs(config.path, exist_ok=True)
            # A map grown at run time is larger than the config says; never
            # open below the size of the data file.
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
                return self._check_schema_once()
            except lmdb.MapFullError:  # a migration that needs more room
                self._grow_map()

    def _check_schema_once(self) -> None:
        with self._env.begin(write=True) as txn:
            upgrade_schema(
                txn, Databases(self._meta, self._events, self._by_key, self._by_session), self.path
            )

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
        payload: dict[str, Any],
        provenance: Provenance | None = None,
    ) -> int:
        """Store one event; returns its id once it is committed with sync.

        Raises UnstorablePayload for a payload msgpack cannot hold, StoreError
        if the write fails. Cancelled while waiting: the event may or may
        not be stored, and nothing was acknowledged."""
        try:
            encoded_payload = ENCODE.encode(payload)
        except (TypeError, OverflowError) as exc:
            raise UnstorablePayload(f"the payload cannot be stored: {exc}") from None
        stored = StoredEvent(
            time.time(),
            session_id,
            category,
            resource,
            scene,
            msgspec.Raw(encoded_payload),
            provenance,
        )
        item = _Append(
            ENCODE.encode(stored),
            key_digest(session_id, category, resource, scene),
            session_digest(session_id),
            payload_tag(payload, "_strategy").encode(),
        )
        self._queue.append(item)
        self._wake.set()
        await item.done.wait()
        if item.error is not None:
            raise StoreError(f"the event could not be stored: {item.error}") from item.error
        assert item.id is not None
        return item.id

    async def run_writer(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The one writer: commit whatever is queued, one transaction per round.

        Runs until cancelled. A commit in progress always completes (the thread
        is not abandoned), so cancellation never leaves half a batch."""
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue:
                await self._gather()
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                self._expected = len(batch)
                await self._commit_batch(batch)

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

    async def _commit_batch(self, batch: list[_Append]) -> None:
        while True:
            try:
                ids = await trio.to_thread.run_sync(self._write, batch)
            except _MapFull:
                self._grow_map()
                continue
            except Exception as exc:
                logger.exception("Store write of %d events failed", len(batch))
                for item in batch:
                    item.error = exc
                    item.done.set()
                return
            break
        self.commits += 1
        self.committed += len(batch)
        for item, event_id in zip(batch, ids, strict=True):
            item.id = event_id
            item.done.set()

    def _grow_map(self) -> None:
        # On the loop thread: no read transaction can be open right now, and
        # the writer thread has returned, so resizing is safe.
        old = self._env.info()["map_size"]
        self._env.set_mapsize(old * 2)
        self.map_grown += 1
        logger.warning("Store map full: grown from %d to %d MiB", old // MIB, old * 2 // MIB)

    def _write(self, batch: list[_Append]) -> list[int]:
        """One write transaction, begun and committed in this (worker) thread.

        Few Python steps on purpose: this thread shares the GIL with the event
        loop, so each database gets one ``putmulti`` (index keys sorted, for
        page locality) and retention runs once per distinct key."""
        txn = self._env.begin(write=True)
        begun_in = threading.get_ident()
        try:
            cursor = txn.cursor(db=self._events)
            first = int.from_bytes(cursor.key(), "big") + 1 if cursor.last() else 1
            id_keys = [id_bytes(i) for i in range(first, first + len(batch))]
            cursor.putmulti(
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
            committing_in = threading.get_ident()
            if committing_in != begun_in:  # cannot happen in one sync call; guards refactors
                raise StoreError("a write transaction crossed threads")
            txn.commit()
        except lmdb.MapFullError:
            txn.abort()
            raise _MapFull from None
        except BaseException:
            txn.abort()
            raise
        self.txn_threads.append((begun_in, committing_in))
        return list(range(first, first + len(batch)))

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

    def best(self, session_id: str, category: str, resource: str, scene: str = "") -> Event | None:
        """The event ``analyze`` serves for this key: highest strategy rank,
        then newest. Runs on the loop: a memo hit is a dict lookup, a miss a
        read transaction of a few µs (see the module docstring)."""
        fields = (session_id, category, resource, scene)
        memo = self._best_memo
        txnid = self._env.info()["last_txnid"]  # ~0.7 µs
        if txnid != self._memo_txnid:
            memo.clear()
            self._memo_txnid = txnid
        if fields in memo:
            memo.move_to_end(fields)
            return memo[fields]
        event = self._best_from_disk(fields)
        memo[fields] = event
        if len(memo) > BEST_MEMO:
            memo.popitem(last=False)
        return event

    def _best_from_disk(self, fields: Fields) -> Event | None:
        session_id, category, resource, scene = fields
        key = key_digest(*fields)
        with self._env.begin() as txn:
            entries = key_entries(txn, self._by_key, key)
            while entries:
                best = best_entry(entries, self._rank_of)
                event = self._load(txn, best)
                if event is not None and (
                    event.session_id,
                    event.category,
                    event.resource,
                    event.scene,
                ) == (session_id, category, resource, scene):
                    return event
                entries = [e for e in entries if e[0] != best]  # a digest collision
        return None

    async def list(
        self,
        session_id: str,
        category: str | None = None,
        resource: str | None = None,
        limit: int = 50,
    ) -> list[Event]:
        """Events of a session, newest first, filtered, at most ``limit``."""
        prefix = session_digest(session_id)
        found: list[Event] = []
        below = b"\xff" * ID_BYTES  # ids are < 2**63: above every id
        while len(found) < limit:
            exhausted = True
            with self._env.begin() as txn:
                cursor = txn.cursor(db=self._by_session)
                start = prefix + below
                # The last index key below ``start``.
                ok = cursor.prev() if cursor.set_range(start) else cursor.last()
                read = 0
                while ok and cursor.key().startswith(prefix):
                    if read == LIST_CHUNK or len(found) == limit:
                        exhausted = False
                        break
                    below = cursor.key()[DIGEST_BYTES:]
                    event = self._load(txn, below)
                    read += 1
                    if (
                        event is not None
                        and event.session_id == session_id
                        and (category is None or event.category == category)
                        and (resource is None or event.resource == resource)
                    ):
                        found.append(event)
                    ok = cursor.prev()
            if exhausted:
                break
            await trio.lowlevel.checkpoint()  # let the loop breathe between chunks
        return found

    def _load(self, txn: lmdb.Transaction, id_key: bytes) -> Event | None:
        value = txn.get(id_key, db=self._events)
        if value is None:
            return None
        stored = DECODE_EVENT.decode(value)
        payload = DECODE_PAYLOAD.decode(stored.payload)
        return Event(
            id=int.from_bytes(id_key, "big"),
            ts=stored.ts,
            session_id=stored.session_id,
            category=stored.category,
            resource=stored.resource,
            scene=stored.scene,
            strategy=payload_tag(payload, "_strategy"),
            model=payload_tag(payload, "_model"),
            payload=payload,
            provenance=stored.provenance,
        )

    def status(self) -> StoreStatus:
        """Path, event count, map size and bytes used, from LMDB's own counters."""
        info = self._env.info()
        stat = self._env.stat()
        with self._env.begin() as txn:
            events = txn.stat(self._events)["entries"]
        return StoreStatus(
            path=self.path,
            events=events,
            map_size=info["map_size"],
            used_bytes=(info["last_pgno"] + 1) * stat["psize"],
        )
