"""The OpenRPC 1.3 document ``rpc.discover`` answers; no trio, no I/O.

Generated from the Structs that validate params and results (msgspec's JSON
Schema), then made into what OpenRPC tools read, JSON Schema draft-07:

* a fixed-length array (``bbox``) is ``items: [...]`` + ``additionalItems:
  false``, never 2020-12's ``prefixItems`` (a draft-07 validator ignores it
  and reads ``items: false`` as "no items at all");
* every ``enum`` and ``const`` carries its ``type`` (else generators type it
  ``any``);
* a component named like a method's generated type (``MergeStep`` and the
  alias ``merge_step``) is renamed ``<Name>Object``, so code generated from
  the document compiles;
* every param, field and result has a ``description`` (``FIELD_DOCS``,
  ``PARAM_DOCS``; a ``msgspec.Meta(description=...)`` on a field wins);
* the errors are in ``components.errors``, each with the JSON Schema of its
  ``error.data`` as ``data``, and every method lists the ones it can give.

``tests/test_openrpc.py`` checks results and errors of a live daemon against
the document with a draft-07 validator, the document against the OpenRPC
meta-schema, and TypeScript generated from it under ``tsc --strict``.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType

from daemon.errors import BadInputReason, InvalidParamsReason, StrategyErrorKind
from daemon.protocol import ENCODER, Method

REF: Final = "#/components/schemas/{name}"


# ------------------------------------------------------ error data types ---


class BadInputData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32003: why the image was refused, and which field."""

    reason: BadInputReason
    field: str
    path: str | UnsetType = UNSET
    size: int | UnsetType = UNSET
    max_image_bytes: int | UnsetType = UNSET
    max_length: int | UnsetType = UNSET
    given: list[str] | UnsetType = UNSET
    errno: int | UnsetType = UNSET


class InvalidParamsData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32602."""

    reason: InvalidParamsReason
    field: str | UnsetType = UNSET
    detail: str | UnsetType = UNSET
    resource: str | UnsetType = UNSET


class InvalidRequestData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32600, when a limit was passed."""

    max_batch: int | UnsetType = UNSET
    max_message_bytes: int | UnsetType = UNSET
    line_timeout: float | UnsetType = UNSET


class MethodNotFoundData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32601."""

    method: str


class StrategyFailure(msgspec.Struct, frozen=True, kw_only=True):
    """One strategy's failure in a race."""

    error: StrategyErrorKind
    detail: str


class AllStrategiesFailedData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32001."""

    strategies: dict[str, StrategyFailure]


class DeadlineExceededData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32002."""

    pending: list[str]


class ForbiddenData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32004: the peer's credentials (SO_PEERCRED)."""

    uid: int
    gid: int


