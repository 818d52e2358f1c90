"""Real ``redis-server`` processes for the fleet tests: one on a Unix socket
in a temp dir, or a 3-master Cluster on free ports; started and stopped by
the test. Missing ``redis-server`` fails the test with how to get it: the
fleet tests are never skipped."""

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

import pytest

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


class RedisServer:
    """One redis-server with no persistence, on ``sock`` (and ``port`` when
    given); ``stop``/``start`` again keep the same address."""

    def __init__(self, root: Path, port: int = 0, *extra: str) -> None:
        self.root = root
        self.sock = str(root / "redis.sock")
        self.port = port
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

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


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[list[RedisServer]]:
    """``masters`` cluster-enabled servers on free ports, slots spread by
    ``redis-cli --cluster create``; the seeds are ``127.0.0.1:<port>``."""
    root = Path(tempfile.mkdtemp(prefix="ctxd-cluster-", dir="/tmp"))
    servers: list[RedisServer] = []
    try:
        for i in range(masters):
            node_root = root / str(i)
            node_root.mkdir()
            server = RedisServer(
                node_root,
                free_port(below=55536),
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_root / "nodes.conf"),
                "--cluster-node-timeout", "2000",
            )  # fmt: skip
            server.start()
            servers.append(server)
        subprocess.run(
            [
                redis_binary("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{s.port}" for s in servers),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            check=True,
            timeout=30,
        )
        deadline = time.monotonic() + START_WAIT
        while "cluster_state:ok" not in servers[0].cli("cluster", "info"):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        yield servers
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
