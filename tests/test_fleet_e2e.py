"""Fleet mode end to end: real daemons sharing one real redis-server, a fake
OpenAI-compatible provider on 127.0.0.1. Every test runs on one server and on
a 3-master Cluster (``server`` / ``cluster`` in its id; issue 14, point 6)."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from clients.client import Client, RpcError
from tests.fake_provider import FakeProvider, Script
from tests.process import ROOT, Daemon, wait_for
from tests.redis_servers import Shared, fleet_fixtures

pytestmark = pytest.mark.process

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200
FAST, SLOW = "fast-model", "slow-model"


def default_scripts() -> dict[str, Script]:
    return {FAST: Script(latency=0.05), SLOW: Script(latency=0.4)}


backend, server = fleet_fixtures()


@pytest.fixture(scope="module")
def module_fake() -> Iterator[FakeProvider]:
    with FakeProvider(default_scripts()) as fake:
        yield fake


def reset_fake(fake: FakeProvider, slow: Script | None = None) -> None:
    """The default scripts (``slow`` for the premium model) and no calls yet."""
    fake.scripts.update(default_scripts())
    if slow is not None:
        fake.scripts[SLOW] = slow
    with fake._lock:
        fake.requests.clear()


@pytest.fixture
def fake(module_fake: FakeProvider) -> FakeProvider:
    """The module's fake provider, reset for this test (its start is one
    thread; the daemons that use it are each test's own or ``pair``)."""
    reset_fake(module_fake)
    return module_fake


class Pair:
    """Two daemons, ``a`` and ``b``, that live as long as the module's
    backend: starting a daemon is most of an end-to-end test's time. Each
    test uses screenshots of its own (fresh keys), sees the fake provider's
    calls of its own (``reset_fake`` once both daemons are quiet) and reads
    the fleet counters as the change since it began (``since``)."""

    def __init__(self, root: Path, a: Daemon, b: Daemon) -> None:
        self.root, self.a, self.b = root, a, b
        self.base: dict[str, dict[str, Any]] = {}

    def quiet(self) -> None:
        """No race running and nothing in the outbox, on both."""
        for d in (self.a, self.b):
            with Client(d.socket_path) as client:
                wait_for(
                    lambda c=client: not c.call("status")["background"]["count"],  # type: ignore[misc]
                    what="the previous test's races over",
                )
            wait_for(
                lambda d=d: (
                    fleet_status(d)["outbox"] == 0  # type: ignore[misc]
                    and fleet_status(d)["state"] == "connected"
                ),
                what="the outbox sent, the server reachable",
            )
        self.base = {d.socket_path: fleet_status(d) for d in (self.a, self.b)}

    def since(self, d: Daemon) -> dict[str, Any]:
        """``d``'s fleet status, its counters as counted since the test began."""
        now = fleet_status(d)
        base = self.base[d.socket_path]
        return {
            k: v - base[k] if isinstance(v, int) and k not in ("outbox",) else v
            for k, v in now.items()
        }


@pytest.fixture(scope="module")
def module_pair(backend: Shared, module_fake: FakeProvider) -> Iterator[Pair]:
    root = Path(tempfile.mkdtemp(prefix="ctxd-", dir="/tmp"))
    a, b = hosts(root, ["host-a", "host-b"], module_fake, backend)
    try:
        yield Pair(root, a, b)
    finally:
        a.stop()
        b.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pair(module_pair: Pair, backend: Shared, fake: FakeProvider) -> Pair:
    """The module's two daemons, quiet, on the backend flushed once they
    are (a previous test's tail, an outbox round or a release, lands before
    the flush, not on this test's server: second cold review, 6), the fake's
    calls counted from here. (Not through ``server``: its flush would come
    before ``quiet``.)"""
    backend.reset()  # running again if a test stopped it: the daemons reconnect
    module_pair.quiet()
    backend.flush()
    reset_fake(fake)
    return module_pair


