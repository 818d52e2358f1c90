"""A provider's failure, read from its body: what to tell, whether to retry, whether to rest.

The shapes met (no I/O here; ``providers.py`` feeds the bytes in):

* OpenRouter: ``{"error": {"code": 402, "message": ..., "metadata":
  {"raw": <the upstream body, often JSON in a string>, "provider_name":
  ..., "retry_after_seconds": ...}}}``, with the HTTP status of
  ``error.code``; the same object inside a 200 (``choices[0].error`` with
  ``finish_reason: "error"``, or at the top level) when the model failed
  after the answer started;
* OpenAI: ``{"error": {"message", "type", "param", "code": "model_not_found"}}``
  and the ``x-should-retry`` header;
* others: a top-level ``message`` or ``detail``, ``error_type``, an
  ``availability: {"retryable": false}`` object, or plain text.

Never retried: 401 (key), 402 (credits), 403, an unknown or retired model
(404, or 400 saying so), a 429 that names a daily cap or quota,
``x-should-retry: false``, ``availability.retryable: false``. After a 401,
402, unknown model or daily cap the strategy *rests* (``Rest``): its calls
fail at once, with the same explanation, until the rest is over.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, Literal

import msgspec

RETRY_STATUS: Final = frozenset({408, 409, 425, 429})
MAX_DETAIL: Final = 400

# Rests, in seconds: long enough not to fail every request the same way,
# short enough that a fixed key or a top-up is picked up without a restart.
REST_AUTH: Final = 300.0
REST_CREDITS: Final = 300.0
REST_MODEL: Final = 900.0
REST_QUOTA: Final = 3600.0

_UNKNOWN_MODEL = re.compile(
    r"not a valid model|model[_ ]not[_ ]found|model_deprecated|no endpoints found"
    r"|unknown model|no such model|invalid model"
    r"|model\b.{0,80}\b(does not exist|not found|retired|deprecated|removed)",
    re.IGNORECASE,
)
# A 429 that is a cap for the day (rest), not a rate limit for the minute
# (retry): Google's per-minute 429s say "quota" too, so "quota" alone is not it.
_DAILY_CAP = re.compile(
    r"per[- _]?day|daily|free-models-per-day|insufficient_quota|requests per day|PerDay",
    re.IGNORECASE,
)
_PER_MINUTE = re.compile(r"per[- _]?min|PerMinute|\bRPM\b|\bTPM\b", re.IGNORECASE)

RestScope = Literal["provider", "strategy"]


class Rest(msgspec.Struct, frozen=True, kw_only=True):
    """A strategy (or every strategy of a provider) that does not call for a while."""

    reason: str  # "auth", "credits", "unknown model", "quota"
    seconds: float
    scope: RestScope


class ProviderFailure(msgspec.Struct, frozen=True, kw_only=True):
    detail: str
    retryable: bool
    delay: float | None = None  # what the body asks (metadata.retry_after_seconds)
    rest: Rest | None = None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _unwrap_raw(raw: Any) -> str | None:
    """``metadata.raw`` is the upstream body: often JSON in a string; its message."""
    if isinstance(raw, dict):
        inner = raw.get("error", raw)
        if isinstance(inner, dict):
            return _text(inner.get("message")) or _text(json.dumps(inner, ensure_ascii=False))
        return _text(inner) or None
    text = _text(raw)
    if text is None:
        return None
    if text[:1] in "{[":
        try:
            return _unwrap_raw(json.loads(text))
        except ValueError:
            pass
    return text


def parse_body(data: bytes) -> dict[str, Any] | None:
    """The error body as an object; a list of one (Gemini's OpenAI-compatible
    endpoint answers ``[{"error": ...}]``) is unwrapped."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, list) and value and isinstance(value[0], dict):
        value = value[0]
    return value if isinstance(value, dict) else None


def describe(
    status: int,
    body: dict[str, Any] | None,
    raw: bytes,
    *,
    where: str,
    should_retry: str | None = None,
    secret: str | None = None,
) -> ProviderFailure:
    """Classify one failure. ``status`` is the HTTP status, or the code an
    error inside a 200 carries; ``where`` names the provider for the detail."""
    error: Any = (body or {}).get("error")
    if not isinstance(error, dict):
        error = {"message": error} if isinstance(error, str) else {}
    metadata = error.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    message = (
        _text(error.get("message"))
        or _text((body or {}).get("message"))
        or _text((body or {}).get("detail"))
    )
    if message is None and body is None:
        message = _text(raw[:200].decode("utf-8", "replace")) or "(empty body)"
    upstream = _unwrap_raw(metadata.get("raw"))
    provider_name = _text(metadata.get("provider_name"))
    code = error.get("code")
    error_type = _text(error.get("type")) or _text((body or {}).get("error_type"))
    availability = error.get("availability") or (body or {}).get("availability")
    availability = availability if isinstance(availability, dict) else {}
    fallbacks = metadata.get("fallback_models") or error.get("fallback_models")

    label = f"HTTP {status}" + (f" from {provider_name} via {where}" if provider_name else "")
    parts = [f"{label}: {message or 'no message'}"]
    if upstream and upstream != message:
        parts.append(f"({upstream})")
    tags = [t for t in (error_type, code if isinstance(code, str) else None) if t]
    if tags:
        parts.append("[" + ", ".join(dict.fromkeys(tags)) + "]")
    if isinstance(fallbacks, list) and fallbacks:
        parts.append("; try " + ", ".join(str(f) for f in fallbacks[:3]))
    detail = " ".join(parts)
    if secret:  # a proxy that echoes the key it refused: never into status or an RPC error
        detail = detail.replace(secret, "***")
    searchable = " ".join(str(x) for x in (message, upstream, code, error_type) if x)

    retryable = status in RETRY_STATUS or 500 <= status <= 599
    rest: Rest | None = None
    if status == 401:
        # the caller's key: every strategy of the provider; an upstream's own
        # key (BYOK, the body names the provider): this strategy
        scope: RestScope = "strategy" if provider_name else "provider"
        retryable, rest = False, Rest(reason="auth", seconds=REST_AUTH, scope=scope)
    elif status == 402:
        # "requires more credits, or fewer max_tokens": about this request
        # (its strategy's max_tokens and price); a cheaper strategy may pass
        retryable, rest = False, Rest(reason="credits", seconds=REST_CREDITS, scope="strategy")
    elif status == 403:
        retryable = False
    elif status == 404 or (status == 400 and _UNKNOWN_MODEL.search(searchable)):
        retryable = False
        rest = Rest(reason="unknown model", seconds=REST_MODEL, scope="strategy")
    elif status == 429 and _DAILY_CAP.search(searchable) and not _PER_MINUTE.search(searchable):
        retryable = False
        rest = Rest(reason="quota", seconds=REST_QUOTA, scope="strategy")
    never = status in (401, 402, 403) or rest is not None
    if should_retry is not None and should_retry.strip().lower() in ("true", "false"):
        retryable = should_retry.strip().lower() == "true" and not never
    if availability.get("retryable") is False:
        retryable = False
    delay = metadata.get("retry_after_seconds")
    delay = float(delay) if isinstance(delay, int | float) and delay >= 0 else None
    return ProviderFailure(detail=detail[:MAX_DETAIL], retryable=retryable, delay=delay, rest=rest)
