"""One JSON-RPC connection: concurrent requests, one send lock, batches, errors.

Each received line that has to wait for something (the race, the store) runs
as its own task in the connection's nursery, so a slow request never holds up
a fast one behind it; responses go out in completion order, one whole line at
a time under a ``trio.StrictFIFOLock``. A ``trio.Semaphore`` of
``max_requests_per_connection`` request slots bounds the lines served at
once: past that the connection simply stops reading (the client's writes back
up), which bounds the memory a pipelining client can make the daemon hold.

Who answers: the reader itself for errors, for methods marked ``inline``
(they never wait: ``health``, ``status``, ...) and for a method's synchronous
fast path (a cache hit); a task of its own for everything else.

No trip through trio's scheduler where none is needed, on sockets: the line
reader reads directly when bytes are there (``framing``), a response is
written with one non-blocking ``write`` when the socket's buffer takes it
(what does not fit goes through ``send_all``), and a free request slot or
an unheld send lock is taken with ``acquire_nowait``. Those trips are not
free: ``health`` at 8 connections was 0.86-0.97 of the echo server with
them skipped, 0.68-0.75 with ``receive_some``/``send_all`` on every read and
answer, and 0.58-0.61 with every slot and send lock awaited too
(``bench/rpc_bench.py``, variants run side by side, issue 20). Fairness is
then kept by time, never by the kind of line: the reader checkpoints
whenever it has run ``framing.TURN`` (1 ms) since it last waited, whatever
it was doing (reading blank lines, notifications, inline answers: one
``framing.Turn`` serves the line reader and this loop), and the line reader
drops blank keep-alive lines a chunk at a time.

Methods that never wait are not counted in flight and never refused at
``max_in_flight``: counting them would bound nothing, and ``health`` and
``status`` are what an operator needs exactly when the daemon is busy. The
same holds for a cache hit.

A batch is answered when its last item with an id is done; its notifications
go on after the answer, still holding the batch's request slot and the
drain (``Service.begin_answer``).

Timeouts, all from config, enforced by one watchdog task per connection:

* ``idle_timeout``: no byte received and nothing in flight for that long
  closes the connection;
* ``line_timeout``: a line that has started must end within it (slowloris);
  the clock runs only while the reader waits for the peer's bytes, never
  while the daemon itself holds back (all request slots busy, or writing);
* ``write_timeout``: a response that cannot be written within it (a client
  that never reads) closes the connection.

A client that closes its end entirely (POLLHUP on the Unix socket: it
closed, or its process died) cannot read any answer: the connection ends at
once, cancelling its requests' waits and freeing its slots (the races go on
in the supervisor). A half-close (``shutdown(SHUT_WR)``: "no more requests")
is end of input only: the requests already read are answered.

This is the only module that turns exceptions into JSON-RPC errors: an
``RpcError`` becomes its code, anything else becomes -32603 with the traceback
logged. Neither ever ends the connection; ``Cancelled`` is never caught.
"""

from __future__ import annotations

import logging
import os
import select
from typing import TYPE_CHECKING, Final

import trio
from msgspec import UnsetType

from daemon.errors import InternalError, InvalidRequest, MethodNotFound, RpcError, ShuttingDown
from daemon.framing import LineReader, MessageTooLarge, Turn
from daemon.protocol import (
    ENCODER,
    Id,
    Invalid,
    Request,
    ResultResponse,
    decode_params,
    error_response,
    parse_message,
)

if TYPE_CHECKING:
    from trio.abc import Stream

    from daemon.config import SocketConfig
    from daemon.service import Service

logger = logging.getLogger(__name__)

_LAST_WORD_GRACE: Final = 1.0  # seconds to deliver the last error before closing


