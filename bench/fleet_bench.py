"""Fleet mode under a shared workload (issue 14, point 11).

N daemons (1, 2, 4, 8) on one redis-server this script starts, a fake
OpenAI-compatible provider on 127.0.0.1 (a fast model of 50 ms and a premium
one of 300 ms), and a workload where screenshots repeat across hosts: Zipf
(s = 1.1) over 1,000 screenshots, one conversation each, sent by 16 client
threads to hosts drawn at random. Printed per N, side by side in one run:

* provider calls per unique screenshot, per strategy (target: exactly 1);
* a fleet hit (a host's first request for a screenshot another host made)
  next to a local hit (the same request again), as the client saw them,
  and to the server's PING round trip: as this script sees it (a raw
  socket) and as the daemon's client does (``status.fleet.rtt_ms``)
  (target: a fleet hit costs at most a local hit plus 2 round trips);
* freshness: host 0's premium result, stored, then served by host 1 (which
  held the fast one and asks every 2 ms): how long after host 0's commit;
* the server memory per screenshot (1,000 screenshots, a fast and a premium
  result of 12 bubbles each, published by one host);
* the outbox drain rate after an outage: the server stopped, 300 new
  screenshots analysed by one host, the server started again.

    .venv/bin/python bench/fleet_bench.py [--hosts 1,2,4,8] [--requests 600] [--timeout 0.25]
    .venv/bin/python bench/fleet_bench.py --outbox-bytes   # only: the outbox's bytes per event

A host whose lookup or lease command exceeds ``fleet.timeout`` races alone
(by design); on a loaded 2-core VM that happens, and the log lines that say
so are printed under the run.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from clients.client import Client
from tests.fake_provider import FakeProvider, Script
from tests.process import Daemon
from tests.redis_servers import RedisServer, redis_server

FAST, SLOW = "fast-model", "slow-model"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200
SCREENSHOTS = 1000


def zipf(n: int, s: float, rng: random.Random) -> Callable[[], int]:
    weights = [1 / (i + 1) ** s for i in range(n)]
    total = sum(weights)
    cumulative = []
    acc = 0.0
    for w in weights:
        acc += w / total
        cumulative.append(acc)

    def draw() -> int:
        x = rng.random()
        lo, hi = 0, n - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if cumulative[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        return lo

    return draw


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ping_rtt_ms(server: RedisServer, n: int = 2000) -> float:
    """The server's own round trip: PING over its Unix socket, p50."""
    times = []
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(server.sock)
        for _ in range(n):
            t = time.perf_counter()
            s.sendall(b"PING\r\n")
            s.recv(64)
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def start_hosts(
    root: Path, n: int, fake: FakeProvider, server: RedisServer, timeout: float = 0.25
) -> list[Daemon]:
    daemons = []
    for i in range(n):
        home = root / f"host-{i}"
        home.mkdir()
        daemons.append(
            Daemon(
                home,
                module="daemon",
                env={"CTXD_BENCH_KEY": "sk-bench"},
                providers={"fake": {"base_url": fake.base_url, "api_key_env": "CTXD_BENCH_KEY"}},
                strategies=[
                    {"name": "multimodal", "provider": "fake", "model": FAST, "rank": 1},
                    {"name": "premium", "provider": "fake", "model": SLOW, "rank": 2},
                ],
                llm={"premium_cache_timeout": 30, "request_timeout": 30},
                inputs={"allowed_dirs": [str(root / "shots")]},
                logging={"level": "WARNING"},
                fleet={"url": server.url, "host_id": f"host-{i}", "timeout": timeout},
            ).start(wait=False)
        )
    for d in daemons:
        d.wait_ready(60)
    return daemons


def analyze(client: Client, shot: int, root: Path) -> dict[str, Any]:
    params = {
        "conversation_id": f"conv-{shot}",
        "image": {"path": str(root / "shots" / f"{shot}.png")},
    }
    result: dict[str, Any] = client.call("analyze", params, timeout=60)
    return result


