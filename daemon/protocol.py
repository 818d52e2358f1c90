"""JSON-RPC 2.0 envelope and per-method wire types; no trio, no I/O.

``parse_message`` turns one received line into requests (or a whole-message
error), exactly as the JSON-RPC 2.0 specification says:

* the line is checked once for syntax (and UTF-8) before anything else, so a
  batch holding broken JSON is one parse error (-32700), never per-item errors;
* a syntactically valid text whose shape is wrong is an invalid request
  (-32600), answered with the request's ``id`` when that ``id`` is itself valid;
* ``params`` stays undecoded (``msgspec.Raw``) until the method is known, and
  is then decoded with that method's Struct (by name, or by position through an
  ``array_like`` twin); a mismatch is -32602 naming the field.

Encoders and decoders are module constants, built once.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Raw, UnsetType

from daemon.errors import (
    InvalidParams,
    InvalidParamsReason,
    InvalidRequest,
    ParseError,
    RpcError,
)
from daemon.models import JsonObject

MAX_BATCH: Final = 1000

Id = int | str | None


class Request(msgspec.Struct, frozen=True):
    jsonrpc: Literal["2.0"]
    method: str
    params: Raw | UnsetType = UNSET
    # UNSET (member absent) marks a notification; ``None`` is a real ``"id": null``.
    id: Id | UnsetType = UNSET

    @property
    def is_notification(self) -> bool:
        return self.id is UNSET


class Invalid(msgspec.Struct, frozen=True):
    """A batch item (or single message) that is not a valid request."""

    error: RpcError
    id: Id = None


class _IdOnly(msgspec.Struct):
    id: Raw | UnsetType = UNSET


class ErrorObject(msgspec.Struct, omit_defaults=True):
    code: int
    message: str
    data: Any = None


class ErrorResponse(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    error: ErrorObject
    id: Id


class ResultResponse(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    result: Any
    id: Id


_RAW: Final = msgspec.json.Decoder(Raw)
_RAW_LIST: Final = msgspec.json.Decoder(list[Raw])
_REQUEST: Final = msgspec.json.Decoder(Request)
_ID_ONLY: Final = msgspec.json.Decoder(_IdOnly)
_ID: Final = msgspec.json.Decoder(Id)
ENCODER: Final = msgspec.json.Encoder()

_WHITESPACE: Final = b" \t\r\n"


def _check_syntax(line: bytes) -> None:
    if not line.isascii():
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"parse error: invalid UTF-8 at byte {exc.start}") from None
    try:
        _RAW.decode(line)
    except msgspec.DecodeError as exc:
        raise ParseError(f"parse error: {exc}") from None
    except RecursionError:
        raise ParseError("parse error: JSON nested too deeply") from None


def _salvage_id(item: bytes) -> Id:
    """The ``id`` of an invalid request object, when it is present and valid."""
    try:
        raw = _ID_ONLY.decode(item).id
        return None if raw is UNSET else _ID.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None


def _why(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    if text.startswith("Expected `object`"):
        return "a request must be a JSON object"
    if "`$.jsonrpc`" in text:
        return 'invalid request: "jsonrpc" must be the string "2.0"'
    if "`$.id`" in text:
        return "invalid request: id must be a string, an integer or null"
    if "`$.method`" in text or "`method`" in text:
        return "invalid request: method must be a string"
    return f"invalid request: {text}"


def _parse_item(item: bytes) -> Request | Invalid:
    try:
        request = _REQUEST.decode(item)
    except msgspec.ValidationError as exc:
        return Invalid(InvalidRequest(_why(exc)), _salvage_id(item))
    except (msgspec.DecodeError, RecursionError):  # pragma: no cover - syntax checked first
        return Invalid(ParseError(), None)
    if request.params is not UNSET and bytes(memoryview(request.params)[:1]) not in (b"{", b"["):
        return Invalid(
            InvalidRequest("invalid request: params must be an array or an object"),
            None if request.id is UNSET else request.id,
        )
    return request


def parse_message(line: bytes) -> tuple[bool, list[Request | Invalid]]:
    """Parse one line: ``(is_batch, items)``.

    Raises ParseError or InvalidRequest when the whole message gets a single
    error response with ``id: null`` (broken JSON, an empty or oversized batch).
    """
    _check_syntax(line)
    start = line.lstrip(_WHITESPACE)[:1]
    if start != b"[":
        return False, [_parse_item(line)]
    items = _RAW_LIST.decode(line)
    if not items:
        raise InvalidRequest("invalid request: empty batch")
    if len(items) > MAX_BATCH:
        raise InvalidRequest(
            f"invalid request: batch of {len(items)} requests; at most {MAX_BATCH} allowed",
            {"max_batch": MAX_BATCH},
        )
    return True, [_parse_item(bytes(item)) for item in items]


def error_response(error: RpcError, id: Id) -> ErrorResponse:
    return ErrorResponse(error=ErrorObject(error.code, error.message, error.data), id=id)


def encode(message: ErrorResponse | ResultResponse | list[ErrorResponse | ResultResponse]) -> bytes:
    """One response line, newline included."""
    buf = bytearray()
    ENCODER.encode_into(message, buf)
    buf += b"\n"
    return bytes(buf)


# ---------------------------------------------------------------- methods ---


class Params(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of every method's params; unknown params are an error, not ignored."""


