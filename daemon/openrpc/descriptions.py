"""The descriptions ``rpc.discover`` gives every param and field (a
``msgspec.Meta(description=...)`` on a field wins), and the schema of its own
result. A field added to a result Struct needs one here or in its Meta:
tests/test_openrpc.py fails until it has one."""

from __future__ import annotations

from typing import Any, Final

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
            "position": "queued: the job's place in the OCR queue when it gave up (1: next)",
            "expected_wait_s": "queued: seconds it expected to wait for an OCR worker",
            "waiting": "overloaded: jobs waiting for an OCR worker (the queue is full)",
            "max_queue": "overloaded: strategies[].max_queue",
            "waited_s": "queued or timeout, once it had a worker: seconds it waited for one",
            "read_s": "queued or timeout, once it had a worker: seconds it read before "
            "its time ran out",
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

DISCOVER_RESULT: Final[dict[str, Any]] = {
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
