"""Shared pieces of the benchmarks: start a daemon, drive it with closed-loop clients."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, NamedTuple

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


class LogReader(threading.Thread):
    """Drains a server's stderr pipe the way journald does (what the pipe
    holds at each read), and can stop reading for a while
    (``pause``/``resume``) like a stuck reader. Counts the lines and keeps
    the last."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self._pipe = pipe
        self._reading = threading.Event()
        self._reading.set()
        self.lines = 0
        self.last = b""
        self._partial = b""  # a line the last read ended inside

    def run(self) -> None:
        fd = self._pipe.fileno()
        while True:
            self._reading.wait()
            chunk = os.read(fd, 1 << 16)  # what the pipe holds, as journald reads
            if not chunk:
                return
            self.lines += chunk.count(b"\n")
            data = self._partial + chunk
            end = data.rfind(b"\n")
            if end >= 0:
                self.last = data[data.rfind(b"\n", 0, end) + 1 : end]
            self._partial = data[end + 1 :]

    def pause(self) -> None:
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()


READERS: dict[str, LogReader] = {}  # socket path -> the reader of that server's stderr


@contextmanager
def process(
    cmd: list[str], socket_path: str, *, stderr_pipe: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends (SIGTERM, then kill).

    With ``stderr_pipe`` its stderr is a pipe drained by a ``LogReader``
    (``READERS[socket_path]``), as under systemd; else it is ours. Placed
    by ``SERVER_PREFIX`` (``place``)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    stderr = subprocess.PIPE if stderr_pipe else None
    # chrt and taskset exec the server: same pid, and its threads inherit both
    proc = subprocess.Popen([*SERVER_PREFIX, *cmd], cwd=ROOT, env=env, stderr=stderr)
    if proc.stderr is not None:
        READERS[socket_path] = LogReader(proc.stderr)
        READERS[socket_path].start()
    try:
        wait_for_socket(socket_path, proc)
        yield proc
    finally:
        if socket_path in READERS:
            READERS[socket_path].resume()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stderr is not None:
            READERS.pop(socket_path).join(5)
            proc.stderr.close()


@contextmanager
def daemon(
    tmp: Path,
    name: str,
    store_extra: str = "",
    sections: str = "",
    *,
    level: str = "WARNING",
    stderr_pipe: bool = False,
) -> Iterator[str]:
    """A ctxd daemon with its own socket and store under ``tmp``; yields the socket.

    ``store_extra`` is added inside the ``store`` mapping (``, key: value``),
    ``sections`` is more top-level YAML; ``level`` is ``logging.level``, and
    ``stderr_pipe`` sends the log lines to a pipe that a ``LogReader`` drains."""
    config = tmp / f"{name}.yaml"
    sock = str(tmp / f"{name}.sock")
    config.write_text(
        f"socket: {{path: {sock}, max_in_flight: 4096}}\n"
        f"store: {{path: {tmp / name}-store{store_extra}}}\n"
        f"logging: {{level: {level}}}\n" + sections
    )
    cmd = [sys.executable, "-m", "daemon", "--config", str(config)]
    with process(cmd, sock, stderr_pipe=stderr_pipe) as proc:
        PIDS[sock] = proc.pid
        yield sock


@contextmanager
def echo_server(tmp: Path, reply: bytes | None = None) -> Iterator[str]:
    """The bare trio line server; with ``reply`` it answers every line with
    those bytes (ctxd's own reply), else with the line itself."""
    sock = str(tmp / "echo.sock")
    cmd = [sys.executable, str(ROOT / "bench" / "echo_server.py"), sock]
    if reply is not None:
        (tmp / "echo-reply").write_bytes(reply)
        cmd.append(str(tmp / "echo-reply"))
    with process(cmd, sock) as proc:
        PIDS[sock] = proc.pid
        yield sock


SERVER_PREFIX: list[str] = []  # every server runs under this (``place``)


def place(*, pin: bool, fifo: bool) -> str:
    """Keep the machine's other work from deciding a bench; call it first.
    Says what it did, for the bench to print.

    ``pin``: the servers get the last CPU (``taskset``), and this process
    (the C client it starts, the threads that drain the servers' logs) the
    others, so that client, server and log reader never take turns on one
    core in whatever order the scheduler picks: the server's CPU per
    request (every thread of it: event loop and log writer) is what limits
    its rate, the same way in every run.

    ``fifo`` (root only): this process and the client run SCHED_FIFO
    (priority 1), so the client answers every reply at once; a bench sets
    its servers' policy with ``fifo_server``. On this shared VM the others'
    jobs run at nice 15, yet under the fair scheduler they delayed
    wake-ups by milliseconds: the echo server at 8 connections did 1,100 to
    11,000 req/s at nice -20 (p99 8 ms) and 40,000 to 45,000 at SCHED_FIFO
    (p99 0.4 ms), minute against minute."""
    said = []
    cpus = sorted(os.sched_getaffinity(0))
    if pin and len(cpus) >= 2 and shutil.which("taskset"):
        os.sched_setaffinity(0, cpus[:-1])  # this process's threads and its children
        SERVER_PREFIX[:] = ["taskset", "-c", str(cpus[-1])]
        said.append(
            f"servers on CPU {cpus[-1]}, client and log readers on CPU"
            f" {','.join(map(str, cpus[:-1]))}"
        )
    if fifo:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            said.append("not SCHED_FIFO (needs root)")
        else:
            said.append("client, log readers and the server measured at SCHED_FIFO 1")
    return "; ".join(said) or "placed by the scheduler"


def fifo_server(path: str, on: bool) -> None:
    """Every thread of the server at ``path`` to SCHED_FIFO 1 (``on``), or
    back to the fair scheduler. At SCHED_FIFO nothing else on its CPU
    delays its wake-ups, and its threads never preempt each other (same
    priority, one CPU): the log writer runs when the event loop waits."""
    pid = PIDS[path]
    policy, param = (os.SCHED_FIFO, 1) if on else (os.SCHED_OTHER, 0)
    for tid in os.listdir(f"/proc/{pid}/task"):
        with suppress(ProcessLookupError):  # the thread ended meanwhile
            os.sched_setscheduler(int(tid), policy, os.sched_param(param))


def loadgen() -> Path:
    """bench/loadgen.c built with the system compiler (``cc -O2``), once per
    version of the source, into ``~/.cache/ctxd-bench`` (or
    ``$XDG_CACHE_HOME``); the path of the binary."""
    source = ROOT / "bench" / "loadgen.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ctxd-bench"
    binary = cache / f"loadgen-{digest}"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise SystemExit("bench/loadgen.c needs a C compiler (cc or gcc) on PATH")
        partial = binary.with_suffix(f".{os.getpid()}")
        subprocess.run([compiler, "-O2", "-o", str(partial), str(source)], check=True)
        partial.replace(binary)
    return binary


class Load(NamedTuple):
    """One run of the C client against one server."""

    rate: float  # replies/s
    p50_ms: float
    p99_ms: float
    client_cpu: float  # the client's CPU time over the run's wall time (1.0 = one core)
    server_us: float  # the server's CPU µs per reply (all its threads)
    loop_us: float = 0.0  # of which its main thread's (the event loop's)


def c_drive(path: str, connections: int, seconds: float, line: bytes) -> Load:
    """Drive the server at ``path`` with the C client: ``connections``
    connections, one request (``line``) in flight on each."""
    with open(f"{path}.request", "wb") as out:
        out.write(line)
    pid = PIDS[path]
    before = thread_cpu_ns(pid)
    done = subprocess.run(
        [str(loadgen()), path, str(connections), str(seconds), f"{path}.request"],
        check=True,
        capture_output=True,
        text=True,
    )
    used = {tid: ns - before.get(tid, 0) for tid, ns in thread_cpu_ns(pid).items()}
    got = dict(item.split("=") for item in done.stdout.split())
    if int(got["errors"]):
        raise SystemExit(f"{got['errors']} error replies from {path}")
    requests = int(got["requests"])
    return Load(
        rate=float(got["rate"]),
        p50_ms=float(got["p50_us"]) / 1000,
        p99_ms=float(got["p99_us"]) / 1000,
        client_cpu=float(got["cpu"]),
        server_us=sum(used.values()) / 1000 / requests,
        loop_us=used.get(pid, 0) / 1000 / requests,
    )


PIDS: dict[str, int] = {}  # socket path -> pid of the server (daemon or echo) behind it


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """CPU nanoseconds each thread of ``pid`` has used so far, by thread id
    (``/proc/PID/task/TID/schedstat``: the scheduler's own count, to the
    nanosecond, where ``stat`` counts 10 ms ticks)."""
    used = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            used[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return used


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
