"""An async client for ctxd, for asyncio and trio; standard library only (it
imports trio only when it runs under trio). Copy this file into any app.

    from async_client import AsyncClient, BadInput

    async with AsyncClient("/run/ctxd.sock") as ctxd:  # asyncio or trio: found at run time
        try:
            answer = await ctxd.analyze("c1", path="shots/1.png")  # made absolute here
        except BadInput as exc:
            print(exc.data["reason"], exc.data["field"])  # e.g. outside_allowed_dirs image.path
        else:
            for message in answer["result"]["conversation"]:
                print(message["speaker"], message["text"])

* One connection, reused by every call, opened at the first call and opened
  again after it was lost (calls waiting on a lost connection raise
  ``ConnectionClosed``, or the error the daemon sent before closing it).
* Calls made concurrently (``asyncio.gather``, a trio nursery) are pipelined
  on that connection: each is sent at once and matched by its id, in
  whatever order the daemon answers.
* Results are typed: ``TypedDict``s generated from the daemon's OpenRPC
  document (the section at the end of this file; tests/test_client_async.py
  fails when it no longer matches ``rpc.discover``).
* Each error code is an exception: ``BadInput`` (-32003), ``Overloaded``
  (-32005), ... all ``RpcError`` with ``code``, ``message``, ``data``.
* Timeouts are the caller's (``asyncio.timeout``, ``trio.fail_after``). A
  call cancelled at any point leaves the connection and the other calls on it
  alone: cancelled before its request went out (a deadline already passed,
  or while it waited for its turn to send), nothing is sent; its line, once
  begun, is sent whole (asyncio buffers it whole; under trio the send is
  shielded, for at most ``SEND_GRACE`` seconds, after which a daemon that
  reads nothing is given up and the connection closed); its late answer is
  dropped.

The I/O-free core (``Core``: requests out, responses in) does the JSON-RPC;
two small drivers (``_AsyncioConnection``, ``_TrioConnection``) move bytes.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import sys
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, NotRequired, TypedDict, cast

if TYPE_CHECKING:
    import asyncio

    import trio

__all__ = [
    "AllStrategiesFailed",
    "AnalyzeResult",
    "AsyncClient",
    "BadInput",
    "ConnectionClosed",
    "Core",
    "DeadlineExceeded",
    "Forbidden",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "MethodNotFound",
    "Overloaded",
    "ParseError",
    "RpcError",
    "ShuttingDown",
]

READ_SIZE: Final = 65536
SEND_GRACE: Final = 5.0  # seconds a line already begun may take to go out whole (trio)


# ------------------------------------------------------------ exceptions --


class RpcError(Exception):
    """An error response: ``code``, ``message``, ``data`` as the daemon sent them."""

    code: int = 0
    name: ClassVar[str] = "error"

    def __init__(self, message: str, data: Any = None, code: int | None = None) -> None:
        super().__init__(f"{message} ({code if code is not None else self.code})")
        if code is not None:
            self.code = code
        self.message = message
        self.data = data


class ParseError(RpcError):
    code, name = -32700, "parse_error"


class InvalidRequest(RpcError):
    code, name = -32600, "invalid_request"


class MethodNotFound(RpcError):
    code, name = -32601, "method_not_found"


class InvalidParams(RpcError):
    """``data.reason`` and ``data.field`` say what is wrong (docs/protocol.md)."""

    code, name = -32602, "invalid_params"


class InternalError(RpcError):
    code, name = -32603, "internal_error"


class ShuttingDown(RpcError):
    code, name = -32000, "shutting_down"


class AllStrategiesFailed(RpcError):
    """``data.strategies``: each strategy's ``{"error": kind, "detail": text}``."""

    code, name = -32001, "all_strategies_failed"


class DeadlineExceeded(RpcError):
    """``data.pending``: strategies still running; their result will be cached."""

    code, name = -32002, "deadline_exceeded"


class BadInput(RpcError):
    """``data.reason`` and ``data.field`` say why the image was refused."""

    code, name = -32003, "bad_input"


class Forbidden(RpcError):
    code, name = -32004, "forbidden"


class Overloaded(RpcError):
    code, name = -32005, "overloaded"


ERRORS: Final[dict[int, type[RpcError]]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        ShuttingDown,
        AllStrategiesFailed,
        DeadlineExceeded,
        BadInput,
        Forbidden,
        Overloaded,
    )
}


class ConnectionClosed(ConnectionError):
    """The connection ended before the response arrived."""


def error_from(error: Any) -> RpcError:
    """The exception of a JSON-RPC error object."""
    if not isinstance(error, dict):
        return RpcError(f"malformed error {error!r}", None, 0)
    code = error.get("code")
    code = code if isinstance(code, int) else 0
    cls = ERRORS.get(code, RpcError)
    return cls(str(error.get("message", "")), error.get("data"), code)


# ------------------------------------------------------ the I/O-free core --


class Core:
    """JSON-RPC 2.0 over newline-delimited JSON, without I/O: ``request``
    gives the line to send, ``receive`` the responses in the bytes read."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received of a line not yet complete."""
        return len(self._buffer)

    def request(self, method: str, params: Any = None) -> tuple[int, bytes]:
        call_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": call_id}
        if params is not None:
            message["params"] = params
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        return call_id, text.encode() + b"\n"

    def receive(self, data: bytes) -> list[dict[str, Any]]:
        """The response objects completed by ``data`` (a batch's are flattened);
        lines that are not JSON objects are dropped."""
        self._buffer += data
        found: list[dict[str, Any]] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            try:
                message = json.loads(line)
            except ValueError:
                continue
            for item in message if isinstance(message, list) else [message]:
                if isinstance(item, dict):
                    found.append(item)
        return found


# ------------------------------------------------------------ the drivers --


class _Waiter:
    """One call waiting for its response."""

    def __init__(self, event: Any) -> None:
        self.event = event
        self.result: Any = None
        self.error: BaseException | None = None

    def done(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.event.set()


class _AsyncioConnection:
    library = "asyncio"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: str) -> _AsyncioConnection:
        import asyncio

        reader, writer = await asyncio.open_unix_connection(path, limit=READ_SIZE)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)  # buffered whole: a cancelled drain leaves no half line
        await self.writer.drain()

    async def receive(self) -> bytes:
        try:
            return await self.reader.read(READ_SIZE)
        except OSError:
            return b""

    def abort(self) -> None:
        self.writer.transport.abort()

    @staticmethod
    def event() -> Any:
        import asyncio

        return asyncio.Event()

    @staticmethod
    def lock() -> Any:
        import asyncio

        return asyncio.Lock()


class _TrioConnection:
    library = "trio"

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream

    @classmethod
    async def open(cls, path: str) -> _TrioConnection:
        import trio

        return cls(await trio.open_unix_socket(path))

    async def send(self, data: bytes) -> None:
        """All or nothing: a cancel does not cut the line (shielded), a daemon
        that takes none of it for ``SEND_GRACE`` seconds raises OSError."""
        import trio

        with trio.CancelScope(shield=True), trio.move_on_after(SEND_GRACE) as grace:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise OSError(str(exc)) from exc
        if grace.cancelled_caught:
            raise OSError(f"the daemon took no request for {SEND_GRACE:g}s")

    async def receive(self) -> bytes:
        import trio

        try:
            return await self.stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return b""

    def abort(self) -> None:
        self.stream.socket.close()

    @staticmethod
    def event() -> Any:
        import trio

        return trio.Event()

    @staticmethod
    def lock() -> Any:
        import trio

        return trio.Lock()


_Connection = _AsyncioConnection | _TrioConnection


def current_library() -> Literal["asyncio", "trio"]:
    """The async library running the calling task."""
    if "trio" in sys.modules:
        import trio

        try:
            trio.lowlevel.current_task()
            return "trio"
        except RuntimeError:
            pass
    import asyncio

    try:
        asyncio.current_task()
    except RuntimeError:
        raise RuntimeError("AsyncClient runs under asyncio or trio") from None
    return "asyncio"


