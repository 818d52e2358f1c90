"""sd_notify, socket activation, watchdog, restart without refusal, the unit files."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import trio
import trio.testing

from clients.client import Client, ConnectionClosed, RpcError
from daemon import systemd
from daemon.app import App
from daemon.config import Config
from tests.conftest import ConfigFactory, StoreFactory, write_config
from tests.helpers import register_test_methods
from tests.process import ROOT

# ------------------------------------------------------------ the protocol --


def datagram_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(5)
    return sock


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_reaches_a_path_or_abstract_socket(short_tmp: Path, abstract: bool) -> None:
    address = f"@ctxd-test-{os.getpid()}" if abstract else str(short_tmp / "notify")
    receiver = datagram_socket(address)
    try:
        assert systemd.notify("READY=1\nSTATUS=serving", {"NOTIFY_SOCKET": address})
        assert receiver.recv(4096) == b"READY=1\nSTATUS=serving"
    finally:
        receiver.close()


def test_notify_without_socket_does_nothing_and_a_dead_one_is_only_logged(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert systemd.notify("READY=1", {}) is False
    missing = {"NOTIFY_SOCKET": str(short_tmp / "nobody-here")}
    assert systemd.notify("STATUS=x", missing) is False
    assert systemd.notify("STATUS=y", missing) is False
    assert caplog.text.count("cannot notify systemd (STATUS)") == 1


def test_listen_fds_ignores_another_process_and_absent_variables() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}
    assert systemd.listen_fds(env) == []
    assert env == {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}
    assert systemd.listen_fds({}) == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "nope"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert systemd.watchdog_interval(env) == expected


# --------------------------------------------------------- in the daemon ----


async def test_ready_watchdog_stopping_and_drain_status(
    config: Config,
    open_store: StoreFactory,
    short_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    address = str(short_tmp / "notify")
    receiver = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await receiver.bind(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")  # ping every 2 s
    app = App(config, open_store(config))
    register_test_methods(app.service)
    messages: list[tuple[float, str]] = []

    async def collect() -> None:
        while True:
            data = await receiver.recv(4096)
            messages.append((trio.current_time(), data.decode()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)

        async def run(task_status: trio.TaskStatus[None]) -> None:
            await app.run(handle_signals=False, task_status=task_status)

        await nursery.start(run)
        # A background task of 10 s keeps the drain (deadline 30 s) busy.
        stream = await trio.open_unix_socket(config.socket.path)
        await stream.send_all(
            b'{"jsonrpc":"2.0","method":"background","params":[10,"bg"],"id":1}\n'
        )
        await stream.receive_some(4096)
        await trio.sleep(5)
        app.request_drain()
        drain_started = trio.current_time()
        await trio.sleep(10)
        await stream.aclose()
        nursery.cancel_scope.cancel()
    receiver.close()
    texts = [m for _, m in messages]
    ready = next(i for i, m in enumerate(texts) if m.startswith("READY=1"))
    assert f"MAINPID={os.getpid()}" in texts[ready]
    assert f"STATUS=serving on {config.socket.path}" in texts[ready]
    pings = [t for t, m in messages if m == "WATCHDOG=1"]
    assert len(pings) >= 3
    assert all(b - a == pytest.approx(2, abs=0.01) for a, b in itertools.pairwise(pings))
    stopping = next((t, m) for t, m in messages if m.startswith("STOPPING=1"))
    assert stopping[0] == pytest.approx(drain_started, abs=0.001)
    assert any(re.fullmatch(r"STATUS=draining: \d+ requests, 1 background tasks", m) for m in texts)


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config()


class DatagramSpy:
    """Stands in for the ``socket`` module inside ``daemon.systemd``: every
    datagram socket it opens and everything sent on one is recorded."""

    def __init__(self) -> None:
        self.opened = 0
        self.sent: list[tuple[bytes, object]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(socket, name)

    def socket(self, *args: object, **kwargs: object) -> socket.socket:
        self.opened += 1
        spy = self

        class Recording(socket.socket):
            def sendto(self, data: object, *rest: object) -> int:
                spy.sent.append((bytes(data), rest[-1]))  # type: ignore[call-overload]
                return len(bytes(data))  # type: ignore[call-overload]

        return Recording(*args, **kwargs)  # type: ignore[arg-type]


async def test_no_notify_socket_means_no_datagrams_and_no_failure(
    config: Config, open_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    spy = DatagramSpy()
    monkeypatch.setattr(systemd, "socket", spy)
    asked: list[str] = []
    notify = systemd.notify

    def recording_notify(message: str, env: Mapping[str, str] | None = None) -> bool:
        asked.append(message.split("=", 1)[0])
        return notify(message, env)

    monkeypatch.setattr(systemd, "notify", recording_notify)
    app = App(config, open_store(config))
    async with trio.open_nursery() as nursery:

        async def run(task_status: trio.TaskStatus[None]) -> None:
            await app.run(handle_signals=False, task_status=task_status)

        await nursery.start(run)
        app.request_drain()
    assert app.service.state == "draining"
    assert {"READY", "STOPPING"} <= set(asked)  # the daemon did try to tell systemd
    assert (spy.opened, spy.sent) == (0, [])  # and nothing left the process


async def test_a_drain_requested_during_the_start_wins(
    config: Config,
    open_store: StoreFactory,
    short_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18: a signal during the start left the state "serving" through
    the whole drain, and systemd heard STOPPING=1 before READY=1."""
    address = str(short_tmp / "notify")
    receiver = datagram_socket(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    app = App(config, open_store(config))
    states: list[str] = []

    async def watch_state() -> None:
        while True:
            if not states or states[-1] != app.service.state:
                states.append(app.service.state)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_state)
        app.request_drain()  # before it serves: a signal during the start
        with trio.fail_after(10):
            await app.run(handle_signals=False)
        nursery.cancel_scope.cancel()
    receiver.setblocking(False)
    messages = []
    with contextlib.suppress(BlockingIOError):
        while True:
            messages.append(receiver.recv(4096).decode())
    receiver.close()
    assert "serving" not in states, states
    assert not any(m.startswith("READY=1") for m in messages), messages
    assert messages[0].startswith("STOPPING=1")


