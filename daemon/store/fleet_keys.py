"""The names the fleet uses on the server (docs/fleet.md): one hash tag per
cache key, so that a Cluster keeps all of a key's records on one shard."""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

CHANNEL: Final = "ctxd:fleet"  # a key's tag, each time its best record rises or its lease ends


def key_tag(session_id: str, category: str, resource: str, scene: str) -> str:
    """The hash tag of a cache key: 128 bits of a SHA-256 of its fields."""
    fields = msgspec.msgpack.encode([session_id, category, resource, scene])
    return hashlib.sha256(fields).hexdigest()[:32]


def record_keys(tag: str) -> tuple[str, str, str]:
    """The key's best record, history and per-host marks."""
    return f"ctxd:{{{tag}}}:best", f"ctxd:{{{tag}}}:hist", f"ctxd:{{{tag}}}:origins"


def lease_key(tag: str) -> str:
    return f"ctxd:{{{tag}}}:lease"


def lease_next_key(tag: str) -> str:
    """The token of a holder whose lease another host took while its race
    ran: the release hands the lease to it (docs/fleet.md)."""
    return f"ctxd:{{{tag}}}:lease:next"


def ended_key(tag: str, token: str) -> str:
    """Set when the holding ``token`` ended (released, or its SET NX
    abandoned): a renewal or a SET NX of that token reaching the server
    later does nothing."""
    return f"ctxd:{{{tag}}}:ended:{token}"


def failed_key(tag: str) -> str:
    """Hash: strategy -> Unix time of its last failure on the key (any host)."""
    return f"ctxd:{{{tag}}}:failed"
