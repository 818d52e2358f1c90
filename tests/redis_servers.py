"""Real ``redis-server`` processes for the fleet tests: one on a Unix socket
in a temp dir, or a 3-master Cluster on free ports; started and stopped by
the test. Missing ``redis-server`` fails the test with how to get it: the
fleet tests are never skipped.

``Shared`` is what a fleet test is given: a ``RedisServer`` or a
``RedisCluster``, with the same few operations (the fleet config that points
at it, a key command, a scan, a flush, stop and start), so that one test body
runs on both (issue 14, point 6). The session starts one of each, when a
module first asks, and flushes it between tests (``fleet_fixtures``)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import pytest

from tests.process import wait_for

START_WAIT = 10.0  # seconds a server may take to accept connections


def redis_binary(name: str = "redis-server") -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: the fleet tests start a real server. "
            "Install Debian's redis-server package (apt-get install redis-server; "
            ".ci/run does it) or put a redis-server 7 on PATH.",
            pytrace=False,
        )
    return found


def free_port(below: int = 65536) -> int:
    """A port free right now on 127.0.0.1 (a cluster node's bus port is its
    port + 10000, so cluster nodes take one below 55536 and free too)."""
    for _ in range(1000):
        with socket.socket() as s:
            if below < 65536:
                try:
                    s.bind(("127.0.0.1", random.randrange(20000, below)))
                except OSError:
                    continue
            else:
                s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if below == 65536 or _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Shared(Protocol):
    """A single server or a cluster, as the fleet tests use either."""

    kind: Literal["server", "cluster"]

    @property
    def fleet(self) -> dict[str, Any]: ...

    def cli(self, *args: str) -> str: ...

    def each(self, *args: str) -> list[str]: ...

    def keys(self, pattern: str) -> list[str]: ...

    def flush(self) -> None: ...

    def reset(self) -> None: ...

    def stop(self, sig: int = signal.SIGTERM) -> None: ...

    def start(self) -> None: ...


class RedisServer:
    """One redis-server with no persistence, on ``sock`` (and ``port`` when
    given); ``stop``/``start`` again keep the same address."""

    kind: Literal["server", "cluster"] = "server"

    def __init__(self, root: Path, port: int = 0, *extra: str) -> None:
        self.root = root
        self.sock = str(root / "redis.sock")
        self.port = port
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    @property
    def fleet(self) -> dict[str, Any]:
        """The ``fleet`` config keys that point at this server."""
        return {"url": self.url}

    def each(self, *args: str) -> list[str]:
        """A command on every node (here: this one), e.g. CONFIG SET."""
        return [self.cli(*args)]

    def keys(self, pattern: str) -> list[str]:
        return self.cli("--scan", "--pattern", pattern).split()

    def flush(self) -> None:
        self.cli("flushall")

    def reset(self) -> None:
        """Between two tests: running (a test may have stopped it), empty."""
        if self.proc is None:
            self.start()
        self.flush()

    def start(self) -> None:
        assert self.proc is None
        args = [
            redis_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", self.sock,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.root),
            "--logfile", str(self.root / "redis.log"),
            *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_WAIT
        while True:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                probe.connect(self.sock)
                probe.sendall(b"PING\r\n")
                if probe.recv(64).startswith(b"+PONG"):
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.root / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start: {log}")
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock)

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [redis_binary("redis-cli"), "-s", self.sock, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    root = Path(tempfile.mkdtemp(prefix="ctxd-redis-", dir="/tmp"))
    server = RedisServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


class RedisCluster:
    """``masters`` cluster-enabled servers on free ports (no replicas), the
    slots split evenly; ``cli`` follows the cluster's redirects."""

    kind: Literal["server", "cluster"] = "cluster"

    def __init__(self, root: Path, masters: int = 3) -> None:
        self.root = root
        self.nodes: list[RedisServer] = []
        for i in range(masters):
            node_root = root / str(i)
            node_root.mkdir()
            conf = str(node_root / "nodes.conf")
            args = ["--cluster-enabled", "yes", "--cluster-config-file", conf]
            args += ["--cluster-node-timeout", "2000"]
            self.nodes.append(RedisServer(node_root, free_port(below=55536), *args))

    @property
    def seeds(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    @property
    def fleet(self) -> dict[str, Any]:
        return {"cluster_nodes": self.seeds}

    def create(self) -> None:
        """Start the nodes and form the cluster: what ``redis-cli --cluster
        create`` does (slots, config epochs, MEET) without its one-second
        waits."""
        for node in self.nodes:
            node.start()
        per = 16384 // len(self.nodes)
        for i, node in enumerate(self.nodes):
            last = 16383 if i == len(self.nodes) - 1 else (i + 1) * per - 1
            node.cli("cluster", "addslotsrange", str(i * per), str(last))
            node.cli("cluster", "set-config-epoch", str(i + 1))
        for node in self.nodes[1:]:
            self.nodes[0].cli("cluster", "meet", "127.0.0.1", str(node.port))
        self.wait_ok()

    def wait_ok(self) -> None:
        """Until every node sees every other and all slots served."""
        deadline = time.monotonic() + START_WAIT
        want = f"cluster_known_nodes:{len(self.nodes)}"
        while True:
            infos = [n.cli("cluster", "info") for n in self.nodes]
            if all("cluster_state:ok" in i and want in i for i in infos):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach cluster_state:ok: {infos}")
            time.sleep(0.02)

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [redis_binary("redis-cli"), "-c", "-p", str(self.nodes[0].port), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout

    def each(self, *args: str) -> list[str]:
        return [n.cli(*args) for n in self.nodes]

    def keys(self, pattern: str) -> list[str]:
        return [k for n in self.nodes for k in n.keys(pattern)]

    def flush(self) -> None:
        self.each("flushall")

    def node_of(self, key: str) -> RedisServer:
        """The node that serves ``key``'s slot."""
        slot = int(self.nodes[0].cli("cluster", "keyslot", key))
        for low, high, port in _cluster_slots(self.nodes[0]):
            if low <= slot <= high:
                return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no node serves slot {slot}")

    def reset(self) -> None:
        if any(n.proc is None for n in self.nodes):
            self.start()
        self.flush()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Every node: the whole server is down (each keeps its nodes.conf).
        All are signalled first, then awaited: the server goes at once, not
        one shard after another."""
        for node in self.nodes:
            if node.proc is not None:
                node.proc.send_signal(sig)
        for node in self.nodes:
            node.stop(sig)

    def start(self) -> None:
        """Every stopped node again, on its port with its nodes.conf: the
        cluster comes back as it was (empty: nothing is persisted)."""
        for node in self.nodes:
            if node.proc is None:
                node.start()
        self.wait_ok()


def _cluster_slots(node: RedisServer) -> list[tuple[int, int, int]]:
    lines = node.cli("cluster", "slots").split()
    found = []
    # redis-cli prints CLUSTER SLOTS flattened: low, high, ip, port, id, ...
    for i in range(len(lines) - 3):
        if lines[i + 2] == "127.0.0.1" and lines[i].isdigit() and lines[i + 1].isdigit():
            found.append((int(lines[i]), int(lines[i + 1]), int(lines[i + 3])))
    return found


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[RedisCluster]:
    """A ``RedisCluster`` of ``masters`` nodes, formed, and removed after."""
    root = Path(tempfile.mkdtemp(prefix="ctxd-cluster-", dir="/tmp"))
    cluster = RedisCluster(root, masters)
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def shared_backend(kind: str) -> Iterator[Shared]:
    """A module's server or cluster (``kind``), for ``Shared.reset`` between tests."""
    if kind == "server":
        with redis_server() as server:
            yield server
    else:
        with redis_cluster(3) as cluster:
            yield cluster


class RedisSentinel:
    """A primary, its replica and one Sentinel watching them under
    ``service`` (quorum 1), on free ports: ``failover`` asks the Sentinel to
    promote the replica now, as it does when the primary is down for
    ``down-after-milliseconds``."""

    service: Final = "ctxd"

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "primary").mkdir()
        (root / "replica").mkdir()
        # No 5 s wait before a sync, no wait for replicas at a shutdown.
        quick = ("--repl-diskless-sync-delay", "0", "--shutdown-timeout", "0")
        self.primary = RedisServer(root / "primary", free_port(), *quick)
        self.replica = RedisServer(
            root / "replica",
            free_port(),
            *quick,
            "--replicaof",
            "127.0.0.1",
            str(self.primary.port),
        )
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def fleet(self) -> dict[str, Any]:
        return {"sentinel_nodes": [f"127.0.0.1:{self.port}"], "sentinel_service": self.service}

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        # The Sentinel learns the replica from the primary's INFO (at its
        # start, then every 10 s): the replica is linked first.
        wait_for(
            lambda: "master_link_status:up" in self.replica.cli("info", "replication"),
            START_WAIT,
            "the replica syncs",
        )
        conf = self.root / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.root}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
        )
        self.proc = subprocess.Popen(
            [redis_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_primary(self.primary.port)
        wait_for(
            lambda: str(self.replica.port) in self.sentinel_cli("replicas", self.service),
            START_WAIT * 2,
            "the Sentinel knows the replica",
        )

    def sentinel_cli(self, *args: str) -> str:
        out = subprocess.run(
            [redis_binary("redis-cli"), "-p", str(self.port), "sentinel", *args],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout

    def primary_port(self) -> int | None:
        try:
            out = subprocess.run(
                [redis_binary("redis-cli"), "-p", str(self.port), "sentinel",
                 "get-master-addr-by-name", self.service],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.split()  # fmt: skip
        except (subprocess.SubprocessError, OSError):
            return None
        return int(out[1]) if len(out) == 2 else None

    def wait_primary(self, port: int) -> None:
        wait_for(
            lambda: self.primary_port() == port,
            START_WAIT * 2,
            f"the Sentinel names 127.0.0.1:{port} the primary",
        )

    def failover(self, kill_clients: bool = True) -> None:
        """Promote the replica; return once the Sentinel names it and the
        old primary has become its replica (it drops its clients and refuses
        writes from then on; a write in between would be lost when it
        resyncs). The Sentinel turns the old primary into a replica at its
        next look at it (up to 10 s) and drops its clients; the test does
        it at once, dropping them too unless ``kill_clients`` is False (a
        primary demoted by other means: its clients stay connected)."""
        wait_for(  # NOGOODSLAVE until the Sentinel has connected to the replica itself
            lambda: self.sentinel_cli("failover", self.service).startswith("OK"),
            START_WAIT * 2,
            "the Sentinel fails over",
        )
        self.wait_primary(self.replica.port)
        self.primary.cli("replicaof", "127.0.0.1", str(self.replica.port))
        if kill_clients:
            self.primary.cli("client", "kill", "type", "normal")
            self.primary.cli("client", "kill", "type", "pubsub")
        wait_for(
            lambda: "role:slave" in self.primary.cli("info", "replication"),
            START_WAIT * 2,
            "the old primary becomes a replica",
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        self.replica.stop()
        self.primary.stop()


@contextlib.contextmanager
def redis_sentinel() -> Iterator[RedisSentinel]:
    root = Path(tempfile.mkdtemp(prefix="ctxd-sentinel-", dir="/tmp"))
    sentinel = RedisSentinel(root)
    try:
        sentinel.start()
        yield sentinel
    finally:
        sentinel.stop()
        shutil.rmtree(root, ignore_errors=True)


BACKENDS: Final = ["server", "cluster"]
_RUNNING: dict[str, Shared] = {}  # one of each for the whole test session


def running_backend(config: pytest.Config, kind: str) -> Shared:
    """The session's server or cluster (``kind``), started by the first
    module that asks and stopped when the session ends: a cluster costs ~2 s
    to form (a master turns writable 2 s after its start)."""
    found = _RUNNING.get(kind)
    if found is None:
        stack = contextlib.ExitStack()
        found = _RUNNING[kind] = stack.enter_context(shared_backend(kind))

        def stop() -> None:
            _RUNNING.pop(kind, None)
            stack.close()

        config.add_cleanup(stop)
    return found


def fleet_fixtures() -> tuple[Any, Any]:
    """A test module's ``backend`` (the session's server, then its cluster:
    every test that takes ``server`` runs on both) and ``server`` (that
    backend, running and flushed for each test). In the module:
    ``backend, server = fleet_fixtures()``."""

    @pytest.fixture(scope="module", params=BACKENDS)
    def backend(request: pytest.FixtureRequest) -> Shared:
        return running_backend(request.config, request.param)

    @pytest.fixture
    def server(backend: Shared) -> Shared:
        backend.reset()
        return backend

    return backend, server
