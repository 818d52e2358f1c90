"""The Unix listener: claiming the path, peer credentials, the connection cap.

Claiming ``socket.path`` (``bind_unix``):

1. take an exclusive ``flock`` on ``<path>.lock`` for the daemon's life, so two
   ctxd processes can never both think the path is theirs. The lock file is
   opened with ``O_NOFOLLOW`` and must be a regular file of the daemon's own
   user with no other hard link, or the start fails: the daemon writes its
   pid into it, and a link planted there would have it overwrite another
   file;
2. if the path exists: a socket that accepts a connection belongs to a live
   daemon (another program that does not use our lock), so the start fails;
   one that refuses is a leftover and is replaced; anything that is not a
   socket is left alone and the start fails;
3. bind under a umask derived from ``socket.mode``, so the file has its mode
   from the moment it exists (no window between bind and chmod);
4. remember the file's inode: on exit the file is removed only if it is still
   the one we bound.

Accepting (``UnixServer.serve``): the accept loop runs in the caller's nursery
and hands each connection to a handler task in another nursery (hypercorn's
shape), so the drain can stop accepting while the handlers go on. A peer is
allowed when its uid is in ``allowed_uids``, or its primary gid (SO_PEERCRED)
or one of its supplementary groups (SO_PEERGROUPS, Linux 4.13 and later) is
in ``allowed_gids``; both as they were when it connected. A peer not allowed
gets one -32004 line; a connection past ``max_connections`` gets one -32005
line; both are then closed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import socket
import stat
import struct
from typing import TYPE_CHECKING, Final

import trio

from daemon.errors import Forbidden, Overloaded, RpcError, ServerError
from daemon.protocol import ENCODER, error_response
from daemon.rpc import Connection

if TYPE_CHECKING:
    from daemon.config import SocketConfig
    from daemon.service import Service

logger = logging.getLogger(__name__)

_REJECT_GRACE: Final = 1.0
_ACCEPT_BACKOFF: Final = 0.1
_RESOURCE_ERRNOS: Final = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
SO_PEERGROUPS: Final = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13; 59 on x86 and arm
_GROUPS_BUFLEN: Final = 1024  # the most Python's getsockopt reads: 256 groups
_NGROUPS_MAX: Final = 65536


class PeerCred:
    __slots__ = ("gid", "pid", "uid")

    def __init__(self, pid: int, uid: int, gid: int) -> None:
        self.pid, self.uid, self.gid = pid, uid, gid


def peer_credentials(sock: trio.socket.SocketType) -> PeerCred:
    """The pid, uid and gid of the process at the other end (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCred(pid, uid, gid)


def peer_groups(sock: trio.socket.SocketType) -> frozenset[int]:
    """The supplementary groups of the process at the other end, as they were
    when it connected (SO_PEERGROUPS). Raises OSError where the kernel does
    not know the option (ENOPROTOOPT, before 4.13)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _GROUPS_BUFLEN)
    except OSError as exc:
        if exc.errno != errno.ERANGE:
            raise
        raw = _peer_groups_unbounded(sock.fileno())  # more than 256 groups
    count = len(raw) // 4
    return frozenset(struct.unpack(f"{count}I", raw[: count * 4]))


def _peer_groups_unbounded(fd: int) -> bytes:
    """SO_PEERGROUPS through libc, with room for NGROUPS_MAX groups."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = ctypes.c_uint32(_NGROUPS_MAX * 4)
    buf = ctypes.create_string_buffer(size.value)
    if libc.getsockopt(fd, socket.SOL_SOCKET, SO_PEERGROUPS, buf, ctypes.byref(size)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return buf.raw[: size.value]


class BoundSocket:
    """A listening Unix socket we bound ourselves, and the lock that claims it."""

    def __init__(self, sock: socket.socket, path: str, lock_fd: int) -> None:
        self.sock = sock
        self.path = path
        self._lock_fd = lock_fd
        st = os.stat(path)
        self._identity = (st.st_dev, st.st_ino)

    def close(self) -> None:
        """Close the socket, remove the file if it is still ours, drop the lock."""
        self.sock.close()
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.path)
            else:
                logger.warning("%s was replaced by someone else; leaving it", self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("cannot remove %s: %s", self.path, exc)
        os.close(self._lock_fd)


def _take_lock(path: str) -> int:
    """Open ``<path>.lock`` (see the module docstring), lock it and write our
    pid in it; the fd. Raises ServerError when it is not ours or is held."""
    lock_path = path + ".lock"
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(lock_path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ServerError(
                f"{lock_path} is a symbolic link; refusing to follow it (remove it)"
            ) from None
        raise ServerError(f"cannot open {lock_path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_uid != os.geteuid():
            problem = f"belongs to uid {st.st_uid}, not to ctxd's uid {os.geteuid()}"
        elif st.st_nlink != 1:
            problem = f"has {st.st_nlink} hard links"
        if problem is not None:
            raise ServerError(f"{lock_path} {problem}; refusing to use it (remove it)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ServerError(
                f"another ctxd (pid {holder}) is serving {path}; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _probe(path: str) -> None:
    """Fail if a live server answers at ``path``; remove a leftover socket file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ServerError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        logger.info("Replacing leftover socket file %s", path)
        os.unlink(path)
        return
    except BlockingIOError:  # backlog full: very much alive
        pass
    finally:
        probe.close()
    raise ServerError(f"another server is listening on {path}; stop it first")


def bind_unix(path: str, mode: int, backlog: int = 512) -> BoundSocket:
    """Claim ``path`` and listen on it (see the module docstring)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    lock_fd = _take_lock(path)
    try:
        _probe(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o777 & ~mode)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        sock.listen(backlog)
        return BoundSocket(sock, path, lock_fd)
    except OSError as exc:
        os.close(lock_fd)
        raise ServerError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    except BaseException:
        os.close(lock_fd)
        raise


class UnixServer:
    def __init__(self, listener: trio.SocketListener, service: Service, config: SocketConfig):
        self._listener = listener
        self._service = service
        self._config = config
        uids = config.allowed_uids
        self._uids = frozenset({os.getuid(), 0} if uids is None else uids)
        self._gids = frozenset(config.allowed_gids)

    def allowed(self, cred: PeerCred, sock: trio.socket.SocketType) -> bool:
        """Whether the peer's uid, primary gid or a supplementary group is allowed."""
        if cred.uid in self._uids or cred.gid in self._gids:
            return True
        if not self._gids:
            return False
        try:
            return not self._gids.isdisjoint(peer_groups(sock))
        except OSError as exc:  # a kernel before 4.13: the primary gid only
            logger.warning("cannot read the peer's supplementary groups: %s", exc)
            return False

    async def serve(
        self,
        handlers: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept until cancelled, starting each connection in ``handlers``.

        Cancelling this task stops accepting and closes the listening socket;
        connections already accepted are not touched."""
        async with self._listener:
            task_status.started()
            while True:
                try:
                    stream = await self._listener.accept()
                except OSError as exc:
                    if exc.errno not in _RESOURCE_ERRNOS:
                        raise
                    logger.warning("accept failed (%s); pausing accepts briefly", exc)
                    await trio.sleep(_ACCEPT_BACKOFF)
                    continue
                handlers.start_soon(self._handle, stream)

    async def _handle(self, stream: trio.SocketStream) -> None:
        service = self._service
        async with stream:
            try:
                cred = peer_credentials(stream.socket)
            except OSError as exc:
                logger.warning("cannot read peer credentials: %s", exc)
                return
            if not self.allowed(cred, stream.socket):
                logger.warning("Refused peer pid=%d uid=%d gid=%d", cred.pid, cred.uid, cred.gid)
                await _reject(stream, Forbidden(data={"uid": cred.uid, "gid": cred.gid}))
                return
            if service.connections >= self._config.max_connections:
                limit = self._config.max_connections
                await _reject(
                    stream,
                    Overloaded(
                        f"too many connections (at most {limit}); retry shortly",
                        {"max_connections": limit},
                    ),
                )
                return
            service.connections += 1
            try:
                await Connection(stream, service, self._config).serve()
            finally:
                service.connections -= 1


async def _reject(stream: trio.SocketStream, error: RpcError) -> None:
    """Send the one error line, then let the peer finish writing before the
    close: closed at once, a client that writes its request first (as every
    client does) met EPIPE and never read why (-32004 read as "unreachable").
    Its bytes are read and dropped until it closes or ``_REJECT_GRACE`` ends."""
    with trio.move_on_after(_REJECT_GRACE):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(ENCODER.encode(error_response(error, None)) + b"\n")
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass
