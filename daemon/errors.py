"""The whole exception tree of ctxd.

::

    Exception
    ├── ConfigError                 bad config file; __main__ exits 78
    ├── StoreError                  the store cannot be opened or written
    │   ├── SchemaError             store written by a newer ctxd; exits 78
    │   └── UnstorablePayload       a payload msgpack cannot hold (a client's fault)
    ├── ServerError                 the socket cannot be served (live daemon, bad path)
    ├── StrategyError(kind, detail) one strategy's failure in a race
    └── RpcError(code, message, data)  what a client sees; only rpc.py encodes it
        ├── ParseError              -32700
        ├── InvalidRequest          -32600
        ├── MethodNotFound          -32601
        ├── InvalidParams           -32602
        ├── InternalError           -32603
        ├── ShuttingDown            -32000
        ├── AllStrategiesFailed     -32001
        ├── DeadlineExceeded        -32002
        ├── BadInput                -32003
        ├── Forbidden               -32004
        └── Overloaded              -32005

Lower layers raise domain errors (``StrategyError``, ``StoreError``); the
service turns them into ``RpcError`` where a client must see them, and
``rpc.py`` turns any other exception into ``InternalError`` with a logged
traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

StrategyErrorKind = Literal[
    "timeout",
    "http_status",
    "connection",
    "invalid_output",
    "not_configured",
    "cancelled",
    "budget_exhausted",  # the strategy is at its budget (config ``budget``): not started
    # local_ocr: no worker free in time to finish within the timeout (the
    # detail gives the position and the expected wait), or the queue is full
    "queued",
    "overloaded",
]


# ``data.reason`` of -32003, what the client can act on (docs/protocol.md).
BadInputReason = Literal[
    "paths_not_accepted",  # inputs.allowed_dirs is empty: send image.data
    "path_not_absolute",
    "path_invalid",  # a NUL byte
    "outside_allowed_dirs",
    "not_found",
    "cannot_open",  # permission denied, a loop of links, ...
    "not_a_regular_file",
    "too_large",  # data.size (when known), data.max_image_bytes
    "unsupported_format",  # not PNG, JPEG, WebP or GIF by its first bytes
    "not_one_source",  # image needs exactly one of path, url, data
    "invalid_url",
    "invalid_base64",
]

# ``data.reason`` of -32602.
InvalidParamsReason = Literal[
    "missing_field",
    "unknown_field",
    "invalid_value",  # a wrong type, or a value out of range
    "wrong_arity",  # params by position: too many
    "no_image",  # neither image nor the resource of a cached result
    "not_cached",  # resource names no cached result: send the image
    "unstorable_payload",  # events.append: the payload cannot be stored
]


class ConfigError(Exception):
    """The configuration cannot be used. ``str()`` is one line for the operator."""


class StoreError(Exception):
    """The event store cannot do what was asked."""


class SchemaError(StoreError):
    """The store on disk has a layout this ctxd cannot read."""


class UnstorablePayload(StoreError):
    """The payload cannot be encoded for the store (not UTF-8; of a race's result,
    a value JSON cannot hold)."""


class ServerError(Exception):
    """The Unix socket cannot be served (another daemon, a path in the way)."""


class StrategyError(Exception):
    """One strategy of a race failed; ``kind`` is one of SPEC's error kinds."""

    def __init__(self, kind: StrategyErrorKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: StrategyErrorKind = kind
        self.detail = detail


class RpcError(Exception):
    """An error a JSON-RPC client sees: ``code``, one-sentence ``message``, ``data``."""

    code: ClassVar[int] = -32603
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, data: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.data = data
        super().__init__(self.message)


class ParseError(RpcError):
    code = -32700
    default_message = "parse error"


class InvalidRequest(RpcError):
    code = -32600
    default_message = "invalid request"


class MethodNotFound(RpcError):
    code = -32601
    default_message = "method not found"


class InvalidParams(RpcError):
    """-32602: ``data.reason`` (one of ``InvalidParamsReason``) and, when one
    param or field is at fault, ``data.field`` (a dotted path: ``image.path``)."""

    code = -32602
    default_message = "invalid params"

    def __init__(
        self,
        message: str | None = None,
        data: dict[str, Any] | None = None,
        *,
        reason: InvalidParamsReason = "invalid_value",
        field: str | None = None,
    ) -> None:
        where = {} if field is None else {"field": field}
        super().__init__(message, {"reason": reason, **where, **(data or {})})


class InternalError(RpcError):
    code = -32603
    default_message = "internal error"


class ShuttingDown(RpcError):
    code = -32000
    default_message = "the daemon is shutting down; request not started"


class AllStrategiesFailed(RpcError):
    code = -32001
    default_message = "every strategy failed or gave invalid output"


class DeadlineExceeded(RpcError):
    code = -32002
    default_message = "the request's deadline passed before a valid result"


class BadInput(RpcError):
    """-32003: ``data.reason`` (one of ``BadInputReason``), ``data.field``
    (``image``, ``image.path``, ``image.url`` or ``image.data``) and the
    figures of the reason (``path``, ``size``, ``max_image_bytes``, ...)."""

    code = -32003
    default_message = "bad input"

    def __init__(self, message: str, reason: BadInputReason, field: str, **details: Any) -> None:
        super().__init__(message, {"reason": reason, "field": field, **details})


class Forbidden(RpcError):
    code = -32004
    default_message = "this peer is not allowed to use ctxd"


class Overloaded(RpcError):
    code = -32005
    default_message = "overloaded"