def host(
    root: Path, name: str, fake: FakeProvider, server: Shared, wait: bool = True, **fleet: Any
) -> Daemon:
    """A daemon named ``name`` on ``server`` (one server or a cluster);
    ``wait=False``: started, not yet serving (``Daemon.wait_ready``)."""
    # fleet.timeout 1 s, not the 0.25 s default: on this 2-core machine
    # under a whole suite's load a command can take longer, and a request
    # whose command times out races alone (by design, docs/fleet.md).
    where = {"timeout": 1.0, **server.fleet}
    (root / name).mkdir()
    (root / "shots").mkdir(exist_ok=True)
    return Daemon(
        root / name,
        env={"CTXD_TEST_KEY": "sk-fleet-secret"},
        providers={"fake": {"base_url": fake.base_url, "api_key_env": "CTXD_TEST_KEY"}},
        llm={"premium_cache_timeout": 10, "request_timeout": 20},
        inputs={"allowed_dirs": [str(root / "shots")]},
        fleet={**where, "host_id": name, **fleet},
    ).start(wait=wait)


def hosts(root: Path, names: list[str], fake: FakeProvider, server: Shared) -> list[Daemon]:
    """Daemons started at once (each start mostly waits for its subscription)."""
    daemons = [host(root, name, fake, server, wait=False) for name in names]
    for d in daemons:
        d.wait_ready()
    return daemons


def screenshot(root: Path, salt: str) -> str:
    path = root / "shots" / f"{salt}.png"
    path.write_bytes(PNG + salt.encode())
    return str(path)


def analyze(client: Client, path: str, **extra: Any) -> Any:
    params = {"conversation_id": "conv-fleet", "image": {"path": path}, **extra}
    return client.call("analyze", params, timeout=30)


def fleet_status(daemon: Daemon) -> dict[str, Any]:
    with Client(daemon.socket_path) as client:
        status: dict[str, Any] = client.call("status")["fleet"]
        return status


def origins_on_server(server: Shared) -> list[tuple[str, int]]:
    found = []
    for key in server.keys("ctxd:*:hist"):
        for line in server.cli("lrange", key, "0", "-1").splitlines():
            origin = json.loads(line)["origin"]
            found.append((origin["host"], origin["event_id"]))
    return found


