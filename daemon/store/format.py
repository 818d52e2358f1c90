"""The bytes on disk: how an event and its index keys are encoded, and the
schema version with the migrations between versions (inside a transaction the
caller opens).

Layout (schema version 2), named databases in the environment at ``store.path``:

``meta``
    ``b"schema_version"`` → 4-byte big-endian int; ``b"last_id"`` → the
    highest event id ever given (8 bytes), moved in the same write
    transaction as the events, so ids increase and are never reused, even
    after retention dropped the newest events (a store without it, written
    before it existed, starts from its last event); ``b"map_size"`` → the
    largest map size (8 bytes) any process grew the map to, so that an open
    never starts below it (no schema change: older readers ignore both).
``events``
    id (8-byte big-endian) → msgpack ``StoredEvent`` (an array: ts, session_id,
    category, resource, scene, payload, provenance).
``by_key``
    digest(session_id, category, resource, scene) (16 bytes) + id → strategy
    name. All events of one cache key are one prefix range, oldest first, and
    the strategy in the value lets ``best`` rank them without loading them.
``by_session``
    digest(session_id) (16 bytes) + id → empty. ``list`` walks one prefix
    range backwards, newest first.

How events and keys are encoded is ``format.py``.

Schema 1 was ``meta`` + ``events`` only (what an importer of the old
orchestrator's cache writes); opening it builds both indexes in one
transaction. A newer schema is refused (``SchemaError``, exit 78).

* event value: msgpack of ``StoredEvent``, an array (ts, session_id,
  category, resource, scene, payload, provenance), ``payload`` kept as the
  msgpack of the object the client gave;
* event key: the id, 8 bytes big-endian, so LMDB's order is id order;
* index keys: a 16-byte BLAKE2b digest of the cache key (or of the session id)
  followed by the event key, so every event of one key or one session is one
  prefix range, oldest first. Digests keep keys under LMDB's 511-byte limit
  whatever the length of a resource URL; readers compare the fields stored in
  the event, so a digest collision can never serve another key's event.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec

from daemon.errors import SchemaError
from daemon.models import Provenance, payload_tag

if TYPE_CHECKING:
    from collections.abc import Callable

    import lmdb

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 2
ID_BYTES: Final = 8
DIGEST_BYTES: Final = 16
LAST_ID_KEY: Final = b"last_id"
MAP_SIZE_KEY: Final = b"map_size"


class StoredEvent(msgspec.Struct, array_like=True, frozen=True):
    ts: float
    session_id: str
    category: str
    resource: str
    scene: str
    payload: msgspec.Raw  # the msgpack of the payload object, as given
    provenance: Provenance | None = None


ENCODE: Final = msgspec.msgpack.Encoder()
DECODE_EVENT: Final = msgspec.msgpack.Decoder(StoredEvent)
DECODE_PAYLOAD: Final = msgspec.msgpack.Decoder(dict[str, Any])


def key_digest(session_id: str, category: str, resource: str, scene: str) -> bytes:
    fields = ENCODE.encode((session_id, category, resource, scene))
    return hashlib.blake2b(fields, digest_size=DIGEST_BYTES, person=b"ctxd-key").digest()


def session_digest(session_id: str) -> bytes:
    data = session_id.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES, person=b"ctxd-session").digest()


def id_bytes(event_id: int) -> bytes:
    return event_id.to_bytes(ID_BYTES, "big")


def key_entries(
    txn: lmdb.Transaction, by_key: lmdb._Database, key: bytes
) -> list[tuple[bytes, str]]:
    """(id bytes, strategy) of every event of a cache key digest, oldest first."""
    cursor = txn.cursor(db=by_key)
    entries = []
    if cursor.set_range(key):
        for index_key, strategy in cursor:
            index_key = bytes(index_key)
            if not index_key.startswith(key):
                break
            entries.append((index_key[DIGEST_BYTES:], bytes(strategy).decode()))
    return entries


def best_entry(entries: list[tuple[bytes, str]], rank_of: Callable[[str], int]) -> bytes:
    """The id bytes of the event ``best`` serves: highest rank, then newest."""
    return max(entries, key=lambda e: (rank_of(e[1]), e[0]))[0]


class Databases(NamedTuple):
    meta: lmdb._Database
    events: lmdb._Database
    by_key: lmdb._Database
    by_session: lmdb._Database


def upgrade_schema(txn: lmdb.Transaction, dbs: Databases, path: str) -> None:
    """Check the store's schema version and migrate an older one, in ``txn``.

    A store without a version but with events is schema 1 (what an importer
    of the old orchestrator's cache writes: events only); raises SchemaError
    for a version newer than this ctxd's."""
    raw = txn.get(b"schema_version", db=dbs.meta)
    if raw is None:
        version = 1 if txn.stat(dbs.events)["entries"] > 0 else SCHEMA_VERSION
    else:
        version = int.from_bytes(raw, "big")
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the store at {path} has schema version {version}, newer than "
            f"this ctxd ({SCHEMA_VERSION}); run a newer ctxd or move the store"
        )
    if version < SCHEMA_VERSION:
        indexed = _index_events(txn, dbs)
        logger.info(
            "Migrated the store at %s from schema %d to %d (%d events indexed)",
            path,
            version,
            SCHEMA_VERSION,
            indexed,
        )
    txn.put(b"schema_version", SCHEMA_VERSION.to_bytes(4, "big"), db=dbs.meta)


def _index_events(txn: lmdb.Transaction, dbs: Databases) -> int:
    """Schema 1 → 2: build both indexes from the events."""
    count = 0
    for id_key, value in txn.cursor(db=dbs.events):
        event = DECODE_EVENT.decode(value)
        strategy = payload_tag(DECODE_PAYLOAD.decode(event.payload), "_strategy")
        digest = key_digest(event.session_id, event.category, event.resource, event.scene)
        txn.put(digest + id_key, strategy.encode(), db=dbs.by_key)
        txn.put(session_digest(event.session_id) + id_key, b"", db=dbs.by_session)
        count += 1
    return count
