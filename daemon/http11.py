"""A lean HTTP/1.1 connection pool for the providers: an httpx2 transport on trio and h11.

``Provider`` keeps its ``httpx2.AsyncClient`` (headers, URL joining, content
decoding, the exception types); this module replaces only the transport
under it, httpcore2's pool, which costs what the daemon cannot afford under
load. Client CPU per POST against a trio server that answers at once, on
this 2-core VM (``.venv/bin/python bench/http_bench.py``):

==============  ===========  ===============
concurrent      httpcore2    this pool
==============  ===========  ===============
1               341 us       240 us
100             448 us       216 us
200             619 us       221 us
==============  ===========  ===============

httpcore2's cost grows with the pool: every request walks every pooled
connection and asks each idle one whether the server closed it (a ``poll``
syscall per connection); at 100 concurrent misses that walk was a third of
the daemon's event-loop time. Here the cost is flat in the pool's size.

How it works:

* Idle connections wait per origin (scheme, host, port) in a deque, newest
  last. A request first closes every connection idle longer than
  ``keepalive_expiry`` (from the old end: each connection is closed once, so
  this costs O(1) a request amortised), then takes the newest; before
  reusing it, one ``poll`` on that socket alone says whether the server
  closed it meanwhile (then it is closed and the next one is tried).
* ``max_connections`` bounds the connections in use, over all origins: a
  request holds a slot (a FIFO ``trio.Semaphore``) from its start until its
  response is closed. The slot wait is bounded by httpx's ``pool`` timeout.
* A request is sent once. The pool tries another connection only when the
  request provably never left: the idle connection was seen closed before
  the first byte was written (the ``poll`` above; nothing runs between it
  and the write). A connection that fails after that (the server closed a
  reused connection as the request arrived, the keep-alive race) may have
  delivered the request, and the model may have run and billed it: that
  is an error for the caller, whose retry policy (``Provider``: counted,
  with backoff) decides. Errors are httpx's types: ``ConnectError``,
  ``ConnectTimeout``, ``ReadError``, ``ReadTimeout``, ``WriteError``,
  ``WriteTimeout``, ``PoolTimeout``, ``RemoteProtocolError`` (all but the
  timeouts are ``TransportError``: the provider's ``connection`` kind).
* A server that answers before it has read the whole request (a 413 for a
  large image) and stops reading: that answer is the outcome, not the write
  error, and the connection is not reused.
* A response whose body was read to its end goes back to the pool when it is
  closed; one closed early, cancelled, or marked ``Connection: close`` is
  closed, synchronously (closing a socket needs no await, so a cancelled
  caller's ``finally`` cannot leak it).
* https: ``trio.SSLStream`` with the context given (the provider passes
  ``httpx2.create_ssl_context()``: the system's CAs, ``SSL_CERT_FILE``),
  ALPN ``http/1.1``, the handshake within the connect timeout.

* Whether the request went out: a ``SendMark`` in the request's
  ``extensions`` (``SEND_MARK``) is marked known when the pool takes the
  request and sent just before its first byte is written, so the caller
  tells a request cancelled while it waited for a slot, a connection or a
  TLS handshake (nothing the provider could bill) from one cancelled once
  it was on its way (``Provider``: ``cancelled_after_send``, calls).

Proxies are not spoken here: ``Provider.from_config`` uses httpx2's own
transport when the environment sets a proxy for the provider's URL.
"""

from __future__ import annotations

import collections
import contextlib
import ssl
from typing import TYPE_CHECKING, Final

import h11
import httpx2
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

READ_SIZE: Final = 65536
SEND_MARK: Final = "ctxd.send_mark"  # request.extensions key of a SendMark
DEFAULT_PORTS: Final = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


@contextlib.contextmanager
def _deadline(
    seconds: float | None, error: type[httpx2.TimeoutException], what: str
) -> Iterator[None]:
    if seconds is None:
        yield
        return
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise error(f"{what} took longer than {seconds:g}s") from None


