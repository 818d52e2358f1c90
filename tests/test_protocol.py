"""The JSON-RPC 2.0 envelope, without I/O: parse_message and decode_params."""

from __future__ import annotations

import json

import msgspec
import pytest

from daemon.errors import InvalidParams, InvalidRequest, ParseError
from daemon.protocol import (
    MAX_BATCH,
    Invalid,
    NoParams,
    Params,
    Request,
    decode_params,
    parse_message,
)


def single(line: bytes) -> Request | Invalid:
    is_batch, items = parse_message(line)
    assert not is_batch
    assert len(items) == 1
    return items[0]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]', "malformed"),
        (
            b'[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
            b'{"jsonrpc": "2.0", "method"]',
            "malformed",
        ),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b'{"a": -Infinity}', "-Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "deep nesting"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "deep objects"),
        (b'{"jsonrpc":"2.0","method":"\xff","id":1}', "invalid UTF-8"),
        (b'{"jsonrpc":"2.0","method":"\xed\xa0\x80","id":1}', "raw surrogate bytes"),
        (b'{"jsonrpc":"2.0","method":"\\ud800","id":1}', "escaped lone surrogate"),
        (b'{"jsonrpc":"2.0","method":"a","id":1} {}', "two texts on one line"),
        (b"\xef\xbb\xbf{}", "BOM"),
        (b"", "empty"),
        (b'{"jsonrpc":"2.0","method":"a\x01","id":1}', "raw control character"),
    ],
)
def test_parse_errors(line: bytes, why: str) -> None:
    with pytest.raises(ParseError):
        parse_message(line)


def test_valid_request_and_notification() -> None:
    request = single(b'{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}')
    assert isinstance(request, Request)
    assert request.method == "subtract"
    assert request.id == 1
    assert not request.is_notification
    assert bytes(request.params) == b"[42, 23]"  # type: ignore[arg-type]
    note = single(b'{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}')
    assert isinstance(note, Request)
    assert note.is_notification
    null_id = single(b'{"jsonrpc": "2.0", "method": "x", "id": null}')
    assert isinstance(null_id, Request)
    assert null_id.id is None
    assert not null_id.is_notification


@pytest.mark.parametrize(
    ("line", "expected_id"),
    [
        (b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}', None),
        (b'{"jsonrpc": "1.0", "method": "x", "id": 7}', 7),
        (b'{"jsonrpc": 2.0, "method": "x", "id": "a"}', "a"),
        (b'{"method": "x", "id": 3}', 3),
        (b'{"jsonrpc": "2.0", "id": 4}', 4),
        (b'{"jsonrpc": "2.0", "method": "x", "id": [1]}', None),
        (b'{"jsonrpc": "2.0", "method": "x", "id": {"a": 1}}', None),
        (b'{"jsonrpc": "2.0", "method": "x", "id": 1.5}', None),
        (b'{"jsonrpc": "2.0", "method": "x", "id": ' + b"9" * 5000 + b"}", None),
        (b'{"jsonrpc": "2.0", "method": "x", "params": "bar", "id": 5}', 5),
        (b'{"jsonrpc": "2.0", "method": "x", "params": 3, "id": 6}', 6),
        (b'{"jsonrpc": "2.0", "method": "x", "params": null, "id": 8}', 8),
        (b"1", None),
        (b'"x"', None),
        (b"null", None),
    ],
)
def test_invalid_requests_keep_a_valid_id(line: bytes, expected_id: object) -> None:
    item = single(line)
    assert isinstance(item, Invalid)
    assert isinstance(item.error, InvalidRequest)
    assert item.id == expected_id


def test_big_numbers_in_params_are_not_a_parse_error() -> None:
    # A 5,000-digit number is valid JSON; only the method's params type can reject it.
    item = single(b'{"jsonrpc":"2.0","method":"x","params":[' + b"9" * 5000 + b'],"id":1}')
    assert isinstance(item, Request)