def settle(clients: list[Client]) -> None:
    """Until no host has background work or anything in its outbox."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        statuses = [c.call("status") for c in clients]
        if all(s["background"]["count"] == 0 and s["fleet"]["outbox"] == 0 for s in statuses):
            return
        time.sleep(0.05)
    raise RuntimeError("the fleet did not settle in 120 s")


def run(
    root: Path, n: int, requests: int, server: RedisServer, seed: int, timeout: float
) -> dict[str, Any]:
    server.cli("flushall")
    with FakeProvider({FAST: Script(latency=0.05), SLOW: Script(latency=0.3)}) as fake:
        daemons = start_hosts(root, n, fake, server, timeout)
        clients = [Client(d.socket_path) for d in daemons]
        try:
            rng = random.Random(seed)
            draw = zipf(SCREENSHOTS, 1.1, rng)
            plan = [(draw(), rng.randrange(n)) for _ in range(requests)]
            lock = threading.Lock()
            seen: set[int] = set()
            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:

                def one(item: tuple[int, int]) -> None:
                    shot, h = item
                    analyze(clients[h], shot, root)
                    with lock:
                        seen.add(shot)

                list(pool.map(one, plan))
            elapsed = time.perf_counter() - started
            settle(clients)
            unique = len(seen)
            out: dict[str, Any] = {
                "hosts": n,
                "requests": requests,
                "unique": unique,
                "seconds": elapsed,
                "fast_per_unique": fake.calls(FAST) / unique,
                "premium_per_unique": fake.calls(SLOW) / unique,
                "leases": [c.call("status")["fleet"] for c in clients],
            }
            if n >= 2:
                out.update(hit_latencies(root, clients, fake))
            return out
        finally:
            for c in clients:
                c.close()
            for d in daemons:
                d.stop()
            warnings = [ln for d in daemons for ln in d.log().splitlines() if "WARNING" in ln]
            for line in warnings[:5]:
                print(f"  host log: {line}")


def hit_latencies(root: Path, clients: list[Client], fake: FakeProvider) -> dict[str, Any]:
    """200 new screenshots made on host 0, then asked on host 1 (a fleet hit),
    then again on host 1 (a local hit); sequential, one at a time."""
    base = 100_000
    for i in range(200):
        analyze(clients[0], base + i, root)
    settle(clients)
    fleet_d, fleet_c, local_d, local_c = [], [], [], []
    for i in range(200):
        t = time.perf_counter()
        r = analyze(clients[1], base + i, root)
        fleet_c.append((time.perf_counter() - t) * 1000)
        assert r["provenance"]["cached"], r
        assert r["provenance"]["origin"]["host"] == "host-0", r
        fleet_d.append(r["provenance"]["latency_ms"])
        t = time.perf_counter()
        r = analyze(clients[1], base + i, root)
        local_c.append((time.perf_counter() - t) * 1000)
        local_d.append(r["provenance"]["latency_ms"])
    return {
        "daemon_rtt_ms": clients[1].call("status")["fleet"]["rtt_ms"],
        "fleet_daemon": fleet_d,
        "fleet_client": fleet_c,
        "local_daemon": local_d,
        "local_client": local_c,
    }


def freshness(root: Path, server: RedisServer, shots: int = 30) -> list[float]:
    """Milliseconds from host 0's commit of a premium result (its ``ts``) to
    host 1 serving it, host 1 holding the fast result of the same screenshot
    and asking every 2 ms."""
    server.cli("flushall")
    delays = []
    with FakeProvider({FAST: Script(latency=0.02), SLOW: Script(latency=0.2)}) as fake:
        daemons = start_hosts(root, 2, fake, server)
        clients = [Client(d.socket_path) for d in daemons]
        try:
            for i in range(shots):
                shot = 300_000 + i
                first = analyze(clients[0], shot, root)
                assert first["provenance"]["strategy"] == "multimodal", first
                deadline = time.monotonic() + 10
                while True:  # host 1: the fast result, from the fleet
                    hit = analyze(clients[1], shot, root)
                    if hit["provenance"]["cached"]:
                        break
                    assert time.monotonic() < deadline, "host 1 never had the fast result"
                while True:
                    r = analyze(clients[1], shot, root)
                    now = time.time()
                    if r["provenance"]["strategy"] == "premium":
                        delays.append((now - r["provenance"]["created_at"]) * 1000)
                        break
                    assert time.monotonic() < deadline, "host 1 never served the premium"
                    time.sleep(0.002)
            return delays
        finally:
            for c in clients:
                c.close()
            for d in daemons:
                d.stop()


def drain(root: Path, server: RedisServer) -> dict[str, float]:
    server.cli("flushall")
    with FakeProvider({FAST: Script(latency=0.01), SLOW: Script(latency=0.02)}) as fake:
        (daemon,) = start_hosts(root, 1, fake, server)
        client = Client(daemon.socket_path)
        try:
            server.stop()
            base = 200_000
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: analyze(client, base + i, root), range(300)))
            deadline = time.monotonic() + 60
            while client.call("status")["background"]["count"] and time.monotonic() < deadline:
                time.sleep(0.05)
            waiting = client.call("status")["fleet"]["outbox"]
            server.start()
            t0 = time.perf_counter()
            first = None
            while True:
                left = client.call("status")["fleet"]["outbox"]
                now = time.perf_counter()
                if first is None and left < waiting:
                    first = now
                if left == 0:
                    break
                if now - t0 > 60:
                    raise RuntimeError("the outbox did not drain in 60 s")
                time.sleep(0.002)
            on_server = len(server.cli("--scan", "--pattern", "ctxd:*:hist").split())
            assert first is not None
            return {
                "events": waiting,
                "noticed_s": first - t0,
                "drain_s": now - first,
                "rate": waiting / max(now - first, 1e-6),
                "keys_on_server": on_server,
            }
        finally:
            client.close()
            daemon.stop()


def sizing(root: Path, server: RedisServer, screenshots: int = 1000) -> None:
    """Server memory per screenshot: one host publishes a fast and a premium
    result (12 bubbles each) for ``screenshots`` screenshots, in-process."""
    import trio

    from daemon.config import load_config
    from daemon.models import Provenance
    from daemon.store import Store
    from daemon.store.fleet import Fleet
    from daemon.store.fleet_keys import key_tag, record_keys
    from tests.conftest import write_config

    server.cli("flushall")
    empty = _used_memory(server)
    ranks = {"multimodal": 1, "premium": 2}

    def rank_of(name: str) -> int:
        return ranks.get(name, -1)

    config = load_config(write_config(root, fleet={"url": server.url, "host_id": "host-a"}))
    assert config.fleet is not None
    store = Store.open(config.store, rank_of)
    fleet = Fleet(config.fleet, store, rank_of)
    bubbles = [
        {
            "speaker": "talker",
            "side": "left",
            "bbox": [10, 100 * i, 300, 100 * i + 80],
            "text": f"这是一条比较长的聊天消息 with some words {i}",
        }
        for i in range(12)
    ]
    payload: dict[str, Any] = {
        "_model": "anthropic/claude-sonnet-4.6",
        "participants": {"user": "Zhang", "talker": "徐康"},
        "layout": {"left": "talker", "right": "user"},
        "bubbles": bubbles,
        "conversation": [{"speaker": b["speaker"], "text": b["text"]} for b in bubbles],
        "summary": None,
    }
    provenance = Provenance(latency_ms=4200.0, provider="openrouter", race_id="1733456789-1")

    async def publish_all() -> None:
        async with fleet.client, trio.open_nursery() as nursery:
            await nursery.start(store.run_writer)
            for i in range(screenshots):
                for strategy in ("multimodal", "premium"):
                    await store.append(
                        f"conv-{i}",
                        "context_analysis",
                        f"sha256:{i:064x}",
                        "",
                        {**payload, "_strategy": strategy},
                        provenance,
                    )
            while await fleet.publish_round():
                pass
            nursery.cancel_scope.cancel()

    try:
        trio.run(publish_all)
    finally:
        store.close()
    used = _used_memory(server) - empty
    tag = key_tag("conv-0", "context_analysis", f"sha256:{0:064x}", "")
    sizes = [server.cli("memory", "usage", k).strip() for k in record_keys(tag)]
    payload_bytes = len(json.dumps(payload, ensure_ascii=False).encode())
    keys = server.cli("dbsize").strip()
    print(
        f"sizing: {screenshots} screenshots x 2 events of {payload_bytes} B payload: "
        f"{keys} keys, {used / screenshots / 1000:.1f} KB of server memory per screenshot "
        f"(MEMORY USAGE best/hist/origins: {'/'.join(sizes)} B)"
    )


def _used_memory(server: RedisServer) -> int:
    for line in server.cli("info", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("no used_memory in INFO")


def outbox_bytes(events: int = 20_000) -> None:
    """What a long outage costs a host's disk: the LMDB bytes of the outbox
    per waiting event (the event itself is in the store anyway), no server."""
    import trio

    from daemon.config import load_config
    from daemon.models import Provenance
    from daemon.store import Store
    from tests.conftest import write_config

    root = Path(tempfile.mkdtemp(prefix="ctxd-ob-", dir="/tmp"))
    try:
        config = load_config(write_config(root, store={"path": str(root / "store")}))
        store = Store.open(config.store, config.rank_of())
        store.outbox_on = True  # what Fleet does

        async def fill() -> None:
            async with trio.open_nursery() as nursery:
                await nursery.start(store.run_writer)
                for n in range(events):
                    payload = {"_strategy": "local", "text": "x"}
                    await store.append(
                        "c", "context_analysis", f"sha256:{n}", "", payload, Provenance()
                    )
                nursery.cancel_scope.cancel()

        trio.run(fill)
        with store._env.begin() as txn:
            stat = txn.stat(store._outbox)
        pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        print(
            f"outbox: {stat['entries']} waiting events in {pages} pages of {stat['psize']} B: "
            f"{pages * stat['psize'] / stat['entries']:.1f} B per event"
        )
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outbox-bytes", action="store_true", help="only the outbox's size")
    parser.add_argument("--hosts", default="1,2,4,8")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--timeout", type=float, default=0.25, help="fleet.timeout, seconds")
    args = parser.parse_args()
    if args.outbox_bytes:
        outbox_bytes()
        return
    root = Path(tempfile.mkdtemp(prefix="ctxd-fb-", dir="/tmp"))
    try:
        shots = root / "shots"
        shots.mkdir()
        extra = [*range(100_000, 100_200), *range(200_000, 200_300), *range(300_000, 300_030)]
        for i in [*range(SCREENSHOTS), *extra]:
            (shots / f"{i}.png").write_bytes(PNG + str(i).encode())
        with redis_server() as server:
            rtt = ping_rtt_ms(server)
            print(f"server PING round trip p50 {rtt * 1000:.0f} us (Unix socket, this process)")
            print(
                "hosts  requests  unique  fast/unique  premium/unique  leases won  waited  "
                "fleet hit p50/p99 ms  local hit p50/p99 ms  daemon's PING ms  "
                "(fleet - local) p50 in PINGs"
            )
            for n in [int(x) for x in args.hosts.split(",") if x]:
                run_root = root / f"n{n}"
                run_root.mkdir()
                (run_root / "shots").symlink_to(shots)
                r = run(run_root, n, args.requests, server, args.seed, args.timeout)
                won = sum(s["leases_won"] for s in r["leases"])
                waited = sum(s["leases_waited"] for s in r["leases"])
                line = (
                    f"{n:5d}  {r['requests']:8d}  {r['unique']:6d}  {r['fast_per_unique']:11.3f}  "
                    f"{r['premium_per_unique']:14.3f}  {won:10d}  {waited:6d}"
                )
                if "fleet_daemon" in r:
                    fc, lc = r["fleet_client"], r["local_client"]
                    line += (
                        f"  {pct(fc, 0.5):.2f}/{pct(fc, 0.99):.2f}"
                        f"  {pct(lc, 0.5):.2f}/{pct(lc, 0.99):.2f}"
                        f"  {r['daemon_rtt_ms']:.2f}"
                        f"  {(pct(fc, 0.5) - pct(lc, 0.5)) / r['daemon_rtt_ms']:.1f}"
                    )
                print(line, flush=True)
            fresh_root = root / "fresh"
            fresh_root.mkdir()
            (fresh_root / "shots").symlink_to(shots)
            delays = freshness(fresh_root, server)
            print(
                f"freshness: host 1 served host 0's premium {pct(delays, 0.5):.1f} ms (p50), "
                f"{pct(delays, 0.99):.1f} ms (p99, of {len(delays)}) after host 0 stored it"
            )
            sizing_root = root / "sizing"
            sizing_root.mkdir()
            sizing(sizing_root, server)
            drain_root = root / "drain"
            drain_root.mkdir()
            (drain_root / "shots").symlink_to(shots)
            d = drain(drain_root, server)
            print(
                f"outage: {d['events']} events waited in the outbox; the publisher noticed the "
                f"server after {d['noticed_s']:.2f} s and drained them in {d['drain_s']:.3f} s: "
                f"{d['rate']:,.0f} events/s; {d['keys_on_server']} screenshots' histories on "
                "the server"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