# ------------------------------------------------------ socket activation --


def start_with_fd(
    sock: socket.socket, config_path: Path, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the test daemon with ``sock`` as fd 3 and LISTEN_PID set to its own
    pid, as systemd does (``exec`` keeps the shell's pid)."""
    fd = sock.fileno()
    script = f'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3<&{fd} {fd}<&-'
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                "bash",
                "-c",
                script,
                "bash",
                sys.executable,
                "-m",
                "tests.testd",
                "--config",
                str(config_path),
            ],
            cwd=ROOT,
            pass_fds=(fd,),
            stdout=out,
            stderr=out,
            env={**os.environ, **(extra_env or {})},
        )


def start_plain(config_path: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the test daemon with extra environment variables, output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.testd", "--config", str(config_path)],
            cwd=ROOT,
            stdout=out,
            stderr=out,
            env={**os.environ, **env},
        )


def wait_answering(path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with Client(path, timeout=2) as client:
                if client.call("health")["ok"]:
                    return
        except (OSError, TimeoutError, ConnectionClosed):
            time.sleep(0.05)
    raise AssertionError(f"not answering: {log.read_text()}")


def listening_socket(path: str, mode: int = 0o600) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, mode)  # the test plays systemd here; ctxd must not touch it
    sock.listen(1024)
    return sock


@pytest.mark.process
def test_inherited_socket_is_served_never_bound_chmodded_or_unlinked(short_tmp: Path) -> None:
    config_path = write_config(short_tmp, socket={"mode": "0660"})
    path = str(short_tmp / "ctxd.sock")
    held = listening_socket(path, 0o600)
    inode = os.stat(path).st_ino
    log = short_tmp / "daemon.log"
    proc = start_with_fd(held, config_path, log)
    try:
        wait_answering(path, proc, log)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        held.close()
    assert os.stat(path).st_ino == inode  # same file, still there
    assert not (short_tmp / "ctxd.sock.lock").exists()
    assert "(from systemd)" in log.read_text()