class OverloadedData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32005: the figures of the limit that was reached."""

    in_flight: int | UnsetType = UNSET
    max_in_flight: int | UnsetType = UNSET
    max_connections: int | UnsetType = UNSET
    races: int | UnsetType = UNSET
    max_races: int | UnsetType = UNSET
    image_bytes: int | UnsetType = UNSET
    max_race_image_bytes: int | UnsetType = UNSET


# name, code, message, the Struct of error.data (None: no data)
ERRORS: Final[list[tuple[str, int, str, type[msgspec.Struct] | None]]] = [
    ("parse_error", -32700, "parse error", None),
    ("invalid_request", -32600, "invalid request", InvalidRequestData),
    ("method_not_found", -32601, "method not found", MethodNotFoundData),
    ("invalid_params", -32602, "invalid params", InvalidParamsData),
    ("internal_error", -32603, "internal error", None),
    ("shutting_down", -32000, "the daemon is draining; request not started", None),
    (
        "all_strategies_failed",
        -32001,
        "every strategy failed or gave invalid output",
        AllStrategiesFailedData,
    ),
    (
        "deadline_exceeded",
        -32002,
        "the request's deadline passed before a valid result",
        DeadlineExceededData,
    ),
    (
        "bad_input",
        -32003,
        "image unreadable, too large, not an image or not allowed",
        BadInputData,
    ),
    ("forbidden", -32004, "the peer's uid/gid is not allowed", ForbiddenData),
    ("overloaded", -32005, "connection or in-flight limit reached", OverloadedData),
]
# Errors any method can give; analyze adds the rest.
_COMMON: Final = ["invalid_params", "internal_error", "shutting_down", "overloaded"]
_ANALYZE: Final = ["all_strategies_failed", "deadline_exceeded", "bad_input"]


# ---------------------------------------------------------- descriptions ---

_RESOURCE = "cache key of the input: sha256:<hex> of the image bytes by default, or the image URL"
PARAM_DOCS: Final[dict[str, dict[str, str]]] = {
    "AnalyzeParams": {
        "conversation_id": "the session the screenshot belongs to (1-256 characters)",
        "image": (
            "the screenshot: exactly one of path, url, data; required unless resource "
            "names a cached result"
        ),
        "resource": _RESOURCE + "; without image, it must name a cached result",
        "scene": "free-form scene tag, part of the cache key",
        "category": "event category, part of the cache key",
        "refresh": "skip the cache read (results are still written)",
        "wait": (
            "first: answer with the first valid result; best: wait for the best-ranked strategy"
        ),
        "timeout": "this request's deadline in seconds (default llm.request_timeout)",
    },
    "AppendParams": {
        "session_id": "the session (conversation id) the event belongs to",
        "category": "event category, part of the cache key",
        "resource": "cache key of the input the event is about",
        "payload": "the event's content, stored as given (a JSON object)",
        "scene": "free-form scene tag, part of the cache key",
    },
    "ListParams": {
        "session_id": "the session whose events are listed",
        "category": "only events of this category",
        "resource": "only events of this resource",
        "limit": "at most this many events (1-1000); a page also ends before 16 MiB",
        "before_id": "only events with an id below this one (next_before_id of the last page)",
    },
    "BestParams": {
        "session_id": "the session (conversation id)",
        "category": "event category",
        "resource": "cache key of the input",
        "scene": "scene tag",
    },
}

FIELD_DOCS: Final[dict[str, dict[str, str]]] = {
    "ImageParams": {
        "path": (
            "an absolute path on the daemon's host, inside one of inputs.allowed_dirs "
            "(symlinks resolved); a regular file of at most inputs.max_image_bytes"
        ),
        "url": "an http(s) URL the provider fetches (ctxd itself never fetches it)",
        "data": "the image bytes, base64 (standard alphabet, padded)",
        "mime": "the image's type as the client believes it; ctxd trusts the magic bytes",
    },
    "MergeStep": {
        "participants": "who is in the chat",
        "layout": "which side each speaker's bubbles are on",
        "bubbles": "the message bubbles, top to bottom (by y1, then x1)",
        "conversation": "one message per bubble, in the same order",
        "summary": "a one-line summary, when the strategy gives one",
    },
    "Participants": {
        "user": "the app's own user, as named in the screenshot (null: not shown)",
        "talker": "the other side of the chat (null: not shown)",
        "group": "a group chat's title; absent when not a group or unknown",
    },
    "Layout": {
        "left": "who writes the bubbles on the left",
        "right": "who writes the bubbles on the right (never the same as left)",
    },
    "Bubble": {
        "speaker": "who wrote the bubble",
        "side": "the side the bubble is on (the side layout gives its speaker)",
        "bbox": "the bubble's box in pixels of the screenshot: [x1, y1, x2, y2], x1 < x2, y1 < y2",
        "text": "the bubble's text (may be empty when kind is not text)",
        "kind": "what the bubble holds; absent means text",
        "sender": "the name shown with the bubble (groups); absent when unknown",
        "time": "the time as shown in or near the bubble; absent when not shown",
        "quote": "a quoted (replied-to) message inside the bubble; absent when none",
    },
    "Quote": {
        "sender": "who wrote the quoted message (null: not shown)",
        "text": "the quoted text",
    },
    "Message": {
        "speaker": "who wrote the message",
        "text": "the message's text",
        "sender": "the name shown with it (groups); absent when unknown",
        "kind": "what the bubble holds; absent means text",
    },
    "AnswerProvenance": {
        "strategy": "the strategy whose result this is",
        "model": "the model that produced it (as the provider reported it served)",
        "cached": "true when answered from a stored event",
        "event_id": "the stored event's id; null when the result could not be stored",
        "created_at": "when the result was stored (Unix time, seconds)",
        "latency_ms": "this request's time in the daemon, in milliseconds",
    },
    "AnalyzeResult": {
        "result": "the conversation in the screenshot",
        "provenance": "where the result came from",
        "pending": "higher-ranked strategies still running in the background, best first",
    },
    "AppendResult": {"id": "the stored event's id (durable before this answer)"},
    "EventsResult": {
        "events": "the events, newest first",
        "next_before_id": "pass as before_id for the next page; null once there is none",
    },
    "Event": {
        "id": "the event's id: increasing, never reused",
        "ts": "when it was stored (Unix time, seconds)",
        "session_id": "the session (conversation id)",
        "category": "event category",
        "resource": "cache key of the input",
        "scene": "scene tag",
        "strategy": "payload._strategy, or unknown",
        "model": "payload._model, or unknown",
        "payload": "the event's content as stored (analyze results carry _model, _strategy)",
        "provenance": "how a race's result was made; null for an app's own event",
    },
    "Provenance": {
        "latency_ms": "the strategy's time, in milliseconds",
        "provider": "the provider (config providers key) called",
        "requested_model": "the model ctxd asked for",
        "served_model": "the model the provider said it served",
        "usage": "token counts and cost the provider reported",
        "race_id": "the race that produced the event",
        "served_by": "the upstream provider that ran the model (OpenRouter)",
    },
    "Usage": {
        "prompt_tokens": "tokens of the request",
        "completion_tokens": "tokens of the answer",
        "total_tokens": "prompt plus completion tokens",
        "cost": "what the provider billed, USD",
    },
    "BestResult": {"event": "the event analyze would serve from the cache; null when none"},
    "HealthResult": {
        "ok": "always true when the daemon answers",
        "state": "the lifecycle state",
    },
    "StatusResult": {
        "version": "ctxd's version",
        "pid": "the daemon's process id",
        "uptime_s": "seconds since the start",
        "state": "the lifecycle state",
        "connections": "open client connections",
        "in_flight": "requests being served (methods that may wait)",
        "background": "background tasks of the supervisor",
        "store": "the event store",
        "cache": "cache counters since the start",
        "strategies": "figures per strategy, by name",
        "drain": "the drain, while draining",
    },
    "BackgroundStatus": {
        "count": "background tasks running",
        "max": "llm.max_background_tasks",
        "by_strategy": "running tasks by strategy name",
    },
    "StoreStatus": {
        "path": "the store's directory",
        "events": "events stored",
        "map_size": "the LMDB map size, bytes",
        "used_bytes": "bytes in use",
        "abandoned": "appends whose caller stopped waiting before the commit",
    },
    "CacheStatus": {
        "hits": "analyze calls answered from the cache",
        "misses": "analyze calls that started a race",
        "coalesced": "analyze calls that joined a running race",
        "upgrades": "higher-ranked strategies started in the background on a hit",
    },
    "LatencyStatus": {
        "p50": "median, milliseconds (null: no call yet)",
        "p95": "95th percentile, milliseconds",
        "p99": "99th percentile, milliseconds",
    },
    "StrategyStatus": {
        "model": "the configured model (local_ocr: the engine and its version)",
        "rank": "the strategy's rank (higher is better)",
        "calls": "calls started",
        "wins": "results accepted (stored as the best so far)",
        "invalid": "results that failed validation",
        "errors": "calls that failed (HTTP, connection, ...)",
        "timeouts": "calls past the strategy's timeout",
        "cancelled": "calls cancelled (a better result, the drain)",
        "tokens": "total tokens the provider reported",
        "latency_ms": "latency percentiles of valid results over the recent calls",
        "state": (
            "ready; resting (the provider said something that will not change soon); "
            "not_configured (it can never run: no API key, no ocr extra), left out of races"
        ),
        "rest_reason": "why it rests, or why it is not_configured",
        "rest_s": "seconds until it is tried again",
        "cost_usd": "what the provider billed for its calls, USD",
        "served_by": "calls by upstream provider",
    },
    "DrainStatus": {
        "deadline_s": "seconds until whatever still runs is cancelled; null unless draining"
    },
}

_LIMIT = "the limit that was reached"
FIELD_DOCS.update(
    {
        "BadInputData": {
            "reason": "why the image was refused (docs/protocol.md lists the reasons)",
            "field": "the param at fault: image, image.path, image.url or image.data",
            "path": "the image.path as sent",
            "size": "the image's size in bytes",
            "max_image_bytes": "inputs.max_image_bytes",
            "max_length": "the longest image.url accepted",
            "given": "the image sources that were given",
            "errno": "the OS error number of the open",
        },
        "InvalidParamsData": {
            "reason": "what is wrong (docs/protocol.md lists the reasons)",
            "field": "the param at fault, dotted (image.path), by name even for positional params",
            "detail": "the validator's own words",
            "resource": "the resource that is not cached",
        },
        "InvalidRequestData": {
            "max_batch": "the most requests one batch may hold",
            "max_message_bytes": "socket.max_message_bytes",
            "line_timeout": "socket.line_timeout, seconds",
        },
        "MethodNotFoundData": {"method": "the method asked for"},
        "StrategyFailure": {
            "error": "the kind of failure",
            "detail": "one line saying what happened",
        },
        "AllStrategiesFailedData": {"strategies": "each strategy's failure, by name"},
        "DeadlineExceededData": {"pending": "strategies still running; their result is cached"},
        "ForbiddenData": {"uid": "the peer's uid", "gid": "the peer's gid"},
        "OverloadedData": {
            "in_flight": "requests running",
            "max_in_flight": "socket.max_in_flight, " + _LIMIT,
            "max_connections": "socket.max_connections, " + _LIMIT,
            "races": "races alive",
            "max_races": "llm.max_races, " + _LIMIT,
            "image_bytes": "bytes of screenshots the races hold",
            "max_race_image_bytes": "llm.max_race_image_mb in bytes, " + _LIMIT,
        },
    }
)

_DISCOVER_RESULT: Final[dict[str, Any]] = {
    "title": "OpenrpcDocument",
    "description": "this document: OpenRPC 1.3 (meta-schema https://meta.open-rpc.org/)",
    "type": "object",
    "required": ["openrpc", "info", "methods"],
    "properties": {
        "openrpc": {"type": "string", "description": "the OpenRPC version"},
        "info": {
            "type": "object",
            "description": "title and version of the API",
            "required": ["title", "version"],
            "properties": {
                "title": {"type": "string", "description": "ctxd"},
                "version": {"type": "string", "description": "ctxd's version"},
            },
        },
        "methods": {
            "type": "array",
            "description": "every method the daemon serves",
            "items": {"type": "object"},
        },
        "components": {"type": "object", "description": "schemas and errors"},
    },
}


# ------------------------------------------------------------ the document --


def pascal(name: str) -> str:
    """The type name OpenRPC generators give a method (``merge_step`` → ``MergeStep``)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name))


