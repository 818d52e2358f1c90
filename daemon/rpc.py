"""One JSON-RPC connection: concurrent requests, one send lock, batches, errors.

Each received line runs as its own task in the connection's nursery, so a slow
request never holds up a fast one behind it; responses go out in completion
order, one whole line at a time under the send lock. At most
``max_requests_per_connection`` lines are served at once: past that the
connection simply stops reading (the client's writes back up), which bounds
the memory a pipelining client can make the daemon hold.

Timeouts, all from config:

* ``idle_timeout``: no byte received and nothing in flight for that long
  closes the connection;
* ``line_timeout``: a line that has started must end within it (slowloris);
* ``write_timeout``: a response that cannot be written within it (a client
  that never reads) closes the connection.

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

_TOO_LARGE_GRACE: Final = 1.0  # seconds to deliver the last error before closing


class Connection:
    def __init__(self, stream: Stream, service: Service, config: SocketConfig) -> None:
        self._stream = stream
        self._service = service
        self._config = config
        self._send_lock = trio.Lock()
        self._slots = trio.Semaphore(config.max_requests_per_connection)
        self._active = 0
        self._last_activity = trio.current_time()
        self._nursery: trio.Nursery | None = None

    async def serve(self) -> None:
        """Serve until the peer closes, a limit is hit, or we are cancelled.

        On end of input the requests already read are finished and answered
        before returning. The stream is not closed here; the caller owns it."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._read_loop(nursery)

    def close(self, reason: str) -> None:
        """End the connection now: cancel its reader and every request on it."""
        if self._nursery is not None:
            logger.debug("closing connection: %s", reason)
            self._nursery.cancel_scope.cancel(reason=reason)

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        reader = LineReader(self._stream, self._config.max_message_bytes)
        while True:
            await self._slots.acquire()
            try:
                line = await self._receive(reader)
            except MessageTooLarge:
                limit = self._config.max_message_bytes
                await self._send_last(
                    InvalidRequest("message too large", {"max_message_bytes": limit})
                )
                self.close("message too large")
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            except _Closing as closing:
                if closing.error is not None:
                    await self._send_last(closing.error)
                self.close(closing.reason)
                return
            if line is None:
                self._slots.release()
                return
            if not line.strip():  # blank keep-alive lines are not messages
                self._slots.release()
                continue
            self._active += 1
            nursery.start_soon(self._serve_line, line)

    async def _receive(self, reader: LineReader) -> bytes | None:
        """The next line, honouring the idle and slowloris timeouts."""
        idle = self._config.idle_timeout
        line_limit = self._config.line_timeout
        while True:
            line = reader.pop_line()
            if line is not None:
                self._last_activity = trio.current_time()
                return line
            if reader.finished:
                return None
            if reader.partial_since is not None:
                deadline = reader.partial_since + line_limit
            elif self._active:
                deadline = trio.current_time() + idle  # busy, so not idle: look again later
            else:
                deadline = self._last_activity + idle
            with trio.move_on_at(deadline):
                await reader.fill()
                continue
            now = trio.current_time()
            if reader.partial_since is not None and now >= reader.partial_since + line_limit:
                raise _Closing(
                    f"line not finished within {line_limit:g}s",
                    InvalidRequest(
                        f"message not completed within {line_limit:g} seconds",
                        {"line_timeout": line_limit},
                    ),
                )
            idle_over = now >= self._last_activity + idle
            if idle_over and not self._active and reader.partial_since is None:
                raise _Closing(f"idle for {idle:g}s")

    async def _serve_line(self, line: bytes) -> None:
        try:
            with self._service.answering():
                response = await self.respond(line)
                if response is not None:
                    await self._send(response)
        finally:
            self._active -= 1
            self._last_activity = trio.current_time()
            self._slots.release()

    async def respond(self, line: bytes) -> bytes | None:
        """The response line for one received line (``None``: nothing to send)."""
        try:
            is_batch, items = parse_message(line)
        except RpcError as error:
            return _encode_error(error, None) + b"\n"
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
        async with self._send_lock:
            with trio.move_on_after(self._config.write_timeout) as scope:
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.close("peer went away")
                    return
            if scope.cancelled_caught:
                logger.warning(
                    "Closing a connection whose client has not read for %gs",
                    self._config.write_timeout,
                )
                self.close("write timeout")

    async def _send_last(self, error: RpcError) -> None:
        """Best effort: tell the client why it is being disconnected."""
        with trio.move_on_after(_TOO_LARGE_GRACE):
            await self._send(_encode_error(error, None) + b"\n")


class _Closing(Exception):
    def __init__(self, reason: str, error: RpcError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


def _encode_error(error: RpcError, id: Id) -> bytes:
    try:
        return ENCODER.encode(error_response(error, id))
    except Exception:  # error.data that cannot be encoded: drop it, keep the error
        logger.exception("cannot encode error data")
        return ENCODER.encode(error_response(type(error)(error.message), id))
