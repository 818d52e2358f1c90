"""One JSON-RPC connection: concurrent requests, one send lock, batches, errors.

Each received line runs as its own task in the connection's nursery, so a slow
request never holds up a fast one behind it; responses go out in completion
order, one whole line at a time under the send lock. At most
``max_requests_per_connection`` lines are served at once: past that the
connection simply stops reading (the client's writes back up), which bounds
the memory a pipelining client can make the daemon hold.

Timeouts, all from config, enforced by one watchdog task per connection:

* ``idle_timeout``: no byte received and nothing in flight for that long
  closes the connection;
* ``line_timeout``: a line that has started must end within it (slowloris);
  the clock runs only while the reader waits for the peer's bytes, never
  while the daemon itself holds back (all request slots busy, or writing);
* ``write_timeout``: a response that cannot be written within it (a client
  that never reads) closes the connection.

Methods marked ``inline`` (they never wait) and a method's synchronous fast
path (a cache hit) are answered by the reader task itself; every other
request runs in a task of its own.

No schedule point where none is needed, on sockets: a response is written
with one non-blocking ``write`` when the socket's buffer takes it
(``_send_now``; what does not fit goes through ``send_all``), and the line
reader reads directly when bytes are there. trio's ``send_all`` and
``receive_some`` each pass through the scheduler even when the kernel could
answer at once, and those two trips were a third of the cost of a cache hit
(``bench/race_bench.py``: hits at 8 connections went from 0.61 to 0.80-0.85
of the echo server, ``health`` from 0.8 to 1.0). So that one connection
cannot keep the loop, the reader checkpoints every ``YIELD_EVERY`` lines
(and the line reader every few reads): a client pipelining thousands of
calls delays another connection by at most that many answers.

This is the only module that turns exceptions into JSON-RPC errors: an
``RpcError`` becomes its code, anything else becomes -32603 with the traceback
logged. Neither ever ends the connection; ``Cancelled`` is never caught.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Final

import trio
from msgspec import UnsetType

from daemon.errors import InternalError, InvalidRequest, MethodNotFound, RpcError, ShuttingDown
from daemon.framing import LineReader, MessageTooLarge
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
    from daemon.protocol import Method
    from daemon.service import Service

logger = logging.getLogger(__name__)

_LAST_WORD_GRACE: Final = 1.0  # seconds to deliver the last error before closing
YIELD_EVERY: Final = 16  # lines the reader handles at most without a checkpoint


class Connection:
    def __init__(self, stream: Stream, service: Service, config: SocketConfig) -> None:
        self._stream = stream
        self._service = service
        self._config = config
        # A send lock and request slots by hand: a flag or a counter, and a
        # parking lot touched only under contention. trio.Lock and Semaphore
        # cost ~1 µs a pair on every request, a tenth of a cache hit.
        self._sending = False
        self._send_waiters = trio.lowlevel.ParkingLot()
        self._fd = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._free_slots = config.max_requests_per_connection
        self._slot_waiters = trio.lowlevel.ParkingLot()
        self._unyielded = 0  # lines handled since the reader last checkpointed
        self._active = 0
        # The run's clock, looked up once: trio.current_time() is three calls
        # deep, and the fast path reads the time four times per request.
        self._now = trio.lowlevel.current_clock().current_time
        self._last_activity = self._now()
        self._writing_since: float | None = None
        self._reading = True  # until end of input
        self._receiving = False  # the reader waits for the peer's bytes right now
        self._nursery: trio.Nursery | None = None

    async def serve(self) -> None:
        """Serve until the peer closes, a limit is hit, or we are cancelled.

        On end of input the requests already read are finished and answered
        before returning. The stream is not closed here; the caller owns it."""
        reader = LineReader(self._stream, self._config.max_message_bytes)
        async with trio.open_nursery() as connection:
            self._nursery = connection
            connection.start_soon(self._watchdog, reader)
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
            while not self._free_slots:  # the common case takes no schedule point
                await self._slot_waiters.park()
            self._free_slots -= 1
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
            self._last_activity = self._now()
            if line is None:
                self._release_slot()
                return
            if not line.strip():  # blank keep-alive lines are not messages
                self._release_slot()
                continue
            self._active += 1
            self._unyielded += 1
            if self._unyielded >= YIELD_EVERY:
                # The reader answers inline and fast-path requests without a
                # schedule point (see framing.LineReader and _send_now): a
                # pipelining client must not keep the others waiting.
                self._unyielded = 0
                await trio.lowlevel.checkpoint()
            message = _parse(line)
            # Who answers: the reader itself for errors and for methods that
            # never wait, or the method's synchronous fast path (a cache hit)
            # when it has one; a task of its own otherwise.
            if isinstance(message, RpcError):
                await self._serve(message)
                continue
            is_batch, items = message
            if is_batch:
                nursery.start_soon(self._serve, message)
                continue
            request = items[0]
            if not isinstance(request, Request):  # Invalid: answered with its error
                await self._serve(message)
                continue
            method = self._service.methods.get(request.method)
            if method is None or method.inline:  # unknown, or never waits
                await self._serve(message)
            elif method.fast is not None and (answer := self._try_fast(request, method)):
                sent = self._answer_now(answer)
                if sent < len(answer):
                    await self._serve(message, answer[sent:])
            else:
                nursery.start_soon(self._serve, message)

    async def _watchdog(self, reader: LineReader) -> None:
        """Enforce the idle, line and write timeouts by looking at timestamps.

        One sleeping task per connection instead of a cancel scope around every
        receive and send: that halves the cost of a small request. It wakes at
        the earliest expiry it knows of, and at least every 1/8 of the shorter
        of ``line_timeout`` and ``write_timeout``, so a line or a write that
        starts while it sleeps is cut off at most that much late."""
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
                expiry = self._last_activity + config.idle_timeout
                if now >= expiry:
                    self.close(f"idle for {config.idle_timeout:g}s")
                    return
                wake = min(wake, expiry)
            await trio.sleep_until(wake)

    def _try_fast(self, request: Request, method: Method) -> bytes | None:
        """The answer of a method's synchronous fast path (a cache hit), or
        None: then the request takes the normal path, which also produces
        every error (params, draining, overload) in the usual way."""
        assert method.fast is not None
        if self._service.draining or isinstance(request.id, UnsetType):
            return None  # ShuttingDown; or a notification: nothing to answer
        if self._service.in_flight >= self._service.max_in_flight:
            return None  # the normal path answers Overloaded
        try:
            params = decode_params(request.params, method.params)
            result = method.fast(params)  # synchronous: no need to count it in flight
            if result is None:
                return None
            return ENCODER.encode(ResultResponse(result=result, id=request.id)) + b"\n"
        except RpcError:
            return None
        except Exception:
            logger.exception("fast path of %.100r failed; taking the normal path", request.method)
            return None

    async def _serve(self, message: _Parsed, answer: bytes | None = None) -> None:
        service = self._service
        service.begin_answer()
        try:
            response = answer if answer is not None else await self._respond(message)
            if response is not None:
                await self._send(response)
        finally:
            service.end_answer()
            self._active -= 1
            self._last_activity = self._now()
            self._release_slot()

    async def _respond(self, message: _Parsed) -> bytes | None:
        """The response line for one received message (``None``: nothing to send)."""
        if isinstance(message, RpcError):
            return _encode_error(message, None) + b"\n"
        is_batch, items = message
        if not is_batch:
            single = await self._dispatch(items[0])
            return None if single is None else single + b"\n"
        parts: list[bytes | None] = [None] * len(items)

        async def run(i: int, item: Request | Invalid) -> None:
            parts[i] = await self._dispatch(item)

        async with trio.open_nursery() as nursery:
            for i, item in enumerate(items):
                nursery.start_soon(run, i, item)
        answered = [p for p in parts if p is not None]
        if not answered:
            return None
        return b"[" + b",".join(answered) + b"]\n"

    async def _dispatch(self, item: Request | Invalid) -> bytes | None:
        """One encoded response object, or None for a notification."""
        if isinstance(item, Invalid):
            return _encode_error(item.error, item.id)
        id: Id = None if isinstance(item.id, UnsetType) else item.id
        try:
            result = await self._call(item)
        except RpcError as error:
            encoded = _encode_error(error, id)
        except Exception:
            logger.exception("internal error in method %.100r", item.method)
            encoded = _encode_error(InternalError(), id)
        else:
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
        service.begin_request()
        try:
            return await method.handler(params)
        finally:
            service.end_request()

    async def _send(self, data: bytes) -> None:
        """Write one whole response line, or close the connection if we cannot."""
        while self._sending:  # the common case takes no schedule point
            await self._send_waiters.park()
        self._sending = True
        self._writing_since = self._now()
        try:
            sent = self._send_now(data)
            if sent < len(data):
                await self._stream.send_all(data[sent:])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close("peer went away")
        finally:
            self._writing_since = None
            self._sending = False
            self._send_waiters.unpark()

    def _answer_now(self, answer: bytes) -> int:
        """Write a fast-path answer from the reader itself, without a schedule
        point; the bytes written. All of it: the request is done here (a
        synchronous answer has nothing for a drain to wait for). Less: the
        caller sends the rest through ``_serve``, which finishes the request."""
        if self._sending:
            return 0
        try:
            sent = self._send_now(answer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close("peer went away")
            sent = len(answer)
        if sent == len(answer):
            self._active -= 1
            self._last_activity = self._now()
            self._release_slot()
        return sent

    def _send_now(self, data: bytes) -> int:
        """Bytes of ``data`` the kernel took at once, without a schedule point.

        A response usually fits the socket's buffer; then the write needs no
        trip through trio's scheduler, which ``send_all`` always takes (one
        checkpoint per call: ~3 µs, a sixth of a cache hit). What does not fit
        goes through ``send_all`` as usual. Only for sockets (tests use memory
        streams); fileno() is -1 once the socket is closed."""
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

    def _release_slot(self) -> None:
        self._free_slots += 1
        self._slot_waiters.unpark()

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
