"""The bytes on disk: how an event and its index keys are encoded, and the
schema version with the migrations between versions (inside a transaction the
caller opens).

Layout (schema version 3), named databases in the environment at ``store.path``:

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
    category, resource, scene, payload, provenance, strategy, model).
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
transaction. Schema 2 kept the payload as msgpack of the object; schema 3
keeps it as the JSON text the client sent (a msgpack ``bin``), with the
strategy and model beside it, so that listing an event copies its payload
instead of decoding and re-encoding it (a 15 MiB payload of small numbers
cost 0.1-0.4 s of the event loop each way). Opening a schema 2 store writes
its records again in the new form, in the one migration transaction, before
the daemon serves; a record in the old form is still read (``payload_json``:
a schema 2 daemon draining during a restart on a held socket may write one
after the migration). A newer schema is refused (``SchemaError``, exit 78).

* event value: msgpack of ``StoredEvent``, an array (ts, session_id,
  category, resource, scene, payload, provenance, strategy, model);
  ``payload`` is a msgpack ``bin`` holding the payload's JSON text, or (an
  event written by schema 2 or 1) the msgpack map of the payload, with no
  strategy or model after it;
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

from daemon.errors import SchemaError, UnstorablePayload
from daemon.models import UNKNOWN, Provenance, payload_tag

if TYPE_CHECKING:
    from collections.abc import Callable

    import lmdb

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 3
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
    # msgpack: a ``bin`` of the payload's JSON text (schema 3), or the map of
    # the payload object (schemas 1 and 2); read it with ``payload_json``
    payload: msgspec.Raw
    provenance: Provenance | None = None
    strategy: str | None = None  # None: a schema 1/2 record (read the payload)
    model: str | None = None


_ABSENT: Final = msgspec.Raw(b"null")


class PayloadTags(msgspec.Struct, frozen=True):
    """The two payload members ctxd reads (``_strategy``, ``_model``); a JSON
    decode into it skips the rest without building it, and leaves the two
    values as text: only a string is read (a huge array under ``_model``, or
    ``1e999``, is neither built nor an error)."""

    strategy: msgspec.Raw = msgspec.field(default=_ABSENT, name="_strategy")
    model: msgspec.Raw = msgspec.field(default=_ABSENT, name="_model")

    def tags(self) -> tuple[str, str]:
        """Strategy and model as ``payload_tag`` reads them: a non-empty
        string, else ``unknown``."""
        return _tag(self.strategy), _tag(self.model)


def _tag(raw: msgspec.Raw) -> str:
    if bytes(memoryview(raw)[:1]) != b'"':
        return UNKNOWN
    return msgspec.json.decode(raw, type=str) or UNKNOWN


ENCODE: Final = msgspec.msgpack.Encoder()
DECODE_EVENT: Final = msgspec.msgpack.Decoder(StoredEvent)
DECODE_PAYLOAD: Final = msgspec.msgpack.Decoder(dict[str, Any])
_ENCODE_JSON: Final = msgspec.json.Encoder()
_BIN_HEADER: Final = {0xC4: 2, 0xC5: 3, 0xC6: 5}  # msgpack bin 8/16/32: bytes before the data
_DECODE_TAGS: Final = msgspec.json.Decoder(PayloadTags)


def encode_payload(payload: dict[str, Any] | msgspec.Raw) -> tuple[bytes, tuple[str, str]]:
    """A payload's JSON text and its (strategy, model) tags.

    A ``Raw`` is the JSON text a client sent (``events.append``), already
    known to be well-formed JSON: it must be an object and UTF-8, and is kept
    byte for byte; its tags are read without building it. A dict (a result
    of the race) is encoded. Raises UnstorablePayload naming what is wrong."""
    if not isinstance(payload, msgspec.Raw):
        try:
            text = _ENCODE_JSON.encode(payload)
        except (TypeError, OverflowError, ValueError) as exc:  # ValueError: a lone surrogate
            raise UnstorablePayload(f"the payload cannot be stored: {exc}") from None
        return text, (payload_tag(payload, "_strategy"), payload_tag(payload, "_model"))
    text = bytes(payload)
    if not text.lstrip(b" \t\r\n").startswith(b"{"):
        raise UnstorablePayload("the payload must be a JSON object")
    if b"\r" in text:
        # JSON allows a raw CR between tokens (inside a string it must be
        # escaped); a reader that splits lines on CR too (Python's text
        # mode, Node's readline) would cut every reply carrying it.
        text = text.replace(b"\r", b" ")
    if not text.isascii():
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnstorablePayload(
                f"the payload is not UTF-8 (byte {exc.start}: {text[exc.start : exc.start + 1]!r})"
            ) from None
    # A member name may be written with \u escapes; without any, a payload
    # that does not spell the names has no tags, and nothing is parsed.
    if b"\\u" not in text and b'"_strategy"' not in text and b'"_model"' not in text:
        return text, (UNKNOWN, UNKNOWN)
    return text, _DECODE_TAGS.decode(text).tags()


def stored_value(
    ts: float,
    fields: tuple[str, str, str, str],
    payload_json: bytes,
    provenance: Provenance | None,
    tags: tuple[str, str],
) -> bytes:
    """The bytes of a schema 3 event record."""
    session_id, category, resource, scene = fields
    strategy, model = tags
    # ``bytes`` encodes as a msgpack bin; Raw inserts it into the array as is.
    payload = msgspec.Raw(ENCODE.encode(payload_json))
    return ENCODE.encode(
        StoredEvent(ts, session_id, category, resource, scene, payload, provenance, strategy, model)
    )


def payload_json(stored: StoredEvent) -> tuple[msgspec.Raw, str, str]:
    """The payload's JSON text, strategy and model of a record of any schema.

    Of a schema 3 record the text is a view into the record's bytes (no copy:
    listing a 15 MiB event must not hold the loop); an older record's payload
    is decoded and encoded again."""
    view = memoryview(stored.payload)
    header = _BIN_HEADER.get(view[0]) if len(view) else None
    if header is not None:
        return msgspec.Raw(view[header:]), stored.strategy or UNKNOWN, stored.model or UNKNOWN
    payload = DECODE_PAYLOAD.decode(view)
    return (
        msgspec.Raw(_ENCODE_JSON.encode(payload)),
        payload_tag(payload, "_strategy"),
        payload_tag(payload, "_model"),
    )


def record_strategy(stored: StoredEvent) -> str:
    """The strategy of a record of any schema (for indexing)."""
    if stored.strategy is not None:
        return stored.strategy or UNKNOWN
    return payload_tag(DECODE_PAYLOAD.decode(stored.payload), "_strategy")


def _as_schema_3(stored: StoredEvent) -> bytes | None:
    """A schema 1/2 record written again in schema 3 form; None if it is one."""
    view = memoryview(stored.payload)
    if len(view) and view[0] in _BIN_HEADER:
        return None
    text, strategy, model = payload_json(stored)
    fields = (stored.session_id, stored.category, stored.resource, stored.scene)
    return stored_value(stored.ts, fields, bytes(text), stored.provenance, (strategy, model))


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
        # 1 → 2 builds the indexes; 2 → 3 writes every payload as JSON text
        # (a big one read in the old form would hold the loop when listed).
        indexed = _index_events(txn, dbs) if version < 2 else 0
        rewritten = _rewrite_payloads(txn, dbs)
        logger.info(
            "Migrated the store at %s from schema %d to %d "
            "(%d events indexed, %d payloads rewritten as JSON)",
            path,
            version,
            SCHEMA_VERSION,
            indexed,
            rewritten,
        )
    txn.put(b"schema_version", SCHEMA_VERSION.to_bytes(4, "big"), db=dbs.meta)


def _rewrite_payloads(txn: lmdb.Transaction, dbs: Databases) -> int:
    """Schema 2 → 3: every record whose payload is a msgpack map, again with
    the payload's JSON text. Ids and indexes do not change."""
    ids = [bytes(k) for k in txn.cursor(db=dbs.events).iternext(keys=True, values=False)]
    count = 0
    for id_key in ids:
        value = txn.get(id_key, db=dbs.events)
        rewritten = _as_schema_3(DECODE_EVENT.decode(value)) if value is not None else None
        if rewritten is not None:
            txn.put(id_key, rewritten, db=dbs.events)
            count += 1
    return count


def _index_events(txn: lmdb.Transaction, dbs: Databases) -> int:
    """Schema 1 → 2: build both indexes from the events."""
    count = 0
    for id_key, value in txn.cursor(db=dbs.events):
        event = DECODE_EVENT.decode(value)
        strategy = record_strategy(event)
        digest = key_digest(event.session_id, event.category, event.resource, event.scene)
        txn.put(digest + id_key, strategy.encode(), db=dbs.by_key)
        txn.put(session_digest(event.session_id) + id_key, b"", db=dbs.by_session)
        count += 1
    return count