class _Link:
    """One connection and the calls waiting on it."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.core = Core()  # ids and the bytes read of this connection only
        self.pending: dict[int, _Waiter] = {}
        self.error: BaseException | None = None  # set once the connection is gone
        self.send_lock = conn.lock()

    def close(self, error: BaseException) -> None:
        """Fail every waiting call with ``error``; idempotent."""
        if self.error is None:
            self.error = error
            self.conn.abort()
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            waiter.done(error=error)


# ------------------------------------------------------------- the client --


class AsyncClient:
    """``async with AsyncClient(path) as ctxd:`` then ``await ctxd.analyze(...)``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._link: _Link | None = None
        self._library: Literal["asyncio", "trio"] | None = None
        self._connect_lock: Any = None
        self._tasks: set[Any] = set()  # asyncio: the readers (trio: system tasks)

    async def __aenter__(self) -> AsyncClient:
        self._library = current_library()
        if self._library == "trio":
            import trio

            self._connect_lock = trio.Lock()
        else:
            import asyncio

            self._connect_lock = asyncio.Lock()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; calls still waiting raise ConnectionClosed."""
        link, self._link = self._link, None
        if link is not None:  # its reader sees the end of the stream and returns
            link.close(ConnectionClosed(f"connection to {self.path} closed by the client"))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            import asyncio

            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------- calls --

    async def call(self, method: str, params: Any = None) -> Any:
        """Call ``method``; its result, or the exception of its error code."""
        link = await self._connection()
        call_id, line = link.core.request(method, params)
        waiter = _Waiter(link.conn.event())
        link.pending[call_id] = waiter
        try:
            # Cancelled while it waits for its turn: nothing was sent. Once
            # its turn came, the line goes out whole (``send``), whatever
            # cancels the call meanwhile: the connection stays usable.
            async with link.send_lock:
                try:
                    await link.conn.send(line)
                except OSError as exc:
                    link.close(ConnectionClosed(f"cannot send to {self.path}: {exc}"))
            await waiter.event.wait()
        finally:
            link.pending.pop(call_id, None)
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    async def _connection(self) -> _Link:
        if self._library is None:
            raise RuntimeError("use AsyncClient as `async with AsyncClient(path) as ctxd:`")
        link = self._link
        if link is not None and link.error is None:
            return link
        async with self._connect_lock:
            if self._link is not None and self._link.error is None:
                return self._link
            try:
                if self._library == "trio":
                    conn: _Connection = await _TrioConnection.open(self.path)
                else:
                    conn = await _AsyncioConnection.open(self.path)
            except OSError as exc:
                raise ConnectionClosed(f"cannot connect to {self.path}: {exc}") from exc
            self._link = link = _Link(conn)
            if self._library == "trio":
                import trio

                # A system task: no nursery of the caller's to hold (or to wrap
                # the caller's exceptions in groups); it ends with the connection.
                trio.lowlevel.spawn_system_task(self._read, link)
            else:
                import asyncio

                task = asyncio.get_running_loop().create_task(self._read(link))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return link

    async def _read(self, link: _Link) -> None:
        """Deliver responses until the connection ends; then fail what still waits.

        An error with a null id (-32005 at connect, -32600 for a line too
        long) is the daemon's last word when the connection ends right after
        it: the calls still waiting get that error. One the daemon went on
        after (a -32700 for a line it could not parse, then more answers or
        bytes) is not why a later end happened: they get ConnectionClosed."""
        closed: BaseException = ConnectionClosed(f"connection to {self.path} closed")
        last_word: BaseException | None = None
        core = link.core
        try:
            while True:
                data = await link.conn.receive()
                if not data:
                    break
                last_word = None  # the daemon went on
                for response in core.receive(data):
                    call_id = response.get("id")
                    err = response.get("error")
                    last_word = None
                    waiter = link.pending.pop(call_id, None) if isinstance(call_id, int) else None
                    if waiter is not None:
                        if err is not None:
                            waiter.done(error=error_from(err))
                        else:
                            waiter.done(result=response.get("result"))
                    elif call_id is None and err is not None:
                        last_word = error_from(err)
                if core.buffered:  # a line under way: more came after it
                    last_word = None
        except Exception as exc:  # never lost: the calls waiting get it
            closed = ConnectionClosed(f"reading from {self.path} failed: {exc!r}")
        finally:
            link.close(last_word or closed)

    # ------------------------------------------------------ typed methods --

    async def analyze(
        self,
        conversation_id: str,
        *,
        path: str | None = None,
        url: str | None = None,
        data: bytes | None = None,
        resource: str | None = None,
        scene: str | None = None,
        category: str | None = None,
        refresh: bool | None = None,
        wait: Literal["first", "best"] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the daemon's deadline (params.timeout)
    ) -> AnalyzeResult:
        """The conversation in a screenshot: ``path`` (relative to this
        process's working directory: sent absolute), ``url`` or ``data``; or
        only ``resource`` of a cached result. ``timeout`` is the daemon's
        deadline for this request (-32002 past it); bound the wait on this
        side with ``asyncio.timeout`` / ``trio.fail_after``."""
        params: dict[str, Any] = {"conversation_id": conversation_id}
        if path is not None:
            params["image"] = {"path": os.path.abspath(path)}  # noqa: ASYNC240 - no I/O but getcwd
        elif url is not None:
            params["image"] = {"url": url}
        elif data is not None:
            params["image"] = {"data": base64.b64encode(data).decode("ascii")}
        extra: dict[str, Any] = {"resource": resource, "scene": scene, "category": category}
        extra |= {"refresh": refresh, "wait": wait, "timeout": timeout}
        params |= {k: v for k, v in extra.items() if v is not None}
        return cast(AnalyzeResult, await self.call("analyze", params))

    async def status(self) -> StatusResult:
        return cast(StatusResult, await self.call("status"))

    async def health(self) -> HealthResult:
        return cast(HealthResult, await self.call("health"))

    async def events_append(
        self,
        session_id: str,
        category: str,
        resource: str,
        payload: dict[str, Any],
        scene: str = "",
    ) -> AppendResult:
        params: dict[str, Any] = {"session_id": session_id, "category": category}
        params |= {"resource": resource, "payload": payload, "scene": scene}
        return cast(AppendResult, await self.call("events.append", params))

    async def events_list(
        self,
        session_id: str,
        *,
        category: str | None = None,
        resource: str | None = None,
        limit: int | None = None,
        before_id: int | None = None,
    ) -> EventsResult:
        given = {"category": category, "resource": resource, "limit": limit}
        given["before_id"] = before_id
        params = {"session_id": session_id} | {k: v for k, v in given.items() if v is not None}
        return cast(EventsResult, await self.call("events.list", params))

    async def events_best(
        self, session_id: str, category: str, resource: str, scene: str = ""
    ) -> BestResult:
        params = {"session_id": session_id, "category": category, "resource": resource}
        return cast(BestResult, await self.call("events.best", params | {"scene": scene}))

    async def discover(self) -> dict[str, Any]:
        """The daemon's OpenRPC document."""
        return cast(dict[str, Any], await self.call("rpc.discover"))


# The types below are the components of ``rpc.discover``'s document, made by
# ``daemon.openrpc.python_types``. In a ctxd checkout, after a result's or an
# error's Struct changed (tests/test_client_async.py and tests/test_openrpc.py
# fail while these are stale), rewrite them with
#     CTXD_REGENERATE=1 .venv/bin/python -m pytest -q tests/test_client_async.py -k typed_results

# --- generated by daemon/openrpc from rpc.discover: do not edit ---


class AllStrategiesFailedData(TypedDict):
    """``error.data`` of -32001."""

    strategies: dict[str, StrategyFailure]


class AnalyzeResult(TypedDict):
    result: MergeStepObject
    provenance: AnswerProvenance
    pending: list[str]


class AnswerProvenance(TypedDict):
    strategy: str
    model: str
    cached: bool
    event_id: int | None
    created_at: float
    latency_ms: float
    origin: NotRequired[Origin | None]


class AppendResult(TypedDict):
    id: int


class BackgroundStatus(TypedDict):
    count: int
    max: int
    by_strategy: dict[str, int]


class BadInputData(TypedDict):
    """``error.data`` of -32003: why the image was refused, and which field."""

    reason: Literal[
        "cannot_open",
        "invalid_base64",
        "invalid_url",
        "not_a_regular_file",
        "not_found",
        "not_one_source",
        "outside_allowed_dirs",
        "path_invalid",
        "path_not_absolute",
        "paths_not_accepted",
        "too_large",
        "unsupported_format",
    ]
    field: str
    path: NotRequired[str]
    size: NotRequired[int]
    max_image_bytes: NotRequired[int]
    max_length: NotRequired[int]
    given: NotRequired[list[str]]
    errno: NotRequired[int]


class BestResult(TypedDict):
    event: Event | None


class Bubble(TypedDict):
    speaker: Literal["talker", "user"]
    side: Literal["left", "right"]
    bbox: tuple[int, int, int, int]
    text: str
    kind: NotRequired[Literal["file", "photo", "sticker", "text", "voice"]]
    sender: NotRequired[str]
    time: NotRequired[str]
    quote: NotRequired[Quote]


class BudgetLeft(TypedDict):
    """A strategy's budget (config ``budget``) and what is left of it now."""

    usd_per_day: NotRequired[float | None]
    usd_left_today: NotRequired[float | None]
    calls_per_minute: NotRequired[int | None]
    calls_left_this_minute: NotRequired[int | None]
    exhausted: NotRequired[str | None]


class CacheStatus(TypedDict):
    hits: NotRequired[int]
    misses: NotRequired[int]
    coalesced: NotRequired[int]
    upgrades: NotRequired[int]


class DeadlineExceededData(TypedDict):
    """``error.data`` of -32002."""

    pending: list[str]


class DrainStatus(TypedDict):
    deadline_s: float | None


class Event(TypedDict):
    id: int
    ts: float
    session_id: str
    category: str
    resource: str
    scene: str
    strategy: str
    model: str
    payload: dict[str, Any]
    provenance: Provenance | None


class EventsResult(TypedDict):
    events: list[Event]
    next_before_id: NotRequired[int | None]


class FleetStatus(TypedDict):
    """``status.fleet``: the shared server as this host sees it; never a secret."""

    host_id: str
    server: str
    state: Literal["connected", "connecting", "disconnected"]
    rtt_ms: float | None
    outbox: int
    outbox_age_s: float | None
    published: int
    duplicates: int
    publish_errors: int
    hits: int
    lookups: int
    lookup_errors: int
    leases_won: NotRequired[int]
    leases_waited: NotRequired[int]
    leases_taken_over: NotRequired[int]
    leases_lost: NotRequired[int]
    leases_retaken: NotRequired[int]


class ForbiddenData(TypedDict):
    """``error.data`` of -32004: the peer's credentials (SO_PEERCRED)."""

    uid: int
    gid: int


class HealthResult(TypedDict):
    ok: bool
    state: Literal["draining", "serving", "starting"]


class ImageParams(TypedDict):
    path: NotRequired[str | None]
    url: NotRequired[str | None]
    data: NotRequired[str | None]
    mime: NotRequired[str | None]


class InvalidParamsData(TypedDict):
    """``error.data`` of -32602."""

    reason: Literal[
        "invalid_value",
        "missing_field",
        "no_image",
        "not_cached",
        "unknown_field",
        "unstorable_payload",
        "wrong_arity",
    ]
    field: NotRequired[str]
    detail: NotRequired[str]
    resource: NotRequired[str]


class InvalidRequestData(TypedDict):
    """``error.data`` of -32600, when a limit was passed."""

    max_batch: NotRequired[int]
    max_message_bytes: NotRequired[int]
    line_timeout: NotRequired[float]


class LatencyStatus(TypedDict):
    p50: NotRequired[float | None]
    p95: NotRequired[float | None]
    p99: NotRequired[float | None]


class Layout(TypedDict):
    left: Literal["talker", "user"]
    right: Literal["talker", "user"]


class MergeStepObject(TypedDict):
    participants: Participants
    layout: Layout
    bubbles: list[Bubble]
    conversation: list[Message]
    summary: NotRequired[str | None]


class Message(TypedDict):
    speaker: Literal["talker", "user"]
    text: str
    sender: NotRequired[str]
    kind: NotRequired[Literal["file", "photo", "sticker", "text", "voice"]]


class MethodNotFoundData(TypedDict):
    """``error.data`` of -32601."""

    method: str


class Origin(TypedDict):
    """The fleet host that made an event, and its id there (docs/fleet.md)."""

    host: str
    event_id: int


class OverloadedData(TypedDict):
    """``error.data`` of -32005: the figures of the limit that was reached."""

    in_flight: NotRequired[int]
    max_in_flight: NotRequired[int]
    max_connections: NotRequired[int]
    races: NotRequired[int]
    max_races: NotRequired[int]
    image_bytes: NotRequired[int]
    max_race_image_bytes: NotRequired[int]


class Participants(TypedDict):
    user: NotRequired[str | None]
    talker: NotRequired[str | None]
    group: NotRequired[str]


class Provenance(TypedDict):
    """Where a stored result came from (written by the race; null for app events)."""

    latency_ms: NotRequired[float | None]
    provider: NotRequired[str | None]
    requested_model: NotRequired[str | None]
    served_model: NotRequired[str | None]
    usage: NotRequired[Usage | None]
    race_id: NotRequired[str | None]
    served_by: NotRequired[str | None]
    cost_usd: NotRequired[float | None]
    cost_source: NotRequired[Literal["price", "provider"] | None]
    origin: NotRequired[Origin | None]
    dropped_lines: NotRequired[int | None]


class Quote(TypedDict):
    """A quoted (replied-to) message shown inside a bubble."""

    sender: NotRequired[str | None]
    text: str


class SpendFigures(TypedDict):
    """What a strategy spent over a period (daemon/spend.py)."""

    calls: NotRequired[int]
    prompt_tokens: NotRequired[int]
    completion_tokens: NotRequired[int]
    total_tokens: NotRequired[int]
    usd: NotRequired[float]
    cost_known: NotRequired[int]
    cost_unknown: NotRequired[int]
    cancelled_after_send: NotRequired[int]
    budget_exhausted: NotRequired[int]


class SpendResult(TypedDict):
    """What the ``spend`` method answers: UTC day and month, by strategy."""

    day: str
    month: str
    strategies: dict[str, StrategySpend]


class StatusResult(TypedDict):
    version: str
    pid: int
    uptime_s: float
    state: Literal["draining", "serving", "starting"]
    connections: int
    in_flight: int
    background: BackgroundStatus
    store: StoreStatus
    cache: CacheStatus
    strategies: dict[str, StrategyStatus]
    drain: DrainStatus
    fleet: NotRequired[FleetStatus | None]


class StoreStatus(TypedDict):
    path: str
    events: int
    map_size: int
    used_bytes: int
    abandoned: NotRequired[int]


class StrategyFailure(TypedDict):
    """One strategy's failure in a race; a local_ocr queue's failures carry their figures too."""

    error: Literal[
        "budget_exhausted",
        "cancelled",
        "connection",
        "http_status",
        "invalid_output",
        "not_configured",
        "overloaded",
        "queued",
        "timeout",
    ]
    detail: str
    position: NotRequired[int]
    expected_wait_s: NotRequired[float]
    waiting: NotRequired[int]
    max_queue: NotRequired[int]
    waited_s: NotRequired[float]
    read_s: NotRequired[float]


class StrategySpend(TypedDict):
    today: SpendFigures
    month: SpendFigures
    budget: BudgetLeft | None


class StrategyStatus(TypedDict):
    model: str
    rank: int
    calls: NotRequired[int]
    wins: NotRequired[int]
    invalid: NotRequired[int]
    errors: NotRequired[int]
    timeouts: NotRequired[int]
    cancelled: NotRequired[int]
    tokens: NotRequired[int]
    latency_ms: NotRequired[LatencyStatus]
    state: NotRequired[Literal["not_configured", "ready", "resting"]]
    rest_reason: NotRequired[str | None]
    rest_s: NotRequired[float | None]
    cost_usd: NotRequired[float]
    served_by: NotRequired[dict[str, int]]
    usage: NotRequired[SpendFigures]
    skipped: NotRequired[int]
    budget_exhausted: NotRequired[int]


class Usage(TypedDict):
    prompt_tokens: NotRequired[int | None]
    completion_tokens: NotRequired[int | None]
    total_tokens: NotRequired[int | None]
    cost: NotRequired[float | None]


RESULTS: Final = {
    "analyze": "AnalyzeResult",
    "events.append": "AppendResult",
    "events.best": "BestResult",
    "events.list": "EventsResult",
    "health": "HealthResult",
    "merge_step": "AnalyzeResult",
    "rpc.discover": "dict[str, Any]",
    "spend": "SpendResult",
    "status": "StatusResult",
}
# --- end of generated code ---