def _json_type(values: list[Any]) -> str | list[str] | None:
    names = []
    for value in values:
        if isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int):
            kind = "integer"
        elif isinstance(value, float):
            kind = "number"
        elif isinstance(value, str):
            kind = "string"
        elif value is None:
            kind = "null"
        else:
            return None
        if kind not in names:
            names.append(kind)
    return names[0] if len(names) == 1 else names


def draft07(node: Any) -> Any:
    """``node`` (msgspec's JSON Schema) in draft-07 forms, recursively."""
    if isinstance(node, list):
        return [draft07(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: draft07(value) for key, value in node.items()}
    if "prefixItems" in out:
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = False
    for key in ("enum", "const"):
        if key in out and "type" not in out:
            values = out[key] if key == "enum" else [out[key]]
            kind = _json_type(values)
            if kind is not None:
                out["type"] = kind
    return out


def _rename(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_rename(item, names) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rename(value, names) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        out["$ref"] = REF.format(name=names.get(name, name))
    return out


def _describe(components: dict[str, Any]) -> None:
    """Add FIELD_DOCS' descriptions to the properties that have none."""
    for name, schema in components.items():
        docs = FIELD_DOCS.get(name, {})
        for field, prop in schema.get("properties", {}).items():
            if "description" not in prop and field in docs:
                prop["description"] = docs[field]


def _errors() -> dict[str, Any]:
    errors: dict[str, Any] = {}
    for name, code, message, data_type in ERRORS:
        entry: dict[str, Any] = {"code": code, "message": message}
        if data_type is not None:
            # The JSON Schema of this error's ``data`` (OpenRPC leaves it to the server).
            entry["data"] = {"$ref": REF.format(name=data_type.__name__)}
        errors[name] = entry
    return errors


def _errors_of(method: Method) -> list[str]:
    analyze = method.params.__name__ == "AnalyzeParams"
    return _COMMON + _ANALYZE if analyze else _COMMON


def openrpc_document(methods: list[Method], version: str) -> dict[str, Any]:
    """The OpenRPC 1.3 document of ``methods``, from the Structs that validate them."""
    data_types = [t for *_, t in ERRORS if t is not None]
    types = [m.params for m in methods] + [m.result for m in methods] + data_types
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schemas, components = draft07(schemas), draft07(components)
    _describe(components)
    n = len(methods)
    params_of = {}
    for i, method in enumerate(methods):
        name = schemas[i]["$ref"].rsplit("/", 1)[1]
        params_of[method.name] = components[name]
    # Params are inlined in each method: their Structs are no components.
    param_names = {m.params.__name__ for m in methods}
    idents = {pascal(m.name) for m in methods}
    renames = {
        name: f"{name}Object" for name in components if name in idents and name not in param_names
    }
    kept = {
        renames.get(name, name): schema
        for name, schema in components.items()
        if name not in param_names
    }
    for new in renames.values():
        kept[new]["title"] = new
    kept = _rename(kept, renames)
    entries = []
    for i, method in enumerate(methods):
        params_schema = _rename(params_of[method.name], renames)
        required = set(params_schema.get("required", ()))
        docs = PARAM_DOCS.get(method.params.__name__, {})
        params = []
        for name, schema in params_schema.get("properties", {}).items():
            param: dict[str, Any] = {"name": name, "required": name in required}
            text = schema.get("description") or docs.get(name)
            if text:
                param["description"] = text
            param["schema"] = schema
            params.append(param)
        if method.result is msgspec.Raw:  # rpc.discover: this document
            result_schema: dict[str, Any] = _DISCOVER_RESULT
        else:
            result_schema = _rename(schemas[n + i], renames)
        entry: dict[str, Any] = {
            "name": method.name,
            "summary": method.summary,
            "paramStructure": "either",
            "params": params,
            "result": {
                "name": f"{method.name}_result",
                "description": method.summary,
                "schema": result_schema,
            },
            "errors": [
                {"$ref": f"#/components/errors/{name}"}
                for name in _COMMON
                + (_ANALYZE if method.params.__name__ == "AnalyzeParams" else [])
            ],
        }
        if method.alias_of:
            entry["description"] = f"Alias of {method.alias_of}."
        entries.append(entry)
    return {
        "openrpc": "1.3.2",
        "info": {"title": "ctxd", "version": version},
        "methods": entries,
        "components": {"schemas": kept, "errors": _errors()},
    }


def encoded_document(methods: list[Method], version: str) -> bytes:
    """``openrpc_document`` as JSON text, what ``rpc.discover`` sends."""
    return ENCODER.encode(openrpc_document(methods, version))


# ------------------------------------------------- Python types (clients/) --

GENERATED_BEGIN: Final = "# --- generated by daemon/openrpc.py from rpc.discover: do not edit ---"
GENERATED_END: Final = "# --- end of generated code ---"
QUOTES: Final = '"' * 3
_PY_TYPES: Final = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "None",
}


def _py(schema: Any) -> str:
    """The Python type (a TypedDict's annotation) of a draft-07 schema."""
    if not isinstance(schema, dict) or not schema:
        return "Any"
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    if "anyOf" in schema:
        return " | ".join(dict.fromkeys(_py(s) for s in schema["anyOf"]))
    if "enum" in schema or "const" in schema:
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        return f"Literal[{', '.join(msgspec.json.encode(v).decode() for v in values)}]"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_py({**schema, "type": k}) for k in kind)
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, list):
            return f"tuple[{', '.join(_py(i) for i in items)}]"
        return f"list[{_py(items)}]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"dict[str, {_py(extra) if isinstance(extra, dict) else 'Any'}]"
    return _PY_TYPES.get(str(kind), "Any")