def test_batches() -> None:
    with pytest.raises(InvalidRequest, match="empty batch"):
        parse_message(b"[]")
    is_batch, items = parse_message(b"[1]")
    assert is_batch
    assert len(items) == 1
    assert isinstance(items[0], Invalid)
    is_batch, items = parse_message(b" [1,2,3] ")
    assert is_batch
    assert [type(i) for i in items] == [Invalid, Invalid, Invalid]
    mixed = json.dumps(
        [
            {"jsonrpc": "2.0", "method": "sum", "params": [1, 2, 4], "id": "1"},
            {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
            {"foo": "boo"},
        ]
    ).encode()
    _, items = parse_message(mixed)
    assert isinstance(items[0], Request)
    assert isinstance(items[1], Request)
    assert items[1].is_notification
    assert isinstance(items[2], Invalid)


def test_batch_cap() -> None:
    item = b'{"jsonrpc":"2.0","method":"health","id":1}'
    _, items = parse_message(b"[" + b",".join([item] * MAX_BATCH) + b"]")
    assert len(items) == MAX_BATCH
    with pytest.raises(InvalidRequest, match="at most 1000") as info:
        parse_message(b"[" + b",".join([item] * (MAX_BATCH + 1)) + b"]")
    assert info.value.data == {"max_batch": MAX_BATCH}


class Sum(Params, frozen=True):
    a: int
    b: int = 0
    tags: list[str] = msgspec.field(default_factory=list)


def raw(text: str) -> msgspec.Raw:
    return msgspec.Raw(text.encode())


def test_params_by_name_and_by_position() -> None:
    assert decode_params(raw('{"a": 1, "b": 2}'), Sum) == Sum(a=1, b=2)
    assert decode_params(raw("[1, 2]"), Sum) == Sum(a=1, b=2)
    assert decode_params(raw("[1]"), Sum) == Sum(a=1)
    assert decode_params(raw('[1, 2, ["x"]]'), Sum) == Sum(a=1, b=2, tags=["x"])
    assert decode_params(msgspec.UNSET, NoParams) == NoParams()
    assert decode_params(raw("[]"), NoParams) == NoParams()
    assert decode_params(raw("{}"), NoParams) == NoParams()


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ('{"b": 2}', "missing required field `a`"),
        ('{"a": "1"}', "Expected `int`, got `str` - at `$.a`"),
        ('{"a": 1, "c": 3}', "unknown field `c`"),
        ("[1, 2, [], 4]", "wrong number of positional params"),
        ("[]", "wrong number of positional params"),
        ("[" + "9" * 5000 + "]", "out of range"),
    ],
)
def test_bad_params(params: str, fragment: str) -> None:
    with pytest.raises(InvalidParams, match="invalid params") as info:
        decode_params(raw(params), Sum)
    assert fragment in info.value.message


def test_no_params_method_rejects_extra_params() -> None:
    with pytest.raises(InvalidParams):
        decode_params(raw("[1]"), NoParams)
    with pytest.raises(InvalidParams):
        decode_params(raw('{"x": 1}'), NoParams)


@pytest.mark.parametrize(
    ("params", "reason", "field"),
    [
        (b"{}", "missing_field", "conversation_id"),
        (b'{"conversation_id": 5}', "invalid_value", "conversation_id"),
        (b'{"conversation_id": "c", "imag": {}}', "unknown_field", "imag"),
        (b'{"conversation_id": "c", "image": {"pth": "/a"}}', "unknown_field", "image.pth"),
        (b'{"conversation_id": "c", "image": {"path": 1}}', "invalid_value", "image.path"),
        (b'{"conversation_id": "c", "timeout": -1}', "invalid_value", "timeout"),
        (b'["c", {"path": 1}]', "invalid_value", "image.path"),
        (b'["c", null, null, "", "x", false, "first", 1, "extra"]', "wrong_arity", None),
    ],
)
def test_invalid_params_say_reason_and_field(params: bytes, reason: str, field: str | None) -> None:
    """Issue 13, point 2: -32602's ``data.reason`` and ``data.field`` (by
    name, also for params given by position)."""
    from daemon.protocol import AnalyzeParams

    with pytest.raises(InvalidParams) as info:
        decode_params(msgspec.Raw(params), AnalyzeParams)
    data = info.value.data
    assert data is not None
    assert data["reason"] == reason
    assert data.get("field") == field
    assert data["detail"]