class SendMark:
    """Whether a request went out, as the transport saw it (module docstring).

    ``known``: the transport says (this pool does; another transport, say
    httpx2's for a proxy, leaves it False: then the caller cannot tell).
    ``sent``: the first byte was about to be written; ``on_send`` is called
    then, once, in the sending task."""

    __slots__ = ("known", "on_send", "sent")

    def __init__(self, on_send: Callable[[], None] | None = None) -> None:
        self.known = False
        self.sent = False
        self.on_send = on_send

    def mark_sent(self) -> None:
        if not self.sent:
            self.sent = True
            if self.on_send is not None:
                self.on_send()


class _Connection:
    """One HTTP/1.1 connection: a trio stream and its h11 state machine."""

    def __init__(
        self, origin: Origin, stream: trio.abc.Stream, sock: trio.socket.SocketType
    ) -> None:
        self.origin = origin
        self.stream = stream
        self.socket = sock
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        self.broken = False
        # httpx's per-phase timeouts of the request being served
        self.read_timeout: float | None = None
        self.write_timeout: float | None = None

    def close(self) -> None:
        """Close at once, without a checkpoint (safe in a cancelled ``finally``)."""
        self.socket.close()

    def reusable(self) -> bool:
        return (
            not self.broken and self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE
        )

    async def send(self, data: bytes) -> None:
        with _deadline(self.write_timeout, httpx2.WriteTimeout, "sending the request"):
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, OSError) as exc:
                raise httpx2.WriteError(f"sending the request: {exc}") from None

    async def next_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        """The next event of the response, reading as needed."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx2.RemoteProtocolError(f"bad response: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            with _deadline(self.read_timeout, httpx2.ReadTimeout, "reading the response"):
                try:
                    data = await self.stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, OSError) as exc:
                    raise httpx2.ReadError(f"reading the response: {exc}") from None
            if not data and self.h11.their_state is h11.SEND_RESPONSE:
                raise httpx2.RemoteProtocolError(
                    "the server closed the connection without a response"
                )
            try:
                self.h11.receive_data(bytes(data))
            except h11.RemoteProtocolError as exc:  # pragma: no cover - h11 raises in next_event
                raise httpx2.RemoteProtocolError(f"bad response: {exc}") from None


class _Body(httpx2.AsyncByteStream):
    """The response body; closing it returns the connection or closes it."""

    def __init__(self, pool: PoolTransport, connection: _Connection) -> None:
        self._pool = pool
        self._connection = connection
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while not self._closed:
            event = await connection.next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:  # PAUSED or ConnectionClosed: never inside a body h11 accepted
                name = getattr(event, "__name__", type(event).__name__)
                raise httpx2.RemoteProtocolError(f"{name} inside the response body")

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool._release(self._connection)


class PoolTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 keep-alive pool; see the module docstring for its rules."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._slots = trio.Semaphore(max_connections)
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, collections.deque[_Connection]] = {}
        self._closed = False
        self.opened = 0  # connections opened so far (status, tests)

    @property
    def idle(self) -> int:
        return sum(len(queue) for queue in self._idle.values())

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._closed:
            raise httpx2.ConnectError("the connection pool is closed")
        url = request.url
        if url.scheme not in DEFAULT_PORTS:
            raise httpx2.UnsupportedProtocol(f"{url.scheme!r} is not http or https")
        origin = (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme])
        mark = request.extensions.get(SEND_MARK)
        if not isinstance(mark, SendMark):
            mark = SendMark()
        mark.known = True  # before any checkpoint: from here on this pool says
        timeouts = request.extensions.get("timeout", {})
        if not isinstance(request.stream, httpx2.AsyncByteStream):
            raise TypeError("an AsyncClient's request has an async stream")
        body = b"".join([chunk async for chunk in request.stream])
        head = h11.Request(method=request.method, target=url.raw_path, headers=request.headers.raw)
        with _deadline(timeouts.get("pool"), httpx2.PoolTimeout, "waiting for a connection"):
            await self._slots.acquire()
        connection: _Connection | None = None
        try:
            connection = self._take_idle(origin) or await self._connect(origin, timeouts)
            return await self._exchange(connection, head, body, timeouts, mark)
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise

    async def _exchange(
        self,
        connection: _Connection,
        head: h11.Request,
        body: bytes,
        timeouts: dict[str, float | None],
        mark: SendMark,
    ) -> httpx2.Response:
        state = connection.h11
        data = state.send(head) or b""
        if body:
            data += state.send(h11.Data(data=body)) or b""
        data += state.send(h11.EndOfMessage()) or b""
        connection.read_timeout = timeouts.get("read")
        connection.write_timeout = timeouts.get("write")
        mark.mark_sent()  # no checkpoint between this and the first byte written
        try:
            await connection.send(data)
        except httpx2.WriteError:
            # The server may have answered early and closed (413 for a large
            # image, say): that answer, when there is one, is the outcome.
            try:
                event = await connection.next_event()
            except httpx2.HTTPError:
                event = None
            if not isinstance(event, h11.Response):
                raise
            connection.broken = True  # our request is not whole: never reuse it
        else:
            event = await connection.next_event()
        while True:
            if isinstance(event, h11.Response):
                break
            # 1xx (100 Continue and the like) are skipped; anything else is broken
            if not isinstance(event, h11.InformationalResponse):
                raise httpx2.RemoteProtocolError(f"{type(event).__name__} before the response")
            event = await connection.next_event()
        return httpx2.Response(
            status_code=event.status_code,
            headers=event.headers.raw_items(),
            stream=_Body(self, connection),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": event.reason},
        )

    def _take_idle(self, origin: Origin) -> _Connection | None:
        queue = self._idle.get(origin)
        if not queue:
            return None
        # Oldest first, and the deque is in the order connections went idle:
        # after this loop none left is expired.
        now = trio.current_time()
        while queue and now - queue[0].idle_since > self._keepalive_expiry:
            queue.popleft().close()
        while queue:
            connection = queue.pop()
            # Readable while idle: the server closed it (or sent junk).
            if connection.socket.is_readable():
                connection.close()
                continue
            return connection
        return None

    async def _connect(self, origin: Origin, timeouts: dict[str, float | None]) -> _Connection:
        scheme, host, port = origin
        with _deadline(
            timeouts.get("connect"), httpx2.ConnectTimeout, f"connecting to {host}:{port}"
        ):
            try:
                tcp = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                raise httpx2.ConnectError(f"connecting to {host}:{port}: {exc}") from None
            stream: trio.abc.Stream = tcp
            if scheme == "https":
                context = self._ssl_context or httpx2.create_ssl_context()
                tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
                try:
                    await tls.do_handshake()
                except (trio.BrokenResourceError, OSError) as exc:
                    tcp.socket.close()
                    cause = exc.__cause__ or exc
                    raise httpx2.ConnectError(f"TLS with {host}:{port}: {cause}") from None
                except BaseException:
                    tcp.socket.close()
                    raise
                stream = tls
        self.opened += 1
        return _Connection(origin, stream, tcp.socket)

    def _release(self, connection: _Connection) -> None:
        """Back to the pool when the exchange is complete, else closed; frees the slot."""
        try:
            if self._closed or not connection.reusable():
                connection.close()
                return
            try:
                connection.h11.start_next_cycle()
            except h11.LocalProtocolError:  # pragma: no cover - reusable() said DONE/DONE
                connection.close()
                return
            connection.idle_since = trio.current_time()
            self._idle.setdefault(connection.origin, collections.deque()).append(connection)
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their response does."""
        self._closed = True
        for queue in self._idle.values():
            while queue:
                queue.pop().close()
        self._idle.clear()