@pytest.mark.process
def test_inherited_socket_of_the_wrong_kind_stops_the_start(short_tmp: Path) -> None:
    config_path = write_config(short_tmp)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    log = short_tmp / "daemon.log"
    try:
        proc = start_with_fd(tcp, config_path, log)
        assert proc.wait(15) == 1
    finally:
        tcp.close()
    assert "ctxd needs a Unix stream socket" in log.read_text()


@pytest.mark.process
def test_wrong_listen_pid_binds_its_own_socket(short_tmp: Path) -> None:
    config_path = write_config(short_tmp)
    log = short_tmp / "daemon.log"
    proc = start_plain(config_path, log, {"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    path = str(short_tmp / "ctxd.sock")
    try:
        wait_answering(path, proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not os.path.exists(path)  # it bound it, so it removed it
    assert "LISTEN_PID=1 is not this process" in log.read_text()


@pytest.mark.process
@pytest.mark.skipif(
    not shutil.which("systemd-socket-activate"), reason="no systemd-socket-activate"
)
def test_under_systemd_socket_activate(short_tmp: Path) -> None:
    config_path = write_config(short_tmp)
    path = str(short_tmp / "ctxd.sock")
    log = short_tmp / "daemon.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                "systemd-socket-activate",
                "-l",
                path,
                sys.executable,
                "-m",
                "tests.testd",
                "--config",
                str(config_path),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        with Client(path, timeout=15) as client:  # the first connection starts ctxd
            assert client.call("health")["ok"] is True
            assert (
                client.call(
                    "events.append",
                    {"session_id": "s", "category": "c", "resource": "r", "payload": {}},
                )["id"]
                == 1
            )
        assert stat.S_IMODE(os.stat(path).st_mode) == mode
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "(from systemd)" in log.read_text()


# ---------------------------------------------- restart without a refusal --


@pytest.mark.process
def test_restart_on_a_held_socket_refuses_no_one_and_loses_nothing(short_tmp: Path) -> None:
    config_path = write_config(short_tmp, shutdown={"drain_timeout": 5})
    path = str(short_tmp / "ctxd.sock")
    held = listening_socket(path)  # what systemd holds across the restart
    stop = threading.Event()
    refusals: list[BaseException] = []
    unanswered: list[BaseException] = []
    acked: list[tuple[str, int]] = []
    answered = [0]
    retries = [0]
    lock = threading.Lock()

    def client_loop(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            method, params = (
                ("health", None)
                if n % 2
                else (
                    "events.append",
                    {
                        "session_id": f"w{worker}",
                        "category": "c",
                        "resource": f"r{n}",
                        "payload": {"n": n},
                    },
                )
            )
            while True:  # retry until one of the daemons answers it
                try:
                    with Client(path, timeout=20, connect_timeout=5) as client:
                        result = client.call(method, params)
                except ConnectionRefusedError as exc:
                    refusals.append(exc)
                    return
                except RpcError as exc:
                    if exc.code == -32000:  # reached the old daemon mid-drain: ask again
                        retries[0] += 1
                        continue
                    unanswered.append(exc)
                    return
                except ConnectionClosed:
                    # Accepted by the old daemon just before it stopped accepting,
                    # closed once its drain was done: the request was not taken
                    # (docs/protocol.md), so it is safe to send it again.
                    retries[0] += 1
                    continue
                except (TimeoutError, OSError) as exc:
                    unanswered.append(exc)
                    return
                with lock:
                    answered[0] += 1
                    if method == "events.append":
                        acked.append((f"w{worker}", result["id"]))
                break

    log_a, log_b = short_tmp / "a.log", short_tmp / "b.log"
    first = start_with_fd(held, config_path, log_a)
    second = None
    threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(4)]
    try:
        wait_answering(path, first, log_a)
        for t in threads:
            t.start()
        time.sleep(0.5)
        first.send_signal(signal.SIGTERM)
        second = start_with_fd(held, config_path, log_b)  # at once, on the same fd
        assert first.wait(15) == 0, log_a.read_text()
        wait_answering(path, second, log_b)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(30)
        with Client(path) as client:
            stored = {
                (e["session_id"], e["id"])
                for w in range(4)
                for e in client.call("events.list", {"session_id": f"w{w}", "limit": 1000})[
                    "events"
                ]
            }
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    finally:
        stop.set()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
        held.close()
    assert refusals == []
    assert unanswered == [], unanswered[:3]
    assert answered[0] > 20
    print(f"{answered[0]} answered, {retries[0]} retried, {len(acked)} appends acknowledged")
    assert set(acked) <= stored, "an acknowledged append is missing after the restart"
    assert "SIGTERM received: draining" in log_a.read_text()


# ----------------------------------------------------------------- units ----

UNITS = ROOT / "systemd"


def analyze_available() -> bool:
    return shutil.which("systemd-analyze") is not None


needs_analyze = pytest.mark.skipif(
    not analyze_available(),
    reason="systemd-analyze is not installed (apt-get install systemd); units not verified",
)


@needs_analyze
def test_units_verify(tmp_path: Path) -> None:
    service = (UNITS / "ctxd.service").read_text()
    shipped = "ExecStart=/opt/ctxd/.venv/bin/python -m daemon --config /etc/ctxd/config.yaml"
    assert shipped in service.splitlines()
    # verify checks that ExecStart's program exists: point it at this
    # checkout's venv; every other line is verified as shipped.
    here = service.replace("/opt/ctxd/.venv/bin/python", sys.executable)
    (tmp_path / "ctxd.service").write_text(here)
    shutil.copy(UNITS / "ctxd.socket", tmp_path / "ctxd.socket")
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            str(tmp_path / "ctxd.service"),
            str(tmp_path / "ctxd.socket"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@needs_analyze
def test_service_exposure_is_at_most_2() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNITS / "ctxd.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(
        r"Overall exposure level for ctxd.service: (\d+\.\d+)", result.stdout + result.stderr
    )
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_essentials() -> None:
    service = (UNITS / "ctxd.service").read_text()
    socket_unit = (UNITS / "ctxd.socket").read_text()

    def value(text: str, key: str) -> str:
        found = re.search(rf"^{key}=(.*)$", text, re.M)
        assert found, key
        return found.group(1).strip()

    assert value(service, "Type") == "notify"
    assert value(service, "KillMode") == "mixed"
    assert value(service, "Restart") == "on-failure"
    assert int(value(service, "TimeoutStopSec")) > 30  # above the drain
    assert value(service, "StateDirectory") == "ctxd"
    assert value(service, "User") == "ctxd"
    assert value(service, "WatchdogSec")
    assert value(socket_unit, "ListenStream") == "/run/ctxd.sock"
    assert value(socket_unit, "SocketMode") == "0660"
    assert value(socket_unit, "SocketUser") == "ctxd"
    assert value(socket_unit, "SocketGroup") == "ctxd"
    assert "RuntimeDirectory" not in service
    # A private user namespace would turn every peer's uid into 65534 and
    # break the SO_PEERCRED check.
    assert not re.search(r"^PrivateUsers=(yes|true|1)", service, re.M)


@pytest.mark.process
def test_real_sigterm_sends_stopping_within_100_ms(short_tmp: Path) -> None:
    config_path = write_config(short_tmp)
    address = str(short_tmp / "notify")
    receiver = datagram_socket(address)
    log = short_tmp / "daemon.log"
    proc = start_plain(config_path, log, {"NOTIFY_SOCKET": address})
    try:
        assert receiver.recv(4096).startswith(b"READY=1\n")
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        message = receiver.recv(4096)
        elapsed = time.monotonic() - sent
        assert message.startswith(b"STOPPING=1"), message
        assert elapsed < 0.1, f"STOPPING=1 came {elapsed * 1000:.0f} ms after SIGTERM"
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        receiver.close()