def test_a_premium_result_made_on_host_a_is_served_by_host_b_as_cached(
    pair: Pair, fake: FakeProvider
) -> None:
    a, b = pair.a, pair.b
    path = screenshot(pair.root, "one")
    with Client(a.socket_path) as client:
        made = analyze(client, path, wait="best")
    assert made["provenance"]["strategy"] == "premium"
    wait_for(lambda: fleet_status(a)["outbox"] == 0, what="A's outbox sent")
    with Client(b.socket_path) as client:
        served = analyze(client, path)  # answered before B's own commit of it
        key = {
            "session_id": "conv-fleet",
            "category": "context_analysis",
            "resource": made_resource(client, path),
        }
        wait_for(lambda: client.call("events.best", key)["event"] is not None, what="stored")
        best = client.call("events.best", key)["event"]
        again = analyze(client, path)  # a local hit now
    assert served["provenance"]["cached"] is True
    assert served["provenance"]["strategy"] == "premium"
    assert served["provenance"]["origin"] == {
        "host": "host-a",
        "event_id": made["provenance"]["event_id"],
    }
    assert served["result"] == made["result"]
    assert served["provenance"]["event_id"] is None  # not B's event (yet)
    assert again["provenance"]["origin"] == served["provenance"]["origin"]
    assert again["provenance"]["event_id"] == best["id"]
    assert best["provenance"]["origin"]["host"] == "host-a"
    status = pair.since(b)
    assert (status["hits"], status["lookups"], status["state"]) == (1, 1, "connected")
    assert fake.calls(SLOW) == 1  # in the whole fleet
    assert fake.calls(FAST) == 1
    total = fleet_status(b)
    shown = subprocess.run(
        [sys.executable, "clients/ctl.py", "--socket", b.socket_path, "status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "fleet  host-b on " in shown
    assert "  connected  " in shown
    assert (
        f"fleet hits {total['hits']} of {total['lookups']} lookups "
        f"({total['lookup_errors']} failed)  leases won {total['leases_won']} "
        f"waited {total['leases_waited']} taken over {total['leases_taken_over']} "
        f"lost {total['leases_lost']} retaken {total['leases_retaken']}"
    ) in shown
    assert "sk-fleet-secret" not in a.log() + b.log()


def made_resource(client: Client, path: str) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("size", [2, 8])
def test_identical_new_requests_spread_over_the_fleet_make_one_provider_call_per_strategy(
    pair: Pair, fake: FakeProvider, server: Shared, size: int
) -> None:
    """The module's pair, and for 8 six daemons more (this test's own)."""
    more = hosts(pair.root, [f"host-{i}" for i in range(2, size)], fake, server)
    daemons = [pair.a, pair.b, *more]
    try:
        path = screenshot(pair.root, f"same-{size}")
        clients = [Client(d.socket_path) for d in daemons]
        try:
            start = threading.Barrier(50)

            def one(i: int) -> Any:
                start.wait()
                return analyze(clients[i % size], path)

            with ThreadPoolExecutor(50) as pool:
                answers = list(pool.map(one, range(50)))
            assert len(answers) == 50
            assert all(a["result"] == answers[0]["result"] for a in answers)
            wait_for(lambda: fake.calls(SLOW) >= 1, what="the premium leg called")
            wait_for(
                lambda: (
                    all(fleet_status(d)["outbox"] == 0 for d in daemons)
                    and all(not c.call("status")["background"]["count"] for c in clients)
                ),
                what="every race over and published",
            )
            statuses = [pair.since(pair.a), pair.since(pair.b), *map(fleet_status, more)]
        finally:
            for c in clients:
                c.close()
        assert fake.calls(FAST) == 1  # one race in the whole fleet
        assert fake.calls(SLOW) == 1
        assert sum(s["leases_won"] for s in statuses) == 1
        # The others waited for the winner's race, or (came after its first
        # result) were answered from the fleet's record.
        assert sum(s["leases_waited"] + s["hits"] for s in statuses) >= 1
    finally:
        for d in more:
            d.stop()


def test_kill_9_of_the_lease_holder_a_waiter_takes_over_and_answers(
    short_tmp: Path, server: Shared
) -> None:
    with FakeProvider({FAST: Script(latency=0.05), SLOW: Script(latency=1.5)}) as fake:
        a = host(short_tmp, "host-a", fake, server, wait=False, lease_ttl=1.0)
        b = host(short_tmp, "host-b", fake, server, wait=False, lease_ttl=1.0)
        a.wait_ready()
        b.wait_ready()
        try:
            path = screenshot(short_tmp, "held")
            holder = threading.Thread(target=lambda: _call_ignoring_loss(a, path), daemon=True)
            holder.start()
            wait_for(lambda: fake.calls(SLOW) == 1, what="A's premium leg running")
            wait_for(lambda: fleet_status(a)["published"] == 1, what="A's fast result published")
            with Client(b.socket_path) as client:
                result: dict[str, Any] = {}

                def waiter() -> None:
                    result.update(analyze(client, path, wait="best"))

                t = threading.Thread(target=waiter)
                t.start()
                wait_for(lambda: fleet_status(b)["leases_waited"] == 1, what="B waiting")
                a.proc.send_signal(signal.SIGKILL) if a.proc else None
                killed_at = time.monotonic()
                t.join(30)
                took = time.monotonic() - killed_at
            assert result["provenance"]["strategy"] == "premium"
            assert result["provenance"]["cached"] is False  # B raced it itself
            status = fleet_status(b)
            assert (status["leases_taken_over"], status["leases_won"]) == (1, 1)
            assert fake.calls(SLOW) == 2  # A's (lost with it) and B's
            assert fake.calls(FAST) == 1  # B kept A's published fast result
            assert took < 1.0 + 1.5 + 5.0  # the lease time, B's premium call, slack
        finally:
            a.stop()
            b.stop()


def _call_ignoring_loss(daemon: Daemon, path: str) -> None:
    try:
        with Client(daemon.socket_path) as client:
            analyze(client, path, wait="best")
    except Exception:
        pass


def test_a_hit_on_another_host_does_not_upgrade_while_the_maker_races_and_sees_its_premium_next(
    pair: Pair, fake: FakeProvider
) -> None:
    """Upgrade on hit keeps its meaning across hosts (one host upgrades a key
    at a time: the lease), and a better result published by one host is
    what the others serve on their next hit (freshness)."""
    reset_fake(fake, slow=Script(latency=1.5))
    a, b = pair.a, pair.b
    path = screenshot(pair.root, "fresh")
    with Client(a.socket_path) as client:
        first = analyze(client, path)
    assert (first["provenance"]["strategy"], first["pending"]) == (
        "multimodal",
        ["premium"],
    )
    wait_for(lambda: pair.since(a)["published"] == 1, what="A's fast result published")
    with Client(b.socket_path) as client:
        hit = analyze(client, path)
        assert hit["provenance"]["cached"] is True
        assert hit["provenance"]["strategy"] == "multimodal"
        assert hit["provenance"]["origin"]["host"] == "host-a"
        assert hit["pending"] == []  # A's premium runs; B starts none
        wait_for(lambda: pair.since(a)["published"] == 2, what="A's premium published")
        fresh = analyze(client, path)  # the very next hit
    assert (fresh["provenance"]["strategy"], fresh["provenance"]["cached"]) == (
        "premium",
        True,
    )
    assert fresh["provenance"]["origin"]["host"] == "host-a"
    assert fake.calls(SLOW) == 1  # no second premium call anywhere
    assert fake.calls(FAST) == 1


def test_the_upgrade_retry_window_is_shared_by_the_fleet(pair: Pair, fake: FakeProvider) -> None:
    """The premium failed on host A: host B, holding A's fast result, does
    not try the premium again within llm.upgrade_retry_after."""
    reset_fake(fake, slow=Script(latency=0.05, status=403))  # no rest after it
    a, b = pair.a, pair.b
    path = screenshot(pair.root, "failing")
    with Client(a.socket_path) as client:
        made = analyze(client, path)
        assert made["provenance"]["strategy"] == "multimodal"
        wait_for(
            lambda: client.call("status")["background"]["count"] == 0,
            what="A's premium over (failed)",
        )
    assert fake.calls(SLOW) == 1
    wait_for(lambda: fleet_status(a)["outbox"] == 0, what="A's result published")
    with Client(b.socket_path) as client:
        first = analyze(client, path)  # the fleet's fast result
        assert first["provenance"]["origin"]["host"] == "host-a"
        wait_for(
            lambda: (
                client.call(
                    "events.best",
                    {
                        "session_id": "conv-fleet",
                        "category": "context_analysis",
                        "resource": made_resource(client, path),
                    },
                )["event"]
                is not None
            ),
            what="stored on B",
        )
        again = analyze(client, path)  # a local hit below the top rank
    assert again["provenance"]["cached"] is True
    assert again["pending"] == []  # no upgrade: A's failure counts here
    assert fake.calls(SLOW) == 1


def test_a_newer_top_rank_result_made_elsewhere_reaches_a_host_that_had_one(
    pair: Pair, fake: FakeProvider
) -> None:
    """Freshness at the top rank: B holds A's premium; A makes a newer one
    (refresh); B's next hits serve the newer one (pub/sub marks the key)."""
    a, b = pair.a, pair.b
    path = screenshot(pair.root, "newer")
    with Client(a.socket_path) as ca, Client(b.socket_path) as cb:
        old = analyze(ca, path, wait="best")
        wait_for(lambda: fleet_status(a)["outbox"] == 0, what="A's results published")
        assert (
            analyze(cb, path)["provenance"]["origin"]["event_id"] == old["provenance"]["event_id"]
        )
        wait_for(lambda: analyze(cb, path)["provenance"]["event_id"] is not None, what="on B")
        lookups = fleet_status(b)["lookups"]
        for _ in range(3):  # top-rank local hits: the server is not asked
            assert analyze(cb, path)["provenance"]["strategy"] == "premium"
        assert fleet_status(b)["lookups"] == lookups
        new = analyze(ca, path, wait="best", refresh=True)
        assert new["provenance"]["event_id"] != old["provenance"]["event_id"]
        wait_for(lambda: fleet_status(a)["outbox"] == 0, what="A's newer premium published")
        wait_for(
            lambda: (
                analyze(cb, path)["provenance"].get("origin", {}).get("event_id")
                == new["provenance"]["event_id"]
            ),
            what="B serves A's newer premium",
        )
        assert fleet_status(b)["lookups"] <= lookups + 2
    assert fake.calls(SLOW) == 2  # A's two; B never raced


def test_a_request_without_its_image_leaves_no_lease_behind(
    pair: Pair, fake: FakeProvider, server: Shared
) -> None:
    """B holds A's fast result (below the top rank) and is asked for the best
    by resource alone: no upgrade can start, and the lease B took to decide
    that is given back (else it would be renewed for ever, fleet-wide)."""
    a, b = pair.a, pair.b
    path = screenshot(pair.root, "noimage")
    with Client(a.socket_path) as ca, Client(b.socket_path) as cb:
        analyze(ca, path)  # the fast answer; A's premium runs on
        wait_for(lambda: pair.since(a)["published"] >= 1, what="A's fast result published")
        assert analyze(cb, path)["provenance"]["strategy"] == "multimodal"  # from the fleet
        wait_for(lambda: ca.call("status")["background"]["count"] == 0, what="A's race over")
        wait_for(lambda: fleet_status(a)["outbox"] == 0, what="A's premium published")
        server.flush()  # the server forgets the premium: B keeps the fast one
        params = {
            "conversation_id": "conv-fleet",
            "resource": made_resource(cb, path),
            "wait": "best",
        }
        with pytest.raises(RpcError, match="not cached"):
            cb.call("analyze", params, timeout=30)
        wait_for(
            lambda: server.keys("ctxd:*:lease") == [],
            what="no lease left on the server",
        )


def test_sigterm_stops_a_fleet_daemon_with_exit_0(
    short_tmp: Path, fake: FakeProvider, server: Shared
) -> None:
    """SIGTERM cancels the fleet's tasks; coredis's pub/sub cleanup raised
    ClosedResourceError next to the cancel, and the daemon exited 1 with a
    traceback after "ctxd stopped" (cold review 14.3)."""
    d = host(short_tmp, "host-a", fake, server)
    try:
        with Client(d.socket_path) as client:
            analyze(client, screenshot(short_tmp, "term"))
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        code = d.proc.wait(20)
    finally:
        d.stop()
    log = d.log()
    assert "Traceback" not in log, log[-2000:]
    assert "ClosedResourceError" not in log, log[-2000:]
    assert code == 0, (code, log[-2000:])


# Last in the module: it stops the module's server (or cluster), which the
# pair's daemons share.
def test_server_down_every_request_is_answered_and_the_outbox_drains_once_it_is_back(
    pair: Pair, fake: FakeProvider, server: Shared
) -> None:
    """On a cluster every node stops (the whole server is gone) and starts
    again on its port with its nodes.conf."""
    a, b = pair.a, pair.b
    logged = {d.socket_path: len(d.log()) for d in (a, b)}
    try:
        server.stop()
        answers = []
        for i in range(6):
            daemon = (a, b)[i % 2]
            with Client(daemon.socket_path) as client:
                answers.append(analyze(client, screenshot(pair.root, f"down-{i}")))
        assert all(r["provenance"]["strategy"] == "multimodal" for r in answers)
        wait_for(  # the premium results land too, and wait in the outboxes
            lambda: fake.calls(SLOW) == 6 and sum(fleet_status(d)["outbox"] for d in (a, b)) == 12,
            what="12 events in the outboxes",
        )
        assert {fleet_status(d)["state"] for d in (a, b)} == {"disconnected"}
        server.start()
        wait_for(
            lambda: sum(fleet_status(d)["outbox"] for d in (a, b)) == 0,
            timeout=20,
            what="the outboxes drained",
        )
        on_server = origins_on_server(server)
        assert len(on_server) == 12
        assert len(set(on_server)) == 12  # each event exactly once
        assert {h for h, _ in on_server} == {"host-a", "host-b"}
        for d in (a, b):
            assert fleet_status(d)["state"] == "connected"
    finally:
        server.reset()  # running again whatever failed: the module's next tests need it
    for d in (a, b):  # one WARNING when lost, one INFO when back: not a line per request
        log = d.log()[logged[d.socket_path] :]
        assert log.count("WARNING") == log.count("unreachable") == 1, log
        assert log.count("is reachable again") == 1, log