def python_types(document: dict[str, Any]) -> str:
    """TypedDicts of every component schema of ``document``, and ``RESULTS``
    (method name → its result's type name): the code between the markers of
    clients/async_client.py (``python -m daemon.openrpc --python-types``)."""
    lines = [GENERATED_BEGIN]
    for name, schema in sorted(document["components"]["schemas"].items()):
        properties = schema.get("properties")
        if properties is None:
            continue
        required = set(schema.get("required", ()))
        lines += ["", "", f"class {name}(TypedDict):"]
        if schema.get("description"):
            text = " ".join(str(schema["description"]).split()).replace(QUOTES, "'")
            wrapped = textwrap.wrap(text, 88)
            if len(wrapped) == 1:
                lines.append(f"    {QUOTES}{wrapped[0]}{QUOTES}")
            else:
                lines += [f"    {QUOTES}{wrapped[0]}", *(f"    {w}" for w in wrapped[1:])]
                lines.append(f"    {QUOTES}")
            lines.append("")
        for field, prop in properties.items():
            kind = _py(prop)
            kind = kind if field in required else f"NotRequired[{kind}]"
            lines.append(f"    {field}: {kind}")
    lines += ["", "", "RESULTS: Final = {"]
    for method in document["methods"]:
        result = method["result"]["schema"]
        kind = _py(result) if "$ref" in result else "dict[str, Any]"
        lines.append(f'    "{method["name"]}": "{kind}",')
    lines += ["}", GENERATED_END]
    return "\n".join(lines) + "\n"
