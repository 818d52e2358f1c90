"""Where events live.

``lmdb.py`` is the embedded store every host has: one batching writer, map
growth, retention. ``format.py`` is how its events and keys are encoded and
how an older layout is migrated. The race talks to :class:`Store` through the
``EventStore`` protocol in ``daemon.race``; it never sees the backend.
"""

from daemon.store.lmdb import ListPage, Store

__all__ = ["ListPage", "Store"]
