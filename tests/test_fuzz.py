"""Fuzzing the protocol path: bytes in, response line out, no socket (issue 6).

Whatever the line, no exception escapes, the output is one valid JSON-RPC
response (or a batch of them) with the right id, and a notification never
produces output. ``make test`` runs a bounded number of examples;
``make fuzz`` runs the long profile (HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import load_config
from daemon.rpc import Connection, _parse
from daemon.service import Service
from daemon.store import Store
from tests.conftest import write_config
from tests.helpers import make_service

METHODS = [
    "health",
    "status",
    "rpc.discover",
    "events.append",
    "events.list",
    "events.best",
    "analyze",
    "merge_step",
    "sleep",
    "boom",
    "nope",
    "",
    "rpc.",
    "\u0000",
    "事件",
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=10)

params_for_methods = st.fixed_dictionaries(
    {},
    optional={
        "session_id": st.text(max_size=300),
        "conversation_id": st.text(max_size=300),
        "category": st.text(max_size=10),
        "resource": st.text(max_size=10),
        "scene": st.text(max_size=5),
        "payload": json_values,
        "limit": st.integers(min_value=-5, max_value=2000),
        "image": st.fixed_dictionaries(
            {},
            optional={
                "url": st.text(max_size=30),
                "data": st.text(max_size=30),
                "path": st.text(max_size=30),
            },
        ),
        "wait": st.sampled_from(["first", "best", "soon", ""]),
        "seconds": st.floats(min_value=0, max_value=0.001),
    },
)


@st.composite
def requests(draw: st.DrawFn) -> Any:
    message: dict[str, Any] = {}
    if draw(st.booleans()):
        message["jsonrpc"] = draw(st.sampled_from(["2.0", "2.0", "1.0", 2.0, None, ""]))
    if draw(st.integers(0, 9)):
        message["method"] = draw(st.sampled_from(METHODS) | st.text(max_size=10) | json_scalars)
    if draw(st.booleans()):
        message["params"] = draw(params_for_methods | json_values)
    if draw(st.booleans()):
        message["id"] = draw(ids | json_values)
    return message


messages = requests() | st.lists(requests(), max_size=5) | json_values

EDGE_CASES = [
    b"[" * 5000 + b"]" * 5000,
    b"\xef\xbb\xbf" + b'{"jsonrpc":"2.0","method":"health","id":1}',
    b'{"jsonrpc":"2.0","method":"health","id":' + b"9" * 5000 + b"}",
    b'{"jsonrpc":"2.0","method":"health","id":"\\ud800"}',
    b'{"jsonrpc":"2.0","method":"health","id":1,"id":2}',
    b'{"jsonrpc":"2.0","method":"he\x01alth","id":1}',
    b"\xff\xfe\x00",
    b'{"jsonrpc":"2.0","method":"health","id":1}\r',
    b'[{"jsonrpc":"2.0","method":"health"}]',
    b'[{"id":-9223372036854775809}]',  # below int64: still echoed (found by make fuzz)
    b'{"jsonrpc":"2.0","method":"health","id":18446744073709551615}',
    b'{"jsonrpc":"2.0","method":"health","id":18446744073709551616}',
]


def raw_lines() -> st.SearchStrategy[bytes]:
    encoded = messages.map(
        lambda m: json.dumps(m, ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    mutated = st.tuples(encoded, st.integers(0, 200), st.binary(max_size=3)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
    )
    return encoded | mutated | st.binary(max_size=60) | st.sampled_from(EDGE_CASES)


def valid_id(value: Any) -> bool:
    """An id the daemon must echo: a string, null, or an integer it can hold."""
    if value is None or isinstance(value, str):
        return True
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**64


def check_response(response: Any, request: Any) -> None:
    assert isinstance(response, dict), response
    assert response["jsonrpc"] == "2.0"
    assert ("result" in response) != ("error" in response), response
    assert set(response) <= {"jsonrpc", "result", "error", "id"}
    assert "id" in response
    if "error" in response:
        error = response["error"]
        assert isinstance(error["code"], int)
        assert isinstance(error["message"], str)
        assert error["message"]
    if "error" in response and response["error"]["code"] == -32700:
        # Not JSON to the daemon (Python's json is laxer: it takes a BOM, NaN).
        assert response["id"] is None
        return
    if isinstance(request, dict) and "id" in request and valid_id(request["id"]):
        # Whatever else is wrong with it, a request with a usable id gets it back.
        assert response["id"] == request["id"], (request, response)
    if isinstance(request, dict) and response["id"] is not None:
        assert response["id"] == request.get("id"), (request, response)  # never made up
    if "result" in response and request is not None:  # None: a batch item
        assert isinstance(request, dict)
        assert "id" in request


def is_notification(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.get("jsonrpc") == "2.0"
        and isinstance(item.get("method"), str)
        and "id" not in item
        and (("params" not in item) or isinstance(item["params"], (list, dict)))
    )


@asynccontextmanager
async def serving() -> AsyncIterator[Service]:
    """A service with a store of its own, for one example (hypothesis runs each
    example in a fresh trio run, so nothing may outlive it)."""
    root = Path(tempfile.mkdtemp(prefix="ctxd-fuzz-", dir="/tmp"))
    config = load_config(
        write_config(root, inputs={"allowed_dirs": [str(root / "none")], "max_image_bytes": 1000})
    )
    store = Store.open(config.store, config.rank_of())
    try:
        svc = make_service(config, store)
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run_writer)
            await nursery.start(svc.supervisor.serve)
            yield svc
            nursery.cancel_scope.cancel()
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(line=raw_lines())
async def test_any_line_gets_a_valid_answer_or_none(line: bytes) -> None:
    async with serving() as service:
        _client, server = trio.testing.memory_stream_pair()
        connection = Connection(server, service, service.config.socket)
        with trio.fail_after(10):
            output = await connection._respond(_parse(line))
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):
        request = None
    if output is None:
        # Only a notification, or a batch of nothing but notifications, is silent.
        assert is_notification(request) or (
            isinstance(request, list) and request and all(is_notification(r) for r in request)
        ), line[:200]
        return
    assert output.endswith(b"\n")
    assert output.count(b"\n") == 1
    response = json.loads(output)
    if isinstance(response, list):
        assert isinstance(request, list)
        assert 0 < len(response) <= len(request)
        echoed = [r["id"] for r in request if isinstance(r, dict) and "id" in r]
        for item in response:
            check_response(item, None)
            assert item["id"] is None or item["id"] in echoed, item
    else:
        check_response(response, request)
