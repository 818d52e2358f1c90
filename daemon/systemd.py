"""systemd integration without libsystemd: sd_notify, socket activation, watchdog.

* ``notify("READY=1")`` sends one datagram to ``$NOTIFY_SOCKET`` (a path, or
  ``@name`` for the abstract namespace). Without the variable it does nothing;
  a failure to send is logged once per kind of message, never raised: a
  notification is advice to the service manager, not a reason to stop serving.
* ``listen_fds()`` returns the sockets systemd passed (fds from 3), when
  ``$LISTEN_PID`` is this process; the variables are then removed so children
  do not take the sockets for theirs. Each fd must be a listening Unix stream
  socket.
* ``watchdog_interval()`` is half of ``$WATCHDOG_USEC`` (when
  ``$WATCHDOG_PID``, if set, is us); ``watchdog()`` pings at that interval from
  the trio loop, so a loop that stops running stops the pings and systemd
  restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Mapping, MutableMapping
from typing import Final

import trio

from daemon.errors import ServerError

logger = logging.getLogger(__name__)

SD_LISTEN_FDS_START: Final = 3

_warned: set[str] = set()


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``KEY=value`` lines) to the service manager, if any.

    Returns True when a datagram was sent."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    kind = message.split("=", 1)[0]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message.encode(), target)
    except OSError as exc:
        if kind not in _warned:
            _warned.add(kind)
            logger.warning("cannot notify systemd (%s) at %s: %s", kind, address, exc)
        return False
    return True


def listen_fds(env: MutableMapping[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets systemd passed to this process (empty if none).

    Raises ServerError if a passed fd is not a listening Unix stream socket."""
    environ = os.environ if env is None else env
    pid, count = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    if not pid or not count:
        return []
    if not pid.isdigit() or int(pid) != os.getpid():
        logger.info("LISTEN_PID=%s is not this process; binding our own socket", pid)
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    try:
        n = int(count)
    except ValueError:
        raise ServerError(f"LISTEN_FDS={count!r} is not a number") from None
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n):
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            raise ServerError(f"socket activation: fd {fd} is not open: {exc}") from None
        if not stat.S_ISSOCK(mode):
            raise ServerError(f"socket activation: fd {fd} is not a socket")
        sock = socket.socket(fileno=fd)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise ServerError(
                f"socket activation: fd {fd} is {sock.family.name}/{sock.type.name}, "
                "ctxd needs a Unix stream socket"
            )
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.detach()
            raise ServerError(f"socket activation: fd {fd} is not listening")
        sock.set_inheritable(False)
        sockets.append(sock)
    return sockets


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None."""
    environ = os.environ if env is None else env
    usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        logger.warning("ignoring WATCHDOG_USEC=%r: not a number", usec)
        return None
    return value / 2 / 1_000_000 if value > 0 else None


async def watchdog(interval: float) -> None:
    """Ping ``WATCHDOG=1`` every ``interval`` seconds until cancelled."""
    while True:
        notify("WATCHDOG=1")
        await trio.sleep(interval)
