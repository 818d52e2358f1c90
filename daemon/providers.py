"""OpenAI-compatible chat completions on one shared ``httpx2.AsyncClient`` per provider.

``Provider.complete`` sends ``POST {base_url}/chat/completions`` with the
screenshot as an ``image_url`` part and ``temperature`` 0, retries what is
worth retrying, and turns every failure into ``StrategyError`` with one of
SPEC's kinds:

==========================  ===============================================
what happened               kind (retried?)
==========================  ===============================================
no API key in the env       ``not_configured`` (no)
connect/read failure        ``connection`` (yes)
httpx2 phase timeout        ``timeout`` (yes)
408, 409, 429, 5xx          ``http_status`` (yes)
other 4xx                   ``http_status`` (no)
200 without usable text     ``invalid_output`` (no)
==========================  ===============================================

Backoff: exponential with full jitter (0.5 s * 2^attempt, capped at 8 s),
or what ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms`` asks,
when that is a sane number (0-60 s); at most ``max_retries`` retries. The
caller bounds the whole call with ``trio.fail_after(strategy.timeout)``; a
retry that could not even start before that deadline is not attempted, the
last error is raised instead.

Cancellation: a call cancelled at any point releases its connection (the
response is closed in a ``finally``); ``tests/test_providers.py`` cancels
many calls under pool contention and checks the pool still serves.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import logging
import math
import os
import random
import time
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, Final

import httpx2
import msgspec
import trio

from daemon.errors import StrategyError
from daemon.http11 import PoolTransport
from daemon.models import Usage

if TYPE_CHECKING:
    from collections.abc import Iterator

    from daemon.config import ProviderConfig, StrategyConfig

logger = logging.getLogger(__name__)

RETRY_STATUS: Final = frozenset({408, 409, 429})
BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 8.0
RETRY_AFTER_MAX: Final = 60.0
MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024

DEFAULT_PROMPT: Final = """\
You read a screenshot of a chat app and return the conversation in it as one
JSON object, and nothing else:
{"participants": {"user": <name of the app's own user or null>,
                  "talker": <name of the other party or null>},
 "layout": {"left": "talker" | "user", "right": "talker" | "user"},
 "bubbles": [{"speaker": "talker" | "user", "side": "left" | "right",
              "bbox": [x1, y1, x2, y2], "text": <the bubble's text>}],
 "summary": <one sentence or null>}
bbox is in image pixels, integers, x1 < x2, y1 < y2. Every bubble's side is
the side the layout gives its speaker. Leave out timestamps, the status bar
and system notices. Keep the text exactly as written."""

USER_TEXT: Final = "Extract the conversation from this chat screenshot."


class ImageInput(msgspec.Struct, frozen=True):
    """The screenshot as the provider receives it: a URL (http, https or data)."""

    url: str

    @classmethod
    def from_bytes(cls, data: bytes, mime: str) -> ImageInput:
        return cls(f"data:{mime};base64,{base64.b64encode(data).decode()}")


class Completion(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    served_model: str | None
    usage: Usage | None
    attempts: int


class _Choice(msgspec.Struct):
    message: dict[str, Any]


class _ChatResponse(msgspec.Struct):
    choices: list[_Choice]
    model: str | None = None
    usage: Usage | None = None


_RESPONSE: Final = msgspec.json.Decoder(_ChatResponse)
_ENCODER: Final = msgspec.json.Encoder()


def retry_delay(headers: httpx2.Headers, now: float | None = None) -> float | None:
    """The delay a response asks for, when it asks for a sane one (0-60 s)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000
        except ValueError:
            value = math.nan
        if 0 <= value <= RETRY_AFTER_MAX:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        value = when - (time.time() if now is None else now)
    if math.isfinite(value) and 0 <= value <= RETRY_AFTER_MAX:
        return value
    return None


def backoff(attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
    return rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


class Provider:
    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        client: httpx2.AsyncClient,
        api_key: str | None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.client = client
        self._api_key = api_key
        self._rng = rng or random.Random()

    @classmethod
    def from_config(
        cls, name: str, config: ProviderConfig, transport: httpx2.AsyncBaseTransport | None = None
    ) -> Provider:
        """A provider with its own pooled client (``transport`` for tests).

        The transport is ``daemon.http11.PoolTransport`` unless the environment
        sets a proxy for the provider's URL: httpx2's own transport speaks
        proxies, ours does not."""
        limits = httpx2.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_connections,
        )
        if transport is None and not _proxied(config.base_url):
            transport = PoolTransport(
                max_connections=config.max_connections,
                ssl_context=httpx2.create_ssl_context(),
            )
        client = httpx2.AsyncClient(
            base_url=config.base_url.rstrip("/") + "/",
            headers=config.headers,
            limits=limits,
            timeout=httpx2.Timeout(120.0, connect=10.0),
            transport=transport,
        )
        # None: the key's variable is unset (not_configured); "": no key needed.
        api_key = os.environ.get(config.api_key_env) if config.api_key_env else ""
        return cls(name, config, client, api_key)

    async def aclose(self) -> None:
        await self.client.aclose()

    def request_body(self, strategy: StrategyConfig, image: ImageInput) -> bytes:
        return _ENCODER.encode(
            {
                "model": strategy.model,
                "temperature": 0,
                "messages": [
                    {"role": "system", "content": strategy.prompt or DEFAULT_PROMPT},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": USER_TEXT},
                            {"type": "image_url", "image_url": {"url": image.url}},
                        ],
                    },
                ],
            }
        )

    async def complete(self, strategy: StrategyConfig, image: ImageInput) -> Completion:
        """The model's answer text, with the served model and token usage.

        Raises StrategyError; the caller bounds the time (see module docstring)."""
        if self._api_key is None:
            raise StrategyError(
                "not_configured", f"{self.config.api_key_env} is not set for provider {self.name}"
            )
        headers = {"content-type": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        body = self.request_body(strategy, image)
        attempt = 0
        while True:
            delay: float | None = None
            try:
                return await self._attempt(body, headers, attempt + 1)
            except _Retryable as retry:
                error = retry.error
                delay = retry.delay
            if attempt >= strategy.max_retries:
                raise error
            wait = delay if delay is not None else backoff(attempt, self._rng)
            if trio.current_time() + wait >= trio.current_effective_deadline():
                raise error  # the retry could not finish in time anyway
            logger.info(
                "%s: %s; retry %d of %d in %.2fs",
                strategy.name,
                error.detail,
                attempt + 1,
                strategy.max_retries,
                wait,
            )
            await trio.sleep(wait)
            attempt += 1

    async def _attempt(self, body: bytes, headers: dict[str, str], attempt: int) -> Completion:
        request = self.client.build_request(
            "POST", "chat/completions", content=body, headers=headers
        )
        with _transport_errors(f"from {self.name}"):
            response = await self.client.send(request, stream=True)
        try:
            with _transport_errors("reading the body"):
                data = await self._read(response)
        finally:
            await response.aclose()
        status = response.status_code
        if status != 200:
            detail = f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}"
            error = StrategyError("http_status", detail)
            if status in RETRY_STATUS or 500 <= status <= 599:
                raise _Retryable(error, retry_delay(response.headers))
            raise error
        return self._parse(data, attempt)

    async def _read(self, response: httpx2.Response) -> bytes:
        chunks = []
        size = 0
        # Decoded bytes, so a gzip bomb counts at its real size; aclosing, so
        # leaving early closes the generator now, not at GC time.
        async with contextlib.aclosing(response.aiter_bytes()) as body:
            async for chunk in body:
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise StrategyError(
                        "invalid_output", f"response larger than {MAX_RESPONSE_BYTES} bytes"
                    )
                chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, data: bytes, attempt: int) -> Completion:
        try:
            parsed = _RESPONSE.decode(data)
        except msgspec.DecodeError as exc:  # includes ValidationError
            raise StrategyError("invalid_output", f"not a chat completion: {exc}") from None
        if not parsed.choices:
            raise StrategyError("invalid_output", "the completion has no choices")
        content = parsed.choices[0].message.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str) or not content.strip():
            raise StrategyError("invalid_output", "the completion has no text")
        return Completion(
            text=content, served_model=parsed.model, usage=parsed.usage, attempts=attempt
        )


def _proxied(url: str) -> bool:
    """Whether the environment (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``...) proxies ``url``."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
    return not bypass(parts.hostname or "", proxies)


@contextlib.contextmanager
def _transport_errors(where: str) -> Iterator[None]:
    """httpx2's timeouts and transport errors as retryable StrategyErrors."""
    try:
        yield
    except httpx2.TimeoutException as exc:
        raise _Retryable(StrategyError("timeout", f"{type(exc).__name__} {where}")) from None
    except httpx2.TransportError as exc:
        detail = f"{type(exc).__name__} {where}: {exc}"[:300]
        raise _Retryable(StrategyError("connection", detail)) from None


class _Retryable(Exception):
    def __init__(self, error: StrategyError, delay: float | None = None) -> None:
        super().__init__(error.detail)
        self.error = error
        self.delay = delay
