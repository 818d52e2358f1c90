"""Another process on the same store: ``python -m tests.store_writer PATH N BYTES STRATEGY``.

Opens the store at PATH with a 1 MiB map (the smallest the config allows),
appends N events of BYTES bytes each under the key ``tests/test_store.py``
uses (payload ``_strategy`` = STRATEGY) and prints their ids as JSON. The
map grows in this process as it fills: the test's own process then holds a
map smaller than the data, as a daemon does while the other one (draining
during a restart on a held socket) still writes.
"""

from __future__ import annotations

import json
import sys

import trio

from daemon.config import StoreConfig
from daemon.store import Store

KEY = ("conv-1", "context_analysis", "sha256:abc", "")


async def append_all(store: Store, count: int, size: int, strategy: str) -> list[int]:
    ids = []
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run_writer)
        for i in range(count):
            payload = {
                "_strategy": strategy,
                "_model": f"{strategy}-model",
                "i": i,
                "blob": "x" * size,
            }
            ids.append(await store.append(*KEY, payload))
        nursery.cancel_scope.cancel()
    return ids


def main(argv: list[str]) -> int:
    path, count, size, strategy = argv[0], int(argv[1]), int(argv[2]), argv[3]
    ranks = {"multimodal": 1, "premium": 2}
    store = Store.open(
        StoreConfig(path=path, map_size_mb=1, max_events_per_key=1000),
        lambda name: ranks.get(name, -1),
    )
    try:
        ids = trio.run(append_all, store, count, size, strategy)
    finally:
        store.close()
    print(json.dumps({"ids": ids}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
