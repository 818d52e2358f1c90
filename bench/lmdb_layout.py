"""What an index costs a synced LMDB commit, in-process (no RPC).

    .venv/bin/python bench/lmdb_layout.py

Commits batches of 1 KiB events with sync and metasync, as the store does:
the events database (keys appended in order) plus one or two indexes with
random 24-byte keys (a digest and the id, as ``by_key`` and ``by_session``),
with and without ``writemap``, and single events for comparison. Each random
index key dirties a page of its own, so every index adds about one random
page write per event to each commit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import lmdb


def run(writemap: bool, databases: int, batch: int, rounds: int, prefill: int = 20_000) -> None:
    path = tempfile.mkdtemp(prefix="ctxd-lmdb-", dir="/var/tmp")
    try:
        env = lmdb.open(
            path, map_size=1 << 30, max_dbs=8, sync=True, metasync=True, writemap=writemap
        )
        dbs = [env.open_db(b"events")] + [env.open_db(b"ix%d" % i) for i in range(databases - 1)]
        value = os.urandom(1024)
        n = 0
        with env.begin(write=True) as txn:  # an index of some size first
            for _ in range(prefill):
                n += 1
                txn.put(n.to_bytes(8, "big"), value, db=dbs[0], append=True)
                for db in dbs[1:]:
                    txn.put(os.urandom(16) + n.to_bytes(8, "big"), b"s", db=db)
        started = time.perf_counter()
        for _ in range(rounds):
            with env.begin(write=True) as txn:
                ids = list(range(n + 1, n + 1 + batch))
                n += batch
                txn.cursor(db=dbs[0]).putmulti(
                    [(i.to_bytes(8, "big"), value) for i in ids], append=True
                )
                for db in dbs[1:]:
                    keys = sorted((os.urandom(16) + i.to_bytes(8, "big"), b"s") for i in ids)
                    txn.cursor(db=db).putmulti(keys)
        elapsed = time.perf_counter() - started
        env.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    print(
        f"writemap={writemap!s:<5} databases={databases} batch={batch:>2}: "
        f"{rounds * batch / elapsed:>8,.0f} events/s, {elapsed / rounds * 1000:.2f} ms/commit"
    )


def main() -> None:
    for writemap in (False, True):
        for databases in (3, 2):
            run(writemap, databases, batch=64, rounds=150)
    run(False, 3, batch=1, rounds=300)


if __name__ == "__main__":
    main()
