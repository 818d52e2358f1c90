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

Methods marked ``inline`` (they never wait) are answered by the reader task
itself; every other request runs in a task of its own.

This is the only module that turns exceptions into JSON-RPC errors: an
``RpcError`` becomes its code, anything else becomes -32603 with the traceback
logged. Neither ever ends the connection; ``Cancelled`` is never caught.
"""

from __future__ import annotations

import logging
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
    from daemon.service import Service

logger = logging.getLogger(__name__)

_LAST_WORD_GRACE: Final = 1.0  # seconds to deliver the last error before closing


class Connection:
    def __init__(self, stream: Stream, service: Service, config: SocketConfig) -> None:
        self._stream = stream
        self._service = service
        self._config = config
        self._send_lock = trio.Lock()
        self._slots = trio.Semaphore(config.max_requests_per_connection)
        self._active = 0
        self._last_activity = trio.current_time()
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
            try:  # the common case, without a schedule point
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                await self._slots.acquire()
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
            self._last_activity = trio.current_time()
            if line is None:
                self._slots.release()
                return
            if not line.strip():  # blank keep-alive lines are not messages
                self._slots.release()
                continue
            self._active += 1
            message = _parse(line)
            if self._inline(message):
                await self._serve(message)
            elif (answer := self._try_fast(message)) is not None:
                await self._serve(message, answer)
            else:
                nursery.start_soon(self._serve, message)

    def _inline(self, message: _Parsed) -> bool:
        """Whether ``message`` is one call of a method that never blocks, which
        the reader answers itself instead of paying for a task."""
        if isinstance(message, RpcError):
            return True
        is_batch, items = message
        if is_batch or not isinstance(items[0], Request):
            return not is_batch
        method = self._service.methods.get(items[0].method)
        return method is None or method.inline

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

    def _try_fast(self, message: _Parsed) -> bytes | None:
        """The answer of a method's synchronous fast path (a cache hit), or
        None: then the request takes the normal path, which also produces
        every error (params, draining, overload) in the usual way."""
        if isinstance(message, RpcError) or message[0] or not isinstance(message[1][0], Request):
            return None
        request = message[1][0]
        method = self._service.methods.get(request.method)
        if method is None or method.fast is None or self._service.draining:
            return None
        if isinstance(request.id, UnsetType):  # a notification: nothing to answer
            return None
        try:
            params = decode_params(request.params, method.params)
            with self._service.request():
                result = method.fast(params)
            if result is None:
                return None
            return ENCODER.encode(ResultResponse(result=result, id=request.id)) + b"\n"
        except RpcError:
            return None
        except Exception:
            logger.exception("fast path of %.100r failed; taking the normal path", request.method)
            return None

    async def _serve(self, message: _Parsed, answer: bytes | None = None) -> None:
        try:
            with self._service.answering():
                response = answer if answer is not None else await self._respond(message)
                if response is not None:
                    await self._send(response)
        finally:
            self._active -= 1
            self._last_activity = trio.current_time()
            self._slots.release()

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
        with service.request():
            return await method.handler(params)

    async def _send(self, data: bytes) -> None:
        """Write one whole response line, or close the connection if we cannot."""
        try:  # the common case, without a schedule point
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()
        self._writing_since = trio.current_time()
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close("peer went away")
        finally:
            self._writing_since = None
            self._send_lock.release()

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
