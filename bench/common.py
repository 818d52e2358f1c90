"""Shared pieces of the benchmarks: start a daemon, drive it with closed-loop clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent


def wait_for_socket(path: str, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    raise SystemExit(f"{path} not ready after {timeout}s")


@contextmanager
def process(cmd: list[str], socket_path: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends (SIGTERM, then kill)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        wait_for_socket(socket_path, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def daemon(tmp: Path, name: str, store_extra: str = "", sections: str = "") -> Iterator[str]:
    """A ctxd daemon with its own socket and store under ``tmp``; yields the socket.

    ``store_extra`` is added inside the ``store`` mapping (``, key: value``),
    ``sections`` is more top-level YAML."""
    config = tmp / f"{name}.yaml"
    sock = str(tmp / f"{name}.sock")
    config.write_text(
        f"socket: {{path: {sock}, max_in_flight: 4096}}\n"
        f"store: {{path: {tmp / name}-store{store_extra}}}\n"
        "logging: {level: WARNING}\n" + sections
    )
    with process([sys.executable, "-m", "daemon", "--config", str(config)], sock) as proc:
        PIDS[sock] = proc.pid
        yield sock


@contextmanager
def echo_server(tmp: Path) -> Iterator[str]:
    sock = str(tmp / "echo.sock")
    with process([sys.executable, str(ROOT / "bench" / "echo_server.py"), sock], sock) as proc:
        PIDS[sock] = proc.pid
        yield sock


PIDS: dict[str, int] = {}  # socket path -> pid of the server (daemon or echo) behind it


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_and_threads_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds of the main thread, the event loop; of all other threads)."""
    loop = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if int(tid) == pid:
            loop += seconds
        else:
            other += seconds
    return loop, other


class LineClient:
    """One connection to a line server, one request at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = bytearray()

    async def round_trip(self, line: bytes) -> tuple[float, bytes]:
        """(seconds from sending ``line`` to the whole reply, the reply line).

        ``line`` ends with a newline; a closed connection ends the benchmark."""
        started = time.perf_counter()
        await self.stream.send_all(line)
        while b"\n" not in self._buf:
            data = await self.stream.receive_some(1 << 20)
            if not data:
                raise SystemExit("the server closed the connection")
            self._buf += data
        elapsed = time.perf_counter() - started
        end = self._buf.index(b"\n")
        reply = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return elapsed, reply

    async def call(self, line: bytes) -> float:
        """``round_trip``, and a reply that is an error ends the benchmark."""
        elapsed, reply = await self.round_trip(line)
        if b'"error"' in reply:
            raise SystemExit(f"error response: {reply[:300]!r}")
        return elapsed


RequestFactory = Callable[[int, int], bytes]  # (connection, sequence) -> one request line


async def drive(
    path: str, connections: int, seconds: float, request: RequestFactory
) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of ``connections`` closed-loop clients:
    each sends one request and waits for its response before the next."""
    latencies: list[float] = []
    stop_at = trio.current_time() + seconds

    async def client(number: int) -> None:
        stream = await trio.open_unix_socket(path)
        connection = LineClient(stream)
        sequence = 0
        async with stream:
            while trio.current_time() < stop_at:
                latencies.append(await connection.call(request(number, sequence)))
                sequence += 1

    begun = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for number in range(connections):
            nursery.start_soon(client, number)
    elapsed = time.perf_counter() - begun
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return len(latencies) / elapsed, p50, p99


def health_request(connection: int, sequence: int) -> bytes:
    return b'{"jsonrpc":"2.0","method":"health","id":1}\n'
