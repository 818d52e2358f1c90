"""daemon/server.py over real Unix sockets: the lock file, peer groups, connection slots."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from daemon.config import Config
from daemon.errors import ServerError
from daemon.server import UnixServer, bind_unix
from daemon.service import Service
from tests.conftest import ConfigFactory, StoreFactory, write_config
from tests.helpers import Peer, make_service

ROOT = Path(__file__).resolve().parent.parent
HEALTH = b'{"jsonrpc":"2.0","method":"health","id":1}\n'
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, setuid)")


@asynccontextmanager
async def serving(config: Config, service: Service) -> AsyncIterator[UnixServer]:
    """A UnixServer on ``socket.path``, as app.py runs it, until the block ends."""
    bound = bind_unix(config.socket.path, config.socket.file_mode)
    try:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(bound.sock))
        server = UnixServer(listener, service, config.socket)
        async with trio.open_nursery() as handlers:
            await handlers.start(server.serve, handlers)
            yield server
            handlers.cancel_scope.cancel()
    finally:
        bound.close()


# ---------------------------------------------------- issue 12.9: the lock file --


def test_a_symlink_at_the_lock_path_is_refused_and_its_target_untouched(
    make_config: ConfigFactory, short_tmp: Path
) -> None:
    """Regression (issue 12.9): ``<socket>.lock`` was opened following links
    and truncated: a symlink planted there made the daemon overwrite the file
    it points to with its pid."""
    config = make_config()
    victim = short_tmp / "precious"
    victim.write_text("precious data\n")
    os.symlink(victim, config.socket.path + ".lock")
    with pytest.raises(ServerError, match=r"ctxd\.sock\.lock is a symbolic link; refusing"):
        bind_unix(config.socket.path, config.socket.file_mode)
    assert victim.read_text() == "precious data\n"
    assert not os.path.exists(config.socket.path)


@as_root
def test_a_lock_file_of_another_user_is_refused(make_config: ConfigFactory) -> None:
    config = make_config()
    lock = Path(config.socket.path + ".lock")
    lock.write_text("")
    os.chown(lock, 54321, 54321)
    with pytest.raises(ServerError, match="belongs to uid 54321, not to ctxd's uid 0"):
        bind_unix(config.socket.path, config.socket.file_mode)
    assert lock.read_text() == ""


def test_a_hard_linked_lock_file_or_a_fifo_is_refused(
    make_config: ConfigFactory, short_tmp: Path
) -> None:
    config = make_config()
    lock = config.socket.path + ".lock"
    other = short_tmp / "other"
    other.write_text("other data\n")
    os.link(other, lock)
    with pytest.raises(ServerError, match="has 2 hard links"):
        bind_unix(config.socket.path, config.socket.file_mode)
    assert other.read_text() == "other data\n"
    os.unlink(lock)
    os.mkfifo(lock)
    with pytest.raises(ServerError, match="is not a regular file"):
        bind_unix(config.socket.path, config.socket.file_mode)


def test_a_lock_file_of_our_own_is_reused(make_config: ConfigFactory) -> None:
    config = make_config()
    Path(config.socket.path + ".lock").write_text("12345\n")  # a previous run's
    bind_unix(config.socket.path, config.socket.file_mode).close()
    assert Path(config.socket.path + ".lock").read_text() == f"{os.getpid()}\n"


def test_the_daemon_stops_its_start_on_a_planted_lock_link(short_tmp: Path) -> None:
    """The real process: one clear line and exit status 1, like any other
    socket it cannot claim."""
    config_path = write_config(short_tmp)
    victim = short_tmp / "precious"
    victim.write_text("precious data\n")
    os.symlink(victim, short_tmp / "ctxd.sock.lock")
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(config_path)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert b"cannot start:" in done.stderr
    assert b"ctxd.sock.lock is a symbolic link; refusing to follow it" in done.stderr
    assert b"Traceback" not in done.stderr
    assert victim.read_text() == "precious data\n"


# ----------------------------------------------- issue 12.11: supplementary groups --


# The client runs as another user, who cannot reach this checkout's venv:
# the system's Python (the script needs the standard library only).
OTHER_USERS_PYTHON = "/usr/bin/python3"
_CLIENT = """
import socket, sys
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
client.settimeout(20)
reply = b""
try:
    client.connect(sys.argv[1])
    client.sendall(sys.argv[2].encode())
    while not reply.endswith(b"\\n"):
        chunk = client.recv(65536)
        if not chunk:
            break
        reply += chunk