class NoParams(Params, frozen=True):
    pass


SessionId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Resource = Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]
Scene = Annotated[str, msgspec.Meta(max_length=256)]


class AppendParams(Params, frozen=True):
    session_id: SessionId
    category: Category
    resource: Resource
    payload: JsonObject  # kept as the client's JSON text, never decoded
    scene: Scene = ""


class ListParams(Params, frozen=True):
    session_id: SessionId
    category: Category | None = None
    resource: Resource | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    before_id: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=2**63 - 1,
                description=(
                    "only events with an id below this one: the next_before_id of the "
                    "previous page, to page past an answer bounded by limit or by "
                    "socket.max_message_bytes"
                ),
            ),
        ]
        | None
    ) = None


class ImageParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    path: str | None = None
    url: str | None = None
    data: str | None = None
    mime: str | None = None


class AnalyzeParams(Params, frozen=True):
    conversation_id: SessionId
    image: ImageParams | None = None
    resource: Resource | None = None
    scene: Scene = ""
    category: Category = "context_analysis"
    refresh: bool = False
    wait: Literal["first", "best"] = "first"
    timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None


class BestParams(Params, frozen=True):
    session_id: SessionId
    category: Category
    resource: Resource
    scene: Scene = ""


Handler = Callable[[Any], Awaitable[Any]]


class Method(msgspec.Struct, frozen=True):
    """A method as the server validates it and ``rpc.discover`` describes it."""

    name: str
    params: type[Params]
    result: Any
    handler: Handler
    summary: str
    # Methods that only read the daemon's own state answer while draining.
    while_draining: bool = False
    # The handler never blocks (no await that waits): the connection's reader
    # runs it itself instead of starting a task for it, and it is neither
    # counted in flight nor refused at max_in_flight.
    inline: bool = False
    # A synchronous path the reader tries first (a cache hit); None from it
    # means "take the normal path".
    fast: Callable[[Any], Any] | None = None
    alias_of: str | None = None


_PARAM_DECODERS: dict[
    type[Params], tuple[msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]]
] = {}


def _field_spec(f: msgspec.structs.FieldInfo) -> tuple[Any, ...]:
    if f.required:
        return (f.name, f.type)
    if f.default_factory is not msgspec.NODEFAULT:
        return (f.name, f.type, msgspec.field(default_factory=f.default_factory))
    return (f.name, f.type, f.default)


def _decoders(
    params_type: type[Params],
) -> tuple[msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]]:
    """Decoders by name and by position (an ``array_like`` twin with the same fields)."""
    pair = _PARAM_DECODERS.get(params_type)
    if pair is None:
        positional = msgspec.defstruct(
            f"{params_type.__name__}Positional",
            [_field_spec(f) for f in msgspec.structs.fields(params_type)],
            array_like=True,
            kw_only=True,
            forbid_unknown_fields=True,
        )
        pair = (msgspec.json.Decoder(params_type), msgspec.json.Decoder(positional))
        _PARAM_DECODERS[params_type] = pair
    return pair


def decode_params(raw: Raw | UnsetType, params_type: type[Params]) -> Any:
    """Decode ``params`` for a method: an object by name, an array by position."""
    by_name, by_position = _decoders(params_type)
    try:
        if raw is UNSET:
            return by_name.decode(b"{}")
        if bytes(memoryview(raw)[:1]) == b"[":  # one byte, not a copy of megabytes
            positional = by_position.decode(raw)
            return params_type(**msgspec.structs.asdict(positional))
        return by_name.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        reason, field = _what_is_wrong(text, params_type)
        if reason == "wrong_arity":
            text = f"wrong number of positional params ({text})"
        raise InvalidParams(
            f"invalid params: {text}", {"detail": text}, reason=reason, field=field
        ) from None


_AT: Final = re.compile(r" - at `\$((?:\[\d+\]|\.[^`]*)*)`$")
_NAMED: Final = re.compile(r"^Object (missing required|contains unknown) field `([^`]*)`")


def _what_is_wrong(text: str, params_type: type[Params]) -> tuple[InvalidParamsReason, str | None]:
    """``data.reason`` and ``data.field`` (dotted, by name even for params
    given by position) of msgspec's validation message."""
    if text.startswith("Expected `array` of"):
        return "wrong_arity", None
    at = _AT.search(text)
    path = at.group(1) if at else ""
    names = [f.name for f in msgspec.structs.fields(params_type)]
    first = re.match(r"^\[(\d+)\]", path)
    if first and int(first.group(1)) < len(names):  # by position: the param's name
        path = "." + names[int(first.group(1))] + path[first.end() :]
    parts = [p for p in path.split(".") if p]
    named = _NAMED.match(text)
    reason: InvalidParamsReason = "invalid_value"
    if named:
        reason = "missing_field" if named.group(1) == "missing required" else "unknown_field"
        parts.append(named.group(2))
    return reason, ".".join(parts) or None