class Connection:
    def __init__(self, stream: Stream, service: Service, config: SocketConfig) -> None:
        self._stream = stream
        self._service = service
        self._config = config
        self._send_lock = trio.StrictFIFOLock()
        self._slots = trio.Semaphore(config.max_requests_per_connection)
        # One time budget for everything this connection runs between the
        # loop's turns: its reader and its batches' items alike.
        self._turn = Turn()
        self._active = 0  # messages received and not yet done
        self._last_activity = trio.current_time()
        self._writing_since: float | None = None
        self._reading = True  # until end of input
        self._receiving = False  # the reader waits for the peer's bytes right now
        self._nursery: trio.Nursery | None = None
        self._fd = stream.socket if isinstance(stream, trio.SocketStream) else None

    async def serve(self) -> None:
        """Serve until the peer closes, a limit is hit, or we are cancelled.

        On end of input (a half-close) the requests already read are finished
        and answered before returning; when the peer has closed entirely they
        are cancelled. The stream is not closed here; the caller owns it."""
        reader = LineReader(self._stream, self._config.max_message_bytes, self._turn)
        async with trio.open_nursery() as connection:
            self._nursery = connection
            connection.start_soon(self._watchdog, reader)
            if isinstance(self._stream, trio.SocketStream):
                connection.start_soon(self._watch_hangup, self._stream.socket)
            async with trio.open_nursery() as requests:
                await self._read_loop(reader, requests)
                self._reading = False  # end of input: never idle while answering
            connection.cancel_scope.cancel(reason="end of input, every request answered")

    def close(self, reason: str) -> None:
        """End the connection now: cancel its reader and every request on it."""
        if self._nursery is not None:
            logger.debug("closing connection: %s", reason)
            self._nursery.cancel_scope.cancel(reason=reason)

    async def _read_loop(self, reader: LineReader, nursery: trio.Nursery) -> None:
        while True:
            await reader.turn.checkpoint_if_due()  # the others' turn, now and then
            try:
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                await self._slots.acquire()
                reader.turn.resumed()
            # The line clock runs only while we wait for the peer's bytes.
            reader.restart_line_clock()
            self._receiving = True
            try:
                line = await reader.receive_line()
            except MessageTooLarge:
                limit = self._config.max_message_bytes
                await self._send_last(
                    InvalidRequest("message too large", {"max_message_bytes": limit})
                )
                self.close("message too large")
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            finally:
                self._receiving = False
            if line is None:
                self._slots.release()
                return
            self._active += 1
            message = _parse(line)
            hit = self._fast_answer(message)
            if hit is None and self._waits(message):
                nursery.start_soon(self._serve, message)
            else:
                await self._serve(message, hit)

    def _waits(self, message: _Parsed) -> bool:
        """Whether answering may wait for something (then it needs a task):
        false for errors and for methods marked ``inline``."""
        if isinstance(message, RpcError):
            return False
        is_batch, items = message
        return is_batch or self._item_waits(items[0])

    def _item_waits(self, item: Request | Invalid) -> bool:
        """A batch of 1,000 ``health`` items used to start 1,000 tasks at once,
        64 batches per connection: they ran in one scheduler batch, holding
        the loop. Items that never wait are answered in the batch's own task."""
        if isinstance(item, Invalid):
            return False
        method = self._service.methods.get(item.method)
        return method is not None and not method.inline

    def _fast_answer(self, message: _Parsed) -> bytes | None:
        """The response line of a single request from its method's
        synchronous fast path (a cache hit), or None: then the request takes
        the normal path, which also produces every error (params, draining)
        in the usual way. A hit is answered at the in-flight cap too: it
        waits for nothing."""
        if isinstance(message, RpcError) or message[0]:
            return None
        request = message[1][0]
        if isinstance(request, Invalid):
            return None
        method = self._service.methods.get(request.method)
        if method is None or method.fast is None:
            return None
        if self._service.draining or isinstance(request.id, UnsetType):
            return None  # ShuttingDown; or a notification: nothing to answer
        try:
            params = decode_params(request.params, method.params)
            result = method.fast(params)
            if result is None:
                return None
            self._service.answered(request.method, 0)
            return ENCODER.encode(ResultResponse(result=result, id=request.id)) + b"\n"
        except RpcError:
            return None
        except Exception:
            logger.exception("fast path of %.100r failed; taking the normal path", request.method)
            return None

    async def _watchdog(self, reader: LineReader) -> None:
        """Enforce the idle, line and write timeouts by looking at timestamps.

        One sleeping task per connection instead of a cancel scope around every
        receive and send. It wakes at the earliest expiry it knows of, and at
        least every 1/8 of the shorter of ``line_timeout`` and
        ``write_timeout``, so a line or a write that starts while it sleeps is
        cut off at most that much late."""
        config = self._config
        tick = min(config.line_timeout, config.write_timeout) / 8
        while True:
            now = trio.current_time()
            wake = now + tick
            if self._receiving and reader.partial_since is not None:
                expiry = reader.partial_since + config.line_timeout
                if now >= expiry:
                    limit = config.line_timeout
                    await self._send_last(
                        InvalidRequest(
                            f"message not completed within {limit:g} seconds",
                            {"line_timeout": limit},
                        )
                    )
                    self.close(f"line not finished within {limit:g}s")
                    return
                wake = min(wake, expiry)
            if self._writing_since is not None:
                expiry = self._writing_since + config.write_timeout
                if now >= expiry:
                    logger.warning(
                        "Closing a connection whose client has not read for %gs",
                        config.write_timeout,
                    )
                    self.close("write timeout")
                    return
                wake = min(wake, expiry)
            if not self._active and reader.partial_since is None and self._reading:
                # Any byte received counts, blank keep-alive lines included.
                expiry = max(self._last_activity, reader.received_at) + config.idle_timeout
                if now >= expiry:
                    self.close(f"idle for {config.idle_timeout:g}s")
                    return
                wake = min(wake, expiry)
            await trio.sleep_until(wake)

    async def _watch_hangup(self, sock: trio.socket.SocketType) -> None:
        """Close the connection as soon as the peer has closed its end entirely.

        An epoll set holding the socket with no events asked for reports only
        what the kernel always reports: EPOLLHUP (on a Unix socket, the peer
        closed, or shut down both ways) and EPOLLERR. trio waits until that
        set is readable. A half-close is not a hang-up: the reader sees end of
        input and the answers still go out. Cancelled when the connection
        ends; the set is closed either way."""
        try:
            watch = select.epoll()
        except OSError as exc:  # out of fds: serve on without the early close
            logger.warning("cannot watch a connection for hang-ups: %s", exc)
            return
        with watch:
            try:
                watch.register(sock.fileno(), 0)
            except OSError as exc:  # ENOSPC: fs.epoll.max_user_watches reached
                logger.warning("cannot watch a connection for hang-ups: %s", exc)
                return
            await trio.lowlevel.wait_readable(watch)
        self.close("the client hung up")

    async def _serve(self, message: _Parsed, answer: bytes | None = None) -> None:
        """Answer one received message (``answer``: already known), holding its
        request slot and the drain until it is done, a batch's notifications
        included: they go on after its answer is sent."""
        service = self._service
        service.begin_answer()
        try:
            if answer is not None:
                await self._send(answer)
            elif isinstance(message, tuple) and message[0]:  # a batch
                async with trio.open_nursery() as notifications:
                    answer = await self._respond(message, notifications)
                    if answer is not None:
                        await self._send(answer)
            elif (answer := await self._respond(message)) is not None:
                await self._send(answer)
        finally:
            service.end_answer()
            self._active -= 1
            self._last_activity = trio.current_time()
            self._slots.release()

    async def _respond(
        self, message: _Parsed, notifications: trio.Nursery | None = None
    ) -> bytes | None:
        """The response line for one received message (``None``: nothing to
        send). A batch's answer is ready when its items with an id are done:
        its notifications run in ``notifications`` when given, else they
        finish before this returns."""
        if isinstance(message, RpcError):
            self._service.answered("-", message.code)
            return _encode_error(message, None) + b"\n"
        is_batch, items = message
        if not is_batch:
            single = await self._dispatch(items[0])
            return None if single is None else single + b"\n"
        if notifications is None:
            async with trio.open_nursery() as own:
                answer = await self._respond(message, own)
            return answer
        parts: list[bytes | None] = [None] * len(items)

        async def run(i: int, item: Request | Invalid) -> None:
            parts[i] = await self._dispatch(item)

        turn = self._turn  # shared: 64 batches at once still yield after ~1 ms in all
        async with trio.open_nursery() as answered:
            for i, item in enumerate(items):
                notification = isinstance(item, Request) and item.is_notification
                if notification and self._item_waits(item):
                    notifications.start_soon(self._dispatch, item)
                elif self._item_waits(item):
                    answered.start_soon(run, i, item)
                else:  # never waits: done here, the others' turn now and then
                    parts[i] = await self._dispatch(item)
                    await turn.checkpoint_if_due()
        encoded = [p for p in parts if p is not None]
        return b"[" + b",".join(encoded) + b"]\n" if encoded else None

    async def _dispatch(self, item: Request | Invalid) -> bytes | None:
        """One encoded response object, or None for a notification."""
        if isinstance(item, Invalid):
            self._service.answered("-", item.error.code)
            return _encode_error(item.error, item.id)
        id: Id = None if isinstance(item.id, UnsetType) else item.id
        try:
            result = await self._call(item)
        except RpcError as error:
            self._service.answered(item.method, error.code)
            encoded = _encode_error(error, id)
        except Exception:
            logger.exception("internal error in method %.100r", item.method)
            self._service.answered(item.method, InternalError.code)
            encoded = _encode_error(InternalError(), id)
        else:
            self._service.answered(item.method, 0)
            try:
                encoded = ENCODER.encode(ResultResponse(result=result, id=id))
            except Exception:
                logger.exception("cannot encode the result of %.100r", item.method)
                encoded = _encode_error(InternalError(), id)
        return None if item.is_notification else encoded

    async def _call(self, request: Request) -> object:
        service = self._service
        method = service.methods.get(request.method)
        if method is None:
            raise MethodNotFound(
                f"method not found: {request.method[:100]!r}",
                {"method": request.method[:100]},
            )
        if service.draining and not method.while_draining:
            raise ShuttingDown()
        params = decode_params(request.params, method.params)
        if method.inline:  # never waits: counting it would bound nothing
            return await method.handler(params)
        service.begin_request()
        try:
            return await method.handler(params)
        finally:
            service.end_request()

    async def _send(self, data: bytes) -> None:
        """Write one whole response line, or close the connection if we cannot."""
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()
        self._writing_since = trio.current_time()
        try:
            sent = self._send_now(data)
            if sent < len(data):
                await self._stream.send_all(data[sent:])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close("peer went away")
        finally:
            self._writing_since = None
            self._send_lock.release()

    def _send_now(self, data: bytes) -> int:
        """Bytes of ``data`` the kernel took at once, without a schedule point
        (0 for streams that are not sockets, or a full socket buffer)."""
        if self._fd is None:
            return 0
        fd = self._fd.fileno()
        if fd < 0:
            raise trio.ClosedResourceError
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:  # EPIPE, ECONNRESET: SIGPIPE is ignored in Python
            raise trio.BrokenResourceError(str(exc)) from None

    async def _send_last(self, error: RpcError) -> None:
        """Best effort: tell the client why it is being disconnected."""
        with trio.move_on_after(_LAST_WORD_GRACE):
            await self._send(_encode_error(error, None) + b"\n")


_Parsed = RpcError | tuple[bool, list[Request | Invalid]]


def _parse(line: bytes) -> _Parsed:
    try:
        return parse_message(line)
    except RpcError as error:
        return error


def _encode_error(error: RpcError, id: Id) -> bytes:
    try:
        return ENCODER.encode(error_response(error, id))
    except Exception:  # error.data that cannot be encoded: drop it, keep the error
        logger.exception("cannot encode error data")
        return ENCODER.encode(error_response(type(error)(error.message), id))