except OSError as exc:
    reply = f"client error: {exc!r}".encode()
sys.stdout.buffer.write(reply)
"""


async def call_as(path: str, uid: int, gid: int, groups: list[int]) -> dict[str, object]:
    """``health`` from a process running as ``uid``/``gid`` with supplementary
    ``groups`` (set by subprocess between fork and exec: setgroups, setgid,
    setuid; the kernel records them at connect); its reply."""
    done = await trio.run_process(
        [OTHER_USERS_PYTHON, "-c", _CLIENT, path, HEALTH.decode()],
        user=uid,
        group=gid,
        extra_groups=groups,
        capture_stdout=True,
        cwd="/",
    )
    reply = done.stdout
    assert reply.startswith(b"{"), reply
    return json.loads(reply)  # type: ignore[no-any-return]


APP_UID, APP_GID, SOCKET_GID, OTHER_GID = 54321, 54322, 54323, 54324


@as_root
@pytest.mark.parametrize(
    "groups",
    [[SOCKET_GID], [*range(60000, 60300), SOCKET_GID]],
    ids=["one-group", "301-groups"],
)
async def test_a_peer_allowed_only_by_a_supplementary_group_is_served(
    groups: list[int], make_config: ConfigFactory, open_store: StoreFactory, short_tmp: Path
) -> None:
    """Regression (issue 12.11): SO_PEERCRED carries the primary gid only, so
    an app user put in the socket's group (``usermod -aG``) was refused. A
    client running as another uid, whose only allowed group is
    supplementary, is served; one in no allowed group is still refused.
    301 groups do not fit the 1 KiB Python's getsockopt reads."""
    config = make_config(socket={"allowed_uids": [0], "allowed_gids": [SOCKET_GID]})
    service = make_service(config, open_store(config))
    os.chmod(short_tmp, 0o711)  # the app user may reach the socket
    async with serving(config, service):
        os.chown(config.socket.path, 0, SOCKET_GID)  # the socket's group, mode 0660
        reply = await call_as(config.socket.path, APP_UID, APP_GID, groups)
        assert reply["result"] == {"ok": True, "state": "serving"}
        os.chmod(config.socket.path, 0o666)  # let anyone connect: the peer check decides
        refused = await call_as(config.socket.path, APP_UID, APP_GID, [OTHER_GID])
        assert refused["error"]["code"] == -32004  # type: ignore[index]


# ----------------------------------------------------- issue 20.4: connection slots --


async def test_a_client_that_hangs_up_gives_back_its_connection_slot_at_once(
    make_config: ConfigFactory, open_store: StoreFactory, autojump_clock: trio.testing.MockClock
) -> None:
    """Regression (issue 20.4): a client that closed its connection with a
    request in flight kept its connection slot until the handler finished,
    so a client that timed out and reconnected got -32005."""
    config = make_config(socket={"max_connections": 1})
    service = make_service(config, open_store(config))
    async with serving(config, service):
        first = Peer(await trio.open_unix_socket(config.socket.path))
        await first.send({"jsonrpc": "2.0", "method": "sleep", "params": [100], "id": 1})
        await trio.testing.wait_all_tasks_blocked()
        assert (service.connections, service.in_flight) == (1, 1)
        await first.stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        second = Peer(await trio.open_unix_socket(config.socket.path))
        try:
            assert (await second.call("health"))["result"]["ok"] is True
            assert trio.current_time() < 1
            assert (service.connections, service.in_flight) == (1, 0)
        finally:
            await second.stream.aclose()


async def test_a_refused_client_that_writes_first_still_reads_why(
    make_config: ConfigFactory, open_store: StoreFactory
) -> None:
    """The server wrote -32004 and closed at once: a client that sends its
    request first (every client) met EPIPE and never read the error, so
    ``ctl`` said "unreachable" instead of "forbidden" (review finding)."""
    config = make_config(socket={"allowed_uids": [4242], "allowed_gids": []})
    service = make_service(config, open_store(config))
    async with serving(config, service):
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sock:
            await sock.connect(config.socket.path)
            await sock.recv(1, socket.MSG_PEEK)  # the server has answered...
            await trio.testing.wait_all_tasks_blocked()  # ...and is done with us
            await sock.send(b'{"jsonrpc":"2.0","method":"health","id":1}\n')
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := await sock.recv(65536):
                reply += chunk
    assert json.loads(reply)["error"]["code"] == -32004
